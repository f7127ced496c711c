"""chapters/own_task (Use tvlib on your own task; test_chapters checks its MyST source against the notebook) reruns
on another model through papermill, saying which, without writing into the book's results/."""

import json

import jupytext
import pytest

from tvlib import book, paths
from tvlib.models import load_tokenizer
from tvlib.tiny import save_tiny

PAGE = paths.chapters_dir() / "own_task.ipynb"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny("gpt_neox", tmp_path_factory.mktemp("tiny-pythia"), layers=4, tokenizer=load_tokenizer())


def test_own_task_reruns_on_another_model_and_leaves_results_alone(tiny_model, tmp_path):
    out = book.execute(PAGE, tmp_path / PAGE.name, {"model": str(tiny_model), "device": "cpu", "dtype": "float32",
                                                    "n_dev": 4, "n_test": 4, "n_baseline": 4})
    nb = json.loads(out.read_text(encoding="utf-8"))
    assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))
    said = " ".join("".join(o.get("data", {}).get("text/markdown", "")) for c in nb["cells"]
                    for o in c.get("outputs", []))
    assert f"Model: {tiny_model}, 4 blocks" in said and "On 4 test contexts" in said
    # the custom task's results went to a temporary folder, never into the book's store
    assert not list(paths.results_dir().rglob("country_currency*"))

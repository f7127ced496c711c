"""The chapters rerun on another model through papermill, without editing a notebook; stored results stay fresh."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tvlib import book
from tvlib.models import load_tokenizer
from tvlib.tiny import save_tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random Pythia-shaped model with the default model's tokenizer, saved as a local folder."""
    return save_tiny("gpt_neox", tmp_path_factory.mktemp("tiny-pythia"), layers=4, tokenizer=load_tokenizer())


def test_the_accuracy_chapter_runs_on_another_model(tiny_model, tmp_path):
    """What `python -m tvlib run-book --chapter 03 --model PATH --out DIR -p ...` does: papermill, no edits."""
    params = {"model": str(tiny_model), "tasks": "algorithmic_to_upper,algorithmic_next_letter",
              "n_dev": 4, "n_test": 4, "n_baseline": 4, "results_dir": str(tmp_path / "results")}
    [out] = book.run(["03"], tmp_path / "executed", params)
    nb = json.loads(out.read_text())
    assert "papermill" not in nb["metadata"]
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0]["metadata"]["tags"]
    assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))
    stored = sorted((tmp_path / "results" / tiny_model.name / "main").glob("*.csv"))
    assert [p.stem for p in stored] == ["algorithmic_next_letter", "algorithmic_to_upper"]
    frame = pd.read_csv(stored[0])
    assert set(frame["layer"].dropna().astype(int)) == {0, 1, 2, 3}  # the tiny model's 4 blocks were swept
    assert str(tiny_model) in "".join(injected[0]["source"])


def test_computed_prose_is_wrapped_to_the_page(capsys):
    from tvlib.book import say

    say("word " * 60, "short")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and max(len(line) for line in lines) <= 72 and lines[-1] == "short"

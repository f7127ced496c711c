"""The chapters rerun on another model through papermill, without editing a notebook; stored results stay fresh."""

from pathlib import Path

import pandas as pd
import pytest

from tvlib.models import load_tokenizer
from tvlib.runs import Runner
from tvlib.store import RESULTS_DIR
from tvlib.tiny import save_tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random Pythia-shaped model with the default model's tokenizer, saved as a local folder."""
    return save_tiny("gpt_neox", tmp_path_factory.mktemp("tiny-pythia"), layers=4, tokenizer=load_tokenizer())


def test_the_accuracy_chapter_runs_on_another_model(tiny_model, tmp_path):
    import papermill

    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(ROOT / "chapters" / "03_accuracy.ipynb"), str(out), kernel_name="python3", cwd=str(ROOT / "chapters"),
        parameters={"model": str(tiny_model), "tasks": "algorithmic_to_upper,algorithmic_next_letter",
                    "n_dev": 4, "n_test": 4, "n_baseline": 4, "results_dir": str(tmp_path / "results")},
        progress_bar=False)
    stored = sorted((tmp_path / "results" / tiny_model.name / "main").glob("*.csv"))
    assert [p.stem for p in stored] == ["algorithmic_next_letter", "algorithmic_to_upper"]
    frame = pd.read_csv(stored[0])
    assert set(frame["layer"].dropna().astype(int)) == {0, 1, 2, 3}  # the tiny model's 4 blocks were swept
    assert "str(tiny_model)" not in out.read_text() and str(tiny_model) in out.read_text()


def test_a_committed_result_is_reproduced_from_scratch(tmp_path):
    """Recompute one task of the default model's stored results: the bytes must match, or the store went stale."""
    task = "algorithmic_to_upper"
    committed = RESULTS_DIR / "gemma-3-270m" / "main" / f"{task}.csv"
    assert committed.exists(), "results for the default model must be committed"
    fresh = Runner(results_dir=tmp_path)
    fresh.main(task)
    assert (tmp_path / "gemma-3-270m" / "main" / f"{task}.csv").read_bytes() == committed.read_bytes()
    assert (tmp_path / "gemma-3-270m" / "main" / f"{task}.json").read_bytes() == committed.with_suffix(".json").read_bytes()

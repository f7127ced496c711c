"""The chapters rerun on another model through papermill, without editing a notebook; stored results stay fresh."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tvlib import beyond, book, multitoken, runbook
from tvlib.errors import TvlibError
from tvlib.models import load_tokenizer
from tvlib.tiny import save_tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random Pythia-shaped model with the default model's tokenizer, saved as a local folder."""
    return save_tiny("gpt_neox", tmp_path_factory.mktemp("tiny-pythia"), layers=4, tokenizer=load_tokenizer())


def _rendered_text(nb: dict) -> str:
    """What a reader sees of a notebook besides its code: markdown cells and every text output."""
    parts = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            parts.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            data = out.get("data", {})
            parts.append("".join(data.get("text/plain", "")) + "".join(data.get("text/html", ""))
                         + "".join(data.get("text/markdown", "")))
    return "\n".join(parts)


def test_every_chapter_runs_on_another_model_and_says_so(tiny_model, tmp_path):
    """`python -m tvlib run-book --model PATH --out DIR -p ...`: papermill, no edits. Every page then names the model
    it ran on and its block count, and nothing on it speaks of the default model; a second call skips every
    chapter; --build renders the run as a book of that model."""
    params = {"tasks": "algorithmic_to_upper,algorithmic_next_letter", "n_dev": 4, "n_test": 4, "n_baseline": 4,
              "n_vectors": 4, "n_queries": 4, "demo_counts": "1,5"}
    out = runbook.run_book(str(tiny_model), parameters=params, out=tmp_path / "run")
    written = [out / p.name for p in book.chapters()]
    for notebook in written:
        nb = json.loads(notebook.read_text())
        assert "papermill" not in nb["metadata"]
        injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert len(injected) == 1 and "remove-cell" in injected[0]["metadata"]["tags"], notebook.name
        assert str(tiny_model) in "".join(injected[0]["source"])
        assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", [])), notebook
        text = _rendered_text(nb)
        assert f"Model: {tiny_model}, 4 blocks" in text.replace("\n", " "), notebook.name
        assert "gemma" not in text.lower() and "18 blocks" not in text, notebook.name
    stored = sorted((out / "results" / tiny_model.name / "main_n_dev4_n_test4_n_baseline4").glob("*.csv"))
    # the two tasks asked for, and chapter 5's B tasks (does theta_B carry B? is read from B's main experiment)
    assert {"algorithmic_next_letter", "algorithmic_to_upper", "algorithmic_list_first"} <= {p.stem for p in stored}
    frame = pd.read_csv(next(p for p in stored if p.stem == "algorithmic_next_letter"))
    assert set(frame["layer"].dropna().astype(int)) == {0, 1, 2, 3}  # the tiny model's 4 blocks were swept
    assert set(pd.read_csv(out / "chapters.csv")["status"]) == {"ran"}
    assert set(pd.read_csv(out / "summary.csv")["task"]) == {"algorithmic_to_upper", "algorithmic_next_letter"}

    before = {p: p.stat().st_mtime_ns for p in written}
    runbook.run_book(str(tiny_model), parameters=params, out=out)  # resumes: nothing left to do
    assert set(pd.read_csv(out / "chapters.csv")["status"]) == {"done before"}
    assert {p: p.stat().st_mtime_ns for p in written} == before
    with pytest.raises(TvlibError, match="other settings"):
        runbook.run_book(str(tiny_model), parameters={**params, "n_test": 5}, out=out)  # never mixes two runs
    with pytest.raises(TvlibError, match="no chapter takes the parameter.*n_tset"):
        runbook.run_book(str(tiny_model), parameters={**params, "n_tset": 5}, out=tmp_path / "typo")
    assert not (tmp_path / "typo").exists()  # refused before anything was written

    index = runbook.build(out)
    page = (index.parent / "chapters" / "03_accuracy.html").read_text()
    assert str(tiny_model) in index.read_text() and f"Model: {tiny_model}, 4 blocks" in " ".join(page.split())


def test_run_book_parameters_are_read_as_yaml():
    assert [runbook.parse_value(v) for v in ["null", "10", "[a, b]", "knowledge", "0.5"]] == [
        None, 10, ["a", "b"], "knowledge", 0.5]
    with pytest.raises(TvlibError, match="unknown profile 'fast'.*paper, quick"):
        runbook.configuration("m", "cpu", "float32", "fast", {})


def test_chapter_sources_and_notebooks_are_in_sync():
    """Each chapter's MyST source (what a reviewer reads) has the executed notebook's cells, in order."""
    import jupytext

    for notebook in book.chapters(summary=True):
        source = notebook.with_suffix(".md")
        assert source.exists(), f"{source.name} is missing: run jupytext --sync chapters/*.ipynb"
        pairs = zip(jupytext.read(source)["cells"], json.loads(notebook.read_text())["cells"], strict=True)
        for md, nb in pairs:
            assert md["cell_type"] == nb["cell_type"], notebook.name
            assert md["source"].strip() == "".join(nb["source"]).strip(), (notebook.name, md["source"][:60])
            assert md["metadata"].get("tags", []) == nb["metadata"].get("tags", []), notebook.name


def test_computed_prose_is_wrapped_to_the_page(capsys):
    from tvlib.book import say

    say("word " * 60, "short")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and max(len(line) for line in lines) <= 72 and lines[-1] == "short"


def test_chapter_parameters_default_to_the_library_settings():
    """The parameters cells must be literals (papermill), so a test keeps them equal to the one home of the paper's
    settings (`Protocol`) and of the experiments' own defaults (`Runner`)."""
    import inspect

    from tvlib.experiments import Protocol
    from tvlib.runs import Runner

    paper = Protocol()
    expected = {"n_dev": paper.n_dev, "n_test": paper.n_test, "n_baseline": paper.n_baseline, "demos": paper.demos,
                "seed": paper.seed, "dtype": Runner.dtype}
    robustness = inspect.signature(Runner.robustness).parameters
    conflicting = inspect.signature(Runner.conflicting).parameters
    expected.update(n_vectors=robustness["n"].default, robustness_demos=robustness["demos"].default,
                    n_queries=conflicting["n"].default, conflict_demos=conflicting["demos"].default,
                    top=inspect.signature(Runner.projection).parameters["top"].default,
                    demo_counts=",".join(map(str, beyond.DEMONSTRATIONS)),
                    max_new_tokens=inspect.signature(Runner.several_tokens).parameters["max_new_tokens"].default,
                    min_split=multitoken.MIN_SPLIT)
    for notebook in book.chapters():
        cell = next(c for c in json.loads(notebook.read_text())["cells"]
                    if "parameters" in c["metadata"].get("tags", []))
        values: dict = {}
        exec("".join(cell["source"]), {}, values)
        for name, value in values.items():
            if name in expected:
                assert value == expected[name], (notebook.name, name, value, expected[name])


def test_a_failing_chapter_leaves_nothing_behind(tmp_path):
    with pytest.raises(TvlibError, match=r"chapter 03_accuracy failed in cell \[\d+\].*TvlibError.*no_such_task"):
        book.run(["03"], tmp_path, {"tasks": "no_such_task", "results_dir": str(tmp_path / "results")})
    assert list(tmp_path.glob("*.ipynb")) == [] and not list(tmp_path.glob(".*"))

"""A command-line user always sees what runs (the model conversion and load, each task, each long step) on stderr,
while stdout keeps only the results and library loops (a notebook's) stay silent."""

import json

import pytest

from tvlib import cli, models
from tvlib.experiments import Protocol
from tvlib.progress import progress_bar
from tvlib.runs import Runner
from tvlib.tiny import save_tiny, tiny_lm

FEW = ["--n-dev", "2", "--n-test", "2", "--n-baseline", "2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", layers=2)


def test_evaluate_shows_every_step_on_stderr_even_as_one_batch_and_json_alone_on_stdout(tiny, capsys):
    assert cli.main(["evaluate", "--model", str(tiny), "--task", "algorithmic_to_upper", *FEW, "--json"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["task"] for line in out.splitlines()] == ["algorithmic_to_upper"]
    assert f"tvlib: loading {tiny} (" in err and "algorithmic_to_upper (task 1 of 1)" in err
    for step in ("A + ICL", "f (sweep)"):  # one batch each at these counts: shown all the same
        assert f"{step}: " in err, err


def test_the_first_use_conversion_is_announced_once_per_run(tmp_path, monkeypatch, capsys):
    """The alias's GGUF conversion (stubbed here by a tiny model) says so on stderr; `main` run twice in one
    process does not print each line twice."""
    monkeypatch.setattr(models, "_converted_dir", lambda alias: tmp_path / alias)
    monkeypatch.setattr(models, "_convert_gguf", lambda alias, target: save_tiny("llama", target, layers=2))
    argv = ["evaluate", "--model", models.DEFAULT_MODEL, "--task", "algorithmic_to_upper", *FEW]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert err.count(f"tvlib: converting {models.DEFAULT_MODEL} from GGUF once") == 1
    assert err.count(f"tvlib: loading {models.DEFAULT_MODEL} (") == 1
    assert cli.main(argv) == 0  # converted now: only the load is said, once
    err = capsys.readouterr().err
    assert "converting" not in err and err.count("tvlib: loading") == 1


def test_a_bar_shows_for_one_item_only_when_asked_for(capsys):
    assert list(progress_bar([1], "asked", True)) == [1]
    assert "asked: " in capsys.readouterr().err
    assert progress_bar([1], "library", None) == [1]  # a short library loop: the items themselves, no bar
    assert progress_bar([1, 2], "off", False) == [1, 2]
    assert list(progress_bar([1, 2, 3], "not a terminal", None)) == [1, 2, 3]
    assert capsys.readouterr().err == ""  # captured stderr is no terminal, as in a notebook


def test_library_runs_stay_silent_as_a_notebook_stores_them(tmp_path, capsys):
    runner = Runner("tiny", protocol=Protocol(n_dev=2, n_test=2, n_baseline=2, demos=3), results_dir=tmp_path,
                    loaded=tiny_lm("llama", layers=2))
    runner.main_all(["algorithmic_to_upper", "algorithmic_next_letter"])
    assert capsys.readouterr() == ("", "")


def test_evaluate_with_max_new_tokens_reports_whole_answers_with_intervals(tiny, tmp_path, capsys):
    """`evaluate --max-new-tokens N`: whole-answer accuracy of the query alone, ICL and theta, each with an interval,
    L chosen on dev by whole answers; the numbers are those of the predictions it writes with --out."""
    import pandas as pd

    out_csv = tmp_path / "whole.csv"
    argv = ["evaluate", "--model", str(tiny), "--task", "algorithmic_to_upper", *FEW, "--max-new-tokens", "3",
            "--patch", "every_step", "--json", "--out", str(out_csv)]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    row = json.loads(out.splitlines()[-1])
    assert "whole answers of up to 3 tokens, theta at every_step" in err
    frame = pd.read_csv(out_csv)
    assert set(frame["patch"].dropna()) == {"none", "every_step"}
    test = frame[(frame["split"] == "test") & (frame["method"] == "hypothesis")]
    assert row["best_layer"] == int(test["layer"].iloc[0]) and row["patch"] == "every_step"
    for method in ("baseline", "regular", "hypothesis"):
        part = frame[(frame["split"] != "dev") & (frame["method"] == method)]
        assert row[f"{method}_whole"] == pytest.approx(part["correct_whole"].mean(), abs=1e-4)
        low, high = row[f"{method}_whole_ci"]
        assert low <= row[f"{method}_whole"] <= high
    assert frame.groupby("split")["generated"].apply(lambda g: g.fillna("").str.len().max()).max() > 0

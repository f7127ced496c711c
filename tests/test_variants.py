"""A rerun at other settings finds a results folder of its own beside the paper protocol's (never its bytes); what no
folder name tells apart is refused before any model loads, in one line that names the fix."""

import json
from dataclasses import replace

import pytest

from tvlib import beyond, paths, runs
from tvlib.errors import TvlibError
from tvlib.experiments import Protocol
from tvlib.prompts import PromptFormat
from tvlib.runs import Runner
from tvlib.tasks import task_names
from tvlib.tiny import tiny_lm

TASK = "algorithmic_to_upper"


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama", layers=2)


def _bytes(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_smaller_protocol_runs_beside_the_paper_one_and_leaves_it_untouched(lm, tmp_path):
    paper = Runner("tiny", results_dir=tmp_path, loaded=lm)
    paper.main(TASK)
    before = _bytes(paper._place("main"))
    small = replace(paper, protocol=Protocol(n_dev=5, n_test=5, n_baseline=10))
    frame = small.main(TASK)  # was: "holds a result for other settings (protocol)"
    assert small._place("main") == tmp_path / "tiny" / "main_n_dev5_n_test5_n_baseline10"
    assert small.place("pages").name == "pages_n_dev5_n_test5_n_baseline10" and paper.place("pages").name == "pages"
    assert _bytes(paper._place("main")) == before and len(frame[frame["method"] == "baseline"]) == 10
    reread = replace(small, loaded=None, stored_only=True).main(TASK)  # found again, no model needed
    assert reread.equals(frame)


def test_folder_names_say_what_differs_in_the_protocols_order():
    def name(**settings):
        return Runner("m", protocol=Protocol(**settings))._place("main").name

    assert name() == "main" and name(batch_size=4, progress=True) == "main"  # how it runs keys nothing
    assert name(seed=42) == "main_seed42" and name(n_test=5, n_dev=5) == "main_n_dev5_n_test5"
    assert name(demos=3, seed=43, n_baseline=10) == "main_n_baseline10_demos3_seed43"
    assert name(fmt=PromptFormat(prefix="<s>")) == name(fmt=PromptFormat(prefix="<s>")) != name()
    assert name(seed=42, fmt=PromptFormat(prefix="<s>")).startswith("main_seed42_fmt")
    runner = Runner("m")
    assert runner._place("robustness", n_vectors=(50, 50), tasks=(["a"], ("a",))).name == "robustness"
    assert runner._place("robustness", n_vectors=(10, 50)).name == "robustness_n_vectors10"


@pytest.mark.parametrize("model", ["gemma-3-270m", "smollm2-135m"])
def test_every_committed_folder_keeps_its_name(model):
    """Each committed main*/ folder is where its manifests' protocol places it, and every other experiment at its
    defaults is read back from the committed plain folders with no model: no committed file moves."""
    folder = paths.results_dir() / model
    runner = Runner(model)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("main")):
        protocol = json.loads(next(sub.glob("*.json")).read_text())["config"]["protocol"]
        stored = Protocol(**{**protocol, "fmt": PromptFormat(**protocol["fmt"])})
        assert replace(runner, protocol=stored)._place("main") == sub
    stored = replace(runner, stored_only=True)  # every other experiment at its defaults, read with no model
    names, picked = task_names(), sorted(p.stem for p in (folder / "averaged").glob("*.csv"))
    for read in (lambda: stored.robustness(names), lambda: stored.robustness(names, "window"), stored.conflicting,
                 lambda: stored.projection(names), stored.first_token, lambda: beyond.tables(stored, picked, 10)):
        read()


def test_a_result_no_folder_tells_apart_is_refused_before_the_model_loads(lm, tmp_path, monkeypatch):
    Runner("tiny", results_dir=tmp_path, loaded=lm, protocol=Protocol(n_dev=2, n_test=2, n_baseline=2)).main(TASK)

    def no_load(*_):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(runs, "load_model", no_load)
    other = Runner("tiny", dtype="bfloat16", results_dir=tmp_path, protocol=Protocol(n_dev=2, n_test=2, n_baseline=2))
    with pytest.raises(TvlibError, match=r"other settings \(dtype\).*delete it.*results_dir") as refused:
        other.main_all(["algorithmic_next_letter", TASK])  # the first task is missing: it would load the model
    assert "\n" not in str(refused.value)
    assert not (other._place("main") / "algorithmic_next_letter.csv").exists()

"""The paper's effect on the real offline default model (Gemma 3 270M), and the command line's errors."""

import json
import subprocess
import sys

import pytest

from tvlib.errors import TvlibError
from tvlib.experiments import Protocol, evaluate_task, summarize
from tvlib.models import load_model
from tvlib.tasks import load_task


@pytest.fixture(scope="session")
def gemma():
    return load_model("gemma-3-270m", "cpu", "auto")


def test_to_upper_shows_the_papers_effect(gemma):
    frame = evaluate_task(gemma, load_task("algorithmic_to_upper"), Protocol(n_dev=20, n_test=20, n_baseline=20))
    row = summarize(frame).iloc[0]
    assert row["regular"] >= 0.9, row
    assert row["baseline"] <= 0.2, row
    assert row["hypothesis"] >= 0.6, row
    assert 0 < row["best_layer"] < gemma.n_layers - 1


def test_the_default_model_has_its_table_entry(gemma):
    assert gemma.n_layers == 18 and gemma.layout.blocks == "model.layers"
    with pytest.raises(TvlibError, match=r"0\.\.17"):
        gemma.check_layer(18)


def test_an_unknown_model_lists_the_aliases_and_how_to_pass_a_path():
    with pytest.raises(TvlibError, match=r"gemma-3-270m.*local folder"):
        load_model("no-such-org/no-such-model")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tvlib", *args], capture_output=True, text=True, timeout=600)


def test_the_command_line_prints_one_json_object_per_task():
    out = _cli("evaluate", "--task", "algorithmic_to_lower", "--n-dev", "8", "--n-test", "8", "--n-baseline", "8",
               "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and rows[0]["task"] == "algorithmic_to_lower"
    assert set(rows[0]) == {"task", "baseline", "regular", "hypothesis", "best_layer", "dev_curve", "baseline_ci",
                            "regular_ci", "hypothesis_ci"}
    assert len(rows[0]["dev_curve"]) == 18
    for method in ("baseline", "regular"):
        low, high = rows[0][f"{method}_ci"]
        assert 0 <= low <= rows[0][method] <= high <= 1
    low, high = rows[0]["hypothesis_ci"]  # re-picks L per resample: need not straddle the point estimate
    assert 0 <= low <= high <= 1


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--task", "no_such_task"], "unknown task 'no_such_task'"),
    (["evaluate", "--task", "algorithmic_to_upper", "--model", "./no/such/dir"], "not found offline"),
    (["evaluate", "--task", "algorithmic_to_upper", "--demos", "500"], "needs at least 501"),
    (["evaluate", "--task", "algorithmic_to_upper", "--dtype", "float8"], "unknown dtype"),
])
def test_bad_input_is_one_clear_line_not_a_traceback(args, message):
    out = _cli(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_without_one_says_so():
    out = _cli("evaluate", "--task", "algorithmic_to_upper", "--device", "cuda")
    assert out.returncode == 2 and "torch sees no CUDA GPU" in out.stderr and "Traceback" not in out.stderr


def test_the_fast_tokenizer_of_an_alias_encodes_as_autotokenizer_does():
    """load_model reads an alias's tokenizer.json directly; every prompt of every task must encode the same."""
    from transformers import AutoTokenizer

    from tvlib.models import load_tokenizer, resolve
    from tvlib.tasks import load_task, task_names

    fast, auto = load_tokenizer(), AutoTokenizer.from_pretrained(resolve("gemma-3-270m"))
    texts = [f"example:{e.input}->{e.output}\nexample: {e.input}->" for n in task_names() for e in load_task(n).examples]
    assert fast(texts).input_ids == auto(texts).input_ids
    assert (fast.bos_token_id, fast.eos_token_id, fast.pad_token_id) == (auto.bos_token_id, auto.eos_token_id,
                                                                         auto.pad_token_id)
    assert [fast.decode([i]) for i in range(0, len(auto), 211)] == [auto.decode([i]) for i in range(0, len(auto), 211)]


def test_help_is_light_and_a_closed_pipe_is_not_an_error():
    """`--help` imports no torch (it answers at once); `tasks --json | head -1` ends quietly."""
    code = "import sys; from tvlib import cli; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    out = subprocess.run(f"{sys.executable} -m tvlib tasks --json | head -1", shell=True, capture_output=True,
                         text=True, timeout=300)
    assert out.stdout.startswith('{"name": ') and "Traceback" not in out.stderr, out.stderr

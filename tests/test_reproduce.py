"""Stored results reproduce on any CPU: exactly, except near-tie predictions (tvlib.reproduce)."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tvlib.paths import results_dir
from tvlib.reproduce import TIE_TOLERANCE, compare

TASK = "algorithmic_to_upper"
COMMITTED = results_dir() / "gemma-3-270m" / "main" / f"{TASK}.csv"
# Lesser kernel sets than an AVX2 or AVX-512 machine's best: generic ATen loops, MKL without FMA, oneDNN at SSE4.1.
LESSER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "AVX", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def _frame(predictions, margins, correct=None):
    return pd.DataFrame({"query": list("abc"), "prediction": predictions, "margin": margins,
                         "correct": correct if correct is not None else [p == "A" for p in predictions]})


def test_only_a_near_tie_may_change_its_answer():
    stored = _frame(["A", "B", "C"], [2.0, TIE_TOLERANCE / 2, 1.0])
    assert compare(stored, stored.copy()).ok
    flipped_tie = _frame(["A", "X", "C"], [2.0, TIE_TOLERANCE / 4, 1.0])
    agreement = compare(stored, flipped_tie)
    assert agreement.ok and agreement.changed == 1 and agreement.near_ties == 1
    flipped_clear = _frame(["A", "B", "X"], [2.0, TIE_TOLERANCE / 2, 1.0])
    assert not compare(stored, flipped_clear).ok and compare(stored, flipped_clear).unexplained == 1


def test_an_empty_answer_read_back_as_missing_equals_itself(tmp_path):
    frame = _frame(["A", "", "C"], [2.0, 0.5, 1.0])
    path = tmp_path / "x.csv"
    frame.to_csv(path, index=False)
    stored = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert stored["prediction"].isna().sum() == 1
    assert compare(stored, stored.copy()).ok and compare(stored, stored.copy()).changed == 0
    assert not compare(stored, stored.assign(prediction=["A", "B", "C"])).ok


def test_any_other_column_or_a_moved_margin_is_a_difference():
    stored = _frame(["A", "B", "C"], [2.0, 0.5, 1.0])
    other_query = stored.assign(query=list("abd"))
    assert compare(stored, other_query).columns_differ == ("query",)
    moved = stored.assign(margin=[2.0, 0.5, 1.1])
    assert not compare(stored, moved).ok
    assert not compare(stored, stored.iloc[:2]).ok


def _recompute(folder, env=None):
    """Recompute the committed task from scratch in a new process, as a user's machine would."""
    code = f"from tvlib.runs import Runner; Runner(results_dir={str(folder)!r}).main({TASK!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    csv = folder / "gemma-3-270m" / "main" / f"{TASK}.csv"
    return pd.read_csv(csv, keep_default_na=False, na_values=[""]), json.loads(csv.with_suffix(".json").read_text())


def _check_against_committed(fresh, manifest):
    assert COMMITTED.exists(), "results for the default model must be committed"
    stored = pd.read_csv(COMMITTED, keep_default_na=False, na_values=[""])
    committed_manifest = json.loads(COMMITTED.with_suffix(".json").read_text())
    assert manifest["config"] == committed_manifest["config"] and manifest["config"]["dtype"] == "float32"
    agreement = compare(stored, fresh)
    print(f"\n{TASK}: {agreement}")
    assert agreement.ok, str(agreement)


@pytest.mark.slow
def test_a_committed_result_is_reproduced_from_scratch(tmp_path, announce):
    announce(f"recomputing the committed {TASK} result from scratch (about a minute)")
    _check_against_committed(*_recompute(tmp_path))


@pytest.mark.slow
def test_a_committed_result_is_reproduced_with_lesser_cpu_kernels(tmp_path, announce):
    """What a CPU without AVX2 or AVX-512 computes: the same answers, up to near ties."""
    announce(f"recomputing {TASK} with lesser CPU kernels ({', '.join(f'{k}={v}' for k, v in LESSER_KERNELS.items())})")
    _check_against_committed(*_recompute(tmp_path, LESSER_KERNELS))


def test_the_continuous_measures_may_move_a_little_but_not_more():
    stored = _frame(["A", "B", "C"], [2.0, 0.5, 1.0]).assign(logprob=[-0.1, -12.0, -3.0], logit_diff=[2.0, 0.5, -1.0],
                                                             kl=[float("nan"), 0.3, 4.0])
    rounded = stored.assign(logprob=[-0.1001, -12.001, -3.0], kl=[float("nan"), 0.3004, 4.0])
    assert compare(stored, rounded).ok
    assert compare(stored, stored.assign(logprob=[-0.1, -12.5, -3.0])).columns_differ == ("logprob",)
    assert not compare(stored, stored.assign(kl=[0.0, 0.3, 4.0])).ok  # missing in other rows

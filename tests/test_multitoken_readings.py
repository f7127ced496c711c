"""How the several-token results are read: paired intervals, 'cannot be decided', and sentences made from numbers.

The frames are built here in the shape `multitoken.evaluate_task` returns, with correctness chosen per context, so
each reading has a known right answer; no model runs."""

import numpy as np
import pandas as pd
import pytest

from tvlib import multitoken_readings as readings
from tvlib import verdicts
from tvlib.intervals import N_BOOT

N = 40  # test contexts a task


def _rows(task: str, split: str, method: str, patch: str, layer, whole, first, start=None, tokens=None):
    n = len(whole)
    return pd.DataFrame({
        "task": task, "category": task.split("_")[0], "split": split, "method": method, "patch": patch,
        "layer": layer, "context": range(n), "query": [f"q{i}" for i in range(n)], "expected": "yes",
        "answer_tokens": tokens if tokens is not None else [1 + i % 2 for i in range(n)],
        "generated": ["yes" if w else "no" for w in whole], "first": "y",
        "correct_first": first, "correct_start": start if start is not None else first, "correct_lead": whole,
        "correct_whole": whole,
        "stopped": True, "margin": 1.0, "prompt": "p",
    })


def _task(task: str, icl: float, prefill: float, every: float, base: float, first_gap: float = 0.0,
          seed: int = 0) -> pd.DataFrame:
    """One task's frame: each setting right on the given share of test contexts (whole answers), the first-token
    rule right on `first_gap` more of them; dev sweeps over 3 layers peaking at layer 1."""
    rng = np.random.default_rng(seed)

    def right(share: float, n: int = N) -> np.ndarray:
        out = np.zeros(n, bool)
        out[rng.permutation(n)[:round(share * n)]] = True
        return out

    def firsts(whole: np.ndarray) -> np.ndarray:
        return whole | right(first_gap, len(whole))

    parts = [_rows(task, "baseline", "baseline", "none", None, b := right(base, 2 * N), firsts(b))]
    parts.append(_rows(task, "test", "regular", "none", None, w := right(icl), firsts(w)))
    for patch, share in (("prefill", prefill), ("every_step", every)):
        for layer, scale in ((0, 0.0), (1, 1.0), (2, 0.5)):
            parts.append(_rows(task, "dev", "hypothesis", patch, layer, w := right(share * scale), firsts(w)))
        parts.append(_rows(task, "test", "hypothesis", patch, 1, w := right(share), firsts(w)))
    return pd.concat(parts, ignore_index=True)


def _frame(**shares) -> pd.DataFrame:
    return pd.concat([_task("translation_a", seed=1, **shares), _task("knowledge_b", seed=2, **shares)],
                     ignore_index=True)


def test_a_clear_gain_over_the_query_alone_reads_yes_and_its_numbers_are_in_the_sentence():
    read = readings.tables(_frame(icl=0.9, prefill=0.7, every=0.2, base=0.0))
    assert read["decides"] and read["tasks"] == ["knowledge_b", "translation_a"]
    carries = readings.answer_carries(read)
    assert carries.startswith("Does theta carry a whole answer? yes")
    row = read["contrasts"].set_index("measure").loc["theta, prefill / ICL"]
    assert row["difference"] == pytest.approx(0.7 / 0.9, abs=1e-9)
    assert f"it keeps {row['difference']:.2f} [{row['low']:.2f}, {row['high']:.2f}]" in carries
    assert "prefill only gives more" in readings.answer_patch(read)


def test_every_step_above_prefill_reads_so():
    read = readings.tables(_frame(icl=0.9, prefill=0.3, every=0.8, base=0.0))
    assert "every step gives more whole answers" in readings.answer_patch(read)


def test_the_paired_difference_resamples_both_settings_on_the_same_contexts():
    """Every step minus prefill, read from paired replicates: the same result as resampling the per-context
    differences directly with each task's generator."""
    frame = _frame(icl=0.9, prefill=0.5, every=0.45, base=0.0)
    read = readings.tables(frame)
    row = read["contrasts"].set_index("measure").loc["theta, every step - theta, prefill"]
    test = frame[(frame["split"] == "test") & (frame["method"] == "hypothesis")]
    diff = {t: (f[f["patch"] == "every_step"]["correct_whole"].to_numpy(float)
                - f[f["patch"] == "prefill"]["correct_whole"].to_numpy(float)) for t, f in test.groupby("task")}
    assert row["difference"] == pytest.approx(np.mean([d.mean() for d in diff.values()]))
    from tvlib.intervals import _rng, bounds

    reps = np.mean([d[_rng(t, 0).integers(0, len(d), (N_BOOT, len(d)))].mean(axis=1)
                    for t, d in sorted(diff.items(), key=lambda kv: list(diff).index(kv[0]))], axis=0)
    assert (row["low"], row["high"]) == pytest.approx(bounds(reps))


def test_a_small_paired_difference_is_decided_where_the_marginal_intervals_overlap():
    """Every step right on the contexts prefill gets right, less 4 of them a task: the two marginal intervals
    overlap almost wholly, and still every step is below prefill, as the paired interval says."""
    frame = _frame(icl=0.9, prefill=0.5, every=0.5, base=0.0)
    test = (frame["split"] == "test") & (frame["method"] == "hypothesis")
    for task in frame["task"].unique():
        prefill = frame.index[test & (frame["task"] == task) & (frame["patch"] == "prefill")]
        every = frame.index[test & (frame["task"] == task) & (frame["patch"] == "every_step")]
        right = frame.loc[prefill, "correct_whole"].to_numpy().copy()
        right[np.flatnonzero(right)[:4]] = False
        frame.loc[every, "correct_whole"] = right
    read = readings.tables(frame)
    marginal = read["test"].query("task == 'mean' and rule == 'whole answer'").set_index("method")
    assert marginal.loc["theta, every step", "high"] > marginal.loc["theta, prefill", "low"]
    assert "prefill only gives more whole answers" in readings.answer_patch(read)


def test_an_interval_that_holds_zero_cannot_be_decided():
    read = readings.tables(_frame(icl=0.9, prefill=0.5, every=0.5, base=0.0))
    assert verdicts.UNDECIDED in readings.answer_patch(read)
    assert verdicts.UNDECIDED in readings.answer_stop(read)  # whole and leading answers are the same here


def test_where_icl_adds_too_little_nothing_is_decided_and_the_page_says_why():
    read = readings.tables(_frame(icl=0.1, prefill=0.6, every=0.2, base=0.0))
    assert not read["decides"] and read["tasks"] == ["knowledge_b", "translation_a"]
    assert verdicts.UNDECIDED in readings.answer_carries(read)
    assert verdicts.UNDECIDED in readings.answer_patch(read)
    assert f"on none does ICL add {verdicts.MIN_GAIN}" in readings.say_scope(read)


def test_the_first_token_rule_over_counts_where_it_accepts_answers_the_whole_rule_rejects():
    read = readings.tables(_frame(icl=0.6, prefill=0.5, every=0.2, base=0.0, first_gap=0.3))
    said = readings.answer_rules(read)
    assert said.count("the first token over-counts") == 2, said
    row = read["contrasts"].set_index("measure").loc["ICL: whole answer - first token"]
    assert row["high"] < 0


def test_the_several_token_tables_read_only_answers_of_several_tokens():
    frame = _frame(icl=0.9, prefill=0.7, every=0.2, base=0.0)
    read = readings.tables(frame)
    several = frame[(frame["split"] == "test") & (frame["answer_tokens"] > 1)]
    icl = several[several["method"] == "regular"].groupby("task")["correct_whole"].mean().mean()
    mean = read["several"].query("task == 'mean' and method == 'ICL' and rule == 'whole answer'")["accuracy"]
    assert mean.iloc[0] == pytest.approx(icl)
    assert read["n_several"] == several[several["method"] == "regular"].shape[0]
    assert f"On the {read['n_several']} test queries whose answer takes several tokens" in readings.say_several(read)[0]


def test_a_ratio_without_an_interval_says_so():
    frame = _frame(icl=0.05, prefill=0.05, every=0.0, base=0.0)  # ICL right on 2 of 40: some resamples have none
    read = readings.tables(frame)
    assert "with no interval" in readings.answer_carries(read)


def test_models_table_and_examples_come_from_the_frames():
    frame = _frame(icl=0.9, prefill=0.7, every=0.2, base=0.0)
    read = readings.tables(frame)
    table = readings.models_table({"m1": read, "m2": read})
    assert list(table.columns) == ["m1", "m2"] and table.loc["tasks", "m1"] == "2"
    cell = read["test"].query("task == 'mean' and method == 'ICL' and rule == 'whole answer'").iloc[0]
    assert table.loc["ICL (whole)", "m1"] == f"{cell['accuracy']:.2f} [{cell['low']:.2f}, {cell['high']:.2f}]"
    shown = readings.examples(frame, read["tasks"], n=2)
    assert len(shown) == 4 and set(shown.columns) == {"task", "query", "expected", *readings.SERIES.values()}


def test_what_ending_the_answer_costs_is_read_from_the_leading_answers():
    """Generations that begin with the whole answer but do not stop there: 'answer leads' counts them, 'whole
    answer' does not, and the page's paired difference says how many."""
    frame = _frame(icl=0.9, prefill=0.3, every=0.2, base=0.0)
    rows = (frame["split"] == "test") & (frame["patch"] == "prefill")
    frame.loc[rows, "correct_lead"] = True  # theta starts every answer right and runs on
    read = readings.tables(frame)
    row = read["contrasts"].set_index("measure").loc["theta, prefill: whole answer - answer leads"]
    assert row["difference"] == pytest.approx(0.3 - 1.0) and row["high"] < 0
    assert readings.answer_stop(read).startswith("Does theta end the answer? not always")
    said = readings.say_accuracy(read)[2]
    assert "theta at prefill 1.00 [1.00, 1.00]" in said and f"{row['difference']:+.2f}" in said

"""Experiments beyond the paper (tvlib.beyond) on a tiny model: what they compute, checked against the paper's f."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from tvlib import beyond, experiments, intervals, vectors
from tvlib.errors import TvlibError
from tvlib.runs import Runner
from tvlib.experiments import Protocol
from tvlib.tasks import load_task
from tvlib.tiny import tiny_lm

SMALL = Protocol(n_dev=6, n_test=5, n_baseline=2, demos=3)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama")


def test_adding_theta_with_alpha_zero_is_no_patch_and_alpha_scales_what_is_added(lm):
    texts = ["example:a->A\nexample:b->", "example:k->"]
    theta = torch.randn(2, lm.model.config.hidden_size)
    plain = vectors.last_logits(lm, texts)
    torch.testing.assert_close(vectors.last_logits(lm, texts, theta, [1, 2], alpha=0.0), plain)
    assert not torch.allclose(vectors.last_logits(lm, texts, theta, [1, 2], alpha=1.0), plain)
    torch.testing.assert_close(vectors.last_logits(lm, texts, theta, [1, 1], alpha=2.0),
                               vectors.last_logits(lm, texts, 2 * theta, [1, 1], alpha=1.0))


def test_averaged_theta_keeps_the_per_context_baseline_and_each_size(lm):
    frame = beyond.averaged_theta(lm, load_task("algorithmic_to_upper"), 1, SMALL, sizes=(1, 2, 6, 50))
    counts = frame.groupby(["method", "averaged"]).size().to_dict()
    assert counts == {("mean theta", 1): 5, ("mean theta", 2): 5, ("mean theta", 6): 5, ("per context", 0): 5}
    one = frame[(frame["averaged"] == 1)]
    assert one["prompt"].tolist() == frame[frame["method"] == "per context"]["prompt"].tolist()  # same queries
    table = intervals.fixed_by(frame, "averaged", n_boot=50)
    assert set(table.columns) == {"task", "method", "averaged", "accuracy", "low", "high"}
    assert table["accuracy"].between(0, 1).all() and len(table) == 4 * 2


def test_strength_compares_adding_with_replacing(lm):
    frame = beyond.strength(lm, load_task("algorithmic_to_upper"), 2, SMALL, alphas=(0.5, 4.0))
    assert frame.groupby("method").size().to_dict() == {"add": 10, "replace": 5}
    assert (frame.loc[frame["method"] == "replace", "alpha"] == 0).all()
    with pytest.raises(Exception, match="out of range"):
        beyond.strength(lm, load_task("algorithmic_to_upper"), lm.n_layers, SMALL)


def test_by_demonstrations_reruns_the_main_experiment_per_count(lm):
    frame = beyond.by_demonstrations(lm, load_task("algorithmic_to_upper"), SMALL, counts=(1, 3))
    table = intervals.swept_by(frame, "demos", n_boot=50)
    assert table["demos"].tolist() == [1, 1, 3, 3] and table["task"].tolist()[1::2] == ["mean", "mean"]
    one = frame[frame["demos"] == 1]
    assert one.loc[one["method"] == "regular", "prompt"].str.count("\n").eq(1).all()  # one demo, then the query
    assert (table["hypothesis_low"] <= table["hypothesis"]).all() and (table["hypothesis"] <= table["hypothesis_high"]).all()


def test_format_transfer_fills_the_source_by_target_matrix(lm):
    frame = beyond.format_transfer(lm, load_task("algorithmic_to_upper"), SMALL)
    hyp = frame[(frame["method"] == "hypothesis") & (frame["split"] == "test")]
    assert hyp.groupby(["source", "target"]).size().tolist() == [5 * lm.n_layers] * 9
    qa = frame[(frame["source"] == "example:x->y") & (frame["target"] == "Q: x / A: y")]
    assert qa["prompt"].str.startswith("Q: ").all()
    assert qa.loc[qa["method"] != "regular", "prompt"].str.endswith("\nA:").all()
    # theta of a source is the same vector whatever the target: its own format's diagonal is the plain experiment
    plain = experiments.evaluate_task(lm, load_task("algorithmic_to_upper"), replace(SMALL, fast=False))
    diagonal = frame[(frame["source"] == "example:x->y") & (frame["target"] == "example:x->y")]
    mine = diagonal[diagonal["method"] == "hypothesis"].sort_values(["split", "layer", "context"])
    theirs = plain[plain["method"] == "hypothesis"].sort_values(["split", "layer", "context"])
    assert mine["prediction"].tolist() == theirs["prediction"].tolist()
    table = intervals.swept_by(frame, ["source", "target"], n_boot=50)
    assert len(table) == 9 * 2 and set(table["task"]) == {"algorithmic_to_upper", "mean"}


def test_fixed_layer_intervals_pair_the_settings_of_a_task(lm):
    frame = beyond.strength(lm, load_task("algorithmic_to_upper"), 2, SMALL, alphas=(0.5, 4.0))
    frame = pd.concat([frame, frame.assign(task="copy")])
    table = intervals.fixed_by(frame, "alpha", n_boot=50)
    assert len(table) == 3 * 3 and (table["low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["high"]).all()
    mean = table[table["task"] == "mean"].set_index(["method", "alpha"])["accuracy"]
    assert mean.to_dict() == table[table["task"] == "copy"].set_index(["method", "alpha"])["accuracy"].to_dict()
    with pytest.raises(TvlibError, match="same settings"):
        intervals.fixed_by(frame[~((frame["task"] == "copy") & (frame["alpha"] == 4.0))], "alpha", n_boot=5)


def test_pick_tasks_takes_the_largest_icl_gain_of_each_category():
    summary = pd.DataFrame({"task": ["a1", "a2", "k1", "k2"], "category": ["alg", "alg", "kn", "kn"],
                            "baseline": [0.0, 0.5, 0.1, 0.1], "regular": [0.6, 1.0, 0.3, 0.3]})
    assert beyond.pick_tasks(summary) == ["a1", "k1"]  # a1 gains 0.6 over a2's 0.5; k1 and k2 tie: first name
    assert beyond.pick_tasks(summary, per_category=2) == ["a1", "a2", "k1", "k2"]


def test_the_runner_stores_every_experiment_and_the_page_reads_them_back(lm, tmp_path):
    """Four experiments through `Runner`: stored once (a second runner that may not load a model reads them all),
    k = 5 reused from the main experiment, headlines and the models table computed from the stored rows."""
    tasks = ["algorithmic_next_letter", "algorithmic_to_upper"]
    small = replace(SMALL, n_dev=4, n_test=4)
    runner = Runner("tiny", protocol=small, results_dir=tmp_path, loaded=lm)
    found = beyond.tables(runner, tasks, n_boot=20)
    stored = Runner("tiny", protocol=small, results_dir=tmp_path, stored_only=True)
    again = beyond.tables(stored, tasks, n_boot=20)
    for name in found:
        pd.testing.assert_frame_equal(found[name], again[name])
    assert sorted(p.name for p in runner._place("demonstrations").glob("algorithmic_to_upper_k*.csv.gz")) == [
        f"algorithmic_to_upper_k{k:02d}.csv.gz" for k in (1, 2, 5, 8, 12, 16)]  # k = 3, the protocol's, is main
    assert {p.name for p in runner._place("formats").glob("*.csv.gz")} == {f"{t}.csv.gz" for t in tasks}
    assert set(found["demos"]["demos"]) == set(beyond.DEMONSTRATIONS)
    heads = beyond.headlines(found).set_index("measure")
    mean = found["strength"].query("task == 'mean' and method == 'replace'")["accuracy"].iloc[0]
    assert heads.loc["theta replaces (the paper's)", "value"] == mean
    assert heads.loc["ICL needs k (90% of its best)", "value"] in beyond.DEMONSTRATIONS
    table = beyond.compare({m: Runner(m, protocol=small, results_dir=tmp_path, stored_only=True)
                            for m in ("tiny", "never-run")}, tasks)
    assert list(table.columns) == ["tiny"]  # a model without stored results is left out, not an error
    assert table.loc["theta replaces (the paper's)", "tiny"].startswith(f"{mean:.2f} [")


def test_against_reads_a_paired_difference_and_says_its_interval():
    contrasts = pd.DataFrame([("a - b", 0.05, 0.01, 0.09, "above"), ("c - d", -0.02, -0.06, 0.02, "level with")],
                             columns=["measure", "difference", "low", "high", "reading"])
    assert beyond.against(contrasts, "a - b") == "above (paired difference +0.05 [+0.01, +0.09])"
    assert beyond.against(contrasts, "c - d").startswith("level with (paired difference -0.02")
    assert beyond.first_within(pd.Series([0.2, 0.85, 0.9, 1.0], index=[1, 2, 3, 5])) == 3


def _contrasts(reading_k: str = "above", **readings: str) -> pd.DataFrame:
    """Made-up `contrasts` rows: every comparison with the given reading ('level with' unless named)."""
    rows = [("ICL needs k (90% of its best)", 4, 2, 8, ""), ("theta needs k (90% of its best)", 2, 1, 4, ""),
            ("k ICL needs - k theta needs", 2, 1, 4, reading_k)]
    for measure in ("mean theta - per context", "mean theta - ICL", "best addition - replacement",
                    "own format - other format"):
        rows.append((measure, 0.1, 0.05, 0.15, readings.get(measure.split(" - ")[0].replace(" ", "_"),
                                                                 "level with")))
    return pd.DataFrame(rows, columns=["measure", "difference", "low", "high", "reading"])


def _swept(rows: list[tuple]) -> pd.DataFrame:
    """A made-up `swept_by` table of mean rows: (k, regular, hypothesis), intervals +-0.05."""
    frame = pd.DataFrame(rows, columns=["demos", "regular", "hypothesis"]).assign(task="mean", baseline=0.0)
    frame["hypothesis / regular"] = frame["hypothesis"] / frame["regular"]
    for column in ("regular", "hypothesis", "hypothesis / regular"):
        frame[f"{column}_low"], frame[f"{column}_high"] = frame[column] - 0.05, frame[column] + 0.05
    return pd.concat([frame.assign(task="t1"), frame])


def test_the_pages_sentences_follow_the_numbers():
    early = beyond.say_demonstrations(_swept([(1, 0.2, 0.5), (2, 0.5, 0.6), (4, 0.9, 0.6), (16, 1.0, 0.6)]),
                                      _contrasts())
    assert "ICL comes within 90% of its own best (1.00) at k = 4 (95% interval 2-8)" in early[1]
    assert "theta within 90% of its own best (0.60) at k = 2 (95% interval 1-4): theta needs fewer demonstrations" \
        in early[1] and "(paired difference in k +2, 95% interval +1 to +4)" in early[1]
    assert early[0].startswith("Averaged over the 1 task, ICL goes from 0.20 with 1 demonstration to 1.00 with 16")
    assert "250% [" in early[2] and "60% [55%, 65%] of ICL at k = 16" in early[2]
    late = beyond.say_demonstrations(_swept([(1, 0.0, 0.0), (16, 0.9, 0.9)]), _contrasts("level with"))
    assert "cannot tell whether theta needs fewer or more" in late[1] and "nothing (ICL scores 0) at k = 1" in late[2]

    def fixed(rows):
        frame = pd.DataFrame(rows, columns=["method", "alpha", "accuracy"]).assign(task="mean")
        return frame.assign(low=frame["accuracy"] - 0.05, high=frame["accuracy"] + 0.05)

    weak = beyond.say_strength(fixed([("add", 0.5, 0.1), ("add", 2.0, 0.3), ("replace", 0.0, 0.7)]),
                               _contrasts(best_addition="below"))
    assert weak[0].startswith("Adding alpha x theta scores 0.10 at alpha = 0.5, 0.30 at alpha = 2;")
    assert weak[1] == ("The best addition (alpha = 2, 0.30 [0.25, 0.35], chosen on these contexts) is below (paired "
                       "difference +0.10 [+0.05, +0.15]) replacement.")
    # marginal intervals that overlap (0.55-0.65 and 0.58-0.68) do not make two settings level: the pair decides
    close = beyond.say_strength(fixed([("add", 1.0, 0.6), ("replace", 0.0, 0.63)]), _contrasts(best_addition="below"))
    assert "is below (paired" in close[1]
    level = beyond.say_strength(fixed([("add", 1.0, 0.9), ("replace", 0.0, 0.6)]), _contrasts())
    assert "is level with (paired" in level[1]

    formats = pd.DataFrame([(s, t, 0.8 if s == t else 0.2) for s in beyond.FORMATS for t in beyond.FORMATS],
                           columns=["source", "target", "hypothesis"]).assign(task="mean")
    said = beyond.say_formats(formats, _contrasts(own_format="above"))
    assert "scores 0.80 on average (the diagonal)" in said[0] and "0.20, 25% of it" in said[0]
    assert "theta is tied to the format it was read in. Its own format is above (paired" in said[0]
    assert "moves accuracy by 0.60 on average (within a column)" in said[1] and "matters about as much as" in said[1]
    column = formats.assign(hypothesis=[0.1 if t == "x = y" else 0.7 for t in formats["target"]])
    assert "by 0.00 on average (within a column)" in beyond.say_formats(column, _contrasts())[1]
    assert "the query's format matters more than theta's" in beyond.say_formats(column, _contrasts())[1]
    assert "it carries over to formats it never saw." in beyond.say_formats(formats.assign(hypothesis=0.7),
                                                                           _contrasts())[0]


def test_the_averaged_sentence_reads_each_comparison_from_its_pair():
    rows = [("mean theta", 1, 0.5), ("mean theta", 50, 0.8), ("per context", 0, 0.66), ("regular", 0, 0.86)]
    frame = pd.DataFrame(rows, columns=["method", "averaged", "accuracy"]).assign(task="mean")
    frame = frame.assign(low=frame["accuracy"] - 0.05, high=frame["accuracy"] + 0.05)
    # 0.80 [0.75, 0.85] and ICL's 0.86 [0.81, 0.91] overlap, yet the paired difference is below 0
    said = beyond.say_averaged(frame, _contrasts(mean_theta="below"))
    assert "the mean over 50 scores 0.80 [0.75, 0.85]" in said[0]
    assert said[1].startswith("The mean theta is below (paired difference +0.10") and " and below (paired" in said[1]

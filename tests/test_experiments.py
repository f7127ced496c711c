"""Every experiment's plumbing on a tiny random model: shapes, tidy columns, caching, determinism."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from tvlib import clusters, experiments, vectors
from tvlib.errors import TvlibError
from tvlib.experiments import Protocol
from tvlib.measures import MEASURES
from tvlib.prompts import sample_contexts
from tvlib.runs import Runner
from tvlib.tasks import Example, Task, load_task, task_list
from tvlib.tiny import ARCHITECTURES, tiny_lm

SMALL = Protocol(n_dev=4, n_test=4, n_baseline=4, demos=3)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama")


def test_the_main_experiment_is_tidy_and_complete(lm):
    frame = experiments.evaluate_task(lm, load_task("algorithmic_to_upper"), SMALL)
    counts = frame.groupby(["split", "method"]).size().to_dict()
    assert counts == {("baseline", "baseline"): 4, ("dev", "hypothesis"): 4 * lm.n_layers,
                      ("test", "hypothesis"): 4 * lm.n_layers, ("test", "regular"): 4}
    assert frame["margin"].ge(0).all() and frame["margin"].notna().all()
    summary = experiments.summarize(frame)
    assert list(summary.columns) == ["task", "category", "baseline", "regular", "hypothesis", "best_layer"]
    curve = experiments.dev_curve(frame)
    layer = experiments.best_layer(curve)
    assert summary["best_layer"].iloc[0] == layer
    at_layer = frame[(frame["split"] == "test") & (frame["method"] == "hypothesis") & (frame["layer"] == layer)]
    assert summary["hypothesis"].iloc[0] == at_layer["correct"].mean()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_fast_path_gives_the_reference_paths_answers(arch):
    """KV reuse (shared demonstrations, one bare-query pass per sweep) against one plain pass per prompt."""
    tiny = tiny_lm(arch)
    # Inputs of 1-6 characters: prefixes and bare queries of many lengths in one batch, single-character outputs.
    words = ["a", "be", "cat", "dove", "eagle", "falcon", "go", "hat", "ice", "jam", "kite", "lemon"]
    task = Task("first_letter", "custom", tuple(Example(w, w[0].upper()) for w in words))
    protocol = Protocol(n_dev=5, n_test=5, n_baseline=3, demos=2, batch_size=3)
    fast = experiments.evaluate_task(tiny, task, protocol)
    naive = experiments.evaluate_task(tiny, task, replace(protocol, fast=False))
    assert len({len(q) for q in fast["query"]}) > 1
    floats = ["margin", *MEASURES]
    pd.testing.assert_frame_equal(fast.drop(columns=floats), naive.drop(columns=floats))
    for column in floats:  # the continuous measures too, KL against each path's own ICL distribution included
        np.testing.assert_allclose(fast[column], naive[column], atol=1e-4, err_msg=column)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fast_theta_and_icl_logits_match_plain_passes(arch):
    tiny = tiny_lm(arch)
    groups = [["example:ab->AB\nexample:cd->CD\nexample:x->", "example:ab->AB\nexample:cd->CD\nexample:yyz->"],
              ["example:hello->HELLO\nexample:t->", "example:hello->HELLO\nexample:sun->", "example:q->"]]
    flat = [t for g in groups for t in g]
    states, answers = vectors.states_and_answers(tiny, groups, batch_size=1)
    torch.testing.assert_close(states, vectors.last_token_states(tiny, flat), rtol=1e-4, atol=1e-4)
    reference = vectors.predict(tiny, flat)
    assert answers.ids == reference.ids
    np.testing.assert_allclose(answers.margins, reference.margins, atol=1e-4)


def test_the_main_experiment_is_deterministic(lm):
    task = load_task("algorithmic_next_letter")
    a = experiments.evaluate_task(lm, task, SMALL)
    b = experiments.evaluate_task(lm, task, SMALL)
    pd.testing.assert_frame_equal(a, b)


def test_ties_go_to_the_lowest_layer():
    curve = pd.DataFrame({"layer": [3, 1, 2, 0], "accuracy": [0.5, 0.9, 0.9, 0.1]})
    assert experiments.best_layer(curve) == 1


def test_conflicting_tasks_score_both_labels_at_bs_own_layer(lm):
    frame = experiments.conflicting(lm, load_task("algorithmic_next_letter"), load_task("algorithmic_to_upper"),
                                    SMALL, n=5)
    assert len(frame) == 10 and set(frame["method"]) == {"regular", "patched"}
    row = frame.iloc[0]
    assert row["label_b"] == row["query"].upper() and row["label_a"] == chr(ord(row["query"]) + 1)
    assert frame["layer"].nunique() == 1 and 0 <= frame["layer"].iloc[0] < lm.n_layers
    assert all(p.count("example:") == SMALL.demos + 1 for p in frame["prompt"])  # A's demos and the query


def test_theta_of_b_reads_bs_demos_through_as_inputs():
    """The paper's code: dummy queries for B's contexts are drawn from A's inputs, never B's query."""
    b = load_task("algorithmic_to_upper")
    a_inputs = tuple(Example(c, c) for c in "0123456789")
    for c in sample_contexts(b, 20, 3, 41, "conflict-b", 2, dummy_pool=a_inputs):
        assert {d.input for d in c.dummies} <= set("0123456789") and c.query.input not in {d.input for d in c.dummies}


def test_dominance_counts_only_pairs_where_icl_does_task_a():
    def rows(pair, icl_a, patched_a, patched_b):
        out = []
        for method, (ca, cb) in (("regular", (icl_a, 0.0)), ("patched", (patched_a, patched_b))):
            out += [{"task_a": pair[0], "task_b": pair[1], "method": method, "layer": 3, "b_dev_accuracy": 0.5,
                     "correct_a": i < 10 * ca, "correct_b": i < 10 * cb} for i in range(10)]
        return out
    frame = pd.DataFrame(rows(("a", "b"), 0.9, 0.2, 0.7) + rows(("c", "d"), 0.3, 0.0, 0.8)
                         + rows(("e", "f"), 0.9, 0.6, 0.3) + rows(("g", "h"), 0.9, 0.0, 0.9))
    gains = {"b": 0.5, "d": 0.5, "f": 0.5, "h": 0.05}  # h: the query alone answers, theta_h carries no task
    table = experiments.dominance_table(frame, gains).set_index("task_a_demos")
    assert table.loc["a", "theta_dominates"] and table.loc["a", "icl_does_a"] and table.loc["a", "b_carries"]
    assert not table.loc["c", "icl_does_a"] and not table.loc["c", "theta_dominates"]  # flagged, not counted
    assert not table.loc["e", "theta_dominates"]
    assert not table.loc["g", "b_carries"] and not table.loc["g", "theta_dominates"]  # flagged although B wins
    with pytest.raises(TvlibError, match="main-experiment"):
        experiments.dominance_table(frame, {"b": 0.5})
    assert table.loc["a", "patched_acc_on_b"] == 0.7 and table.loc["a", "n"] == 10 and table.loc["a", "layer"] == 3
    assert table.loc["a", "b_dev_accuracy"] == 0.5


def test_the_vocabulary_projection_keeps_the_papers_alphabetic_distinct_tokens(lm):
    frame = experiments.vocabulary_projection(lm, load_task("algorithmic_to_upper"), [0, 2], SMALL, top=5)
    assert set(frame["layer"]) == {0, 2}
    for _, group in frame.groupby("layer"):
        assert group["rank"].tolist() == list(range(1, len(group) + 1)) and len(group) <= 5
        assert all(experiments.ALPHABETIC.match(t) for t in group["token"]) and group["token"].is_unique
    assert experiments.ALPHABETIC.match("Paris") and not experiments.ALPHABETIC.match("Café")
    assert not experiments.ALPHABETIC.match("x2") and not experiments.ALPHABETIC.match("")


def test_clustering_scores_see_clusters_and_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    tight = np.concatenate([c + rng.normal(size=(10, 16)) * 0.1 for c in centres])
    labels = [t for t in "abc" for _ in range(10)]
    scores = clusters.scores(tight, labels).set_index("metric")["value"]
    assert scores["5-NN task accuracy"] == 1.0 and scores["silhouette (cosine)"] > 0.8
    noise = clusters.scores(rng.normal(size=(30, 16)), labels).set_index("metric")["value"]
    assert noise["silhouette (cosine)"] < 0.2
    pairs = clusters.distance_pairs(tight, labels)
    assert len(pairs) == 30 * 29 // 2 and (pairs["kind"] == "within task").sum() == 3 * 45


def test_runner_stores_and_reuses_every_experiment(lm, tmp_path):
    runner = Runner("tiny", protocol=SMALL, results_dir=tmp_path, loaded=lm)
    tasks = ["algorithmic_next_letter", "algorithmic_to_upper"]
    main = runner.main_all(tasks)
    robust = runner.robustness(tasks, n=8, demos=3)  # each task at its own L
    assert set(robust) == {"tsne", "distances", "task_distances", "neighbours", "scores", "scores_testable"}
    assert len(robust["tsne"]) == 16
    layers = runner.best_layers(tasks)
    assert robust["tsne"].groupby("task")["layer"].first().to_dict() == layers
    common = runner.robustness(tasks, layer=1, n=8, demos=3)
    assert set(common["tsne"]["layer"]) == {1}
    projection = runner.projection(tasks, offsets=(0,), top=3)
    assert set(projection["task"]) == set(tasks)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.csv"))
    variant = "n_dev4_n_test4_n_baseline4_demos3"  # SMALL, in a folder of its own beside the paper protocol's
    assert f"tiny/main_{variant}/algorithmic_to_upper.csv" in written
    own = f"{variant}_n_vectors8_robustness_demos3_tasks"  # and a hash of the two tasks (the paper's: all 18)
    for sub in ("robustness", "robustness_layer1"):
        assert any(w.startswith(f"tiny/{sub}_{own}") and w.endswith("/tsne.csv") for w in written), sub
    runner._lm = None  # everything is stored now: asking again must not need the model
    pd.testing.assert_frame_equal(runner.main_all(tasks), main)
    pd.testing.assert_frame_equal(runner.robustness(tasks, n=8, demos=3)["scores"], robust["scores"])


def test_a_robustness_frame_that_joins_later_leaves_the_stored_ones_untouched(lm, tmp_path):
    runner = Runner("tiny", protocol=SMALL, results_dir=tmp_path, loaded=lm)
    tasks = ["algorithmic_next_letter", "algorithmic_to_upper"]
    runner.robustness(tasks, n=8, demos=3)
    own = dict(n_vectors=(8, 50), robustness_demos=(3, 4), tasks=(tasks, task_list("all")))
    folder = runner._place("robustness", **own)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith("scores_testable")}
    for p in folder.glob("scores_testable.*"):
        p.unlink()
    again = runner.robustness(tasks, n=8, demos=3)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before
    assert (folder / "scores_testable.csv").exists() and set(again) >= {"scores", "scores_testable"}
    runner.robustness(tasks, n=6, demos=3)  # other settings: a folder of their own, this one untouched
    assert folder.with_name(folder.name.replace("n_vectors8", "n_vectors6")).is_dir()
    with pytest.raises(TvlibError, match=r"other settings \(dtype\)"):  # what no folder name tells apart
        replace(runner, dtype="bfloat16", loaded=None).robustness(tasks, n=8, demos=3)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before
    window = runner.robustness(tasks, "window", n=8, demos=3)  # the official script's rule, a folder of its own
    assert (runner._place("robustness_window", **own) / "tsne.csv").exists()
    assert len(window["tsne"]) == 16
    with pytest.raises(TvlibError, match="'window'"):
        runner.robustness(tasks, "middle", n=8, demos=3)


def test_task_list_parameter():
    assert task_list("algorithmic_to_upper, algorithmic_to_lower") == ["algorithmic_to_upper", "algorithmic_to_lower"]
    assert all(t.startswith("knowledge_") for t in task_list("knowledge")) and len(task_list("knowledge")) == 4
    assert len(task_list("all")) == 18


def test_peak_and_fall_reads_every_curve_by_one_rule():
    curve = pd.DataFrame({"layer": [0, 1, 2, 3, 4, 0, 1, 2, 3, 4],
                          "accuracy": [0.0, 0.4, 0.8, 0.5, 0.1, 0.0, 0.6, 0.8, 0.3, 0.1]})
    out = experiments.peak_and_fall(curve, 5)  # mean 0, .5, .8, .4, .1: layer 3 sits at half the peak, layer 4 below
    assert out["peak layer"] == 2 and out["relative depth"] == 3 / 5 and out["blocks to fall"] == 2
    flat = pd.DataFrame({"layer": [0, 1, 2], "accuracy": [0.2, 0.9, 0.8]})
    assert experiments.peak_and_fall(flat, 3)["blocks to fall"] is None


def test_seeds_and_prompt_formats_store_side_by_side(tmp_path):
    from tvlib.prompts import PromptFormat

    base = Runner("m", results_dir=tmp_path)
    seed42 = Runner("m", results_dir=tmp_path, protocol=Protocol(seed=42))
    prefixed = Runner("m", results_dir=tmp_path, protocol=Protocol(fmt=PromptFormat(prefix="<s>")))
    places = {r._place("main").name for r in (base, seed42, prefixed)}
    assert base._place("main").name == "main" and seed42._place("main").name == "main_seed42"
    assert len(places) == 3 and prefixed._place("main").name.startswith("main_fmt")
    assert Runner("m", results_dir=tmp_path, protocol=Protocol(batch_size=4))._place("main").name == "main"


def test_a_random_paper_shape_loads_by_name_and_skips_pairs_its_tokenizer_cannot_answer(tmp_path, capsys):
    """`random:llama-7b/32` (run-book --random-config): no download; the character tokenizer keeps only one-letter
    answers, so the dominance pairs of word tasks are skipped with a message, not a crash."""
    from tvlib import store
    from tvlib.models import load_model, n_blocks

    lm = load_model("random:llama-7b/32", "cpu", "float32")
    assert lm.n_layers == n_blocks("random:llama-7b/32") == 1 and store.slug(lm.name) == "random-llama-7b__32"
    runner = Runner(lm.name, protocol=SMALL, results_dir=tmp_path, loaded=lm)
    rows = runner.conflicting(n=2)
    assert set(rows["task_a"]) == {"algorithmic_next_letter", "algorithmic_list_last", "algorithmic_prev_letter"}
    assert capsys.readouterr().err.count("skipped") == 2


def test_repeated_experiments_leave_no_hooks_and_do_not_grow_memory(lm):
    """Five runs of the main experiment in one process: no hook stays on a block, and the resident memory after
    five is within 10% of that after one (nothing retained from run to run)."""
    import gc
    import os
    from pathlib import Path

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    task = load_task("algorithmic_to_upper")
    experiments.evaluate_task(lm, task, SMALL)
    gc.collect()
    first = rss()
    for _ in range(4):
        experiments.evaluate_task(lm, task, SMALL)
    gc.collect()
    assert rss() <= 1.1 * first
    assert [len(b._forward_hooks) + len(b._forward_pre_hooks) for b in lm.blocks] == [0] * lm.n_layers

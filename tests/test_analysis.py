"""The analyses the chapters read their sentences from: filters, peaks, the paper's tables, cluster statistics, the
output-space rule and the verdicts. Each is checked on small frames whose answer is known by hand."""

import numpy as np
import pandas as pd
import pytest

from tvlib import clusters, experiments, intervals, plots, projection, reference, verdicts


def _curves() -> pd.DataFrame:
    """Three tasks over 6 layers: 'good' peaks at 0.9 on layer 2, 'edge' at exactly 0.75, 'bad' never above 0.2."""
    acc = {"good": [0.1, 0.5, 0.9, 0.3, 0.1, 0.0], "edge": [0.0, 0.75, 0.5, 0.2, 0.0, 0.0],
           "bad": [0.0, 0.1, 0.2, 0.1, 0.0, 0.0]}
    return pd.DataFrame([{"task": t, "layer": i, "accuracy": a} for t, values in acc.items()
                         for i, a in enumerate(values)])


def test_figure3_keeps_tasks_whose_best_dev_accuracy_exceeds_075():
    assert experiments.figure3_tasks(_curves()) == ["good"]  # 0.75 itself is not above 0.75


def test_depth_peaks_reads_filtered_and_unfiltered_means_by_one_rule():
    peaks = experiments.depth_peaks({"m": _curves()}).set_index("tasks")
    assert peaks.loc["all tasks", "n tasks"] == 3 and peaks.loc["Figure 3 filter", "n tasks"] == 1
    # filtered: the 'good' curve alone peaks at layer 2 (0.9) and is below 0.45 at layer 3
    assert peaks.loc["Figure 3 filter", "peak layer"] == 2 and peaks.loc["Figure 3 filter", "blocks to fall"] == 1
    assert peaks.loc["Figure 3 filter", "relative depth"] == pytest.approx(3 / 6)
    # unfiltered mean: .033, .45, .533, .2, ... -> peak at layer 2, below .267 at layer 3
    assert peaks.loc["all tasks", "peak layer"] == 2 and peaks.loc["all tasks", "blocks"] == 6


def test_the_papers_curves_give_its_stated_peak_layers_under_its_filter():
    """The paper's text: LLaMA 7B peaks at 14, GPT-J at 12, Pythia 6.9B at 13 (0-indexed block outputs)."""
    curves = reference.dev_curves()
    peaks = experiments.depth_peaks({m: f for m, f in curves.groupby("model")}).set_index(["model", "tasks"])
    filtered = peaks.xs("Figure 3 filter", level="tasks")["peak layer"].to_dict()
    assert filtered == {"GPT-J 6B": 12, "LLaMA 7B": 14, "Pythia 6.9B": 13}


def test_table6_side_puts_every_paper_model_beside_ours():
    paper = reference.table6()
    assert list(paper["model"].unique()) == list(reference.PAPER_MODELS)
    ours = paper[paper["model"] == "LLaMA 7B"].assign(model="x")
    side = experiments.table6_side(ours, paper, "x", "regular")
    assert list(side.columns) == ["x (ours)", *reference.PAPER_MODELS] and len(side) == 18
    assert side.loc["algorithmic_to_upper", "x (ours)"] == side.loc["algorithmic_to_upper", "LLaMA 7B"]
    row = paper[(paper["model"] == "GPT-J 6B") & (paper["task"] == "algorithmic_list_first")].iloc[0]
    assert side.loc["algorithmic_list_first", "GPT-J 6B"] == row["regular"]


def _two_clusters() -> tuple[np.ndarray, list[str]]:
    """Tasks a and b near one direction, c far from both: a's nearest other task is b."""
    rng = np.random.default_rng(0)
    centres = {"a": [1.0, 0.0, 0.0], "b": [0.9, 0.3, 0.0], "c": [0.0, 0.0, 1.0]}
    vectors = np.concatenate([np.asarray(c) + 0.01 * rng.standard_normal((5, 3)) for c in centres.values()])
    return vectors, [t for t in centres for _ in range(5)]


def test_per_task_histograms_split_within_and_across_pairs():
    vectors, labels = _two_clusters()
    hist = clusters.task_histograms(vectors, labels, bins=10)
    counts = hist.groupby(["task", "kind"])["count"].sum()
    assert counts[("a", "within task")] == 10 and counts[("a", "across tasks")] == 5 * 10
    means = hist.groupby(["task", "kind"])["mean"].first()
    assert means[("c", "within task")] < means[("c", "across tasks")]
    assert (hist.groupby("task")["left"].apply(lambda s: tuple(sorted(set(s)))).nunique()) == 1  # shared edges
    assert hist.groupby(["task", "kind"])["share"].sum().round(6).eq(1).all()  # every pair lands in a bin


def test_category_neighbours_finds_the_nearest_task_and_its_chance():
    vectors, labels = _two_clusters()
    means = clusters.task_distances(vectors, labels)
    assert means.loc["a", "a"] < means.loc["a", "b"] < means.loc["a", "c"]
    out = clusters.category_neighbours(means, {"a": "x", "b": "x", "c": "y"}).set_index("task")
    assert out.loc["a", "nearest other task"] == "b" and out.loc["a", "same category"]
    assert out.loc["a", "chance"] == 0.5 and out.loc["c", "chance"] == 0.0 and not out.loc["c", "same category"]


@pytest.mark.parametrize("task, token, inside", [
    ("algorithmic_to_upper", "E", True), ("algorithmic_to_upper", "e", False),  # letter tasks keep case
    ("knowledge_location_continent", "Europe", True), ("knowledge_location_continent", "Eur", False),
    ("knowledge_country_capital", "Lond", True),  # a piece of four letters that starts an answer
    ("linguistic_present_simple_past_simple", "wandered", True),  # open-ended: any -ed form
    ("linguistic_present_simple_gerund", "wandering", True), ("linguistic_antonyms", "the", False),
    ("translation_en_fr", "maison", True),  # pooled over tasks into French
    ("translation_en_fr", "house", False),
])
def test_the_output_space_rule(task, token, inside):
    assert projection.in_output_space(task, token) is inside


def test_output_space_shares_and_language_names():
    tokens = pd.DataFrame({"source": "s", "task": ["translation_en_fr"] * 4 + ["algorithmic_to_upper"] * 2,
                           "token": ["French", "maison", "x", "y", "A", "a"]})
    out = projection.output_space_share(tokens).set_index("task")
    assert out.loc["translation_en_fr", "share"] == 0.25 and out.loc["translation_en_fr", "names language"]
    assert out.loc["algorithmic_to_upper", "share"] == 0.5 and not out.loc["algorithmic_to_upper", "names language"]


def test_verdicts_follow_their_stated_thresholds():
    average = pd.Series({"hypothesis / regular": 0.85, "baseline": 0.1, "tasks kept": 16})
    assert verdicts.accuracy(average).outcome == verdicts.HOLDS
    assert verdicts.accuracy(average.replace(0.1, 0.21)).outcome == verdicts.FAILS
    assert verdicts.accuracy(average.replace(0.85, 0.79)).outcome == verdicts.FAILS
    peak = pd.Series({"relative depth": 0.5, "blocks to fall": 5, "peak layer": 9, "blocks": 20,
                      "peak accuracy": 0.8})
    assert verdicts.layers(peak).outcome == verdicts.HOLDS
    assert verdicts.layers(peak.replace(5, 6)).outcome == verdicts.FAILS  # falls too late
    assert verdicts.layers(pd.Series({**peak, "blocks to fall": pd.NA})).outcome == verdicts.FAILS  # never falls
    assert verdicts.layers(peak.replace(0.5, 0.75)).outcome == verdicts.FAILS
    none = pd.Series({"peak layer": np.nan, "blocks": 20})  # no task passes Figure 3's filter
    assert verdicts.layers(none, (np.nan, np.nan)).outcome == verdicts.UNDECIDED
    scores = pd.DataFrame({"metric": ["5-NN task accuracy", "mean cosine distance within task",
                                      "mean cosine distance across tasks"], "value": [0.95, 0.1, 0.2]})
    means = pd.DataFrame({"within task": [0.1, 0.1], "across tasks": [0.2, 0.3]}, index=["a", "b"])
    assert verdicts.clusters(scores, means).outcome == verdicts.HOLDS
    mixed = means.assign(**{"within task": [0.1, 0.4]})  # one task mixes
    assert verdicts.clusters(scores, mixed).outcome == verdicts.FAILS
    empty = pd.DataFrame({"metric": [], "value": []})  # one testable task: nothing to cluster apart
    assert verdicts.clusters(empty, means.iloc[:1], None, ["b"]).outcome == verdicts.UNDECIDED
    table = _pairs([0.7, 0.7, 0.9, 0.9, 0.9])
    assert verdicts.dominance(table).outcome == verdicts.HOLDS  # 3 testable non-translation pairs reach 0.6
    assert verdicts.dominance(_pairs([0.5, 0.4, 0.9, 0.9, 0.9])).outcome == verdicts.FAILS  # 1 reaches, 1 open
    tokens = pd.DataFrame({"task": ["t1", "t1", "t2", "t3", "t4"], "token": ["Capital", "x", "plural", "y", "past"]})
    words = {"t1": ["capital"], "t2": ["plural"], "t3": ["first"], "t4": ["past"]}
    assert verdicts.interpretation(tokens, words).passed and "3 of 4" in verdicts.interpretation(tokens, words).line()
    assert verdicts.interpretation(tokens[tokens["task"] != "t4"], words).outcome == verdicts.FAILS


def _pairs(patched_on_b: list[float], carries: tuple = (True,) * 5) -> pd.DataFrame:
    """Five dominance pairs, the fourth one where ICL fails on A, the last a translation pair."""
    return pd.DataFrame({"task_a_demos": ["algorithmic_a", "algorithmic_b", "linguistic_c", "algorithmic_d",
                                          "translation_e"],
                         "task_b_vector": ["x", "y", "z", "w", "v"], "icl_does_a": [True, True, True, False, True],
                         "b_carries": list(carries), "patched_acc_on_b": patched_on_b})


def test_a_point_on_a_bound_is_undecided_not_a_pass():
    average = pd.Series({"hypothesis / regular": 0.8, "baseline": 0.2, "tasks kept": 16})
    found = verdicts.accuracy(average)
    assert found.outcome == verdicts.UNDECIDED and "undecided" in found.line()
    peak = pd.Series({"relative depth": 0.7, "blocks to fall": 3, "peak layer": 20, "blocks": 30,
                      "peak accuracy": 0.8})
    assert verdicts.layers(peak).outcome == verdicts.UNDECIDED  # 0.7 is the band's inclusive edge
    assert verdicts.layers(peak, (0.69, 0.69)).outcome == verdicts.UNDECIDED  # the interval cannot move the point
    assert verdicts.at_least(0.6, 0.6) == verdicts.UNDECIDED and verdicts.at_most(0.2, 0.2) == verdicts.UNDECIDED


def test_an_interval_that_straddles_the_bound_is_undecided():
    average = pd.Series({"hypothesis / regular": 0.85, "baseline": 0.1, "tasks kept": 16})
    assert verdicts.accuracy(average, {"hypothesis / regular": (0.75, 0.95)}).outcome == verdicts.UNDECIDED
    assert verdicts.accuracy(average, {"hypothesis / regular": (0.81, 0.95)}).outcome == verdicts.HOLDS
    assert verdicts.accuracy(average, {"baseline": (0.05, 0.25)}).outcome == verdicts.UNDECIDED
    low = average.replace(0.85, 0.7)
    assert verdicts.accuracy(low, {"hypothesis / regular": (0.6, 0.79)}).outcome == verdicts.FAILS
    # one pair's interval reaches 0.6: two reach it for sure, the third could go either way
    found = verdicts.dominance(_pairs([0.65, 0.7, 0.9, 0.9, 0.9]), {("algorithmic_a", "x"): (0.55, 0.75)})
    assert found.outcome == verdicts.UNDECIDED and "algorithmic_a" not in found.line() and "a->x" in found.line()


def test_a_tie_that_the_rule_reads_two_ways_is_undecided():
    # the mean curve ties at layers 20 and 21 of 30: depth 0.700 (on the edge) and 0.733 (outside the band)
    layer = [0.1] * 20 + [0.8, 0.8, 0.3] + [0.0] * 7
    curves = pd.DataFrame({"task": "t", "layer": range(30), "accuracy": layer})
    ties = experiments.tied_peaks(curves, 30)
    assert ties["peak layer"].tolist() == [20, 21] and ties["blocks to fall"].tolist() == [2, 1]
    peak = experiments.depth_peaks({"m": curves}).query("tasks == 'Figure 3 filter'").iloc[0]
    assert peak["peak layer"] == 20  # the lowest-layer rule alone would say: a pass at the edge
    found = verdicts.layers(peak, (0.69, 0.71), ties)
    assert found.outcome == verdicts.UNDECIDED and "ties at blocks 20" in found.line()
    # a tie inside the band whose layers read alike decides, and still says so
    inside = pd.DataFrame({"task": "t", "layer": range(30), "accuracy": [0.1] * 12 + [0.8, 0.8] + [0.0] * 16})
    peak = experiments.depth_peaks({"m": inside}).query("tasks == 'Figure 3 filter'").iloc[0]
    found = verdicts.layers(peak, None, experiments.tied_peaks(inside, 30))
    assert found.outcome == verdicts.HOLDS and "ties at blocks 12" in found.line()


def test_a_task_whose_layer_carries_no_task_is_left_out_of_every_verdict():
    summary = pd.DataFrame({"task": ["algorithmic_list_first", "algorithmic_to_upper", "knowledge_x"],
                            "baseline": [0.94, 0.0, 0.1], "regular": [1.0, 0.9, 0.2]})
    assert verdicts.testable(summary).tolist() == [False, True, False]
    assert experiments.figure4_kept(summary).tolist() == [False, True, False]  # one rule for both
    # dominance: B wins in all four pairs, but two cannot test it (ICL fails on A; theta_B carries no task)
    found = verdicts.dominance(_pairs([0.9] * 5, carries=(True, False, True, True, True)))
    assert found.outcome == verdicts.UNDECIDED and "b->y" in found.line() and "2 of 2 testable" in found.line()
    tokens = pd.DataFrame({"task": ["t1", "t2", "t3", "t4"], "token": ["capital", "plural", "first", "x"]})
    words = {"t1": ["capital"], "t2": ["plural"], "t3": ["first"]}
    assert verdicts.interpretation(tokens, words).outcome == verdicts.HOLDS
    found = verdicts.interpretation(tokens, words, left_out=["t3"])  # t3's list was read at a flat layer
    assert found.outcome == verdicts.FAILS and "2 of 3" in found.line() and "left out" in found.line()
    # lists of 4 published tasks out of 18: the 14 unpublished could still go either way
    assert verdicts.interpretation(tokens, words, ["t3"], unseen=14).outcome == verdicts.UNDECIDED


def test_a_paired_difference_is_read_from_its_own_interval_not_from_overlap():
    rng = np.random.default_rng(0)
    shared = rng.normal(0.6, 0.05, 1000)  # both settings read the same resampled contexts
    a, b = shared + 0.03 + rng.normal(0, 0.005, 1000), shared
    low_a, high_a = intervals.bounds(a)
    low_b, high_b = intervals.bounds(b)
    assert low_a < high_b  # the marginal intervals overlap ...
    read = intervals.difference(a, b, 0.03)
    assert read["reading"] == "above" and read["low"] > 0  # ... but the paired difference excludes 0
    assert intervals.difference(b, a, -0.03)["reading"] == "below"
    assert intervals.difference(shared, shared + rng.normal(0, 0.01, 1000), 0.0)["reading"] == "level with"


def test_a_mean_over_few_tasks_is_resampled_over_tasks_too():
    # three tasks whose accuracies differ a lot, each measured on many contexts: tasks fixed, the interval is
    # narrow; resampling the tasks shows how much another draw of three tasks could move the ratio
    rows = []
    for task, hyp in (("a", 0.3), ("b", 0.9), ("c", 0.95)):
        rows += [{"task": task, "replicate": r, "baseline": 0.0, "regular": 1.0, "hypothesis": hyp}
                 for r in range(200)]
    reps = pd.DataFrame(rows)
    summary = pd.DataFrame({"task": ["a", "b", "c"], "baseline": 0.0, "regular": 1.0, "hypothesis": [0.3, 0.9, 0.95]})
    fixed = intervals.figure4(reps, summary)["hypothesis / regular"]
    both = intervals.over_tasks(reps, summary)["hypothesis / regular"]
    assert fixed[1] - fixed[0] < 1e-9 and both[0] < 0.5 and both[1] > 0.9
    average = experiments.figure4_average(summary)
    assert verdicts.accuracy(average, intervals.figure4(reps, summary)).outcome == verdicts.FAILS
    assert verdicts.accuracy(average, intervals.over_tasks(reps, summary)).outcome == verdicts.UNDECIDED
    paper = intervals.binomial_replicates(summary, n_test=50, n_baseline=100, n_boot=200)
    assert set(paper.columns) >= {"task", "replicate", "baseline", "regular", "hypothesis"} and len(paper) == 600


def test_every_rule_wording_is_built_from_the_constants_it_applies():
    for number, constants in ((1, (verdicts.KEEPS_OF_ICL, verdicts.BASELINE_AT_MOST, verdicts.MIN_GAIN)),
                              (2, (*verdicts.MIDDLE, verdicts.FALLS_WITHIN)), (3, (verdicts.KNN_AT_LEAST,)),
                              (4, (verdicts.B_AT_LEAST, verdicts.PAIRS_AT_LEAST, verdicts.ICL_DOES_A)),
                              (5, (verdicts.TASKS_NAMED,))):
        assert all(str(c) in verdicts.RULES[number] for c in constants)
    assert "more than half" not in verdicts.RULES[4] and "middle half" not in verdicts.RULES[2]


def test_the_new_figures_draw_what_they_are_given():
    averages = pd.DataFrame({"baseline": [0.1, 0.2], "hypothesis": [0.6, 0.7], "regular": [0.8, 0.9]},
                            index=["ours", "paper"])
    fig = plots.figure4_bars(averages)
    assert len(fig.axes[0].patches) >= 6 and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["ours", "paper"]
    fig = plots.dev_curves(_curves(), {"good": 2}, {"good": "algorithmic", "edge": "algorithmic", "bad": "knowledge"})
    key = [t.get_text() for t in fig.legends[0].get_texts()]
    assert key == ["edge", "good", "bad"] and len(fig.axes[0].lines) == 3  # a key for every task, grouped by category
    assert fig.axes[0].lines[0].get_color() == fig.axes[0].lines[1].get_color() != fig.axes[0].lines[2].get_color()
    assert all(float(x).is_integer() for x in fig.axes[0].get_xticks())  # L is a block index
    fig = plots.depth_comparison({"m": _curves()}, ours="m")
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]
    vectors, labels = _two_clusters()
    fig = plots.task_distance_grid(clusters.task_histograms(vectors, labels), columns=2)
    assert sum(ax.get_visible() for ax in fig.axes) == 3


def test_figures_fit_the_page_column():
    """At most 9 inches wide: the page shows ~7 inches at 1280 px, so text of 8 pt stays readable."""
    vectors, labels = _two_clusters()
    averages = pd.DataFrame({"baseline": [0.1], "hypothesis": [0.6], "regular": [0.8]}, index=["ours"])
    figures = [plots.dev_curves(_curves()), plots.depth_comparison({"m": _curves()}, ours="m"),
               plots.figure4_bars(averages), plots.task_distance_grid(clusters.task_histograms(vectors, labels)),
               plots.mechanism()]
    assert [fig.get_size_inches()[0] <= 9 for fig in figures] == [True] * len(figures)


def _predictions(dev: dict[int, list[bool]], test: dict[int, list[bool]], regular: list[bool],
                 baseline: list[bool]) -> pd.DataFrame:
    """A hand-made main experiment of one task: hypothesis correctness per layer and context, regular, baseline."""
    rows = [{"task": "t", "category": "c", "split": split, "method": "hypothesis", "layer": layer, "context": i,
             "correct": ok} for split, sweep in (("dev", dev), ("test", test)) for layer, values in sweep.items()
            for i, ok in enumerate(values)]
    rows += [{"task": "t", "category": "c", "split": "test", "method": "regular", "layer": None, "context": i,
              "correct": ok} for i, ok in enumerate(regular)]
    rows += [{"task": "t", "category": "c", "split": "baseline", "method": "baseline", "layer": None, "context": i,
              "correct": ok} for i, ok in enumerate(baseline)]
    return pd.DataFrame(rows)


def test_bootstrap_intervals_re_pick_the_layer_and_are_seeded():
    from tvlib import intervals

    # dev: layer 1 always right, layer 0 always wrong -> every replicate picks layer 1, where test is 50% right
    frame = _predictions({0: [False] * 10, 1: [True] * 10}, {0: [True] * 10, 1: [True, False] * 5},
                         [True] * 10, [False] * 20)
    reps = intervals.task_replicates(frame, n_boot=400)
    assert set(reps["layer"]) == {1}
    assert reps["regular"].eq(1).all() and reps["baseline"].eq(0).all()
    low, high = intervals.bounds(reps["hypothesis"])
    assert 0.15 < low < 0.5 < high < 0.85  # a 50% proportion over 10 contexts
    pd.testing.assert_frame_equal(reps, intervals.task_replicates(frame, n_boot=400))  # same seed, same draws
    # dev ties between layers 0 and 1 on a resample go to layer 0
    tie = _predictions({0: [True] * 10, 1: [True] * 10}, {0: [False] * 10, 1: [True] * 10}, [True] * 10, [True])
    assert intervals.task_replicates(tie, n_boot=50)["hypothesis"].eq(0).all()
    table = intervals.with_intervals(pd.DataFrame({"task": ["t"], "baseline": [0.0], "regular": [1.0],
                                                   "hypothesis": [0.5]}), reps)
    assert table.loc[0, "regular"] == "1.00 [1.00, 1.00]"


def test_peak_depth_and_wilson_intervals():
    from tvlib import intervals

    frame = _predictions({0: [False] * 10, 1: [True] * 10, 2: [False] * 10}, {0: [True], 1: [True], 2: [True]},
                         [True], [True])
    assert set(intervals.peak_depths(frame, ["t"], n_boot=50)) == {2 / 3}
    assert all(np.isnan(intervals.bounds([])))  # nothing kept by a filter: no interval, no error
    low, high = intervals.wilson(0.5, 100)
    assert low == pytest.approx(0.404, abs=1e-3) and high == pytest.approx(0.596, abs=1e-3)


@pytest.mark.parametrize("model", ["gemma-3-270m", "smollm2-135m"])
def test_the_claims_check_reads_committed_results_without_a_model(model):
    from tvlib import claims, experiments
    from tvlib.runs import Runner
    from tvlib.tasks import task_list

    runner = Runner(model, stored_only=True)
    found = claims.check(runner, n_boot=200)
    assert [v.number for v in found] == [1, 2, 3, 4, 5] and runner.loaded is None
    lines = claims.report(model)
    assert len(lines) == 6 and all(line.startswith(f"claim {i}: ") for i, line in enumerate(lines[:5], 1))
    counts = [sum(line.startswith(f"claim {i}: {word}:") for i, line in enumerate(lines[:5], 1))
              for word in verdicts.WORDS]
    assert sum(counts) == 5 and lines[-1] == f"claims_passed={counts[0]}/5 failed={counts[1]} undecided={counts[2]}"
    ratio = experiments.figure4_average(experiments.summarize(runner.main_all(task_list("all"))))
    assert f"hypothesis/regular={ratio['hypothesis / regular']:.3f} [" in lines[0]  # the stored ratio, with its CI


def test_the_claims_check_names_the_fix_when_a_result_is_missing(tmp_path):
    from tvlib import claims
    from tvlib.errors import TvlibError

    with pytest.raises(TvlibError, match="compute --model gemma-3-270m"):
        claims.report("gemma-3-270m", results_dir=str(tmp_path))


def test_figures_draw_intervals_for_our_numbers():
    from tvlib import intervals

    summary = pd.DataFrame({"task": ["algorithmic_a", "knowledge_b"], "category": ["algorithmic", "knowledge"],
                            "baseline": [0.1, 0.0], "hypothesis": [0.5, 0.9], "regular": [0.8, 1.0]})
    ci = pd.DataFrame({"task": ["algorithmic_a", "knowledge_b"], **{f"{m}_{e}": [0.0, 0.0] if e == "low" else
                                                                     [1.0, 1.0] for m in ("baseline", "hypothesis",
                                                                                          "regular")
                                                                     for e in ("low", "high")}})
    fig = plots.accuracy_bars(summary, ci)
    assert len(fig.axes[0].collections) == 3  # one set of error bars per method
    rows = pd.DataFrame({"task_a": "algorithmic_a", "task_b": "algorithmic_b", "method": ["regular"] * 4 +
                         ["patched"] * 4, "correct_a": [1, 1, 1, 0, 0, 0, 1, 0], "correct_b": [0, 0, 0, 0, 1, 1, 0, 1]})
    table = pd.DataFrame({"pair": ["a -> b", "a -> b"], "source": ["ours", "paper"], "icl_acc_on_a": [0.75, 0.9],
                          "icl_acc_on_b": [0.0, 0.1], "patched_acc_on_a": [0.25, 0.2], "patched_acc_on_b": [0.75, 0.8]})
    fig = plots.conflict_bars(table, rows)
    heights = sorted(round(p.get_height(), 2) for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == sorted([0.75, 0.25, 0.75, 0.9, 0.1, 0.2, 0.8])  # ours from the rows, the paper's as given
    assert intervals.proportion([1, 1, 0, 0]) != (0.5, 0.5)


def test_the_ratio_strip_labels_every_task_it_is_given():
    summary = pd.DataFrame({"task": ["algorithmic_a", "algorithmic_b", "knowledge_c", "knowledge_d"],
                            "category": ["algorithmic", "algorithmic", "knowledge", "knowledge"],
                            "hypothesis": [0.5, 0.9, 0.3, 0.1], "regular": [1.0, 0.9, 0.6, 0.0]})
    ax = plots.ratio_strip(summary).axes[0]
    # a row per task, grouped by category and sorted by ratio inside it; d (regular 0) has no ratio and no row
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["algorithmic", "knowledge"]


def test_figure4_intervals_follow_the_papers_filter():
    from tvlib import intervals

    reps = pd.DataFrame({"task": ["a", "a", "b", "b"], "replicate": [0, 1, 0, 1], "baseline": [0.0, 0.2, 0.9, 0.9],
                         "hypothesis": [0.4, 0.6, 1.0, 1.0], "regular": [0.8, 1.0, 1.0, 1.0]})
    summary = pd.DataFrame({"task": ["a", "b"], "baseline": [0.1, 0.9], "hypothesis": [0.5, 1.0],
                            "regular": [0.9, 1.0]})
    ci = intervals.figure4(reps, summary)  # b is dropped: regular - baseline < 0.2
    assert ci["hypothesis"][0] == pytest.approx(0.405) and ci["hypothesis"][1] == pytest.approx(0.595)
    assert set(ci) == {"baseline", "hypothesis", "regular", "hypothesis / regular"}


def test_the_robustness_window_carries_blocks_10_to_19_of_32_to_another_depth():
    from tvlib import defaults

    assert experiments.window_layers(32, defaults.ROBUSTNESS_WINDOW) == list(range(10, 20))
    assert experiments.window_layers(18, defaults.ROBUSTNESS_WINDOW) == [6, 7, 8, 9, 10]
    # too shallow for any block to fall inside: the block nearest the window's middle, never none
    assert experiments.window_layers(1, defaults.ROBUSTNESS_WINDOW) == [0]
    assert experiments.window_layers(3, defaults.ROBUSTNESS_WINDOW) == [0]  # depth 1/3 is nearest 0.48
    rows = [{"task": "t", "split": "dev", "method": "hypothesis", "layer": layer, "context": c,
             "correct": (layer == 2) or (layer in (1, 3) and c == 0)} for layer in range(6) for c in range(2)]
    # layer 2 scores 1.0, layers 1 and 3 score 0.5; depth in [0.5, 0.7] keeps blocks 2-3 of 6, [0.6, 0.7] block 3
    assert experiments.best_layers_within(pd.DataFrame(rows), (0.5, 0.7)) == {"t": 2}
    assert experiments.best_layers_within(pd.DataFrame(rows), (0.6, 0.7)) == {"t": 3}

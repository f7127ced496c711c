"""The analyses the chapters read their sentences from: filters, peaks, the paper's tables, cluster statistics, the
output-space rule and the verdicts. Each is checked on small frames whose answer is known by hand."""

import numpy as np
import pandas as pd
import pytest

from tvlib import clusters, experiments, plots, projection, reference, verdicts


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
    side = experiments.table6_side(ours, paper, "x")
    assert list(side.columns) == ["x (ours)", *reference.PAPER_MODELS] and len(side) == 18
    assert side.loc["algorithmic_to_upper", "x (ours)"] == side.loc["algorithmic_to_upper", "LLaMA 7B"]
    row = paper[(paper["model"] == "GPT-J 6B") & (paper["task"] == "algorithmic_list_first")].iloc[0]
    assert side.loc["algorithmic_list_first", "GPT-J 6B"] == \
        f"{row['baseline']:.2f} / {row['hypothesis']:.2f} / {row['regular']:.2f}"


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
    average = pd.Series({"hypothesis / regular": 0.85, "baseline": 0.1})
    assert verdicts.accuracy(average).verdict == "holds"
    assert verdicts.accuracy(average.replace(0.1, 0.3)).verdict == "does not hold"
    assert verdicts.layers(pd.Series({"relative depth": 0.5, "blocks to fall": 3})).verdict == "holds"
    assert verdicts.layers(pd.Series({"relative depth": 0.5, "blocks to fall": pd.NA})).verdict == "does not hold"
    assert verdicts.layers(pd.Series({"relative depth": 0.9, "blocks to fall": 1})).verdict == "does not hold"
    table = pd.DataFrame({"icl_does_a": [True, True, False], "theta_dominates": [True, False, False]})
    assert verdicts.dominance(table).verdict == "does not hold"  # 1 of 2 is not more than half
    assert verdicts.dominance(table.assign(icl_does_a=False)).verdict == "cannot be tested"
    shares = pd.DataFrame({"share": [0.3, 0.25, 0.1]})
    assert verdicts.interpretation(shares).verdict == "holds"
    assert "criterion" in verdicts.interpretation(shares).sentence("m")


def test_the_new_figures_draw_what_they_are_given():
    averages = pd.DataFrame({"baseline": [0.1, 0.2], "hypothesis": [0.6, 0.7], "regular": [0.8, 0.9]},
                            index=["ours", "paper"])
    fig = plots.figure4_bars(averages)
    assert len(fig.axes[0].patches) >= 6 and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["ours", "paper"]
    fig = plots.depth_comparison({"m": _curves()}, ours="m")
    assert [len(ax.lines) for ax in fig.axes] == [1, 1]
    vectors, labels = _two_clusters()
    fig = plots.task_distance_grid(clusters.task_histograms(vectors, labels), columns=2)
    assert sum(ax.get_visible() for ax in fig.axes) == 3

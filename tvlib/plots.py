"""The book's figures, one function each: they take tidy frames and return a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from tvlib.tasks import short_name

METHOD_COLORS = {"baseline": "#9e9e9e", "hypothesis": "#1f77b4", "regular": "#ff7f0e"}
CATEGORY_ORDER = ["algorithmic", "translation", "linguistic", "knowledge"]


def _style() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def mechanism() -> plt.Figure:
    """The paper's Figure 1 redrawn: A reads S through a dummy query into theta; f answers x with theta patched in."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.set_xlim(0, 10), ax.set_ylim(0, 4), ax.axis("off")

    def box(x, y, w, h, text, color):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=color, ec="#333333", lw=1))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=10)

    def arrow(a, b, text=""):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=1.3, color="#333333"))
        if text:
            ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.18, text, ha="center", fontsize=9)

    box(0.1, 2.6, 3.2, 1.0, "S = example:a->A ... plus\nthe dummy query example:x'->", "#e8f0fe")
    box(4.0, 2.6, 1.8, 1.0, "A: blocks 0..L", "#d2e3fc")
    box(6.6, 2.75, 1.2, 0.7, "theta\n(last token)", "#fde7c8")
    box(0.1, 0.4, 3.2, 1.0, "bare query\nexample:x->", "#e6f4ea")
    box(4.0, 0.4, 3.6, 1.0, "f: blocks L+1..N, block L's output\nat the last position replaced by theta", "#ceead6")
    box(8.3, 0.55, 1.5, 0.7, "answer y", "#fce8e6")
    arrow((3.3, 3.1), (4.0, 3.1))
    arrow((5.8, 3.1), (6.6, 3.1), "hidden state")
    arrow((7.2, 2.75), (6.0, 1.4), "patch at L")
    arrow((3.3, 0.9), (4.0, 0.9))
    arrow((7.6, 0.9), (8.3, 0.9))
    ax.set_title("T([S, x]) = f(x; A(S)): the demonstrations become one vector, theta")
    return fig


def dev_curves(curves: pd.DataFrame, best: dict[str, int] | None = None) -> plt.Figure:
    """Dev accuracy of the patched run per layer: one thin line per task, the mean with a band across tasks."""
    _style()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    sns.lineplot(curves, x="layer", y="accuracy", hue="task", ax=axes[0], legend=False, linewidth=1, alpha=0.8)
    if best:
        for task, layer in best.items():
            row = curves[(curves["task"] == task) & (curves["layer"] == layer)]
            axes[0].scatter(row["layer"], row["accuracy"], s=18, color="black", zorder=3)
    axes[0].set_title("every task (dots: chosen L)")
    sns.lineplot(curves, x="layer", y="accuracy", errorbar="sd", ax=axes[1], color="#1f77b4")
    axes[1].set_title("mean over tasks, band = 1 s.d.")
    for ax in axes:
        ax.set_xlabel("layer L (block whose output is patched)")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("dev accuracy")
    fig.tight_layout()
    return fig


def depth_comparison(ours: pd.DataFrame, paper: pd.DataFrame, label: str) -> plt.Figure:
    """Mean dev curve against relative depth, ours beside the paper's three models."""
    _style()
    fig, ax = plt.subplots(figsize=(8, 4))
    for model, frame in paper.groupby("model"):
        mean = frame.groupby("depth")["accuracy"].mean()
        ax.plot(mean.index, mean.values, label=f"{model} (paper)", linewidth=1.5, alpha=0.8)
    mean = ours.groupby("depth")["accuracy"].mean()
    ax.plot(mean.index, mean.values, label=f"{label} (ours)", color="black", linewidth=2.5)
    ax.set_xlabel("relative depth (L + 1) / number of blocks")
    ax.set_ylabel("mean dev accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    return fig


def accuracy_bars(summary: pd.DataFrame) -> plt.Figure:
    """Baseline, hypothesis and regular accuracy per task, grouped by category (the paper's Figure 4 per task)."""
    _style()
    long = summary.melt(id_vars=["task", "category"], value_vars=["baseline", "hypothesis", "regular"],
                        var_name="method", value_name="accuracy")
    long["category"] = pd.Categorical(long["category"], CATEGORY_ORDER)
    long = long.sort_values(["category", "task"])
    fig, ax = plt.subplots(figsize=(12, 4.5))
    sns.barplot(long, x="task", y="accuracy", hue="method", palette=METHOD_COLORS, ax=ax,
                hue_order=["baseline", "hypothesis", "regular"])
    ax.set_xticks(ax.get_xticks(), [short_name(t) for t in long["task"].unique()], rotation=60, ha="right")
    ax.set_xlabel("")
    ax.set_ylim(0, 1.02)
    fig.tight_layout()
    return fig


def tsne_scatter(points: pd.DataFrame) -> plt.Figure:
    """t-SNE of task vectors coloured by task (the paper's Figure 5)."""
    _style()
    fig, ax = plt.subplots(figsize=(9, 6.5))
    tasks = sorted(points["task"].unique())
    palette = dict(zip(tasks, sns.color_palette("tab20", len(tasks))))
    sns.scatterplot(points, x="x", y="y", hue="task", hue_order=tasks, palette=palette, s=18, ax=ax, linewidth=0)
    for task, frame in points.groupby("task"):
        ax.text(frame["x"].median(), frame["y"].median(), short_name(task), fontsize=7, ha="center",
                weight="bold", color=palette[task])
    ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=7, markerscale=1.2)
    ax.set_xlabel("t-SNE 1"), ax.set_ylabel("t-SNE 2")
    fig.tight_layout()
    return fig


def distance_histogram(hist: pd.DataFrame) -> plt.Figure:
    """Within-task against across-task cosine distances of task vectors (density)."""
    _style()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for kind, frame in hist.groupby("kind"):
        ax.bar(frame["left"], frame["density"], width=frame["right"] - frame["left"], align="edge", alpha=0.55,
               label=kind, color="#1f77b4" if kind == "within task" else "#d62728")
    ax.set_xlabel("cosine distance between two task vectors")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    return fig


def conflict_bars(table: pd.DataFrame) -> plt.Figure:
    """Accuracy on task A's and task B's labels, for ICL on A's demos and with theta of B patched in."""
    _style()
    long = table.melt(id_vars=["pair", "source"], value_vars=["icl_acc_on_a", "icl_acc_on_b", "patched_acc_on_a",
                                                               "patched_acc_on_b"], var_name="measure",
                      value_name="accuracy")
    g = sns.catplot(long, x="measure", y="accuracy", hue="source", col="pair", kind="bar", col_wrap=3, height=3,
                    aspect=1.2, palette={"ours": "#1f77b4", "paper (LLaMA 13B)": "#bbbbbb"})
    g.set_xticklabels(["ICL, A", "ICL, B", "patched, A", "patched, B"], rotation=30)
    g.set_axis_labels("", "accuracy")
    g.set_titles("{col_name}", size=9)
    sns.move_legend(g, "lower right", bbox_to_anchor=(0.95, 0.1), title="")
    g.figure.tight_layout()
    return g.figure


def ratio_strip(summary: pd.DataFrame) -> plt.Figure:
    """Hypothesis / regular per task: how much of ICL the single vector keeps."""
    _style()
    data = summary.assign(ratio=summary["hypothesis"] / summary["regular"].replace(0, np.nan))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    sns.swarmplot(data, x="ratio", y="category", order=CATEGORY_ORDER, size=7, ax=ax, hue="category", legend=False)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("hypothesis / regular accuracy")
    ax.set_ylabel("")
    fig.tight_layout()
    return fig

"""The book's figures, one function each: they take tidy frames and return a matplotlib Figure; `layout_faults`
audits one at the page's column width, and in a notebook every figure's PNG carries that audit."""

from __future__ import annotations

import json
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from tvlib.experiments import FIGURE3_MIN_DEV, figure3_tasks
from tvlib.tasks import short_name

METHOD_COLORS = {"baseline": "#9e9e9e", "hypothesis": "#1f77b4", "regular": "#ff7f0e"}
CATEGORY_ORDER = ["algorithmic", "translation", "linguistic", "knowledge"]


def _style() -> None:
    """One look for every figure: drawn at 150 dpi and at most 9 inches wide, so that in the page's COLUMN_PX column
    (676 px at 1280 px) text of 8 pt or more stays at 8 px or more; and, in a notebook, PNGs that carry the audit."""
    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams["figure.dpi"] = 150
    _audit_notebook_pngs()


def mechanism() -> plt.Figure:
    """The paper's Figure 1 redrawn: A reads S through a dummy query into theta; f answers x with theta patched in."""
    _style()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.set_xlim(0, 10), ax.set_ylim(0, 4), ax.axis("off")

    def box(x, y, w, h, text, color):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=color, ec="#333333", lw=1))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)

    def arrow(a, b):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, lw=1.3, color="#333333"))

    box(0.1, 2.6, 3.2, 1.0, "S = example:a->A ... plus\nthe dummy query example:x'->", "#e8f0fe")
    box(4.0, 2.6, 1.8, 1.0, "A: blocks 0..L", "#d2e3fc")
    box(7.3, 2.75, 1.2, 0.7, "theta\n(last token)", "#fde7c8")
    box(0.1, 0.4, 3.2, 1.0, "bare query\nexample:x->", "#e6f4ea")
    box(4.0, 0.4, 3.6, 1.0, "f: blocks L+1..N-1, block L's output\nat the last position replaced by theta", "#ceead6")
    box(8.3, 0.55, 1.5, 0.7, "answer y", "#fce8e6")
    arrow((3.3, 3.1), (4.0, 3.1))
    arrow((5.85, 3.1), (7.25, 3.1))
    ax.text(6.55, 3.22, "hidden state", ha="center", fontsize=9)  # above its arrow, between the boxes
    arrow((7.9, 2.7), (6.4, 1.45))
    ax.text(7.3, 2.05, "patch at L", fontsize=9)  # right of its arrow
    arrow((3.3, 0.9), (4.0, 0.9))
    arrow((7.6, 0.9), (8.3, 0.9))
    ax.set_title("T([S, x]) = f(x; A(S)): the demonstrations become one vector, theta")
    return fig


def dev_curves(curves: pd.DataFrame, best: dict[str, int] | None = None,
               categories: dict[str, str] | None = None) -> plt.Figure:
    """Dev accuracy of the patched run per layer: one line per task (colour by category, a key naming each task), the
    mean with a bootstrap band across tasks; integer layer ticks, since L is a block index."""
    _style()
    fig, axes = plt.subplots(2, 1, figsize=(8, 9), sharex=True, layout="constrained")
    for task, colour, dashes in _task_styles(list(dict.fromkeys(curves["task"])), categories):
        part = curves[curves["task"] == task].sort_values("layer")
        axes[0].plot(part["layer"], part["accuracy"], color=colour, linestyle=dashes, linewidth=1.3,
                     label=short_name(task))
    if best:
        for task, layer in best.items():
            row = curves[(curves["task"] == task) & (curves["layer"] == layer)]
            axes[0].scatter(row["layer"], row["accuracy"], s=18, color="black", zorder=3)
    axes[0].set_title("every task (dots: chosen L)")
    sns.lineplot(curves, x="layer", y="accuracy", errorbar=("ci", 95), n_boot=1000, seed=0, ax=axes[1],
                 color="#1f77b4")
    axes[1].set_title("mean over tasks, band = bootstrap 95% interval over tasks")
    for ax in axes:
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("dev accuracy")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set_xlabel("layer L (block whose output is patched)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return fig


def _task_styles(tasks: list[str], categories: dict[str, str] | None) -> list[tuple[str, tuple, str]]:
    """A colour per category and a line style per task within it (tasks grouped by category in the key), so 18 lines
    stay apart; without categories, one of 20 colours per task."""
    if not categories:
        colours = sns.color_palette("tab20", len(tasks))
        return [(task, colours[i], "-") for i, task in enumerate(tasks)]
    rank = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    palette = dict(zip(CATEGORY_ORDER, sns.color_palette("deep", len(CATEGORY_ORDER))))
    styles, count = [], {}
    for task in sorted(tasks, key=lambda t: (rank.get(categories.get(t), len(rank)), t)):
        category = categories.get(task)
        count[category] = count.get(category, -1) + 1
        styles.append((task, palette.get(category, (0.5, 0.5, 0.5)), ["-", "--", ":", "-."][count[category] % 4]))
    return styles


def depth_comparison(curves_by_model: dict[str, pd.DataFrame], ours: str | tuple[str, ...],
                     min_dev: float = FIGURE3_MIN_DEV) -> plt.Figure:
    """Mean dev curve of each model against relative depth (L + 1) / blocks: left over all tasks, right over the
    tasks the paper's Figure 3 keeps (best dev accuracy above 0.75). `ours` names the curves drawn thick and dark."""
    _style()
    ours = (ours,) if isinstance(ours, str) else tuple(ours)
    dark = dict(zip(ours, ["black", "#8c2d04", "#3f007d"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 5.2), sharey=True, layout="constrained")
    for model, curves in curves_by_model.items():
        n_layers = int(curves["layer"].max()) + 1
        style = ({"color": dark.get(model, "black"), "linewidth": 2.5} if model in ours
                 else {"linewidth": 1.5, "alpha": 0.8})
        for ax, kept in zip(axes, (sorted(curves["task"].unique()), figure3_tasks(curves, min_dev))):
            if not kept:
                continue
            mean = curves[curves["task"].isin(kept)].groupby("layer")["accuracy"].mean()
            ax.plot((mean.index + 1) / n_layers, mean.values, label=f"{model} ({len(kept)} tasks)", **style)
    axes[0].set_title("all tasks")
    axes[1].set_title(f"Figure 3 filter: tasks with best dev accuracy > {min_dev}")
    for ax in axes:
        ax.set_xlabel("relative depth (L + 1) / number of blocks")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), fontsize=9, frameon=False)  # under it: the peaks
    axes[0].set_ylabel("mean dev accuracy")
    return fig


def figure4_bars(averages: pd.DataFrame, ci: dict[str, dict[str, tuple[float, float]]] | None = None) -> plt.Figure:
    """The paper's Figure 4: per model, the average baseline, hypothesis and regular accuracy over the tasks its
    filter keeps; one group of bars a model (rows of `averages`, ours first). `ci` gives intervals by row and method
    (our models; the paper reports none)."""
    _style()
    methods = ["baseline", "hypothesis", "regular"]
    long = averages[methods].rename_axis("model").reset_index().melt(id_vars="model", var_name="method",
                                                                     value_name="accuracy")
    fig, ax = plt.subplots(figsize=(9, 4.2))
    sns.barplot(long, x="model", y="accuracy", hue="method", hue_order=methods, palette=METHOD_COLORS, ax=ax)
    for container, method in zip(list(ax.containers), methods):
        for row, bar in zip(averages.index, container.patches):
            value = top = averages.loc[row, method]
            if ci and row in ci:
                _error_bars(ax, [bar], [value], [ci[row][method][0]], [ci[row][method][1]])
                top = max(value, ci[row][method][1])
            ax.annotate(f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, top), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=8)  # above the whisker
    ax.set_xticks(ax.get_xticks(), averages.index, rotation=20, ha="right")
    ax.set_xlabel("")
    ax.set_ylabel("mean accuracy, Figure 4's tasks")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=9, ncols=3, frameon=False)  # above: off the bars
    fig.tight_layout()
    return fig


def _error_bars(ax: plt.Axes, bars, values: list[float], lows: list[float], highs: list[float]) -> None:
    """Draw 95% intervals on bars already drawn (one bar per value, in order)."""
    x = [b.get_x() + b.get_width() / 2 for b in bars]
    err = [np.subtract(values, lows).clip(min=0), np.subtract(highs, values).clip(min=0)]
    ax.errorbar(x, values, yerr=err, fmt="none", ecolor="#222222", elinewidth=0.9, capsize=2)


def accuracy_bars(summary: pd.DataFrame, ci: pd.DataFrame | None = None) -> plt.Figure:
    """Baseline, hypothesis and regular accuracy per task, grouped by category (the paper's Figure 4 per task);
    with `ci` (`intervals.per_task`), each bar carries its bootstrap 95% interval."""
    _style()
    methods = ["baseline", "hypothesis", "regular"]
    ordered = summary.assign(category=pd.Categorical(summary["category"], CATEGORY_ORDER)).sort_values(
        ["category", "task"])
    long = ordered.melt(id_vars=["task", "category"], value_vars=methods, var_name="method", value_name="accuracy")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    sns.barplot(long, x="task", y="accuracy", hue="method", palette=METHOD_COLORS, ax=ax, hue_order=methods,
                order=ordered["task"], errorbar=None)
    if ci is not None:
        bounds = ci.set_index("task").loc[ordered["task"]]
        for container, method in zip(ax.containers, methods):
            _error_bars(ax, container.patches, ordered[method].tolist(), bounds[f"{method}_low"].tolist(),
                        bounds[f"{method}_high"].tolist())
    ax.set_xticks(ax.get_xticks(), [short_name(t) for t in ordered["task"]], rotation=60, ha="right")
    ax.set_xlabel("")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def tsne_scatter(points: pd.DataFrame) -> plt.Figure:
    """t-SNE of task vectors (the paper's Figure 5): a colour family per category, a marker per task within it, and
    each task's name at its median, so 18 tasks stay apart."""
    from matplotlib import patheffects

    _style()
    fig, ax = plt.subplots(figsize=(9, 6.5))
    families = dict(zip(CATEGORY_ORDER, ["Blues", "Oranges", "Greens", "Purples"]))
    markers = ["o", "s", "^", "D", "v", "P"]
    tasks = sorted(points["task"].unique())
    names = []
    by_category: dict[str, list[str]] = {}
    for task in tasks:
        by_category.setdefault(task.partition("_")[0], []).append(task)
    for category, members in by_category.items():
        shades = sns.color_palette(families.get(category, "Greys"), len(members) + 2)[2:]
        for k, task in enumerate(members):
            frame = points[points["task"] == task]
            ax.scatter(frame["x"], frame["y"], s=16, color=shades[k], marker=markers[k % len(markers)],
                       label=short_name(task), linewidths=0)
            names.append(ax.annotate(short_name(task), (frame["x"].median(), frame["y"].median()), xytext=(0, 0),
                                     textcoords="offset points", fontsize=8, ha="center", va="center",
                                     weight="bold", color="#222222",
                                     path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")]))
    ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8, markerscale=1.4)
    ax.margins(x=0.15, y=0.06)  # room for the names at the edges
    ax.set_xlabel("t-SNE 1"), ax.set_ylabel("t-SNE 2")
    fig.tight_layout()
    _spread(names)
    return fig


def _spread(labels: list, step: float = 1.5, rounds: int = 60) -> None:
    """Move labels (annotations placed in offset points) that overlap apart, up and down `step` points a round, so
    that names of clusters that lie close stay readable beside their place."""
    renderer = labels[0].figure.canvas.get_renderer() if labels else None
    for _ in range(rounds):
        boxes = [label.get_window_extent(renderer) for label in labels]
        clashes = [(i, j) for i, j in combinations(range(len(labels)), 2) if boxes[i].overlaps(boxes[j])]
        for i, j in clashes:
            upper, lower = (i, j) if boxes[i].y0 + boxes[i].y1 >= boxes[j].y0 + boxes[j].y1 else (j, i)
            for k, sign in ((upper, 1), (lower, -1)):
                dx, dy = labels[k].xyann
                labels[k].xyann = (dx, dy + sign * step)
        if not clashes:
            return


def distance_histogram(hist: pd.DataFrame) -> plt.Figure:
    """Within-task against across-task cosine distances of task vectors (density)."""
    _style()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for kind, frame in hist.groupby("kind"):
        ax.bar(frame["left"], frame["density"], width=frame["right"] - frame["left"], align="edge", alpha=0.55,
               label=kind, color="#1f77b4" if kind == "within task" else "#d62728")
    ax.set_xlabel("cosine distance between two task vectors")
    ax.set_ylabel("density")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False)  # above: off the bars
    fig.tight_layout()
    return fig


def task_distance_grid(hist: pd.DataFrame, columns: int = 3) -> plt.Figure:
    """Small multiples: per task, the share of its within-task pairs and of its pairs with other tasks' vectors at
    each cosine distance (log axis: the two differ by orders of magnitude), each group's mean dashed."""
    _style()
    tasks = sorted(hist["task"].unique())
    rows = -(-len(tasks) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 0.4 + 2.1 * rows), sharex=True, squeeze=False,
                             layout="constrained")
    colors = {"within task": "#1f77b4", "across tasks": "#d62728"}
    for ax, task in zip(axes.flat, tasks):
        for kind, frame in hist[hist["task"] == task].groupby("kind"):
            ax.bar(frame["left"], frame["share"], width=frame["right"] - frame["left"], align="edge", alpha=0.55,
                   color=colors[kind], label=kind)
            ax.axvline(max(frame["mean"].iloc[0], frame["left"].min()), color=colors[kind], linestyle="--",
                       linewidth=1)
        ax.set_xscale("log")
        ax.set_title(short_name(task), fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("cosine distance", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of pairs", fontsize=9)
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="outside upper center", ncols=2, fontsize=9,
               frameon=False)  # above the panels, where it covers no bar
    return fig


def conflict_bars(table: pd.DataFrame, rows: pd.DataFrame | None = None) -> plt.Figure:
    """Accuracy on task A's and task B's labels, for ICL on A's demos and with theta of B patched in. With `rows`
    (our per-query predictions, `experiments.conflicting`), our bars carry bootstrap 95% intervals over queries."""
    _style()
    measures = ["icl_acc_on_a", "icl_acc_on_b", "patched_acc_on_a", "patched_acc_on_b"]
    long = table.melt(id_vars=["pair", "source"], value_vars=measures, var_name="measure", value_name="accuracy")
    if rows is not None:
        pair = rows["task_a"].map(short_name) + " -> " + rows["task_b"].map(short_name)
        method = rows["method"].map({"regular": "icl", "patched": "patched"})
        ours = pd.concat([pd.DataFrame({"pair": pair, "source": "ours", "measure": method + f"_acc_on_{label}",
                                        "accuracy": rows[f"correct_{label}"].astype(float)}) for label in "ab"])
        long = pd.concat([long[long["source"] != "ours"], ours], ignore_index=True)
    sources = list(dict.fromkeys(table["source"]))
    g = sns.catplot(long, x="measure", y="accuracy", hue="source", col="pair", kind="bar", col_wrap=3, height=2.7,
                    aspect=1.1, order=measures, hue_order=sources, col_order=list(dict.fromkeys(table["pair"])),
                    palette=dict(zip(sources, ["#1f77b4", "#bbbbbb", "#ff7f0e"])), errorbar=("ci", 95), seed=0,
                    n_boot=1000, err_kws={"linewidth": 1})
    g.set_xticklabels(["ICL, A", "ICL, B", "patched, A", "patched, B"], rotation=30)
    g.set_axis_labels("", "accuracy")
    g.set_titles("{col_name}", size=10)
    for ax in g.axes.flat:  # 9 inches hold three panels: a long pair goes on two lines
        ax.set_title(ax.get_title().replace(" -> ", " ->\n") if len(ax.get_title()) > 30 else ax.get_title(), size=10)
    sns.move_legend(g, "lower right", bbox_to_anchor=(0.95, 0.1), title="")
    g.figure.set_size_inches(9, g.figure.get_figheight())  # the grid widened itself for a key that now sits inside
    g.figure.tight_layout()
    return g.figure


def ratio_strip(summary: pd.DataFrame) -> plt.Figure:
    """Hypothesis / regular per task, a dot a task on its own labelled row, the rows grouped and coloured by category
    (close ratios cannot print names on one another): how much of ICL the single vector keeps. Pass the tasks
    Figure 4 keeps; a ratio over a task ICL cannot do means little."""
    _style()
    data = summary.assign(ratio=summary["hypothesis"] / summary["regular"].replace(0, np.nan)).dropna(subset=["ratio"])
    rank = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    data = (data.assign(rank=data["category"].map(rank).fillna(len(rank))).sort_values(["rank", "ratio"])
            .reset_index(drop=True))  # the index is the row, top to bottom
    colors = dict(zip(CATEGORY_ORDER, sns.color_palette("deep", len(CATEGORY_ORDER))))
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.26 * len(data)))
    for category, part in data.groupby("category", sort=False):
        colour = colors.get(category, "#555555")
        ax.scatter(part["ratio"], part.index, s=40, color=colour, zorder=3, label=category)
        ax.hlines(part.index, 0, part["ratio"], color=colour, linewidth=1, alpha=0.5)
        if part.index[0] > 0:
            ax.axhline(part.index[0] - 0.5, color="#999999", linewidth=0.8)  # above the category's first row
    ax.set_yticks(data.index, [short_name(t) for t in data["task"]], fontsize=9)
    ax.set_ylim(len(data) - 0.5, -0.5)
    ax.set_xlim(0, max(1.05, data["ratio"].max() * 1.05))
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("hypothesis / regular accuracy (dashed: theta keeps all of ICL)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, title="category", title_fontsize=9)
    fig.tight_layout()
    return fig


SERIES_COLORS = {**METHOD_COLORS, "mean theta": "#1f77b4", "per context": "#2ca02c", "add": "#1f77b4",
                 "replace": "#2ca02c"}
SERIES_COLORS |= {"fv": "#d62728", "theta": "#1f77b4", "query alone": "#9e9e9e"}
SERIES_COLORS |= {"ICL": "#ff7f0e", "theta, prefill": "#1f77b4", "theta, every step": "#2ca02c",
                  "theta, prefill (whole answer)": "#1f77b4", "theta, prefill (first token)": "#9ecae1",
                  "theta, every step (whole answer)": "#2ca02c", "patched accuracy": "#1f77b4",
                  "k-NN decodability": "#d62728", "output-space share": "#2ca02c"}
SERIES_LABELS = {"fv": "function vector added", "theta": "theta written at L", "query alone": "query alone",
                 "regular": "ICL (regular)", "hypothesis": "theta patched (hypothesis)", "baseline": "query alone",
                 "mean theta": "mean theta of m contexts", "per context": "per-context theta (paper)",
                 "add": "alpha x theta added", "replace": "theta replaces (paper)",
                 "theta, prefill": "theta at prefill only", "theta, every step": "theta at every step"}


def _task_panels(table: pd.DataFrame, cols: int, height: float, sharey: bool = False):
    """One panel per task of `table` and a last one for the mean over tasks (task 'mean'), `cols` a row, `height`
    inches each, 9 inches wide; the panels left over are hidden and returned for a key."""
    _style()
    tasks = [t for t in dict.fromkeys(table["task"]) if t != "mean"] + ["mean"]
    cols = min(len(tasks), cols)
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(9, 0.5 + height * rows), sharey=sharey, squeeze=False,
                             layout="constrained")
    spare = list(axes.flat)[len(tasks):]
    for ax in spare:
        ax.axis("off")
    return tasks, fig, axes, spare


def setting_panels(long: pd.DataFrame, x: str, xlabel: str, flat: tuple[str, ...] = (),
                   log: bool = False, ylabel: str = "test accuracy") -> plt.Figure:
    """Test accuracy against a setting `x` (columns task, series, x, accuracy, low, high), a band for each 95%
    interval: one panel per task and one for the mean over tasks. A series in `flat` is measured once (the paper's
    way, or ICL) and drawn as a dashed level with its band, for the curves to be read against."""
    tasks, fig, axes, spare = _task_panels(long, cols=3, height=2.6, sharey=True)
    ticks = sorted(long.loc[~long["series"].isin(flat), x].unique())
    if axes.shape[1] > 1 and len(ticks) > 8:  # a layer sweep in a third of the width: every k-th block labelled
        ticks = ticks[::-(-len(ticks) // 6)]
    for ax, task in zip(axes.flat, tasks):
        for series, part in long[long["task"] == task].groupby("series", sort=False):
            colour = SERIES_COLORS.get(series, "#555555")
            part = part.sort_values(x)
            if series in flat:
                ax.axhline(part["accuracy"].iloc[0], color=colour, linestyle="--", linewidth=1.2,
                           label=SERIES_LABELS.get(series, series))
                ax.axhspan(part["low"].iloc[0], part["high"].iloc[0], color=colour, alpha=0.12, linewidth=0)
            else:
                ax.plot(part[x], part["accuracy"], marker="o", markersize=3, color=colour,
                        label=SERIES_LABELS.get(series, series))
                ax.fill_between(part[x], part["low"], part["high"], color=colour, alpha=0.18, linewidth=0)
        ax.set_title("mean over tasks" if task == "mean" else short_name(task), fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        if log:
            ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    fig.supxlabel(xlabel, fontsize=10)
    fig.supylabel(ylabel, fontsize=10)
    handles, labels = axes.flat[len(tasks) - 1].get_legend_handles_labels()
    if spare:  # the key in the empty panel, where it hides nothing
        spare[0].legend(handles, labels, loc="center", fontsize=9, frameon=False)
    else:
        fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), fontsize=9, frameon=False)
    return fig


MEASURE_LABELS = {"correct": "top-1 accuracy", "logprob": "log p(answer's\nfirst token)",
                  "logit_diff": "logit difference\nto best wrong token", "kl": "KL(ICL || theta),\nnats"}


def measure_curves(curves: pd.DataFrame, rises: dict[str, int] | None = None) -> plt.Figure:
    """The patched run per layer in each measure (columns task, layer and the measures): thin grey lines per task,
    the mean over tasks with its bootstrap 95% band over tasks, and a dotted line where each mean has risen."""
    _style()
    measures = [m for m in MEASURE_LABELS if m in curves.columns]
    fig, axes = plt.subplots(len(measures), 1, figsize=(8, 2.4 * len(measures)), sharex=True, layout="constrained")
    for ax, measure in zip(np.atleast_1d(axes), measures):
        for _, part in curves.groupby("task"):
            part = part.sort_values("layer")
            ax.plot(part["layer"], part[measure], color="#bbbbbb", linewidth=0.7)
        sns.lineplot(curves, x="layer", y=measure, errorbar=("ci", 95), n_boot=1000, seed=0, ax=ax, color="#1f77b4")
        if rises and measure in rises:
            ax.axvline(rises[measure], color="black", linestyle=":", linewidth=1.2)
        ax.set_ylabel(MEASURE_LABELS[measure], fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    np.atleast_1d(axes)[-1].set_xlabel("layer L (block whose output is patched)")
    title = "grey: each task; blue: mean over tasks, band = bootstrap 95% over tasks"
    fig.suptitle(title + ("; dotted: risen" if rises else ""), fontsize=9)
    return fig


def position_map(table: pd.DataFrame, label: str = "test accuracy") -> plt.Figure:
    """A heatmap of `positions.cells`: one row per position of the dummy prompt (prompt order, top to bottom), one
    column per layer, the value written in no cell (the colour bar reads it)."""
    _style()
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(table) + 1.6), layout="constrained")
    image = ax.imshow(table.to_numpy(float), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(table)), list(table.index), fontsize=8)
    columns = list(table.columns)
    step = max(1, -(-len(columns) // 15))
    ax.set_xticks(range(0, len(columns), step), [str(c) for c in columns[::step]], fontsize=8)
    ax.set_xlabel("layer whose state is read and written")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    return fig


def format_matrices(table: pd.DataFrame, formats: list[str]) -> plt.Figure:
    """Theta from a source format (rows) patched into a target format's bare query (columns): hypothesis accuracy
    with its 95% interval in each cell, and a last row with plain ICL in the target format for reference; one
    matrix per task (or category) and one for the mean over tasks (`intervals.swept_by` of `format_transfer`)."""
    tasks, fig, axes, _ = _task_panels(table, cols=2, height=3.2)  # two a row: a value and its interval at 9 pt
    names = [*formats, "ICL (no theta)"]
    for ax, task in zip(axes.flat, tasks):
        part = table[table["task"] == task].set_index(["source", "target"])
        grid = np.array([[part.loc[(s, t), "hypothesis"] for t in formats] for s in formats]
                        + [[part.loc[(formats[0], t), "regular"] for t in formats]])
        ax.imshow(grid, vmin=0, vmax=1, cmap="Blues", aspect="auto")
        for i, source in enumerate(names):
            for j, target in enumerate(formats):
                method, key = ("regular", formats[0]) if i == len(formats) else ("hypothesis", source)
                low, high = part.loc[(key, target), [f"{method}_low", f"{method}_high"]]
                ax.text(j, i, f"{grid[i, j]:.2f}\n[{low:.2f}, {high:.2f}]", ha="center", va="center", fontsize=9,
                        color="white" if grid[i, j] > 0.6 else "black")
        ax.axhline(len(formats) - 0.5, color="white", linewidth=3)
        ax.set_xticks(range(len(formats)), formats, fontsize=9, rotation=15)
        ax.set_yticks(range(len(names)), names, fontsize=9)
        ax.grid(False)
        ax.set_title("mean over tasks" if task == "mean" else short_name(task), fontsize=10)
    fig.supxlabel("target: the bare query's format", fontsize=10)
    fig.supylabel("source: theta's format", fontsize=10)
    return fig


def head_maps(heads: pd.DataFrame, fv_heads: list[tuple[int, int]], induction_heads: list[tuple[int, int]],
              theta_layers: list[int]) -> plt.Figure:
    """Two maps of every head (rows: layers, columns: heads): AIE averaged over tasks, and the induction score; the
    FV heads boxed in red, the induction heads in black, and the span of theta's L shaded on the left."""
    _style()
    n_layers, n_heads = int(heads["layer"].max()) + 1, int(heads["head"].max()) + 1
    fig, axes = plt.subplots(1, 2, figsize=(9, 1.6 + 0.19 * n_layers), layout="constrained")
    for ax, column, title, cmap in ((axes[0], "aie", "AIE (mean over tasks)", "Reds"),
                                    (axes[1], "induction", "induction score", "Greys")):
        grid = heads.pivot(index="layer", columns="head", values=column).to_numpy(float)
        shown = ax.imshow(grid, cmap=cmap, aspect="auto", vmin=min(0.0, np.nanmin(grid)))
        fig.colorbar(shown, ax=ax, shrink=0.8)
        for (layer, head), colour in [*((s, "#d62728") for s in fv_heads), *((s, "black") for s in induction_heads)]:
            ax.add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor=colour, linewidth=1.6))
        ax.axhspan(min(theta_layers) - 0.5, max(theta_layers) + 0.5, xmin=0, xmax=0.04, color="#1f77b4")
        ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)], fontsize=9)
        ticks = list(range(0, n_layers, 2 if n_layers > 20 else 1))
        ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=9)
        ax.set_xlabel("head", fontsize=10)
        ax.set_ylabel("layer", fontsize=10)
        ax.set_title(title, fontsize=10)
        ax.grid(False)
    fig.suptitle("red boxes: FV heads; black: induction heads; blue strip: the layers theta's L takes", fontsize=9)
    return fig


def method_bars(table: pd.DataFrame, by: str, methods: list[str], xlabel: str) -> plt.Figure:
    """Mean accuracy over tasks (task 'mean' of `intervals.fixed`) with its 95% interval, a group of bars per value
    of `by` and a bar per method."""
    _style()
    mean = table[table["task"] == "mean"]
    groups = list(dict.fromkeys(mean[by]))
    fig, ax = plt.subplots(figsize=(9, 3.4))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        part = mean[mean["method"] == method].set_index(by).loc[groups]
        x = np.arange(len(groups)) + (i - (len(methods) - 1) / 2) * width
        bars = ax.bar(x, part["accuracy"], width, color=SERIES_COLORS.get(method, "#555555"),
                      label=SERIES_LABELS.get(method, method))
        _error_bars(ax, bars, part["accuracy"].tolist(), part["low"].tolist(), part["high"].tolist())
    ax.set_xticks(range(len(groups)), groups, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel("test accuracy (mean over tasks)", fontsize=10)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)
    fig.tight_layout()
    return fig


# The layout audit: what a figure looks like at the page's column width, read off the drawn figure. Every notebook
# PNG carries it (a tEXt chunk), since tools/check_pages.py can read the built page but not redraw its figures.

COLUMN_PX = 676  # a figure's width on a page at a 1280 px window (python tools/page_widths.py --images measures it)
MIN_TEXT_PX = 8  # the smallest text a reader is asked to read, in px as shown in the column
LAYOUT_KEY = "tvlib-layout"  # the PNG tEXt keyword holding `layout_report` as JSON


def layout_report(fig: plt.Figure) -> dict:
    """The drawn figure's saved width (px, tight box at its dpi, as the inline backend saves it), each font size in
    it (px at that width, with how many texts and one of them), labels on one another or struck through by a line,
    and legends over data."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    groups = _text_groups(fig, renderer)
    sizes: dict[float, list[str]] = {}
    for text in (t for texts in groups.values() for t in texts):
        sizes.setdefault(round(text.get_fontsize() * fig.dpi / 72, 2), []).append(text.get_text())
    fonts = [[px, len(texts), texts[0][:40]] for px, texts in sorted(sizes.items())]
    width = (fig.get_tightbbox(renderer).width + 2 * plt.rcParams["savefig.pad_inches"]) * fig.dpi
    return {"width_px": int(width), "min_font_px": fonts[0][0] if fonts else None, "fonts": fonts,
            "overlaps": (_overlaps(groups, renderer) + _struck(fig, renderer))[:20],
            "legends_over_data": _legends_over_data(fig, renderer)}


def layout_faults(fig: plt.Figure, column_px: int = COLUMN_PX) -> list[str]:
    """Each defect of the figure as read in a `column_px` column (a wider figure is shrunk to it): text under
    MIN_TEXT_PX, labels on one another or struck through by a line, a legend over data. Empty for every book
    figure (tests/test_figures.py)."""
    return report_faults(layout_report(fig), column_px)


def report_faults(report: dict, column_px: int = COLUMN_PX) -> list[str]:
    """The faults `layout_report` records, text sizes scaled to the column (the rule tools/check_pages.py repeats)."""
    scale = min(1.0, column_px / report["width_px"])
    small = [f"{n} text(s) at {px * scale:.1f} px in a {column_px} px column, under {MIN_TEXT_PX} (e.g. {text!r})"
             for px, n, text in report["fonts"] if px * scale < MIN_TEXT_PX]
    return small + report["overlaps"] + report["legends_over_data"]


def _text_groups(fig: plt.Figure, renderer) -> dict[str, list[Text]]:
    """The drawn texts of each axes (titles, annotations, axis and tick labels, its legend) and of the figure
    (suplabels, figure legends), by group: labels are compared within a group, never across two axes."""
    groups = {}
    for i, ax in enumerate(a for a in fig.axes if a.get_visible()):
        texts = [c for c in ax.get_children() if isinstance(c, Text)] + _legend_texts(ax.get_legend())
        for axis in (ax.xaxis, ax.yaxis) if ax.axison else ():
            ticks = axis._update_ticks()  # the ticks matplotlib draws: those inside the view
            texts += [axis.label, axis.get_offset_text(), *(t.label1 for t in ticks), *(t.label2 for t in ticks)]
        groups[f"axes {i + 1}" + (f" ({ax.get_title()})" if ax.get_title() else "")] = texts
    groups["the figure"] = fig.texts + [t for legend in fig.legends for t in _legend_texts(legend)]
    return {name: [t for t in texts if t.get_visible() and t.get_text().strip()] for name, texts in groups.items()}


def _legend_texts(legend) -> list[Text]:
    return [*legend.get_texts(), legend.get_title()] if legend is not None and legend.get_visible() else []


def _overlaps(groups: dict[str, list[Text]], renderer) -> list[str]:
    """Pairs of texts of one group whose rectangles (turned with the text) overlap."""
    found = []
    for name, texts in groups.items():
        shapes = [_outline(t, renderer) for t in texts]
        for (a, shape_a), (b, shape_b) in combinations(zip(texts, shapes), 2):
            if shape_a.get_extents().overlaps(shape_b.get_extents()) and shape_a.intersects_path(shape_b):
                found.append(f"{a.get_text()!r} overlaps {b.get_text()!r} in {name}")
    return found


def _outline(text: Text, renderer) -> Path:
    """The text's own rectangle turned by its rotation (the upright box of a slanted tick label spans its
    neighbours'), a pixel in from each edge so that labels which merely touch do not count."""
    box = text.get_window_extent(renderer)
    angle = text.get_rotation()
    width, height = box.width, box.height
    if angle % 180:
        text.set_rotation(0)
        width, height = text.get_window_extent(renderer).size
        text.set_rotation(angle)
    half = [max(width / 2 - 1, 0), max(height / 2 - 1, 0)]
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]]) * half
    turn = np.deg2rad(angle)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    return Path(corners @ rotation.T + [box.x0 + box.width / 2, box.y0 + box.height / 2], closed=True)


def _struck(fig: plt.Figure, renderer) -> list[str]:
    """Texts placed in an axes (annotations, bar labels) that one of its lines or error bars runs through."""
    found = []
    for ax in fig.axes:
        for text in (t for t in ax.texts if t.get_visible() and t.get_text().strip()):
            box = text.get_window_extent(renderer).padded(-1)  # merely touching is no fault
            if _on_lines(box, ax):
                found.append(f"a line runs through {text.get_text()!r} in {ax.get_title() or 'an axes'}")
    return found


def _legends_over_data(fig: plt.Figure, renderer) -> list[str]:
    """Legends whose box lies on data: an axes' legend on its own axes, a figure legend on any."""
    placed = [(ax.get_legend(), [ax]) for ax in fig.axes if ax.get_legend()] + [(lg, fig.axes) for lg in fig.legends]
    found = []
    for legend, axes in ((lg, axes) for lg, axes in placed if lg.get_visible()):
        box = legend.get_window_extent(renderer)
        for ax in axes:
            inside = Bbox.intersection(box, ax.bbox)  # data are clipped to the axes
            if inside is not None and _on_data(inside, ax):
                entries = ", ".join(t.get_text() for t in legend.get_texts()[:2])
                found.append(f"the legend ({entries}, ...) covers data of {ax.get_title() or 'an axes'}")
    return found


def _on_lines(box: Bbox, ax: plt.Axes) -> bool:
    """Whether the display box touches one of the axes' lines (their points or segments) or error bars."""
    for line in (l for l in ax.lines if l.get_visible()):
        if box.count_contains(line.get_transform().transform(line.get_xydata())):
            return True
        if line.get_linestyle() not in ("None", "") and line.get_transform().transform_path(
                line.get_path()).intersects_bbox(box, filled=False):
            return True
    bars = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_visible()]
    return any(c.get_transform().transform_path(p).intersects_bbox(box, filled=False) for c in bars
               for p in c.get_paths())


def _on_data(box: Bbox, ax: plt.Axes) -> bool:
    """Whether the display box touches the axes' data: lines and error bars, bars and bands, scatter points,
    images."""
    if _on_lines(box, ax):
        return True
    for patch in (p for p in ax.patches if p.get_visible()):
        if patch.get_transform().transform_path(patch.get_path()).intersects_bbox(box):
            return True
    for shapes in (c for c in ax.collections if c.get_visible() and not isinstance(c, LineCollection)):
        if isinstance(shapes, PathCollection) and len(shapes.get_offsets()):  # scatter: a marker at each offset
            if box.count_contains(shapes.get_offset_transform().transform(shapes.get_offsets())):
                return True
        elif any(shapes.get_transform().transform_path(p).intersects_bbox(box) for p in shapes.get_paths()):
            return True
    return any(image.get_window_extent().overlaps(box) for image in ax.images)


def _png(fig: plt.Figure) -> str | None:
    """The inline backend's PNG of `fig` (IPython's own print_figure: tight box, the figure's dpi and colours), with
    `layout_report` in a tEXt chunk so that tools/check_pages.py can read each figure's audit off the built page."""
    from IPython.core.pylabtools import print_figure

    report = json.dumps(layout_report(fig)) if fig.axes else "{}"
    return print_figure(fig, "png", base64=True, metadata={LAYOUT_KEY: report})


def _audit_notebook_pngs() -> None:
    """In IPython, make every Figure's PNG with `_png`. Done again by each figure, since `%matplotlib inline` and
    set_matplotlib_formats drop the Figure formatters and register IPython's own."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if (shell := get_ipython()) is not None:
        shell.display_formatter.formatters["image/png"].for_type(plt.Figure, _png)


_audit_notebook_pngs()

"""The book's figures read at the page's column width: tvlib.plots' layout audit flags small text, labels on one
another and legends over data; every plot function passes it on frames shaped like the chapters'; the notebook PNGs
carry the audit and tools/check_pages.py reads it back."""

import base64
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from tvlib import plots  # noqa: E402
from tvlib.runs import CONFLICTS  # noqa: E402
from tvlib.tasks import short_name, task_list  # noqa: E402

ROOT = Path(__file__).parents[1]
_spec = importlib.util.spec_from_file_location("check_pages", ROOT / "tools" / "check_pages.py")
check_pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_pages)

TASKS = task_list("all")
CATEGORY = {t: t.partition("_")[0] for t in TASKS}
METHODS = ["baseline", "hypothesis", "regular"]
rng = np.random.default_rng(0)


def _bad_figure() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(9, 4), dpi=150)
    ax.plot([0, 1, 2, 3], [0.9, 0.9, 0.9, 0.9], label="a line under its key")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")  # on the line at 0.9
    ax.text(1.5, 0.5, "tiny", fontsize=4)
    ax.text(2.0, 0.3, "one label", fontsize=10)
    ax.text(2.05, 0.31, "another label", fontsize=10)
    return fig


def _clean_figure() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(9, 4), dpi=150)
    ax.plot([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4], label="a rising line")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.text(2.5, 0.8, "a note", fontsize=10)
    ax.set_xticks(range(4), [f"slanted label {i}" for i in range(4)], rotation=30, ha="right")
    return fig


def test_the_audit_flags_small_text_overlapping_labels_and_a_legend_on_data():
    found = plots.layout_faults(_bad_figure())
    assert any("under 8" in f and "'tiny'" in f for f in found), found
    assert any("'one label' overlaps 'another label'" in f for f in found), found
    assert any("legend" in f and "covers data" in f for f in found), found
    assert len(found) == 3, found


def test_the_audit_flags_a_whisker_through_a_bar_label():
    fig, ax = plt.subplots(figsize=(6, 3), dpi=150)
    ax.bar([0], [0.5])
    ax.annotate("0.50", (0, 0.5), xytext=(0, 1), textcoords="offset points", ha="center", va="bottom")
    ax.errorbar([0], [0.5], yerr=[[0.1], [0.1]], fmt="none")
    assert plots.layout_faults(fig) == ["a line runs through '0.50' in an axes"]


def test_a_clean_figure_with_slanted_tick_labels_passes():
    assert plots.layout_faults(_clean_figure()) == []


def test_the_text_rule_scales_a_wide_figure_to_the_column():
    fig, ax = plt.subplots(figsize=(18, 3), dpi=100)  # 18 inches: shrunk to less than half
    ax.plot([0, 1], [0, 1])
    assert any("under 8" in f for f in plots.layout_faults(fig))
    assert plots.layout_faults(fig, column_px=3000) == []


# Frames shaped like the chapters' inputs (columns as experiments, intervals, reference and beyond give them),
# with the cases that broke the figures before: close ratios in one category, peaks where a legend sat, whiskers
# above their bars, long pair names, two t-SNE clusters side by side.

def _curves(n_layers: int, peak: float, height: float) -> pd.DataFrame:
    depth = (np.arange(n_layers) + 1) / n_layers
    return pd.DataFrame([{"task": t, "layer": layer, "accuracy": round(0.1 + height * (0.6 + 0.4 * k / len(TASKS))
                                                                        * np.exp(-((d - peak) / 0.08) ** 2), 2)}
                         for k, t in enumerate(TASKS) for layer, d in enumerate(depth)])


def _summary() -> pd.DataFrame:
    regular = rng.uniform(0.5, 1.0, len(TASKS)).round(2)
    ratio = np.r_[[0.80, 0.81, 0.82, 0.83, 0.84, 0.85], rng.uniform(0.2, 1.2, len(TASKS) - 6)]
    return pd.DataFrame({"task": TASKS, "category": [CATEGORY[t] for t in TASKS],
                         "baseline": rng.uniform(0, 0.2, len(TASKS)).round(2), "regular": regular,
                         "hypothesis": (regular * ratio).clip(0, 1).round(2), "best_layer": 10})


def _per_task_ci(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[["task"]].assign(**{f"{m}_{end}": (summary[m] + sign * 0.08).clip(0, 1)
                                       for m in METHODS for end, sign in (("low", -1), ("high", 1))})


def _averages() -> tuple[pd.DataFrame, dict]:
    models = ["gemma-3-270m (ours)", "smollm2-135m (ours)", "Pythia 2.8B", "Pythia 6.9B", "Pythia 12B", "GPT-J 6B",
              "LLaMA 7B", "LLaMA 13B", "LLaMA 30B"]
    averages = pd.DataFrame({"baseline": 0.1, "hypothesis": 0.70, "regular": 0.74}, index=models)
    averages["hypothesis / regular"] = averages["hypothesis"] / averages["regular"]
    averages["tasks kept"] = 16
    ci = {m: {k: (averages.loc[m, k] - 0.05, averages.loc[m, k] + 0.05) for k in averages.columns[:4]}
          for m in models[:2]}
    return averages, ci


def _tsne() -> pd.DataFrame:
    centres = {t: (40 * np.cos(2 * np.pi * k / len(TASKS)), 40 * np.sin(2 * np.pi * k / len(TASKS)))
               for k, t in enumerate(TASKS)}
    centres["translation_fr_en"] = (centres["translation_es_en"][0] + 1, centres["translation_es_en"][1] + 1)
    return pd.DataFrame([{"task": t, "layer": 10, "context": c, "x": x + rng.normal(), "y": y + rng.normal()}
                         for t, (x, y) in centres.items() for c in range(20)])


def _histograms() -> tuple[pd.DataFrame, pd.DataFrame]:
    edges = np.linspace(0, 1, 21)
    hist = pd.concat([pd.DataFrame({"kind": kind, "left": edges[:-1], "right": edges[1:], "count": 10,
                                    "density": rng.uniform(0, 5, 20)}) for kind in ("within task", "across tasks")])
    logs = np.logspace(-4, 0, 21)
    grid = pd.concat([pd.DataFrame({"task": t, "kind": kind, "left": logs[:-1], "right": logs[1:], "count": 10,
                                    "share": rng.dirichlet(np.ones(20)), "mean": 10 ** mean})
                      for t in TASKS[::2]  # 9 of the 18 panels, each the size of the chapter's
                      for kind, mean in (("within task", -2.5), ("across tasks", -1))])
    return hist, grid


def _conflicts() -> tuple[pd.DataFrame, pd.DataFrame]:
    measures = ["icl_acc_on_a", "icl_acc_on_b", "patched_acc_on_a", "patched_acc_on_b"]
    table = pd.DataFrame([{"task_a_demos": a, "task_b_vector": b, "source": source,
                           "pair": f"{short_name(a)} -> {short_name(b)}", **dict(zip(measures, rng.uniform(0, 1, 4)))}
                          for source in ("ours", "paper (LLaMA 13B)") for a, b in CONFLICTS])
    rows = pd.DataFrame([{"task_a": a, "task_b": b, "method": method, "correct_a": rng.random() < 0.6,
                          "correct_b": rng.random() < 0.3}
                         for a, b in CONFLICTS for method in ("regular", "patched") for _ in range(30)])
    return table, rows


def _setting(n_tasks: int, flat: tuple[str, ...], series: tuple[str, ...]) -> pd.DataFrame:
    rows = [{"task": t, "series": s, "demos": k, "accuracy": a, "low": a - 0.1, "high": min(a + 0.1, 1)}
            for t in [*TASKS[:n_tasks], "mean"] for s in series for k in ([1] if s in flat else [1, 2, 4, 8, 16])
            for a in [round(rng.uniform(0.1, 0.9), 2)]]
    return pd.DataFrame(rows)


def _formats() -> tuple[pd.DataFrame, list[str]]:
    formats = ["example:x->y", "Q: x / A: y", "x = y"]
    cell = lambda: {f"{m}{end}": v for m in ("hypothesis", "regular") for v in [round(rng.uniform(0.2, 0.9), 2)]
                    for end, v in (("", v), ("_low", v - 0.1), ("_high", v + 0.1))}
    table = pd.DataFrame([{"task": t, "source": s, "target": g, **cell()}
                          for t in [*TASKS[::5], "mean"] for s in formats for g in formats])
    return table, formats


def _heads(n_layers: int = 30, n_heads: int = 9) -> pd.DataFrame:
    """A head map the size of SmolLM2's (the most rows a page draws)."""
    rng = np.random.default_rng(5)
    return pd.DataFrame([{"layer": l, "head": h, "aie": rng.normal(0, 0.02), "induction": rng.uniform(0, 1)}
                         for l in range(n_layers) for h in range(n_heads)])


def _method_means() -> pd.DataFrame:
    """`intervals.fixed`'s mean rows for three methods in the three formats of Beyond the paper."""
    rows = [{"task": "mean", "method": m, "format": f, "accuracy": a, "low": a - 0.03, "high": a + 0.03}
            for f in ("example:x->y", "Q: x / A: y", "x = y") for m, a in (("query alone", 0.1), ("fv", 0.5),
                                                                          ("theta", 0.65))]
    return pd.DataFrame(rows)


def _measures(n_layers: int) -> pd.DataFrame:
    """Per task and layer, accuracy and the three continuous measures, SmolLM2's depth (the widest a page draws)."""
    rng = np.random.default_rng(6)
    return pd.DataFrame([{"task": t, "layer": l, "correct": rng.uniform(0, 1), "logprob": -rng.uniform(0, 12),
                          "logit_diff": rng.normal(0, 3), "kl": rng.uniform(0, 4)}
                         for t in TASKS[:10] for l in range(n_layers)])


def _position_cells() -> pd.DataFrame:
    """`positions.cells` for five demonstrations and SmolLM2's 30 layers."""
    from tvlib.positions import role_names

    rng = np.random.default_rng(7)
    return pd.DataFrame(rng.uniform(0, 1, (22, 30)), index=role_names(5), columns=range(30))


def _inputs() -> dict[str, tuple]:
    summary, (averages, ci), (hist, grid), (table, rows), (formats, names) = (
        _summary(), _averages(), _histograms(), _conflicts(), _formats())
    ours = _curves(18, 0.65, 0.8)
    by_model = {"gemma-3-270m (ours)": ours, "smollm2-135m (ours)": _curves(30, 0.72, 0.8),
                "GPT-J 6B": _curves(28, 0.5, 0.7), "LLaMA 7B": _curves(32, 0.45, 0.9),
                "Pythia 6.9B": _curves(32, 0.42, 0.85)}  # the paper's peaks, high and early, where a key once sat
    return {
        "mechanism": (),
        "dev_curves": (ours, {t: 11 for t in TASKS}, CATEGORY),
        "depth_comparison": (by_model, ("gemma-3-270m (ours)", "smollm2-135m (ours)")),
        "figure4_bars": (averages, ci),
        "accuracy_bars": (summary, _per_task_ci(summary)),
        "tsne_scatter": (_tsne(),),
        "distance_histogram": (hist,),
        "task_distance_grid": (grid,),
        "conflict_bars": (table, rows),
        "ratio_strip": (summary,),
        "setting_panels": (_setting(4, ("baseline",), ("regular", "hypothesis", "baseline")), "demos",
                           "demonstrations per context (k)", ("baseline",), True),
        "setting_panels, no spare panel": (_setting(5, ("regular", "replace"), ("add", "replace", "regular")),
                                           "demos", "alpha (theta added with this weight)", ("replace", "regular"),
                                           True),
        "format_matrices": (formats, names),
        "head_maps": (_heads(), [(20, 5), (20, 6), (17, 5)], [(3, 1), (20, 5)], [18, 20, 22]),
        "method_bars": (_method_means(), "format", ["query alone", "fv", "theta"], "format of the bare query"),
        "measure_curves": (_measures(30), {"correct": 20, "logprob": 17, "logit_diff": 17}),
        "position_map": (_position_cells(),),
    }


INPUTS = _inputs()
AUDIT = {"layout_report", "layout_faults", "report_faults"}


def test_every_public_plot_function_is_checked_here():
    public = {name for name, f in vars(plots).items() if inspect.isfunction(f) and f.__module__ == plots.__name__
              and not name.startswith("_")} - AUDIT
    assert public == {name.split(",")[0] for name in INPUTS}


@pytest.mark.parametrize("name", list(INPUTS))
def test_each_figure_reads_at_the_column_width(name):
    fig = getattr(plots, name.split(",")[0])(*INPUTS[name])
    try:
        assert plots.layout_faults(fig, plots.COLUMN_PX) == []
    finally:
        plt.close(fig)


def _page(tmp_path: Path, png: bytes) -> Path:
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "fig.png").write_bytes(png)
    page = tmp_path / "page.html"
    alt = "Bars of accuracy per task, with intervals"
    page.write_text(f'<html><body><img src="_images/fig.png" alt="{alt}"></body></html>')
    return page


def test_the_notebook_png_carries_the_audit_and_check_pages_reads_it(tmp_path):
    fig = _clean_figure()
    png = base64.b64decode(plots._png(fig))
    width, report = check_pages.png_layout(_page(tmp_path, png).parent / "_images" / "fig.png")
    assert report["width_px"] == width > 0  # the audit's width is the PNG's
    assert check_pages.faults(tmp_path / "page.html") == []
    assert check_pages.figure_faults(tmp_path / "_images" / "fig.png") == plots.report_faults(report)


def test_check_pages_reports_a_bad_figure_and_a_png_without_the_audit(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    found = check_pages.faults(_page(bad, base64.b64decode(plots._png(_bad_figure()))))
    assert len(found) == 3 and all("figure _images/fig.png" in f for f in found), found
    plain = tmp_path / "plain"
    plain.mkdir()
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(plain / "plain.png")
    found = check_pages.faults(_page(plain, (plain / "plain.png").read_bytes()))
    assert found == ["figure _images/fig.png: carries no layout audit (not drawn through tvlib.plots' notebook "
                     "formatter)"]


SHELL = """
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output


class Shell(InteractiveShell):  # a kernel's shell without a kernel: inline figures need no GUI loop
    def enable_gui(self, gui=None):
        pass


shell = Shell.instance()
shell.run_cell("%matplotlib inline")
shell.run_cell("from tvlib import plots")
shell.run_cell("%matplotlib inline")  # a second call must not drop the audit
with capture_output() as shown:
    shell.run_cell("fig = plots.mechanism()")
pngs = [o.data["image/png"] for o in shown.outputs if "image/png" in o.data]
import base64
print(len(pngs), all(b"tvlib-layout" in base64.b64decode(png) for png in pngs))
"""


def test_a_notebook_shows_each_figure_once_as_an_audited_png():
    done = subprocess.run([sys.executable, "-c", SHELL], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.splitlines()[-1:] == ["1 True"], done.stdout + done.stderr

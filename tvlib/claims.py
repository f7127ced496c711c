"""The paper's five claims checked on a model's stored results alone (no model load), with 95% intervals:
`python -m tvlib claims --model M` prints one line per claim and `claims_passed=K/5`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tvlib import experiments, intervals, paths, verdicts
from tvlib.runs import CONFLICTS, Runner
from tvlib.tasks import task_list
from tvlib.verdicts import Verdict

PAPER_STATEMENTS = {
    1: "Patching theta keeps 80-90% of regular ICL accuracy; the query alone is near zero (Figure 4).",
    2: "Theta works from a middle layer on (about 14 of 32 blocks for LLaMA 7B) and accuracy collapses a few layers "
       "later (Figure 3).",
    3: "Task vectors of one task cluster together, apart from other tasks' (Figure 5, t-SNE; distance histograms).",
    4: "A patched theta of task B overrides demonstrations of task A (Table 2: four of five pairs).",
    5: "Projected onto the vocabulary, theta's top tokens name or describe its task (Table 3).",
}
"""Each claim as the paper states it, for the Verdict page."""

def describing_words() -> dict[str, list[str]]:
    """Per task, words that describe it (fixed before the projections they are checked against)."""
    words = json.loads((paths.data_dir() / "describing_words.json").read_text(encoding="utf-8"))
    return {task: listed for task, listed in words.items() if not task.startswith("_")}


def task_means(task_distances: pd.DataFrame) -> pd.DataFrame:
    """Per task, its mean within-task and across-task cosine distance (from the stored per-task histograms)."""
    return task_distances.groupby(["task", "kind"])["mean"].first().unstack("kind")


def at_plus2(tokens: pd.DataFrame) -> pd.DataFrame:
    """The projection rows at each task's L + 2 (the paper's layer), clipped to the last block stored."""
    last = int(tokens["layer"].max())
    return tokens[tokens["layer"] == (tokens["best_layer"] + 2).clip(upper=last)]


def check(runner: Runner, n_boot: int = intervals.N_BOOT) -> list[Verdict]:
    """The five verdicts for the runner's model, read from its stored results (all 18 tasks, the paper's settings)."""
    names = task_list("all")
    main = runner.main_all(names)
    summary = experiments.summarize(main)
    reps = intervals.replicates(main, n_boot)
    average = experiments.figure4_average(summary)
    figure4_ci = intervals.figure4(reps, summary)

    curves = experiments.dev_curve(main)
    peak = experiments.depth_peaks({runner.model: curves}).query("tasks == 'Figure 3 filter'").iloc[0]
    depth_ci = intervals.bounds(intervals.peak_depths(main, experiments.figure3_tasks(curves), n_boot))

    robust = runner.robustness(names)
    knn = robust["scores"].set_index("metric")["value"].filter(like="-NN task accuracy").iloc[0]
    knn_ci = intervals.wilson(knn, len(robust["tsne"]))

    rows = runner.conflicting(CONFLICTS)
    table = experiments.dominance_table(rows).rename(columns={"task_a": "task_a_demos", "task_b": "task_b_vector"})
    patched = rows[rows["method"] == "patched"]
    b_ci = {(a, b): intervals.proportion(f["correct_b"], n_boot) for (a, b), f in patched.groupby(["task_a", "task_b"])}

    tokens = at_plus2(runner.projection(names))
    return [verdicts.accuracy(average, figure4_ci), verdicts.layers(peak, depth_ci),
            verdicts.clusters(robust["scores"], task_means(robust["task_distances"]), knn_ci),
            verdicts.dominance(table, b_ci), verdicts.interpretation(tokens, describing_words())]


def report(model: str, results_dir: str | None = None, dtype: str = "float32") -> list[str]:
    """The lines `python -m tvlib claims` prints: one per claim, then claims_passed=K/5."""
    found = check(Runner(model, dtype=dtype, results_dir=results_dir, stored_only=True))
    return [v.line() for v in found] + [f"claims_passed={sum(v.passed for v in found)}/{len(found)}"]


def paper_verdicts() -> dict[int, str]:
    """The same rules read on the paper's own numbers, where it publishes them (claim 3 has only a picture)."""
    from tvlib import reference

    table6 = reference.table6()
    passed1 = [m for m, f in table6.groupby("model", sort=False)
               if verdicts.accuracy(experiments.figure4_average(f)).passed]
    curves = reference.dev_curves()
    peaks = experiments.depth_peaks({m: f for m, f in curves.groupby("model")}).query("tasks == 'Figure 3 filter'")
    passed2 = [r["model"] for r in peaks.to_dict("records") if verdicts.layers(pd.Series(r)).passed]
    table2 = verdicts.dominance(experiments.flag_dominance(reference.table2()))
    lists = reference.top_tokens().query("where == 'best_layer_plus2'")
    passed5 = [m for m, f in lists.groupby("model") if verdicts.interpretation(f, describing_words()).passed]
    return {1: f"holds for {len(passed1)} of {table6['model'].nunique()} models (Table 6)",
            2: f"holds for {len(passed2)} of {len(peaks)} models with per-layer curves ({', '.join(passed2)})",
            3: "not published as numbers (t-SNE figure only)",
            4: f"{table2.verdict} on LLaMA 13B ({table2.evidence.split(' (')[0]})",
            5: f"holds for {len(passed5)} of {lists['model'].nunique()} models with published lists"
               + (f" ({', '.join(passed5)})" if passed5 else "")}


"""The paper's five claims checked on a model's stored results alone (no model load), with 95% intervals:
`python -m tvlib claims --model M` prints one line per claim (holds, does not hold, or cannot be decided)
and a tally, `claims_passed=K/5 failed=F undecided=U`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tvlib import defaults, experiments, intervals, paths, verdicts
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

CHAPTERS = {1: "03_accuracy", 2: "02_finding_L", 3: "04_robustness", 4: "05_dominance", 5: "06_interpretation"}
"""The chapter that tests each claim."""

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


def testable_tasks(summary: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The tasks that can test a claim about theta (`verdicts.testable`) and those left out, in summary order."""
    mask = experiments.figure4_kept(summary)
    return summary.loc[mask, "task"].tolist(), summary.loc[~mask, "task"].tolist()


def check(runner: Runner, n_boot: int = intervals.N_BOOT) -> list[Verdict]:
    """The five verdicts for the runner's model, read from its stored results (all 18 tasks, the paper's settings)."""
    names = task_list("all")
    main = runner.main_all(names)
    summary = experiments.summarize(main)
    reps = intervals.replicates(main, n_boot)
    average = experiments.figure4_average(summary)
    figure4_ci = intervals.over_tasks(reps, summary)
    kept, left_out = testable_tasks(summary)

    curves = experiments.dev_curve(main)
    n_layers = int(curves["layer"].max()) + 1
    peak = experiments.depth_peaks({runner.model: curves}).query("tasks == 'Figure 3 filter'").iloc[0]
    filtered = experiments.figure3_tasks(curves)
    ties = experiments.tied_peaks(curves[curves["task"].isin(filtered)], n_layers)
    depth_ci = intervals.bounds(intervals.peak_depths(main, filtered, n_boot))

    return [verdicts.accuracy(average, figure4_ci), verdicts.layers(peak, depth_ci, ties),
            _clusters(runner, names, kept, left_out), _dominance(runner, summary, n_boot),
            verdicts.interpretation(at_plus2(runner.projection(names)), describing_words(), left_out)]


def check_all_tasks(runner: Runner, n_boot: int = intervals.N_BOOT) -> dict[int, Verdict]:
    """Claims 3-5 with every task and pair counted, as the paper counts them: what leaving out the tasks whose
    layer carries no task changes (measured on the Deviations page)."""
    names = task_list("all")
    summary = experiments.summarize(runner.main_all(names))
    return {3: _clusters(runner, names, names, []), 4: _dominance(runner, summary, n_boot, every_pair=True),
            5: verdicts.interpretation(at_plus2(runner.projection(names)), describing_words())}


def _clusters(runner: Runner, names: list[str], kept: list[str], left_out: list[str]) -> Verdict:
    """Claim 3 over `kept` from the runner's stored robustness result."""
    return clusters_verdict(runner.robustness(names), kept, left_out)


def clusters_verdict(robust: dict[str, pd.DataFrame], kept: list[str], left_out: list[str]) -> Verdict:
    """Claim 3 from one robustness result (`Runner.robustness`) over `kept` (its scores stored as
    `scores_testable`, or `scores` when every task is kept)."""
    scores = robust["scores" if not left_out else "scores_testable"]
    knn = scores.set_index("metric")["value"].filter(like="-NN task accuracy")
    vectors = int(robust["tsne"]["task"].isin(kept).sum())  # the 5-NN vote's trials
    knn_ci = intervals.wilson(knn.iloc[0], vectors) if len(knn) else None
    return verdicts.clusters(scores, task_means(robust["task_distances"]).loc[kept], knn_ci, left_out)


def _dominance(runner: Runner, summary: pd.DataFrame, n_boot: int, every_pair: bool = False) -> Verdict:
    """Claim 4 from the stored conflicting pairs, each pair's patched accuracy on B with its bootstrap interval;
    `every_pair` counts the pairs whose theta_B carries no task too."""
    rows = runner.conflicting(CONFLICTS)
    table = experiments.dominance_table(rows, experiments.gains(summary))
    if every_pair:
        table["b_carries"] = True
    patched = rows[rows["method"] == "patched"]
    b_ci = {(a, b): intervals.proportion(f["correct_b"], n_boot) for (a, b), f in patched.groupby(["task_a", "task_b"])}
    return verdicts.dominance(table, b_ci)


def tally(found: list[Verdict]) -> str:
    """The last line of `python -m tvlib claims`: how many claims hold, do not hold, and cannot be decided."""
    count = {word: sum(v.outcome == word for v in found) for word in verdicts.WORDS}
    return (f"claims_passed={count[verdicts.HOLDS]}/{len(found)} failed={count[verdicts.FAILS]} "
            f"undecided={count[verdicts.UNDECIDED]}")


def report(model: str, results_dir: str | None = None, dtype: str = "float32") -> list[str]:
    """The lines `python -m tvlib claims` prints: one per claim, then the tally."""
    found = check(Runner(model, dtype=dtype, results_dir=results_dir, stored_only=True))
    return [v.line() for v in found] + [tally(found)]


def paper_checks() -> dict[int, dict[str, Verdict]]:
    """The same rules read on the paper's own numbers, where it publishes them (claim 3 has only a picture): per
    claim, one verdict per model. Claim 1's intervals redraw each Table 6 accuracy as a binomial proportion over
    the paper's 50 test contexts and 100 baseline queries and resample the tasks; claim 4's are Wilson intervals
    over Table 2's 100 queries; claim 2 reads the published dev curves, which come without contexts."""
    from tvlib import reference

    table6 = reference.table6()
    out: dict[int, dict[str, Verdict]] = {1: {}, 2: {}, 4: {}, 5: {}}
    for model, frame in table6.groupby("model", sort=False):
        reps = intervals.binomial_replicates(frame, defaults.N_TEST, defaults.N_BASELINE)
        out[1][model] = verdicts.accuracy(experiments.figure4_average(frame), intervals.over_tasks(reps, frame))
    curves = reference.dev_curves()
    for model, frame in curves.groupby("model"):
        n_layers = int(frame["layer"].max()) + 1
        filtered = experiments.figure3_tasks(frame)
        peak = experiments.depth_peaks({model: frame}).query("tasks == 'Figure 3 filter'").iloc[0]
        out[2][model] = verdicts.layers(peak, None, experiments.tied_peaks(frame[frame["task"].isin(filtered)],
                                                                          n_layers))
    llama13 = table6[table6["model"] == "LLaMA 13B"]
    table2 = experiments.flag_dominance(reference.table2(), experiments.gains(llama13))
    n = defaults.CONFLICT_QUERIES
    out[4]["LLaMA 13B"] = verdicts.dominance(table2, {
        (a, b): intervals.wilson(p, n) for a, b, p in
        zip(table2["task_a_demos"], table2["task_b_vector"], table2["patched_acc_on_b"])})
    for model, frame in reference.all_top_tokens().groupby("model", sort=False):
        summary = table6[table6["model"] == model.removesuffix(" (Tables 3, 7)")]
        left_out = testable_tasks(summary)[1] if len(summary) else []
        shown = set(frame["task"])
        out[5][model] = verdicts.interpretation(frame, describing_words(), [t for t in left_out if t in shown],
                                                unseen=len(set(summary["task"]) - shown))
    return out


def paper_verdicts(short: bool = False) -> dict[int, str]:
    """One line per claim: how the paper's numbers read under the book's rules, counted over its models (`short`:
    the counts alone, for a table at a glance)."""
    found = paper_checks()

    def counted(number: int, what: str) -> str:
        by = found[number]
        parts = [f"{word} for {sum(v.outcome == word for v in by.values())}" for word in verdicts.WORDS
                 if any(v.outcome == word for v in by.values())]
        named = {word: [m for m, v in by.items() if v.outcome == word] for word in verdicts.WORDS}
        shown = "; ".join(f"{word}: {', '.join(ms)}" for word, ms in named.items() if ms and len(by) <= 6)
        return f"{', '.join(parts)} of {len(by)} {what}" + (f" ({shown})" if shown and not short else "")

    return {1: counted(1, "models (Table 6)"), 2: counted(2, "models with per-layer curves"),
            3: "not published as numbers (t-SNE figure only)",
            4: f"{found[4]['LLaMA 13B'].outcome} on LLaMA 13B ("
               + (found[4]['LLaMA 13B'].headline if short else found[4]['LLaMA 13B'].evidence.split(':')[0]) + ")",
            5: counted(5, "models with published lists")}

"""Bootstrap 95% intervals for the main experiment's accuracies, so a reader can tell which differences are real.

Resampling is by context (test and dev) and by query (baseline), seeded per task, so the same stored predictions
give the same intervals. The hypothesis interval includes the choice of L: every replicate re-picks L on its
resampled dev contexts and reads the test sweep at that layer."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from tvlib.errors import TvlibError

N_BOOT = 1000
LEVEL = 0.95


def _rng(task: str, seed: int) -> np.random.Generator:
    """One generator per task and seed: a task's interval does not depend on which other tasks are in the run."""
    return np.random.default_rng([seed, zlib.crc32(task.encode())])


def _grid(frame: pd.DataFrame, split: str) -> np.ndarray:
    """Hypothesis correctness of one split as a contexts x layers matrix."""
    hyp = frame[(frame["split"] == split) & (frame["method"] == "hypothesis")]
    return hyp.pivot_table(index="context", columns="layer", values="correct", aggfunc="first").to_numpy(float)


def _resampled_means(rng: np.random.Generator, values: np.ndarray, n_boot: int) -> np.ndarray:
    """Means of `values` (rows: contexts or queries) over n_boot resamples of its rows."""
    idx = rng.integers(0, len(values), (n_boot, len(values)))
    return values[idx].mean(axis=1)


def task_replicates(frame: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Bootstrap replicates of one task's baseline, regular and hypothesis accuracy (L re-picked on dev each time).
    Regular and hypothesis share their resampled test contexts, so a ratio of the two is read on the same draw."""
    task = frame["task"].iloc[0]
    rng = _rng(task, seed)
    test = frame[frame["split"] == "test"]
    regular = test[test["method"] == "regular"].sort_values("context")["correct"].to_numpy(float)
    baseline = frame[frame["method"] == "baseline"]["correct"].to_numpy(float)
    dev, sweep = _grid(frame, "dev"), _grid(frame, "test")
    best = _resampled_means(rng, dev, n_boot).argmax(axis=1)  # first maximum: ties go to the lowest layer
    idx = rng.integers(0, len(regular), (n_boot, len(regular)))
    hypothesis = sweep[idx].mean(axis=1)[np.arange(n_boot), best]
    return pd.DataFrame({"task": task, "replicate": np.arange(n_boot), "baseline": _resampled_means(
        rng, baseline, n_boot), "regular": regular[idx].mean(axis=1), "hypothesis": hypothesis, "layer": best})


def replicates(predictions: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """`task_replicates` for every task of a main experiment (it needs the test sweep at every layer)."""
    return pd.concat([task_replicates(f, n_boot, seed) for _, f in predictions.groupby("task", sort=False)],
                     ignore_index=True)


def bounds(values: np.ndarray | pd.Series, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` interval of bootstrap values (percentile method)."""
    values = np.asarray(values, float)
    if values.size == 0:  # nothing to resample (e.g. no task passes a filter): no interval
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def per_task(reps: pd.DataFrame) -> pd.DataFrame:
    """Per task and method: the 95% interval as two columns (e.g. hypothesis_low, hypothesis_high)."""
    rows = []
    for task, frame in reps.groupby("task", sort=False):
        row = {"task": task}
        for method in ("baseline", "regular", "hypothesis"):
            row[f"{method}_low"], row[f"{method}_high"] = bounds(frame[method])
        rows.append(row)
    return pd.DataFrame(rows)


def averaged(reps: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Replicates of the average over `tasks` (resampling within every task) and of hypothesis / regular: the
    intervals of the paper's Figure 4 numbers."""
    kept = reps[reps["task"].isin(tasks)]
    mean = kept.groupby("replicate")[["baseline", "hypothesis", "regular"]].mean()
    mean["hypothesis / regular"] = mean["hypothesis"] / mean["regular"]
    return mean


def figure4(reps: pd.DataFrame, summary: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """The 95% interval of each Figure 4 number (baseline, hypothesis, regular, hypothesis / regular) over the tasks
    the paper's filter keeps on the point estimates (`experiments.figure4_kept`), holding those tasks fixed: only
    the contexts are resampled. `over_tasks` resamples the tasks too."""
    from tvlib.experiments import figure4_kept

    kept = summary.loc[figure4_kept(summary), "task"].tolist()
    return {column: bounds(values) for column, values in averaged(reps, kept).items()}


def over_tasks(reps: pd.DataFrame, summary: pd.DataFrame, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Figure 4's intervals with both sources of variation: every replicate draws the kept tasks with replacement
    and reads each drawn task's context-resampled replicate. A claim about tasks in general (theta keeps 80% of
    ICL) must survive another draw of tasks, not only of contexts."""
    from tvlib.experiments import figure4_kept

    kept = summary.loc[figure4_kept(summary), "task"].tolist()
    columns = ("baseline", "hypothesis", "regular")
    if not kept:
        return {c: (float("nan"), float("nan")) for c in (*columns, "hypothesis / regular")}
    mine = reps[reps["task"].isin(kept)]
    grids = {c: mine.pivot(index="replicate", columns="task", values=c)[kept].to_numpy(float) for c in columns}
    n_boot = len(grids["baseline"])
    pick = np.random.default_rng([seed, len(kept)]).integers(0, len(kept), (n_boot, len(kept)))
    means = {c: grid[np.arange(n_boot)[:, None], pick].mean(axis=1) for c, grid in grids.items()}
    means["hypothesis / regular"] = means["hypothesis"] / means["regular"]
    return {c: bounds(v) for c, v in means.items()}


def binomial_replicates(summary: pd.DataFrame, n_test: int, n_baseline: int, n_boot: int = N_BOOT,
                        seed: int = 0) -> pd.DataFrame:
    """Replicates like `replicates` for published accuracies alone (the paper's Table 6: no predictions): each
    task's accuracy redrawn as a binomial proportion over its n contexts, so `over_tasks` reads the paper's numbers
    as it reads ours. It cannot re-choose L, and draws regular and hypothesis independently."""
    frames = []
    for row in summary.to_dict("records"):
        rng = _rng(row["task"], seed)
        draw = {m: rng.binomial(n, row[m], n_boot) / n for m, n in
                (("baseline", n_baseline), ("regular", n_test), ("hypothesis", n_test))}
        frames.append(pd.DataFrame({"task": row["task"], "replicate": np.arange(n_boot), **draw}))
    return pd.concat(frames, ignore_index=True)


def difference(a: np.ndarray, b: np.ndarray, point: float) -> dict:
    """The difference a - b of two settings' replicates, with its 95% interval, and how it reads: 'above' or 'below'
    only where the interval excludes 0. Paired where both were drawn on the same resampled contexts (then
    overlapping marginal intervals say nothing about the difference); independent where they come from different
    contexts, each resampled on its own."""
    low, high = bounds(np.asarray(a, float) - np.asarray(b, float))
    reading = "above" if low > 0 else "below" if high < 0 else "level with"
    return {"difference": point, "low": low, "high": high, "reading": reading}


def with_intervals(summary: pd.DataFrame, reps: pd.DataFrame) -> pd.DataFrame:
    """A summary table with each accuracy written as 'value [low, high]', for the page."""
    ci = per_task(reps).set_index("task")
    out = summary.set_index("task").copy()
    for method in ("baseline", "regular", "hypothesis"):
        out[method] = [f"{v:.2f} [{ci.loc[t, f'{method}_low']:.2f}, {ci.loc[t, f'{method}_high']:.2f}]"
                       for t, v in out[method].items()]
    return out.reset_index()


def proportion(correct: np.ndarray | pd.Series, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """The bootstrap interval of a plain proportion (e.g. a dominance pair's accuracy over its queries)."""
    return bounds(proportion_replicates(correct, n_boot, seed))


def proportion_replicates(correct: np.ndarray | pd.Series, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of a plain proportion over its items (queries or contexts)."""
    return _resampled_means(np.random.default_rng(seed), np.asarray(correct, float), n_boot)


def binomial(p: float, n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Replicates of a published proportion p over n items, redrawn as binomial counts (no predictions stored)."""
    return np.random.default_rng(seed).binomial(n, p, n_boot) / n


def peak_depths(predictions: pd.DataFrame, tasks: list[str], n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Replicates of the relative depth (L + 1) / N at which the mean dev curve over `tasks` peaks, resampling the
    dev contexts of every task: how sure the peak of chapter 2 is."""
    curves = [_resampled_means(_rng(t, seed), _grid(f, "dev"), n_boot)
              for t, f in predictions[predictions["task"].isin(tasks)].groupby("task", sort=False)]
    if not curves:  # no task passes the filter: nothing to resample
        return np.array([])
    mean = np.mean(curves, axis=0)  # replicates x layers
    return (mean.argmax(axis=1) + 1) / mean.shape[1]


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson 95% interval of a proportion p over n trials, where only the proportion is stored."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def pair_intervals(rows: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per conflicting pair (`experiments.conflicting` rows): each accuracy of the dominance table with its bootstrap
    interval over queries, as 'value [low, high]'."""
    out = {}
    for (a, b), frame in rows.groupby(["task_a", "task_b"], sort=False):
        cells = {}
        for method, name in (("regular", "icl"), ("patched", "patched")):
            part = frame[frame["method"] == method]
            for label in "ab":
                values = part[f"correct_{label}"].to_numpy(float)
                low, high = proportion(values, n_boot, seed)
                cells[f"{name}_acc_on_{label}"] = f"{values.mean():.2f} [{low:.2f}, {high:.2f}]"
        out[(a, b)] = cells
    return pd.DataFrame(out).T.rename_axis(["task_a", "task_b"])


def _keys(by: str | list[str]) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def swept(predictions: pd.DataFrame, by: str | list[str], n_boot: int = N_BOOT,
          seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For main experiments run under several settings (column(s) `by`: demos, or source and target format): per
    task and setting, baseline, regular and hypothesis (L chosen on dev) with their 95% intervals (L re-chosen in
    every replicate), and the mean over tasks (task 'mean', resampling within every task) with hypothesis / regular.
    Second, the replicates of each setting's mean (columns `by`, replicate, the methods, the ratio): a task's
    contexts are resampled alike in every setting (its seeded generator), so two settings are compared paired."""
    from tvlib.experiments import summarize

    keys, rows, means = _keys(by), [], []
    for values, frame in predictions.groupby(keys, sort=True):
        setting = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        point, reps = summarize(frame), replicates(frame, n_boot, seed)
        ci = per_task(reps).set_index("task")
        for record in point.rename(columns={"best_layer": "L"}).to_dict("records"):
            rows.append({**setting, **record, **ci.loc[record["task"]].to_dict()})
        mean = averaged(reps, list(point["task"]))
        means.append(mean.reset_index().assign(**setting))
        row = {**setting, "task": "mean", "category": "mean", "L": None}
        for column in ("baseline", "regular", "hypothesis"):
            row[column] = point[column].mean()
            row[f"{column}_low"], row[f"{column}_high"] = bounds(mean[column])
        row["hypothesis / regular"] = row["hypothesis"] / row["regular"] if row["regular"] else float("nan")
        row["hypothesis / regular_low"], row["hypothesis / regular_high"] = bounds(mean["hypothesis / regular"])
        rows.append(row)
    return pd.DataFrame(rows), pd.concat(means, ignore_index=True)


def swept_by(predictions: pd.DataFrame, by: str | list[str], n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """`swept`'s table alone."""
    return swept(predictions, by, n_boot, seed)[0]


def fixed(predictions: pd.DataFrame, by: str, n_boot: int = N_BOOT,
          seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For predictions at one fixed layer under several settings (method and the column `by`: alpha, or the number of
    contexts averaged): accuracy per task and setting with its 95% interval, and the mean over tasks (task 'mean').
    A task's test contexts are resampled alike for every setting, so two settings are compared on the same draw;
    the layer is not re-chosen (it was chosen before, in the main experiment). Second, the replicates of the mean
    over tasks: one row a replicate, one column a (method, setting)."""
    rows, means = [], []
    for task, frame in predictions.groupby("task", sort=False):
        grid = frame.pivot_table(index="context", columns=["method", by], values="correct", aggfunc="first")
        values = grid.to_numpy(float)
        idx = _rng(task, seed).integers(0, len(values), (n_boot, len(values)))
        reps = values[idx].mean(axis=1)  # replicates x settings
        means.append(reps)
        for j, (method, setting) in enumerate(grid.columns):
            rows.append({"task": task, "method": method, by: setting, "accuracy": values[:, j].mean(),
                         **dict(zip(("low", "high"), bounds(reps[:, j])))})
    if len({reps.shape[1] for reps in means}) > 1:
        raise TvlibError(f"the tasks were not run under the same settings of {by}: intervals of their mean need that")
    table = pd.DataFrame(rows)
    pooled = np.mean(means, axis=0)  # every task's grid has the same columns, in the same sorted order
    mean = table.groupby(["method", by], sort=True)["accuracy"].mean().reset_index().assign(task="mean")
    mean["low"], mean["high"] = zip(*(bounds(pooled[:, j]) for j in range(len(mean))))
    columns = pd.MultiIndex.from_frame(mean[["method", by]])
    return pd.concat([table, mean[table.columns]], ignore_index=True), pd.DataFrame(pooled, columns=columns)


def fixed_by(predictions: pd.DataFrame, by: str, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """`fixed`'s table alone."""
    return fixed(predictions, by, n_boot, seed)[0]

"""Questions the paper leaves open, asked with its own machinery: how many demonstrations theta needs, whether a
task's theta averaged over many contexts works as well as a per-context one, whether theta carries over to another
prompt format, and what if theta is added to the query's state instead of replacing it."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from tvlib.experiments import Protocol, _rows, baseline, dev_and_test, evaluate_task, hypothesis, regular, task_vectors
from tvlib.models import LM
from tvlib.prompts import PAPER_FORMAT, PromptFormat
from tvlib.tasks import Task, short_name
from tvlib.vectors import predict

AVERAGED = (1, 2, 5, 10, 25, 50)
"""How many dev contexts a task's mean theta averages over."""
ALPHAS = (0.5, 1.0, 2.0, 4.0)
"""Strengths of theta added to the query's state."""
DEMONSTRATIONS = (1, 2, 3, 5, 8, 12, 16)
"""Numbers of demonstrations per context."""
FORMATS = {
    "example:x->y": PAPER_FORMAT,
    "Q: x / A: y": PromptFormat(demo="Q: {x}\nA: {y}", query="Q: {x}\nA:", sep="\n\n"),
    "x = y": PromptFormat(demo="{x} = {y}", query="{x} =", sep="\n"),
}
"""The paper's format and two others, for theta built in one and patched into a bare query of another."""


def pick_tasks(summary: pd.DataFrame, per_category: int = 1) -> list[str]:
    """The task(s) of each category where ICL adds most over the query alone (`experiments.summarize` of the main
    experiment; ties go to the first name): each question here needs a task the model learns in context, and one
    per category keeps the chapter to minutes on a CPU."""
    gain = summary.assign(gain=summary["regular"] - summary["baseline"]).sort_values(
        ["gain", "task"], ascending=[False, True])
    return sorted(gain.groupby("category", sort=True).head(per_category)["task"])


def _setup(lm: LM, task: Task, protocol: Protocol):
    """The task as this tokenizer sees it, its dev and test contexts (the main experiment's), and bare test queries."""
    task, dev, test = dev_and_test(lm, task, protocol)
    bare = [protocol.fmt.render((), c.query.input, task.space) for c in test]
    return task, dev, test, bare


def by_demonstrations(lm: LM, task: Task, protocol: Protocol = Protocol(),
                      counts: tuple[int, ...] = DEMONSTRATIONS) -> pd.DataFrame:
    """The main experiment at each number of demonstrations k (L re-chosen on dev contexts for each k): every
    prediction, with the column `demos`, so `intervals.swept_by(frame, "demos")` reads it like the main one."""
    return pd.concat([evaluate_task(lm, task, replace(protocol, demos=k)).assign(demos=k) for k in counts],
                     ignore_index=True)


def averaged_theta(lm: LM, task: Task, layer: int, protocol: Protocol = Protocol(),
                   sizes: tuple[int, ...] = AVERAGED) -> pd.DataFrame:
    """Theta averaged over the first m dev contexts, patched at `layer` into every bare test query, for each m;
    beside the paper's per-context theta (method 'per context', averaged = 0). Tidy rows as the main experiment's,
    with the column `averaged`."""
    task, dev, test, bare = _setup(lm, task, protocol)
    lm.check_layer(layer)
    dev_thetas = task_vectors(lm, task, dev, protocol)[:, layer]
    own = task_vectors(lm, task, test, protocol)[:, layer]
    queries, layers = [c.query for c in test], [layer] * len(test)
    frames = [_rows(lm, task, "per context", queries, predict(lm, bare, own, layers, protocol.batch_size), bare,
                    layer).assign(averaged=0)]
    for m in (m for m in sizes if m <= len(dev)):
        mean = dev_thetas[:m].mean(0).expand(len(test), -1)
        answers = predict(lm, bare, mean, layers, protocol.batch_size)
        frames.append(_rows(lm, task, "mean theta", queries, answers, bare, layer).assign(averaged=m))
    return pd.concat(frames, ignore_index=True).assign(category=task.category)


def strength(lm: LM, task: Task, layer: int, protocol: Protocol = Protocol(),
             alphas: tuple[float, ...] = ALPHAS) -> pd.DataFrame:
    """Each test context's theta added as alpha x theta to the bare query's state at `layer`, for each alpha; beside
    the paper's replacement (method 'replace', alpha 0 as a placeholder). Tidy rows with the column `alpha`."""
    task, _, test, bare = _setup(lm, task, protocol)
    lm.check_layer(layer)
    thetas = task_vectors(lm, task, test, protocol)[:, layer]
    queries, layers = [c.query for c in test], [layer] * len(test)
    frames = [_rows(lm, task, "replace", queries, predict(lm, bare, thetas, layers, protocol.batch_size), bare,
                    layer).assign(alpha=0.0)]
    for alpha in alphas:
        answers = predict(lm, bare, thetas, layers, protocol.batch_size, alpha=alpha)
        frames.append(_rows(lm, task, "add", queries, answers, bare, layer).assign(alpha=float(alpha)))
    return pd.concat(frames, ignore_index=True).assign(category=task.category)


def format_transfer(lm: LM, task: Task, protocol: Protocol = Protocol(),
                    formats: dict[str, PromptFormat] = FORMATS) -> pd.DataFrame:
    """Theta built from demonstrations in one format (`source`), patched into the bare query of another (`target`),
    for every pair: is theta a property of the task or of the format? Each pair is a main experiment of its own
    (baseline and ICL in the target format, hypothesis swept over layers on dev and test, L chosen on dev), so
    `intervals.swept_by` reads it; source = target is the plain experiment in that format."""
    task, dev, test = dev_and_test(lm, task, protocol)
    thetas = {name: (task_vectors(lm, task, dev, replace(protocol, fmt=fmt)),
                     task_vectors(lm, task, test, replace(protocol, fmt=fmt))) for name, fmt in formats.items()}
    layers = list(range(lm.n_layers))
    frames = []
    for target, fmt in formats.items():
        there = replace(protocol, fmt=fmt)
        common = [baseline(lm, task, there), regular(lm, task, test, there)]
        for source, (dev_thetas, test_thetas) in thetas.items():
            swept = [hypothesis(lm, task, dev, dev_thetas, layers, there, "dev"),
                     hypothesis(lm, task, test, test_thetas, layers, there, "test")]
            frames.append(pd.concat(common + swept, ignore_index=True).assign(source=source, target=target))
    return pd.concat(frames, ignore_index=True).assign(category=task.category)


# --------------------------------------------------------------------------- reading the four experiments


def tables(runner, tasks: list[str], n_boot: int = 1000,
           counts: tuple[int, ...] = DEMONSTRATIONS) -> dict[str, pd.DataFrame]:
    """The four experiments of `runner` (a `runs.Runner`) over `tasks`, each as accuracies with 95% intervals:
    `demos` and `formats` from `intervals.swept` (L re-chosen per setting), `averaged` and `strength` from
    `intervals.fixed` at the main experiment's L, with ICL on the same test contexts as a reference; each with the
    replicates of its mean over tasks (`<name>_replicates`), and `contrasts`, the page's comparisons as paired
    differences read from those replicates."""
    from tvlib.intervals import fixed, swept

    main = runner.main_all(tasks)
    icl = main[(main["split"] == "test") & (main["method"] == "regular")]
    averaged = pd.concat([runner.averaged(tasks), icl.assign(averaged=0)], ignore_index=True)
    strength = pd.concat([runner.strength(tasks), icl.assign(alpha=0.0)], ignore_index=True)
    found = {}
    for name, (table, reps) in {"demos": swept(runner.demonstrations(tasks, counts), "demos", n_boot),
                                "averaged": fixed(averaged, "averaged", n_boot),
                                "formats": swept(runner.formats(tasks), ["source", "target"], n_boot),
                                "strength": fixed(strength, "alpha", n_boot)}.items():
        found[name], found[f"{name}_replicates"] = table, reps
    found["contrasts"] = contrasts(found)
    return found


def contrasts(found: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every comparison the page states, as a paired difference with its 95% interval and its reading ('above',
    'below', 'level with' only where the interval excludes or includes 0): settings measured on the same contexts
    are compared on the same resampled draw, never by whether two marginal intervals overlap."""
    from tvlib.intervals import bounds, difference

    rows = []
    averaged, reps = _mean(found["averaged"]), found["averaged_replicates"]
    big = int(averaged.loc[averaged["method"] == "mean theta", "averaged"].max())
    point = lambda table, **where: _cell(table, **where)[0]
    for other, key in (("per context", ("per context", 0)), ("regular", ("regular", 0))):
        rows.append({"measure": f"mean theta - {'ICL' if other == 'regular' else other}",
                     **difference(reps[("mean theta", big)], reps[key], point(averaged, method="mean theta", averaged=big)
                              - point(averaged, method=other, averaged=0))})
    strength, reps = _mean(found["strength"]), found["strength_replicates"]
    alpha = float(_best_added(strength)["alpha"])
    rows.append({"measure": "best addition - replacement",
                 **difference(reps[("add", alpha)], reps[("replace", 0.0)],
                          point(strength, method="add", alpha=alpha) - point(strength, method="replace", alpha=0.0))})
    formats, reps = _mean(found["formats"]), found["formats_replicates"]
    own = reps["source"] == reps["target"]
    per = lambda mask: reps[mask].groupby("replicate")["hypothesis"].mean().to_numpy()
    same, other = _diagonal(formats)
    rows.append({"measure": "own format - other format", **difference(per(own), per(~own), same - other)})
    demos, reps = _mean(found["demos"]).set_index("demos"), found["demos_replicates"]
    needs = {}
    for method in ("regular", "hypothesis"):
        curves = reps.pivot(index="replicate", columns="demos", values=method)
        needs[method] = curves.apply(first_within, axis=1).to_numpy(float)
        low, high = bounds(needs[method])
        rows.append({"measure": f"{'ICL' if method == 'regular' else 'theta'} needs k (90% of its best)",
                     "difference": first_within(demos[method]), "low": low, "high": high, "reading": ""})
    rows.append({"measure": "k ICL needs - k theta needs",
                 **difference(needs["regular"], needs["hypothesis"],
                          first_within(demos["regular"]) - first_within(demos["hypothesis"]))})
    return pd.DataFrame(rows, columns=["measure", "difference", "low", "high", "reading"])


def _mean(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["task"] == "mean"]


def _cell(table: pd.DataFrame, column: str = "accuracy", **where) -> tuple[float, float, float]:
    """One number of a table and its interval, picked by column values."""
    row = table.loc[pd.concat([table[k] == v for k, v in where.items()], axis=1).all(axis=1)].iloc[0]
    low, high = ("low", "high") if column == "accuracy" else (f"{column}_low", f"{column}_high")
    return float(row[column]), float(row[low]), float(row[high])


def _diagonal(formats: pd.DataFrame) -> tuple[float, float]:
    """Mean hypothesis accuracy of theta in its own format (source = target) and carried to another."""
    own = formats["source"] == formats["target"]
    return formats.loc[own, "hypothesis"].mean(), formats.loc[~own, "hypothesis"].mean()


def _best_added(strength: pd.DataFrame) -> pd.Series:
    """The addition (method 'add') with the highest accuracy; ties go to the smallest alpha."""
    added = strength[strength["method"] == "add"]
    return added.sort_values(["accuracy", "alpha"], ascending=[False, True]).iloc[0]


def against(contrasts: pd.DataFrame, measure: str, fmt: str = "+.2f") -> str:
    """One paired comparison of `contrasts` in words: 'above', 'below' or 'level with', then the difference and its
    interval, so the reading and the numbers it stands on come together."""
    row = contrasts.set_index("measure").loc[measure]
    return (f"{row['reading']} (paired difference {row['difference']:{fmt}} "
            f"[{row['low']:{fmt}}, {row['high']:{fmt}}])")


def first_within(values: pd.Series, share: float = 0.9) -> int:
    """The smallest setting (index) whose value reaches `share` of the best: how soon a curve saturates."""
    return int(values[values >= share * values.max()].index.min())


def headlines(found: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The headline number of each experiment, mean over tasks with its 95% interval over contexts (the tasks held
    fixed), and each comparison as a paired difference: one row each, what a page states and a table of models
    compares."""
    from tvlib.intervals import bounds

    demos = _mean(found["demos"]).set_index("demos")
    averaged, strength = _mean(found["averaged"]), _mean(found["strength"])
    same, other = _diagonal(_mean(found["formats"]))
    reps = found["formats_replicates"]
    own = reps["source"] == reps["target"]
    per = lambda mask: bounds(reps[mask].groupby("replicate")["hypothesis"].mean())
    alpha = _best_added(strength)["alpha"]
    big = averaged.loc[averaged["method"] == "mean theta", "averaged"].max()
    paired = found["contrasts"].set_index("measure")
    diff = lambda measure: (measure, *paired.loc[measure, ["difference", "low", "high"]])
    ratio = "hypothesis / regular"
    rows = [
        *[(f"theta / ICL with {k} demonstration{'s' if k > 1 else ''}", *_cell(demos.reset_index(), ratio, demos=k))
          for k in (demos.index.min(), demos.index.max())],
        diff("ICL needs k (90% of its best)"), diff("theta needs k (90% of its best)"),
        diff("k ICL needs - k theta needs"),
        (f"mean theta over {big} contexts", *_cell(averaged, method="mean theta", averaged=big)),
        ("per-context theta (the paper's)", *_cell(averaged, method="per context", averaged=0)),
        ("ICL on the same test contexts", *_cell(averaged, method="regular", averaged=0)),
        diff("mean theta - per context"), diff("mean theta - ICL"),
        ("theta, same format (mean of diagonal)", same, *per(own)),
        ("theta, other format (mean off diagonal)", other, *per(~own)),
        diff("own format - other format"),
        ("theta replaces (the paper's)", *_cell(strength, method="replace", alpha=0.0)),
        ("best alpha for adding theta", alpha, None, None),
        ("theta added at that alpha", *_cell(strength, method="add", alpha=alpha)),
        diff("best addition - replacement"),
    ]
    return pd.DataFrame(rows, columns=["measure", "value", "low", "high"])


def as_long(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """A table of `intervals.swept_by` (a column per method) or `fixed_by` (a row per method) as rows of task,
    series, `by`, accuracy, low, high: what `plots.setting_panels` draws."""
    if "method" in table.columns:
        return table.rename(columns={"method": "series"})[["task", "series", by, "accuracy", "low", "high"]]
    return pd.concat([table[["task", by]].assign(series=method, accuracy=table[method], low=table[f"{method}_low"],
                                                 high=table[f"{method}_high"])
                      for method in ("regular", "hypothesis", "baseline")], ignore_index=True)


def compare(runners: dict, names: list[str], per_category: int = 1) -> pd.DataFrame:
    """The headline numbers of several models side by side ('value [low, high]'), from their runners (`runs.Runner`,
    stored_only): a model whose results are not stored is left out, so a page can table whichever models were run."""
    from tvlib.errors import TvlibError
    from tvlib.experiments import summarize

    columns = {}
    for model, runner in runners.items():
        try:
            picked = pick_tasks(summarize(runner.main_all(names)), per_category)
            heads = headlines(tables(runner, picked))
        except TvlibError:
            continue
        cells = [_formatted(*row) for row in heads[["measure", "value", "low", "high"]].itertuples(index=False)]
        columns[model] = [*cells, ", ".join(short_name(t) for t in picked)]
    if not columns:
        return pd.DataFrame()
    return pd.DataFrame(columns, index=[*heads["measure"], "tasks (one per category)"]).rename_axis("measure")


def _formatted(measure: str, value: float, low: float, high: float) -> str:
    """A headline as the page writes it: a count as a whole number, a difference with its sign, an accuracy with
    its interval if it has one."""
    signed, count = " - " in measure, "needs" in measure
    fmt = ("+" if signed else "") + (".0f" if count else ".2f")
    if pd.isna(low):
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"
    return f"{value:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


# --------------------------------------------------------------------------- what the page says, from the numbers


def _interval(row: pd.Series, column: str = "accuracy", fmt: str = ".2f") -> str:
    low, high = ("low", "high") if column == "accuracy" else (f"{column}_low", f"{column}_high")
    return f"{row[column]:{fmt}} [{row[low]:{fmt}}, {row[high]:{fmt}}]"


def say_demonstrations(table: pd.DataFrame, contrasts: pd.DataFrame) -> list[str]:
    """Sentences on `swept_by(..., "demos")` and the `contrasts`: how ICL and theta grow with k, which saturates
    first (a paired interval on the difference of the k each needs), theta's share."""
    mean = _mean(table).set_index("demos")
    first, last = mean.index.min(), mean.index.max()
    need = contrasts.set_index("measure")
    k_icl, k_theta = (need.loc[f"{who} needs k (90% of its best)"] for who in ("ICL", "theta"))
    gap = need.loc["k ICL needs - k theta needs"]
    says = {"above": "theta needs fewer demonstrations than ICL", "below": "theta needs more demonstrations than ICL",
            "level with": "this sample cannot tell whether theta needs fewer or more demonstrations than ICL"}[
        gap["reading"]]
    tasks = len(table[table["task"] != "mean"]["task"].unique())

    def share(k: int) -> str:
        if not mean.loc[k, "regular"]:
            return f"nothing (ICL scores 0) at k = {k}"
        return f"{_interval(mean.loc[k], 'hypothesis / regular', '.0%')} of ICL at k = {k}"

    def k(row: pd.Series) -> str:
        return f"k = {row['difference']:.0f} (95% interval {row['low']:.0f}-{row['high']:.0f})"

    return [f"Averaged over the {tasks} task{'s' if tasks > 1 else ''}, ICL goes from {mean.loc[first, 'regular']:.2f} "
            f"with {first} demonstration{'s' if first > 1 else ''} to {mean.loc[last, 'regular']:.2f} with {last}; "
            f"theta goes from {mean.loc[first, 'hypothesis']:.2f} to {mean.loc[last, 'hypothesis']:.2f}.",
            f"ICL comes within 90% of its own best ({mean['regular'].max():.2f}) at {k(k_icl)}, theta within 90% of "
            f"its own best ({mean['hypothesis'].max():.2f}) at {k(k_theta)}: {says} to reach its plateau "
            f"(paired difference in k {gap['difference']:+.0f}, 95% interval {gap['low']:+.0f} to "
            f"{gap['high']:+.0f}).",
            f"Theta keeps {share(first)} and {share(last)}."]


def say_averaged(table: pd.DataFrame, contrasts: pd.DataFrame) -> list[str]:
    """Sentences on `fixed_by(..., "averaged")` and the `contrasts`: how fast the mean theta converges, and where it
    stands against the per-context theta and ICL on the same contexts (paired)."""
    mean = _mean(table)
    curve = mean[mean["method"] == "mean theta"].set_index("averaged")
    big = curve.loc[curve.index.max()]
    own = mean[mean["method"] == "per context"].iloc[0]
    icl = mean[mean["method"] == "regular"].iloc[0]
    return [f"One dev context's theta scores {curve.iloc[0]['accuracy']:.2f}; the mean over {curve.index.max()} scores "
            f"{_interval(big)}, and reaches 95% of its best from m = {first_within(curve['accuracy'], 0.95)} on.",
            f"The mean theta is {against(contrasts, 'mean theta - per context')} the paper's per-context theta "
            f"({_interval(own)}) and {against(contrasts, 'mean theta - ICL')} ICL on the same contexts "
            f"({_interval(icl)})."]


def say_formats(table: pd.DataFrame, contrasts: pd.DataFrame) -> list[str]:
    """Sentences on `swept_by(..., ["source", "target"])` and the `contrasts`: theta in its own format against theta
    carried to another (paired), and the reading that follows (task or format)."""
    cells = _mean(table)
    same, other = _diagonal(cells)
    kept = other / same if same else float("nan")
    reading = ("not read at all here: it scores 0 even in its own format" if not same else
               "mostly the task's: it carries over to formats it never saw" if kept >= 0.8 else
               "partly the task's and partly the format's" if kept >= 0.5 else "tied to the format it was read in")
    sentences = [f"Theta read in the query's own format scores {same:.2f} on average (the diagonal); read in one "
                 f"format and patched into another, {other:.2f}" + ("" if not same else f", {kept:.0%} of it")
                 + f": theta is {reading}. Its own format is "
                 f"{against(contrasts, 'own format - other format')} another format."]
    grid = cells.pivot(index="source", columns="target", values="hypothesis")
    by_source = (grid.max(axis=0) - grid.min(axis=0)).mean()  # within a column: theta's format changes
    by_target = (grid.max(axis=1) - grid.min(axis=1)).mean()  # within a row: the query's format changes
    which = ("about as much as" if abs(by_target - by_source) <= 0.05 else
             "more than" if by_target > by_source else "less than")
    sentences.append(f"Changing the format theta was read in moves accuracy by {by_source:.2f} on average (within a "
                     f"column); changing the query's format moves it by {by_target:.2f} (within a row): the query's "
                     f"format matters {which} theta's (point estimates, no interval).")
    paper = next(iter(FORMATS))
    if paper in set(cells["source"]):
        out = cells[(cells["source"] == paper) & (cells["target"] != paper)]["hypothesis"].mean()
        into = cells[(cells["source"] != paper) & (cells["target"] == paper)]["hypothesis"].mean()
        sentences.append(f"The paper's format's theta scores {out:.2f} in the other formats; the other formats' "
                         f"thetas score {into:.2f} in the paper's.")
    return sentences


def say_strength(table: pd.DataFrame, contrasts: pd.DataFrame) -> list[str]:
    """Sentences on `fixed_by(..., "alpha")` and the `contrasts`: adding alpha x theta at each alpha against
    replacing the state (paired, at the best alpha, which is chosen on the same contexts)."""
    mean = _mean(table)
    added = mean[mean["method"] == "add"].sort_values("alpha")
    best = _best_added(mean)
    swap = mean[mean["method"] == "replace"].iloc[0]
    each = ", ".join(f"{row.accuracy:.2f} at alpha = {row.alpha:g}" for row in added.itertuples())
    return [f"Adding alpha x theta scores {each}; replacing the state scores {_interval(swap)}.",
            f"The best addition (alpha = {best['alpha']:g}, {_interval(best)}, chosen on these contexts) is "
            f"{against(contrasts, 'best addition - replacement')} replacement."]

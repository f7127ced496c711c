"""Reading the results of answers of several tokens (`Runner.several_tokens`): paired intervals and the sentences.

ICL, theta written at prefill and theta written at every step answer the same test queries, and the scoring
rules score the same answers, so each of those comparisons is read from the bootstrap interval of a paired
difference, a task's test contexts resampled alike for every setting (`intervals.fixed`). The query alone answers
other queries (the baseline draw), so a difference with it is read from two independent resamplings. Means over
tasks hold the tasks fixed and are taken over the tasks where ICL adds at least `verdicts.MIN_GAIN` whole answers
over the query alone (`verdicts.testable`): elsewhere theta has no whole answer to carry.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tvlib import verdicts
from tvlib.intervals import bounds, difference, fixed
from tvlib.multitoken import RULES, summarize

SERIES = {"regular": "ICL", "prefill": "theta, prefill", "every_step": "theta, every step"}
"""The page's names of the settings that answer the test queries (ICL, and theta by where it is written)."""
QUERY_ALONE = "query alone"
WHOLE, FIRST, LEADS = "whole answer", "first token", "answer leads"


def _series(frame: pd.DataFrame) -> pd.Series:
    return frame["patch"].map(SERIES).where(frame["method"] != "regular", SERIES["regular"])


def long(frame: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """One row per answer and rule (columns task, category, context, answer_tokens, method, layer, rule, correct):
    the shape `intervals.fixed` reads, `method` naming the setting."""
    part = frame[frame["split"] == split]
    part = part.assign(method=QUERY_ALONE if split == "baseline" else _series(part))
    keep = ["task", "category", "context", "answer_tokens", "method", "layer"]
    out = part.melt(id_vars=keep, value_vars=list(RULES.values()), var_name="rule", value_name="correct")
    out["rule"] = out["rule"].map({column: rule for rule, column in RULES.items()})
    return out.astype({"correct": float})


def whole_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task: whole-answer accuracy of the query alone, ICL and theta by each patch, with each patch's L."""
    rows = summarize(frame)
    rows["series"] = rows["patch"].map(SERIES).where(rows["method"] != "regular", SERIES["regular"])
    rows.loc[rows["method"] == "baseline", "series"] = QUERY_ALONE
    table = rows.pivot(index=["task", "category"], columns="series", values=WHOLE).reset_index()
    layers = rows[rows["method"] == "hypothesis"].pivot(index="task", columns="patch", values="layer")
    order = ["task", "category", QUERY_ALONE, *(s for s in SERIES.values() if s in table.columns)]
    table = table[order]
    for patch in [p for p in SERIES if p in layers.columns]:
        table[f"L ({SERIES[patch]})"] = table["task"].map(layers[patch]).astype(int)
    return table.rename_axis(None, axis=1)


def scope(frame: pd.DataFrame) -> tuple[list[str], bool]:
    """The tasks the means are over, and whether they decide: those where ICL adds at least MIN_GAIN whole answers
    over the query alone; where none does, every task (the figures still draw; each answer is undecided)."""
    table = whole_summary(frame).rename(columns={SERIES["regular"]: "regular", QUERY_ALONE: "baseline"})
    tasks = sorted(table.loc[verdicts.testable(table), "task"])
    return (tasks, True) if tasks else (sorted(table["task"]), False)


def _mean(table: pd.DataFrame) -> pd.Series:
    return table[table["task"] == "mean"].set_index(["method", "rule"])["accuracy"]


def _paired(name: str, reps: pd.DataFrame, table: pd.DataFrame, a: tuple, b: tuple) -> dict:
    mean = _mean(table)
    return {"measure": name, **difference(reps[a].to_numpy(), reps[b].to_numpy(), mean[a] - mean[b])}


def _ratio(name: str, reps: pd.DataFrame, table: pd.DataFrame, a: tuple, b: tuple) -> dict:
    """a / b of two paired settings (theta against ICL on the same contexts), with its interval."""
    mean = _mean(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = bounds(reps[a].to_numpy() / reps[b].to_numpy())
    point = mean[a] / mean[b] if mean[b] else float("nan")
    return {"measure": name, "difference": point, "low": low, "high": high, "reading": "ratio"}


def _independent(name: str, reps: pd.DataFrame, table: pd.DataFrame, base_reps: pd.DataFrame,
                 base_table: pd.DataFrame, a: tuple) -> dict:
    """a - the query alone, which answers other queries: each resampled on its own."""
    b = (QUERY_ALONE, a[1])
    point = _mean(table)[a] - _mean(base_table)[b]
    return {"measure": name, **difference(reps[a].to_numpy(), base_reps[b].to_numpy(), point)}


def _by_rule(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`intervals.fixed` by rule, its table's rows in the order of `multitoken.RULES` (the first token first)."""
    table, reps = fixed(frame, "rule")
    order = table["rule"].map({rule: i for i, rule in enumerate(RULES)})
    return table.assign(_order=order).sort_values(["_order"], kind="stable").drop(columns="_order"), reps


def _contrasts(test: pd.DataFrame, base: pd.DataFrame, suffix: str = "") -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                  list[dict]]:
    table, reps = _by_rule(test)
    base_table, base_reps = _by_rule(base)
    prefill, every, icl = SERIES["prefill"], SERIES["every_step"], SERIES["regular"]
    rows = [_ratio(f"{prefill} / ICL{suffix}", reps, table, (prefill, WHOLE), (icl, WHOLE)),
            _independent(f"{prefill} - query alone{suffix}", reps, table, base_reps, base_table, (prefill, WHOLE)),
            _paired(f"{every} - {prefill}{suffix}", reps, table, (every, WHOLE), (prefill, WHOLE))]
    rows += [_paired(f"{s}: whole answer - first token{suffix}", reps, table, (s, WHOLE), (s, FIRST))
             for s in (icl, prefill)]
    rows += [_paired(f"{s}: whole answer - answer leads{suffix}", reps, table, (s, WHOLE), (s, LEADS))
             for s in (icl, prefill)]
    return table, base_table, rows


def tables(frame: pd.DataFrame) -> dict:
    """Every table the chapter shows, over the scope's tasks: test accuracy by setting and rule with 95% intervals
    over test contexts (task 'mean': the mean over tasks), the same on the queries whose answer takes several
    tokens, per category, the dev curves by rule, and the contrasts the sentences read."""
    tasks, decides = scope(frame)
    mine = frame[frame["task"].isin(tasks)]
    test, base = long(mine), long(mine, "baseline")
    table, base_table, rows = _contrasts(test, base)
    several, base_several = test[test["answer_tokens"] > 1], base[base["answer_tokens"] > 1]
    both = set(several["task"]) & set(base_several["task"])  # the means of both are over the same tasks
    has_several = bool(both)
    if has_several:
        several_table, _, more = _contrasts(several[several["task"].isin(both)],
                                            base_several[base_several["task"].isin(both)], ", several tokens")
        rows += more
    return {"tasks": tasks, "decides": decides, "has_several": has_several, "test": table, "baseline": base_table,
            "several": several_table if has_several else None,
            "n_several": int(several[several["task"].isin(both)].groupby(["task", "context"]).ngroups),
            "contrasts": pd.DataFrame(rows),
            "categories": categories(test, base), "dev": dev_curves(mine), "summary": whole_summary(frame),
            "lengths": lengths(frame)}


def categories(test: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Whole-answer accuracy per category (mean over its tasks, 95% interval over test contexts) of each setting."""
    parts = []
    for category in sorted(test["category"].unique()):
        for rows in (test, base):
            mine = fixed(rows[(rows["category"] == category) & (rows["rule"] == WHOLE)], "rule")[0]
            parts.append(mine[mine["task"] == "mean"].assign(category=category))
    return pd.concat(parts, ignore_index=True)


def dev_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """The dev sweep's mean accuracy per layer over the scope's tasks (columns task, series, layer, accuracy, low,
    high): theta at prefill scored by the first token and by the whole answer, and at every step by the whole
    answer, so the layer each rule would choose shows."""
    dev = long(frame, "dev")
    dev = dev[dev["rule"].isin([FIRST, WHOLE]) & ~((dev["method"] == SERIES["every_step"]) & (dev["rule"] == FIRST))]
    dev = dev.assign(method=dev["method"] + " (" + dev["rule"] + ")").astype({"layer": int})
    table = fixed(dev, "layer")[0]
    return table.rename(columns={"method": "series"})


def lengths(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task: test queries, how many of their answers take several tokens, and the longest answer in tokens."""
    test = frame[(frame["split"] == "test") & (frame["method"] == "regular")]
    return test.groupby("task", sort=False).agg(
        test_queries=("context", "size"), several_tokens=("answer_tokens", lambda n: int((n > 1).sum())),
        longest=("answer_tokens", "max")).reset_index()


def examples(frame: pd.DataFrame, tasks: list[str], n: int = 2, width: int = 18) -> pd.DataFrame:
    """The first `n` test queries of each task whose answer takes several tokens, with what ICL, theta at prefill
    and theta at every step generated for them (each at its own dev-chosen L)."""
    test = frame[(frame["split"] == "test") & frame["task"].isin(tasks)].assign(series=lambda f: _series(f))
    wide = test.pivot_table(index=["task", "context", "query", "expected", "answer_tokens"], columns="series",
                            values="generated", aggfunc="first").reset_index()
    wide = wide[wide["answer_tokens"] > 1].groupby("task", sort=False).head(n)
    shown = wide[["task", "query", "expected", *SERIES.values()]].fillna("").rename_axis(None, axis=1)
    for series in SERIES.values():  # a run-on answer (one word over and over) is cut to what fits a column
        shown[series] = shown[series].map(lambda t: t if len(t) <= width else t[:width - 1] + "…")
    return shown.reset_index(drop=True)


# --------------------------------------------------------------------------- what the page says


def _row(read: dict, measure: str) -> pd.Series:
    return read["contrasts"].set_index("measure").loc[measure]


def _interval(read: dict, measure: str) -> str:
    row = _row(read, measure)
    return f"{row['difference']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]"


def _cell(table: pd.DataFrame, method: str, rule: str = WHOLE) -> str:
    row = table[(table["task"] == "mean") & (table["method"] == method) & (table["rule"] == rule)].iloc[0]
    return f"{row['accuracy']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"


def _keeps(read: dict, measure: str) -> str:
    """theta's share of ICL's whole answers, or why there is none."""
    row = _row(read, measure)
    if not np.isfinite(row["difference"]):
        return "ICL gives no whole answer here, so theta has no share of it to keep"
    if not (np.isfinite(row["low"]) and np.isfinite(row["high"])):
        return (f"it keeps {row['difference']:.2f} of ICL's whole answers (with no interval: in some resamples ICL "
                "gives none)")
    return f"it keeps {row['difference']:.2f} [{row['low']:.2f}, {row['high']:.2f}] of ICL's whole answers"


def _reading(read: dict, measure: str) -> str | None:
    return _row(read, measure)["reading"] if read["decides"] else None


def say_chosen(picked: list[str], names: list[str], minimum: int) -> str:
    """Which of the tasks asked for the chapter runs on (`multitoken.split_tasks`), and by what rule."""
    if not picked:
        return (f"No task asked for has {minimum} answers of several tokens for this tokenizer; all {len(names)} "
                "are run, so the page still reads.")
    if set(picked) == set(names):
        return f"Each of the {len(names)} tasks asked for has at least {minimum} answers of several tokens."
    return (f"Of the {len(names)} tasks asked for, {len(picked)} have at least {minimum} answers of several tokens for "
            f"this tokenizer and are run: {', '.join(f'`{t}`' for t in picked)}.")


def contrasts_table(read: dict) -> pd.DataFrame:
    """The contrasts as the page shows them: `estimate` is a difference, or for a ratio row the ratio itself."""
    return read["contrasts"].rename(columns={"difference": "estimate"}).round(3)


def say_scope(read: dict) -> str:
    """Over what the means and intervals are taken."""
    over = (f"the {len(read['tasks'])} tasks where ICL adds at least {verdicts.MIN_GAIN} whole answers over the "
            "query alone" if read["decides"] else
            f"all {len(read['tasks'])} tasks, since on none does ICL add {verdicts.MIN_GAIN} whole answers over the "
            "query alone (so no answer can be decided)")
    return (f"Means are over {over}; every interval is a bootstrap 95% interval over test contexts (baseline "
            "queries for the query alone), the tasks held fixed; settings that answer the same queries are compared "
            "by the interval of their paired difference, and the query alone, which answers other queries, by "
            "two independent resamplings. L is each task's layer of best whole-answer dev accuracy (a tie goes to the "
            "best start of the answer, then the lowest layer), chosen once, not again in each resample.")


def answer_carries(read: dict) -> str:
    """Question 1 in one line: does theta make the bare query give whole answers the query alone does not?"""
    measure = f"{SERIES['prefill']} - query alone"
    reading = _reading(read, measure)
    answer = ("yes: theta written at L gives more whole answers than the query alone" if reading == "above" else
              "no: theta written at L gives fewer whole answers than the query alone" if reading == "below" else
              verdicts.UNDECIDED)
    keeps = _keeps(read, f"{SERIES['prefill']} / ICL")
    return f"Does theta carry a whole answer? {answer} (difference {_interval(read, measure)}); {keeps}."


def answer_rules(read: dict) -> str:
    """Question 2 in one line: does the paper's first-token rule count more or fewer answers than the whole?"""
    parts = []
    for series in (SERIES["regular"], SERIES["prefill"]):
        measure = f"{series}: whole answer - first token"
        reading = _reading(read, measure)
        word = ("the first token over-counts" if reading == "below" else "the first token under-counts"
                if reading == "above" else f"whether the first token over- or under-counts {verdicts.UNDECIDED}")
        parts.append(f"for {series} {word} (whole - first {_interval(read, measure)})")
    return "What does the one-token rule miscount? " + "; ".join(parts) + "."


def answer_stop(read: dict) -> str:
    """Question 2b in one line: does a generation with theta end where its answer ends?"""
    measure = f"{SERIES['prefill']}: whole answer - answer leads"
    reading = _reading(read, measure)
    answer = ("not always: some generations with theta begin with the whole answer and run on past it"
              if reading == "below" else verdicts.UNDECIDED)  # a whole answer always leads: never above
    return f"Does theta end the answer? {answer} (whole answers minus leading ones {_interval(read, measure)})."


def answer_patch(read: dict) -> str:
    """Question 3 in one line: prefill only or every step?"""
    measure = f"{SERIES['every_step']} - {SERIES['prefill']}"
    reading = _reading(read, measure)
    answer = ("writing theta at every step gives more whole answers" if reading == "above" else
              "writing theta at prefill only gives more whole answers" if reading == "below" else
              verdicts.UNDECIDED)
    return f"Prefill only or every step? {answer} (every step - prefill {_interval(read, measure)})."


def say_accuracy(read: dict) -> list[str]:
    """The headline numbers: each setting's whole-answer accuracy, and by the first token."""
    test, base = read["test"], read["baseline"]
    icl, prefill, every = SERIES["regular"], SERIES["prefill"], SERIES["every_step"]
    return [f"Whole answers on the test queries: the query alone {_cell(base, QUERY_ALONE)}, ICL {_cell(test, icl)}, "
            f"theta written at prefill {_cell(test, prefill)}, and at every step {_cell(test, every)}.",
            f"Scored by the paper's first-token rule the same answers give ICL {_cell(test, icl, FIRST)} and theta at "
            f"prefill {_cell(test, prefill, FIRST)}; by the first token as the answer's start, "
            f"{_cell(test, icl, 'answer start')} and {_cell(test, prefill, 'answer start')}.",
            f"Generations that begin with the whole answer, whether or not they stop there: ICL "
            f"{_cell(test, icl, LEADS)}, theta at prefill {_cell(test, prefill, LEADS)}. What ending the answer costs "
            f"(whole answers minus those, paired): {_interval(read, f'{icl}: whole answer - answer leads')} for ICL "
            f"and {_interval(read, f'{prefill}: whole answer - answer leads')} for theta."]


def say_several(read: dict) -> list[str]:
    """The same on the queries whose answer takes several tokens, where the one-token rule cannot see the end."""
    if not read["has_several"]:
        return ["No test query of these tasks has an answer of several tokens for this tokenizer."]
    several = read["several"]
    n = read["n_several"]
    icl, prefill = SERIES["regular"], SERIES["prefill"]
    return [f"On the {n} test queries whose answer takes several tokens, ICL gives {_cell(several, icl)} whole "
            f"answers and theta at prefill {_cell(several, prefill)}: there "
            f"{_keeps(read, f'{prefill} / ICL, several tokens')}. The first-token rule gives them "
            f"{_cell(several, icl, FIRST)} (ICL) and {_cell(several, prefill, FIRST)} (theta): whole answers minus "
            f"first tokens, paired, {_interval(read, f'{icl}: whole answer - first token, several tokens')} for ICL "
            f"and {_interval(read, f'{prefill}: whole answer - first token, several tokens')} for theta."]


def say_layers(read: dict) -> str:
    """Where each rule's dev curve peaks, from the mean dev curves."""
    curves = read["dev"][read["dev"]["task"] == "mean"]
    peaks = {series: int(part.loc[part["accuracy"].idxmax(), "layer"]) for series, part in curves.groupby("series")}
    named = "; ".join(f"{series} at layer {layer}" for series, layer in peaks.items())
    return f"The mean dev curves peak as follows (first of tied maxima): {named}."


def models_table(read_by_model: dict[str, dict]) -> pd.DataFrame:
    """The chapter's headline numbers for several models side by side ('value [low, high]')."""
    columns = {}
    for model, read in read_by_model.items():
        test, base = read["test"], read["baseline"]
        cells = {f"{QUERY_ALONE} (whole)": _cell(base, QUERY_ALONE)}
        cells |= {f"{s} (whole)": _cell(test, s) for s in SERIES.values()}
        cells |= {f"{s} (first token)": _cell(test, s, FIRST) for s in (SERIES["regular"], SERIES["prefill"])}
        cells |= {f"{s} (answer leads)": _cell(test, s, LEADS) for s in (SERIES["regular"], SERIES["prefill"])}
        ratio = _row(read, f"{SERIES['prefill']} / ICL")
        cells[f"{SERIES['prefill']} / ICL"] = f"{ratio['difference']:.2f} [{ratio['low']:.2f}, {ratio['high']:.2f}]"
        for measure in (f"{SERIES['every_step']} - {SERIES['prefill']}",
                        f"{SERIES['prefill']}: whole answer - first token"):
            cells[measure] = _interval(read, measure)
        cells["tasks"] = str(len(read["tasks"]))
        columns[model] = cells
    return pd.DataFrame(columns).rename_axis("measure")

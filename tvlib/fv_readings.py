"""Reading the function-vector results (`Runner.function_vectors`): paired intervals and the page's sentences.

Every comparison is between settings measured on the same test contexts (the same bare queries, or the same ICL
prompts), so it is read from the bootstrap interval of the paired difference, a task's contexts resampled alike for
every setting (`intervals.fixed`). Means over tasks hold the tasks fixed and are taken over the tasks that can test
a claim about theta at all: ICL adds at least `verdicts.MIN_GAIN` over the query alone (`verdicts.testable`).
"""

from __future__ import annotations

import pandas as pd

from tvlib import function_vectors as fvs
from tvlib import verdicts
from tvlib.intervals import difference, fixed

PAPER_FORMAT = "example:x->y"
METHOD_NAMES = {"fv": "FV added", "theta": "theta written at L", "query alone": "query alone"}


def testable(summary: pd.DataFrame) -> list[str]:
    """The tasks where ICL adds at least MIN_GAIN over the query alone (chapter 3's summary), sorted."""
    return sorted(summary.loc[verdicts.testable(summary), "task"])


def scope(summary: pd.DataFrame) -> tuple[list[str], bool]:
    """The tasks the means are over, and whether they can decide anything: the testable tasks, or, where a
    model has none, every task (the figures still draw; every answer is then 'cannot be decided')."""
    tasks = testable(summary)
    return (tasks, True) if tasks else (sorted(summary["task"]), False)


def _on(frame: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    return frame[frame["task"].isin(tasks)]


def _contrast(reps: pd.DataFrame, table: pd.DataFrame, name: str, a: tuple, b: tuple) -> dict:
    """One paired difference a - b of two (method, setting) columns of `fixed`'s mean replicates."""
    mean = table[table["task"] == "mean"].set_index(list(table.columns[1:3]))["accuracy"]
    return {"measure": name, **difference(reps[a].to_numpy(), reps[b].to_numpy(), mean[a] - mean[b])}


def tables(found: dict[str, pd.DataFrame], summary: pd.DataFrame, k: int = fvs.TOP_K) -> dict:
    """Every table the chapter shows, over the testable tasks: accuracies with 95% intervals over test contexts
    (task 'mean': the mean over tasks) and the paired contrasts the sentences read."""
    tasks, decides = scope(summary)
    zero, zero_reps = fixed(_on(found["zero_shot"], tasks), "format")
    ablated, ablated_reps = fixed(_on(found["ablated"], tasks), "ablated")
    contrasts = [_contrast(zero_reps, zero, f"FV - theta ({f})", ("fv", f), ("theta", f))
                 for f in zero["format"].unique()]
    contrasts += [_contrast(zero_reps, zero, f"FV - query alone ({f})", ("fv", f), ("query alone", f))
                  for f in zero["format"].unique()]
    sets = [s for s in ablated["ablated"].unique() if s != "none"]
    contrasts += [_contrast(ablated_reps, ablated, f"ICL without {s} - ICL", ("regular", s), ("regular", "none"))
                  for s in sets]
    contrasts += [_contrast(ablated_reps, ablated, "without FV heads - without induction heads",
                            ("regular", "FV heads"), ("regular", "induction heads"))]
    swept = found["by_layer"]
    return {"tasks": pd.DataFrame({"task": tasks}), "zero_shot": zero, "ablated": ablated,
            "contrasts": pd.DataFrame(contrasts),
            "by_heads": fixed(_on(found["by_heads"], tasks), "k")[0],
            "by_layer": fixed(_on(swept[swept["split"] == "test"], tasks), "added_at")[0],
            "heads": head_map(found["aie"], found["induction"]),
            "placement": placement(found, summary, tasks, k), "k": k, "decides": decides, "sites": found["sites"]}


def head_map(aie: pd.DataFrame, induction: pd.DataFrame) -> pd.DataFrame:
    """Per head: AIE averaged over all tasks (what ranks the FV heads), its rank, and its induction score."""
    mean = aie.groupby(["layer", "head"], sort=True)["aie"].mean().reset_index()
    mean["aie_rank"] = mean["aie"].rank(ascending=False, method="first").astype(int)
    return mean.merge(induction, on=["layer", "head"], how="left")


def placement(found: dict[str, pd.DataFrame], summary: pd.DataFrame, tasks: list[str],
              k: int = fvs.TOP_K) -> pd.DataFrame:
    """Per testable task: theta's L, the FV's own dev-chosen layer, and how many of the k FV heads sit at or
    before L (a head of block l writes into block l's output, which theta at L = l already holds)."""
    ranked = fvs.top_heads(found["aie"], k)
    layers = dict(zip(summary["task"], summary["best_layer"].astype(int)))
    chosen = {t: fvs.chosen_layer(f) for t, f in found["by_layer"].groupby("task")}
    return pd.DataFrame([{"task": t, "L": layers[t], "FV layer": chosen[t],
                          "FV heads at or before L": sum(s.layer <= layers[t] for s in ranked)} for t in tasks])


# --------------------------------------------------------------------------- what the page says


def _row(contrasts: pd.DataFrame, measure: str) -> pd.Series:
    return contrasts.set_index("measure").loc[measure]


def _paired(contrasts: pd.DataFrame, measure: str) -> str:
    row = _row(contrasts, measure)
    return f"{row['reading']} (paired difference {row['difference']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}])"


def _cell(table: pd.DataFrame, method: str, by: str, value) -> str:
    row = table[(table["task"] == "mean") & (table["method"] == method) & (table[by] == value)].iloc[0]
    return f"{row['accuracy']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"


def say_scope(found: dict) -> str:
    """Over what the page's means and intervals are taken."""
    over = (f"the {len(found['tasks'])} tasks where ICL adds at least {verdicts.MIN_GAIN} over the query alone (the "
            "tasks that can test a claim about theta)" if found["decides"] else
            f"all {len(found['tasks'])} tasks, since on none does ICL add {verdicts.MIN_GAIN} over the query alone "
            "(so no answer can be decided)")
    return (f"Means are over {over}; every interval is a bootstrap 95% interval over test contexts, the tasks held "
            "fixed, and every comparison the interval of a paired difference.")


def say_residual(found: dict) -> str:
    """How a head's output reaches this model's residual stream, from the stored layout facts."""
    sites = found["sites"].iloc[0]
    if isinstance(sites["attn_post_norm"], str) and sites["attn_post_norm"]:
        return (f"This model normalises each attention output before it joins the residual stream "
                f"(`{sites['attn_post_norm']}`), so a head's contribution is its slice of the output projection "
                "passed through that norm's gain over the layer's typical scale (`tvlib.heads.residual`): summed over "
                "all heads of a prompt, exactly what the norm adds, which a test checks. An FV summed before the "
                "norm is on the wrong scale for such a model; this may be why users of the FV code report "
                "accuracies under 10% on Gemma 2, which has the same norm.")
    return (f"This model adds each attention output to the residual stream as it is (`{sites['attn_out']}`), so a "
            "head's contribution is its slice of the output projection, as in Todd et al.")


def say_limits(found: dict[str, pd.DataFrame]) -> list[str]:
    """The counts that bound the reading: prompts per AIE, and the share of the model's heads an FV uses."""
    n_heads = len(found["heads"])
    k = found["k"]
    return [f"Each head's AIE averages {fvs.AIE_PROMPTS} shuffled-label prompts a task. The FV's {k} heads are "
            f"{k / n_heads:.0%} of this model's {n_heads}; Todd et al.'s 10 were 2% of GPT-J's 448."]


def verdict(contrasts: pd.DataFrame, measure: str, above: str, below: str, decides: bool = True) -> str:
    """A comparison's answer in words: `above` or `below` where the paired interval excludes 0, else (or where no
    task can test it) that it cannot be decided."""
    reading = _row(contrasts, measure)["reading"] if decides else None
    return above if reading == "above" else below if reading == "below" else verdicts.UNDECIDED


def say_zero_shot(found: dict[str, pd.DataFrame]) -> list[str]:
    """The headline: FV against theta on the same bare queries, in the paper's format and the two others."""
    zero, contrasts, n = found["zero_shot"], found["contrasts"], len(found["tasks"])
    out = [f"Over the {n} testable tasks, in the paper's format, the function vector of the top {found['k']} heads "
           f"gives {_cell(zero, 'fv', 'format', PAPER_FORMAT)} on the bare test queries, theta written at L gives "
           f"{_cell(zero, 'theta', 'format', PAPER_FORMAT)}, and the query alone "
           f"{_cell(zero, 'query alone', 'format', PAPER_FORMAT)}: the FV is "
           f"{_paired(contrasts, f'FV - theta ({PAPER_FORMAT})')} theta."]
    for fmt in [f for f in zero["format"].unique() if f != PAPER_FORMAT]:
        out.append(f"In the `{fmt}` format (both vectors built in the paper's), the FV gives "
                   f"{_cell(zero, 'fv', 'format', fmt)} against theta's {_cell(zero, 'theta', 'format', fmt)}: "
                   f"{_paired(contrasts, f'FV - theta ({fmt})')}; against the query alone the FV is "
                   f"{_paired(contrasts, f'FV - query alone ({fmt})')}.")
    return out


def answer_heads_or_state(found: dict) -> str:
    """Question 1 in one line: does the FV do what theta does on the paper's bare query?"""
    answer = verdict(found["contrasts"], f"FV - theta ({PAPER_FORMAT})", "the FV does better than theta",
                     "theta does better than the FV", found["decides"])
    return f"Heads or hidden state, on the paper's bare query: {answer}."


def say_ablation(found: dict[str, pd.DataFrame]) -> list[str]:
    """Which heads ICL needs: accuracy with each set mean-ablated, each against none and FV against induction."""
    table, contrasts = found["ablated"], found["contrasts"]
    sets = [s for s in table["ablated"].unique() if s != "none"]
    parts = ", ".join(f"without the {s} {_cell(table, 'regular', 'ablated', s)}" for s in sets)
    return [f"Five-shot ICL on the testable tasks gives {_cell(table, 'regular', 'ablated', 'none')} with every "
            f"head in place; {parts} ({found['k']} heads each, mean-ablated at every position).",
            f"Without the FV heads ICL is "
            f"{_paired(contrasts, 'without FV heads - without induction heads')} ICL without the induction heads."]


def answer_fv_or_induction(found: dict) -> str:
    """Question 2 in one line: whose ablation costs ICL more?"""
    answer = verdict(found["contrasts"], "without FV heads - without induction heads",
                     "ablating the induction heads costs more", "ablating the FV heads costs more", found["decides"])
    return f"FV heads or induction heads, for few-shot ICL: {answer}."


def say_placement(found: dict[str, pd.DataFrame], ranked_layers: list[int]) -> list[str]:
    """Where the FV heads sit against theta's L."""
    where = found["placement"]
    at_or_before = where["FV heads at or before L"]
    layers = ", ".join(str(l) for l in sorted(ranked_layers))
    k = found["k"]
    return [f"The top {k} FV heads sit in layers {layers}; theta's L ranges over "
            f"{where['L'].min()}-{where['L'].max()} on the testable tasks. In {int((at_or_before == k).sum())} "
            f"of {len(where)} tasks every FV head sits at or before L; in the median task {at_or_before.median():g} "
            f"of {k} do. The FV's own best layer (chosen on dev contexts) is at or before L in "
            f"{int((where['FV layer'] <= where['L']).sum())} of {len(where)} tasks."]


def say_curves(found: dict[str, pd.DataFrame]) -> list[str]:
    """How k and the layer change the FV (mean over testable tasks)."""
    heads = found["by_heads"][found["by_heads"]["task"] == "mean"].set_index("k")["accuracy"]
    layer = found["by_layer"][found["by_layer"]["task"] == "mean"].set_index("added_at")["accuracy"]
    n_layers = int(layer.index.max()) + 1
    return [f"With more heads the FV grows from {heads.iloc[0]:.2f} (k = {heads.index[0]}) to {heads.max():.2f} "
            f"(k = {int(heads.idxmax())}, best of those tried).",
            f"Added at one layer for every task, it does best at layer {int(layer.idxmax())} "
            f"({layer.max():.2f}); at Todd et al.'s layer {fvs.todd_layer(n_layers)} (a third of the way up) "
            f"it gives {layer.loc[fvs.todd_layer(n_layers)]:.2f}."]


def models_table(found_by_model: dict[str, dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """The chapter's headline numbers for several models side by side ('value [low, high]')."""
    columns = {}
    for model, found in found_by_model.items():
        zero, table, contrasts = found["zero_shot"], found["ablated"], found["contrasts"].set_index("measure")
        cells = {f"{METHOD_NAMES[m]} ({PAPER_FORMAT})": _cell(zero, m, "format", PAPER_FORMAT)
                 for m in ("fv", "theta", "query alone")}
        for measure in (f"FV - theta ({PAPER_FORMAT})", "without FV heads - without induction heads"):
            row = contrasts.loc[measure]
            cells[measure] = f"{row['difference']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]"
        cells |= {f"ICL without {s}": _cell(table, "regular", "ablated", s) for s in table["ablated"].unique()
                  if s != "none"}
        cells["testable tasks"] = str(len(found["tasks"]))
        columns[model] = cells
    return pd.DataFrame(columns).rename_axis("measure")

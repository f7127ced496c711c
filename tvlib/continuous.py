"""Reading the continuous measures: does top-1 accuracy hide a gradual rise over layers, does KL from ICL rank the
tasks theta serves, and how far theta's distribution is from ICL's, each by a fixed rule with intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tvlib import verdicts
from tvlib.accounts import signed, spearman
from tvlib.experiments import summarize
from tvlib.intervals import N_BOOT, bounds
from tvlib.measures import LABELS as MEASURE_LABELS
from tvlib.positions import FINAL

RISE = 0.5
"""A curve has risen at the first layer where it is this share of the way from its value at layer 0 to its peak."""

EARLIER = 0.5
"""A measure rises earlier than accuracy when the paired interval of (its rise layer - accuracy's) lies wholly
below minus this many layers, i.e. at least one layer earlier in every resample's central 95%."""

CURVE_MEASURES = ("correct", "logprob", "logit_diff")

LABELS = {"correct": "top-1 accuracy", **MEASURE_LABELS}

RULES = {
    "rise": f"a measure's mean curve over tasks has risen at the first layer {RISE:g} of the way from layer 0 to its "
            f"peak; it rises before accuracy where (its layer - accuracy's) has a paired bootstrap 95% interval over "
            f"tasks wholly below -{EARLIER:g}, and not before where the interval lies wholly above it",
    "kl": "KL(ICL || theta) at each task's L ranks the tasks theta serves where Spearman's rho between it and "
          "theta's accuracy at L, over tasks, has a bootstrap 95% interval over tasks wholly below 0",
}


def layer_curves(predictions: pd.DataFrame, split: str = "dev") -> pd.DataFrame:
    """Per task and layer, the patched run's mean accuracy and measures over the split's contexts."""
    swept = predictions[(predictions["method"] == "hypothesis") & (predictions["split"] == split)]
    columns = [c for c in (*CURVE_MEASURES, "kl") if c in swept.columns and swept[c].notna().any()]
    return swept.groupby(["task", "layer"])[columns].mean().reset_index()


def rise_layer(curve: pd.Series) -> float:
    """The first layer (curve indexed by layer) at RISE of the way from layer 0's value to the peak; NaN for a curve
    that never rises above its layer 0 value."""
    curve = curve.sort_index()
    start, peak = curve.iloc[0], curve.max()
    if peak - start <= verdicts.TIE:
        return float("nan")
    return float(curve.index[np.argmax(curve.to_numpy() >= start + RISE * (peak - start) - verdicts.TIE)])


def rises(curves: pd.DataFrame, tasks: list[str], n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Each measure's rise layer of the mean curve over `tasks`, and its difference from accuracy's with a paired
    interval (one resample of tasks serves every measure) and the rule's outcome (undecided where a curve never
    rises)."""
    grids = {m: curves[curves["task"].isin(tasks)].pivot(index="task", columns="layer", values=m).loc[tasks]
             for m in CURVE_MEASURES}
    rng = np.random.default_rng([seed, len(tasks)])
    draws = [rng.integers(0, len(tasks), len(tasks)) for _ in range(n_boot)]

    def layers_of(measure: str) -> np.ndarray:
        grid = grids[measure].to_numpy()
        return np.array([rise_layer(pd.Series(grid[d].mean(0), index=grids[measure].columns)) for d in draws])

    base = layers_of("correct")
    rows = []
    for measure in CURVE_MEASURES:
        point = rise_layer(grids[measure].mean())
        diff = point - rise_layer(grids["correct"].mean())
        reps = np.zeros_like(base) if measure == "correct" else layers_of(measure) - base  # accuracy: itself
        ci = bounds(reps[np.isfinite(reps)]) if np.isfinite(diff) and np.isfinite(reps).all() else (np.nan, np.nan)
        outcome = None if measure == "correct" else \
            verdicts.at_most(diff, -EARLIER, ci) if np.isfinite(ci[0]) else verdicts.UNDECIDED
        rows.append({"measure": measure, "label": LABELS[measure], "rise layer": point,
                     "vs accuracy": diff, "low": ci[0], "high": ci[1], "rises earlier": outcome})
    return pd.DataFrame(rows)


def _layer(value: float) -> str:
    return f"layer {int(value)}" if np.isfinite(value) else "no layer (the curve never rises)"


def say_rises(table: pd.DataFrame, n_tasks: int) -> str:
    """The rise layers in one sentence, with the rule's outcome for each continuous measure."""
    acc = table[table["measure"] == "correct"].iloc[0]
    parts = []
    for _, r in table[table["measure"] != "correct"].iterrows():
        against = (f", {int(r['vs accuracy']):+d} layers [{r['low']:+.0f}, {r['high']:+.0f}] against accuracy"
                   if np.isfinite(r["low"]) else "")
        parts.append(f"{r['label']} at {_layer(r['rise layer'])}{against}, so that it rises earlier "
                     f"{r['rises earlier']}")
    return (f"Over the {n_tasks} tasks read, the mean dev curve of top-1 accuracy has risen at "
            f"{_layer(acc['rise layer'])}; " + "; ".join(parts) + " (paired bootstrap 95% intervals over tasks).")


def at_l(predictions: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Per task: theta's test accuracy, measures and KL at its dev-chosen L, beside ICL's and the query alone's."""
    layers = summarize(predictions).set_index("task")["best_layer"]
    rows = []
    for task in tasks:
        frame = predictions[predictions["task"] == task]
        test = frame[frame["split"] != "dev"]
        theta = test[(test["method"] == "hypothesis") & (test["layer"] == layers[task])]
        row = {"task": task, "L": int(layers[task]), "kl": theta["kl"].mean()}
        for name, part in (("query alone", test[test["method"] == "baseline"]),
                           ("ICL", test[test["method"] == "regular"]), ("theta", theta)):
            row |= {f"{name} {m}": part[m].mean() for m in CURVE_MEASURES}
        rows.append(row)
    return pd.DataFrame(rows)


def paired_gap(predictions: pd.DataFrame, tasks: list[str], measure: str, n_boot: int = N_BOOT,
               seed: int = 0) -> dict:
    """Mean over tasks of (theta at L - ICL) in `measure`, on the same test contexts: a replicate redraws each task's
    contexts (the tasks held fixed), taking both runs of a drawn context."""
    layers = summarize(predictions).set_index("task")["best_layer"]
    rng = np.random.default_rng([seed, len(tasks)])
    gaps, reps = [], np.zeros(n_boot)
    for task in tasks:
        test = predictions[(predictions["task"] == task) & (predictions["split"] == "test")]
        theta = test[(test["method"] == "hypothesis") & (test["layer"] == layers[task])].sort_values("context")
        icl = test[test["method"] == "regular"].sort_values("context")
        gap = theta[measure].to_numpy(float) - icl[measure].to_numpy(float)
        gaps.append(gap.mean())
        reps += gap[rng.integers(0, len(gap), (n_boot, len(gap)))].mean(1)
    value = float(np.mean(gaps))
    return {"measure": measure, "value": value, "ci": bounds(reps / len(tasks))}


def kl_ranks(table: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Spearman's rho between KL at L and theta's accuracy at L over tasks, its interval over tasks, the outcome."""
    if len(table) < 3:
        return {"value": float("nan"), "ci": (float("nan"),) * 2, "outcome": verdicts.UNDECIDED, "tasks": len(table)}
    value = spearman(table["kl"], table["theta correct"])
    rng = np.random.default_rng([seed, len(table)])
    reps = np.array([spearman(*(table.iloc[d][c].reset_index(drop=True) for c in ("kl", "theta correct")))
                     for d in (rng.integers(0, len(table), len(table)) for _ in range(n_boot))])
    ci = bounds(reps[np.isfinite(reps)]) if np.isfinite(reps).any() else (float("nan"),) * 2
    return {"value": value, "ci": ci, "outcome": verdicts.at_most(value, 0.0, ci), "tasks": len(table)}


def say_kl(found: dict) -> str:
    """The KL ranking test in one sentence."""
    return (f"Over {found['tasks']} tasks, Spearman's rho between KL from ICL at L and theta's accuracy at L is "
            f"{signed(found['value'], found['ci'])}; by the rule ({RULES['kl']}) that KL ranks the tasks "
            f"{found['outcome']}.")


def say_gaps(gaps: list[dict], n_tasks: int) -> str:
    """Theta against ICL in the continuous measures, on the same contexts."""
    parts = [f"{LABELS[g['measure']]} {signed(g['value'], g['ci'])}" for g in gaps]
    return (f"Theta at L minus ICL on the same test contexts, mean over {n_tasks} tasks (paired bootstrap 95% "
            "intervals over test contexts, tasks fixed): " + "; ".join(parts) + ".")


def read_all(predictions: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Every continuous reading of one model's main experiment, over the tasks where ICL adds at least
    `verdicts.MIN_GAIN` (or, where there is none, over every task, with `decides` False: nothing is decided)."""
    from tvlib.accounts import testable

    summary = summarize(predictions)
    tasks = testable(summary)
    decides = bool(tasks)
    tasks = tasks or sorted(summary["task"])
    dev, test = layer_curves(predictions, "dev"), layer_curves(predictions, "test")
    rise = rises(dev, tasks, n_boot, seed)
    table = at_l(predictions, tasks)
    kl = kl_ranks(table, n_boot, seed) if decides else {**kl_ranks(table.iloc[:0]), "tasks": len(tasks)}
    if not decides:
        rise["rises earlier"] = rise["rises earlier"].where(rise["measure"] == "correct", verdicts.UNDECIDED)
    gaps = [paired_gap(predictions, tasks, m, n_boot, seed) for m in CURVE_MEASURES]
    return {"tasks": tasks, "decides": decides, "dev": dev[dev["task"].isin(tasks)],
            "test": test[test["task"].isin(tasks)], "rises": rise, "at_l": table, "kl": kl, "gaps": gaps,
            "rise_layers": dict(zip(rise["measure"], rise["rise layer"]))}


def say_all(found: dict) -> tuple[str, ...]:
    """The page's sentences on the continuous measures, in order."""
    return (say_rises(found["rises"], len(found["tasks"])), say_gaps(found["gaps"], len(found["tasks"])),
            say_kl(found["kl"]))


def models_table(shown: dict[str, dict], positions_read: dict[str, dict] | None = None) -> pd.DataFrame:
    """One column per model: the rise layers, theta minus ICL in log p, KL's ranking and, where read, the best
    position other than the final arrow."""
    rows = []
    for model, found in shown.items():
        rise = found["rises"].set_index("measure")
        gap = {g["measure"]: g for g in found["gaps"]}["logprob"]
        row = {"model": model, "tasks": len(found["tasks"]),
               "accuracy risen at": rise.loc["correct", "rise layer"],
               "log p risen at": rise.loc["logprob", "rise layer"],
               "log p rises earlier": rise.loc["logprob", "rises earlier"],
               "theta - ICL, log p": signed(gap["value"], gap["ci"]),
               "KL ranks tasks (rho)": signed(found["kl"]["value"], found["kl"]["ci"]),
               "KL ranks tasks": found["kl"]["outcome"]}
        if positions_read and model in positions_read:
            table = positions_read[model]["table"]
            best = table[table["role"] != FINAL].sort_values("accuracy", ascending=False).iloc[0]
            row["best position but the last"] = f"{best['role']} ({best['minus final arrow']:+.2f})"
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model").astype({"accuracy risen at": "Int64", "log p risen at": "Int64"})
    return table.astype(str).T.rename_axis("reading")  # a column per model, as the accounts' table

"""Later accounts of theta, tested with the paper's own protocol, each by a rule fixed here before the results.

- Dong et al. (2026): theta acts like one representative demonstration, and a rank-one mapping serves many-to-one
  tasks better than bijective ones. Read from the main experiment and the 1-shot run of Beyond the paper.
- Han et al. (2025): how decodable the task is from theta predicts how well theta does it. Read per (task, layer)
  from the k-NN decodability of the test contexts' thetas and the main experiment's test sweep.
- Nadaf (2026): theta steers where its vocabulary projection shows nothing of the task. Read per (task, layer)
  from the share of theta's top words in the task's output space (`projection.in_output_space`).

Every mean is over the tasks where ICL adds at least `verdicts.MIN_GAIN` over the query alone; every outcome is one
of `verdicts.WORDS`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from tvlib import defaults, verdicts
from tvlib.clusters import cosine_distances, knn_votes
from tvlib.experiments import Protocol, dev_and_test, summarize, task_vectors, top_words
from tvlib.intervals import N_BOOT, bounds, proportion_replicates, replicates
from tvlib.models import LM
from tvlib.progress import progress_bar
from tvlib.projection import in_output_space
from tvlib.tasks import Task
from tvlib.vectors import predict

EQUIVALENT = 0.1
"""Dong et al.: theta does what one demonstration does where hypothesis - 1-shot ICL lies within +-0.1 (its whole
95% interval), and does not where the interval lies wholly outside."""
MANY_TO_ONE = 0.5
"""A task maps many inputs to one output where it has at most this share of distinct outputs per input."""
STEERS = 0.5
"""Nadaf: theta steers at a (task, layer) where its patched test accuracy there is at least this (the interval's
low end above it)."""
UNDECODABLE_TASKS = 3
"""Nadaf's account holds where at least this many testable tasks have a layer that steers with none of theta's top
words in the task's output space."""
KNN = 5
"""Neighbours in the k-NN decodability of the task from theta (as chapter 4 reads clustering)."""

RULES = {
    "dong_one_demo": f"mean hypothesis - 1-shot ICL within +-{EQUIVALENT} (its 95% interval over test contexts, "
                     "tasks fixed) holds; wholly outside fails; else undecided",
    "dong_rank_one": f"mean hypothesis/regular of many-to-one tasks (at most {MANY_TO_ONE} distinct outputs per "
                     "input) above that of one-to-one tasks, its 95% interval over tasks and contexts above 0",
    "han": "Spearman correlation of k-NN task decodability with patched test accuracy over (task, layer), its 95% "
           "interval over tasks above 0",
    "necessity": f"overwriting the -> state of full ICL prompts at L with another task's theta lowers ICL accuracy "
                 f"by at least {verdicts.MIN_GAIN} (the paired 95% interval over test contexts, tasks fixed)",
    "nadaf": f"at least {UNDECODABLE_TASKS} tasks with a layer where theta's patched accuracy is >= {STEERS} (its "
             f"interval's low end) and none of its top {defaults.PROJECTION_TOP} words is in the output space",
}
"""Each rule in words, built from the constants the code applies."""


# --------------------------------------------------------------------------- computing what the accounts read


def mapping_kind(task: Task) -> str:
    """'many-to-one' where the task has at most MANY_TO_ONE distinct outputs per input, else 'one-to-one'."""
    outputs = len({e.output for e in task.examples})
    return "many-to-one" if outputs <= MANY_TO_ONE * len(task.examples) else "one-to-one"


@torch.no_grad()
def layer_reads(lm: LM, tasks: list[Task], protocol: Protocol, top: int = defaults.PROJECTION_TOP,
                progress: bool = False) -> pd.DataFrame:
    """Per task and layer, from the main experiment's test contexts: how decodable the task is from theta (the share
    of its thetas whose k-NN majority among every task's thetas is its own task) and the share of the mean theta's
    top words in the task's output space, with those words."""
    thetas, labels = [], []
    for task in progress_bar(tasks, "thetas", progress):
        prepared, _, test = dev_and_test(lm, task, protocol)
        thetas.append(task_vectors(lm, prepared, test, protocol))
        labels += [task.name] * len(test)
    stacked = torch.cat(thetas)  # [all contexts, layers, d]
    lab = np.asarray(labels)
    rows = []
    for layer in range(lm.n_layers):
        votes = knn_votes(cosine_distances(stacked[:, layer].numpy()), labels, KNN)
        for task, own in zip(tasks, thetas):
            words = [w for w, _ in top_words(lm, own[:, layer].mean(0), top)]
            inside = [w for w in words if in_output_space(task.name, w)]
            rows.append({"task": task.name, "layer": layer,
                         "decodability": float(np.mean(votes[lab == task.name] == task.name)),
                         "words": len(words), "in output space": len(inside),
                         "share": len(inside) / len(words) if words else 0.0, "top words": " ".join(words[:8])})
    return pd.DataFrame(rows)


NECESSITY = ("another task's theta", "mean theta over tasks")
"""What overwrites the `->` state of a full ICL prompt at L in the necessity test."""


@torch.no_grad()
def necessity(lm: LM, tasks: list[Task], layers: dict[str, int], protocol: Protocol,
              progress: bool = False) -> pd.DataFrame:
    """Necessity, not only sufficiency: each task's full ICL test prompts with the `->` state at its L overwritten by
    the mean theta of the next task in `tasks` (cyclic), or by the mean of every task's mean theta, beside plain
    ICL on the same prompts. If theta is what ICL runs on at L, either overwrite should take the task away."""
    prepared = [dev_and_test(lm, task, protocol) for task in tasks]
    means = torch.stack([task_vectors(lm, p, test, protocol).mean(0) for p, _, test in prepared])  # [tasks, L, d]
    rows = []
    for i, (task, _, test) in enumerate(progress_bar(prepared, "necessity", progress)):
        layer = lm.check_layer(layers[task.name])
        texts = [protocol.fmt.render(c.demos, c.query.input, task.space) for c in test]
        states = {"none": None, NECESSITY[0]: means[(i + 1) % len(tasks), layer],
                  NECESSITY[1]: means[:, layer].mean(0)}
        for name, state in states.items():
            answers = predict(lm, texts, None if state is None else state.expand(len(texts), -1),
                              None if state is None else [layer] * len(texts), protocol.batch_size)
            rows += [{"task": task.name, "category": task.category, "overwritten by": name, "layer": layer,
                      "context": j, "expected": c.query.output, "prediction": p.strip(),
                      "correct": task.score(p, c.query), "margin": m}
                     for j, (c, p, m) in enumerate(zip(test, answers.texts(lm), answers.margins))]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- reading them


def testable(summary: pd.DataFrame) -> list[str]:
    """The tasks where ICL adds at least MIN_GAIN over the query alone, sorted."""
    return sorted(summary.loc[verdicts.testable(summary), "task"])


def one_shot(main: pd.DataFrame, shot: pd.DataFrame, tasks: list[str], n_boot: int = N_BOOT,
             seed: int = 0) -> dict:
    """Dong et al.'s first test: theta (5 demonstrations, L chosen on dev) against plain ICL with one demonstration,
    per task and averaged over `tasks`. The two run on different contexts, so each is resampled on its own."""
    hyp = replicates(main[main["task"].isin(tasks)], n_boot, seed)
    one = replicates(shot[shot["task"].isin(tasks)], n_boot, seed)
    point = summarize(main).set_index("task")["hypothesis"] - summarize(shot).set_index("task")["regular"]
    per_task = []
    for task in tasks:
        mine, theirs = hyp[hyp["task"] == task], one[one["task"] == task]
        diff = mine["hypothesis"].to_numpy() - theirs["regular"].to_numpy()
        per_task.append({"task": task, "hypothesis - 1-shot": point[task], **dict(zip(("low", "high"), bounds(diff)))})
    mean = (hyp.groupby("replicate")["hypothesis"].mean() - one.groupby("replicate")["regular"].mean()).to_numpy()
    value = float(point[tasks].mean()) if tasks else float("nan")
    ci = bounds(mean)
    outcome = verdicts.inside(value, (-EQUIVALENT, EQUIVALENT), ci) if tasks else verdicts.UNDECIDED
    return {"table": pd.DataFrame(per_task).round(3), "value": value, "ci": ci, "outcome": outcome}


def _ratio(a: float, b: float) -> float:
    """a / b, or NaN where ICL gives nothing to keep (b = 0)."""
    return a / b if b else float("nan")


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rho, NaN where either side is constant (a rank correlation is not defined there)."""
    from scipy.stats import spearmanr

    if x.nunique() < 2 or y.nunique() < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def rank_one(main: pd.DataFrame, kinds: dict[str, str], tasks: list[str], n_boot: int = N_BOOT,
             seed: int = 0) -> dict:
    """Dong et al.'s second test: hypothesis / regular of many-to-one tasks minus one-to-one tasks, each group's
    tasks drawn with replacement in every replicate and each drawn task's contexts resampled."""
    reps = replicates(main[main["task"].isin(tasks)], n_boot, seed)
    reps["ratio"] = reps["hypothesis"] / reps["regular"].where(reps["regular"] > 0)
    grid = reps.pivot(index="replicate", columns="task", values="ratio")
    summary = summarize(main).set_index("task")
    groups = {kind: [t for t in tasks if kinds[t] == kind] for kind in ("many-to-one", "one-to-one")}
    table = pd.DataFrame([{"task": t, "kind": kinds[t], "hypothesis / regular":
                           _ratio(summary.loc[t, "hypothesis"], summary.loc[t, "regular"])} for t in tasks])
    if not all(groups.values()):
        return {"table": table, "value": float("nan"), "ci": (float("nan"),) * 2, "outcome": verdicts.UNDECIDED,
                "groups": groups}
    rng = np.random.default_rng([seed, len(tasks)])
    means = {}
    for kind, names in groups.items():
        values = grid[names].to_numpy(float)
        pick = rng.integers(0, len(names), (len(values), len(names)))
        means[kind] = np.nanmean(values[np.arange(len(values))[:, None], pick], axis=1)
    diff = means["many-to-one"] - means["one-to-one"]
    by_kind = table.groupby("kind")["hypothesis / regular"].mean()
    value = float(by_kind["many-to-one"] - by_kind["one-to-one"])
    ci = bounds(diff[np.isfinite(diff)])
    return {"table": table.round(3), "value": value, "ci": ci, "outcome": verdicts.at_least(value, 0.0, ci),
            "groups": groups}


def sweep_accuracy(main: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per task and layer: theta's patched test accuracy with its 95% interval over test contexts."""
    test = main[(main["split"] == "test") & (main["method"] == "hypothesis")]
    rows = []
    for (task, layer), frame in test.groupby(["task", "layer"], sort=True):
        low, high = bounds(proportion_replicates(frame["correct"], n_boot, seed))
        rows.append({"task": task, "layer": int(layer), "accuracy": frame["correct"].mean(), "low": low, "high": high})
    return pd.DataFrame(rows)


def decodability(reads: pd.DataFrame, accuracy: pd.DataFrame, tasks: list[str], n_boot: int = N_BOOT,
                 seed: int = 0) -> dict:
    """Han et al.: the Spearman correlation of decodability with patched accuracy over every (task, layer) of
    `tasks`, with its interval over tasks (a replicate draws the tasks with replacement, each with all its layers)."""
    cells = reads.merge(accuracy, on=["task", "layer"])
    cells = cells[cells["task"].isin(tasks)]
    if cells["task"].nunique() < 2:
        return {"cells": cells, "value": float("nan"), "ci": (float("nan"),) * 2, "outcome": verdicts.UNDECIDED}
    value = spearman(cells["decodability"], cells["accuracy"])
    by_task = {t: f for t, f in cells.groupby("task")}
    rng = np.random.default_rng([seed, len(by_task)])
    names = sorted(by_task)
    reps = []
    for _ in range(n_boot):
        drawn = pd.concat([by_task[names[i]] for i in rng.integers(0, len(names), len(names))])
        reps.append(spearman(drawn["decodability"], drawn["accuracy"]))
    reps = np.asarray(reps, float)
    ci = bounds(reps[np.isfinite(reps)])
    return {"cells": cells, "value": value, "ci": ci, "outcome": verdicts.at_least(value, 0.0, ci)}


def steerable_not_decodable(reads: pd.DataFrame, accuracy: pd.DataFrame, tasks: list[str]) -> dict:
    """Nadaf: per task, the layers where theta steers (accuracy interval's low end >= STEERS) and which of them show
    none of the task in theta's top words; the account holds where UNDECODABLE_TASKS tasks have such a layer."""
    cells = reads.merge(accuracy, on=["task", "layer"])
    cells = cells[cells["task"].isin(tasks)]
    steers = cells[cells["low"] >= STEERS]
    open_ = cells[(cells["accuracy"] >= STEERS) & (cells["low"] < STEERS)]  # could steer with more contexts
    silent = steers[steers["in output space"] == 0]
    maybe = open_[open_["in output space"] == 0]
    decided = silent["task"].nunique()
    undecided = len(set(maybe["task"]) - set(silent["task"]))
    table = pd.DataFrame([{"task": t, "layers that steer": int((steers["task"] == t).sum()),
                           "of them showing nothing": int((silent["task"] == t).sum()),
                           "best share where it steers": float(steers.loc[steers["task"] == t, "share"].max())
                           if (steers["task"] == t).any() else float("nan")} for t in tasks])
    return {"table": table, "cells": cells, "tasks": decided,
            "outcome": verdicts.count_reaches(decided, undecided, UNDECODABLE_TASKS)}


# --------------------------------------------------------------------------- what the page says


def signed(value: float, ci: tuple[float, float]) -> str:
    """'+0.12 [+0.03, +0.20]', or why there is no number."""
    if not np.isfinite(value):
        return "undefined (too few tasks or a constant measure)"
    interval = f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if np.isfinite(ci[0]) and np.isfinite(ci[1]) else "(no interval)"
    return f"{value:+.2f} {interval}"


def say_one_shot(found: dict, n_tasks: int) -> str:
    """Dong et al.'s first test in one sentence, with its outcome."""
    return (f"Theta as one demonstration (Dong et al.): over the {n_tasks} tasks read, hypothesis minus 1-shot "
            f"ICL is {signed(found['value'], found['ci'])}; by the rule ({RULES['dong_one_demo']}) the account "
            f"{found['outcome']}.")


def say_rank_one(found: dict) -> str:
    """Dong et al.'s second test in one sentence, with its outcome."""
    sizes = ", ".join(f"{len(v)} {k}" for k, v in found["groups"].items())
    return (f"Rank-one mappings (Dong et al.): hypothesis/regular of many-to-one minus one-to-one tasks is "
            f"{signed(found['value'], found['ci'])} ({sizes} tasks read); by the rule "
            f"({RULES['dong_rank_one']}) the account {found['outcome']}.")


def say_decodability(found: dict) -> str:
    """Han et al.'s test in one sentence, with its outcome."""
    n = found["cells"]["task"].nunique()
    return (f"Decodability predicts accuracy (Han et al.): over {len(found['cells'])} (task, layer) cells of {n} "
            f"tasks read, Spearman's rho is {signed(found['value'], found['ci'])}; by the rule "
            f"({RULES['han']}) the account {found['outcome']}.")


def say_steerable(found: dict) -> str:
    """Nadaf's test in one sentence, with its outcome."""
    return (f"Steerable but not decodable (Nadaf): {found['tasks']} of the tasks read have a layer where theta steers "
            f"and its top words show nothing of the task; by the rule ({RULES['nadaf']}) the account "
            f"{found['outcome']}.")


def say_scope(found: dict) -> str:
    """Over what the numbers are taken."""
    over = (f"the {len(found['tasks'])} tasks where ICL adds at least {verdicts.MIN_GAIN} over the query alone "
            "(elsewhere theta has no task to carry)" if found["decides"] else
            f"all {len(found['tasks'])} tasks, since on none does ICL add {verdicts.MIN_GAIN} over the query alone "
            "(so no account can be decided)")
    return (f"Every account is read over {over}; intervals are bootstrap 95% intervals over "
            "test contexts, and over tasks too where the rule says so; an outcome is "
            f"'{verdicts.HOLDS}', '{verdicts.FAILS}' or '{verdicts.UNDECIDED}'.")


def necessary(rows: pd.DataFrame, tasks: list[str]) -> dict:
    """How far ICL falls when the `->` state at L is overwritten, per task and averaged over `tasks`, read from paired
    intervals (each task's test contexts resampled alike for every overwrite)."""
    from tvlib.intervals import fixed

    mine = rows[rows["task"].isin(tasks)].assign(method="regular")
    table, reps = fixed(mine, "overwritten by")
    order = {name: i for i, name in enumerate(("none", *NECESSITY))}
    table = table.sort_values("overwritten by", key=lambda c: c.map(order), kind="stable")
    mean = table[table["task"] == "mean"].set_index("overwritten by")["accuracy"]
    falls = {}
    for name in NECESSITY:
        diff = reps[("regular", "none")].to_numpy() - reps[("regular", name)].to_numpy()
        falls[name] = {"value": float(mean["none"] - mean[name]), "ci": bounds(diff)}
    other = falls[NECESSITY[0]]
    outcome = verdicts.at_least(other["value"], verdicts.MIN_GAIN, other["ci"]) if tasks else verdicts.UNDECIDED
    return {"table": table.round(3), "falls": falls, "value": other["value"], "ci": other["ci"], "outcome": outcome}


def say_necessity(found: dict) -> str:
    """The necessity test in one sentence, with its outcome."""
    falls = found["falls"]
    return (f"Necessity: overwriting the `->` state of the full ICL prompts at L lowers ICL by "
            f"{signed(falls[NECESSITY[0]]['value'], falls[NECESSITY[0]]['ci'])} with another task's theta and by "
            f"{signed(falls[NECESSITY[1]]['value'], falls[NECESSITY[1]]['ci'])} with the mean theta over tasks; by "
            f"the rule ({RULES['necessity']}) theta at L is necessary: {found['outcome']}.")


def layer_panels(reads: pd.DataFrame, accuracy: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Per testable task and layer, the three curves the page draws (columns task, series, layer, accuracy, low,
    high): patched accuracy with its interval, decodability and output-space share (measured once: no interval);
    and their mean over the tasks (task 'mean')."""
    cells = reads.merge(accuracy, on=["task", "layer"])
    cells = cells[cells["task"].isin(tasks)]
    parts = [cells.assign(series="patched accuracy")[["task", "series", "layer", "accuracy", "low", "high"]]]
    for column, name in (("decodability", "k-NN decodability"), ("share", "output-space share")):
        parts.append(cells.assign(series=name, accuracy=cells[column], low=cells[column], high=cells[column])
                     [["task", "series", "layer", "accuracy", "low", "high"]])
    long = pd.concat(parts, ignore_index=True)
    mean = long.groupby(["series", "layer"], as_index=False)[["accuracy", "low", "high"]].mean().assign(task="mean")
    return pd.concat([long, mean[long.columns]], ignore_index=True)


def models_table(found_by_model: dict[str, dict]) -> pd.DataFrame:
    """Each account's number and outcome per model, side by side."""
    columns = {}
    for model, found in found_by_model.items():
        cells = {}
        for name, key in (("Dong: hypothesis - 1-shot ICL", "one_shot"), ("Dong: many-to-one - one-to-one ratio",
                                                                           "rank_one"),
                          ("Han: Spearman rho, decodability vs accuracy", "han")):
            cells[name] = f"{signed(found[key]['value'], found[key]['ci'])}: {found[key]['outcome']}"
        cells["Nadaf: tasks steerable with nothing decoded"] = f"{found['nadaf']['tasks']}: {found['nadaf']['outcome']}"
        necessity = found["necessity"]
        cells["Necessity: ICL fall with another task's theta at L"] = (
            f"{signed(necessity['value'], necessity['ci'])}: {necessity['outcome']}")
        cells["tasks read"] = str(len(found["tasks"]))
        columns[model] = cells
    return pd.DataFrame(columns).rename_axis("account")


def read_all(main: pd.DataFrame, shot: pd.DataFrame, reads: pd.DataFrame, overwritten: pd.DataFrame) -> dict:
    """Every account on one model's stored results: the page's tables, numbers and outcomes."""
    from tvlib.tasks import load_task

    summary = summarize(main)
    tasks = testable(summary)
    decides = bool(tasks)
    tasks = tasks or sorted(summary["task"])  # no testable task: every task, so the page still draws
    accuracy = sweep_accuracy(main)
    kinds = {t: mapping_kind(load_task(t)) for t in summary["task"]}
    found = {"tasks": tasks, "decides": decides, "one_shot": one_shot(main, shot, tasks),
             "rank_one": rank_one(main, kinds, tasks), "han": decodability(reads, accuracy, tasks),
             "nadaf": steerable_not_decodable(reads, accuracy, tasks), "panels": layer_panels(reads, accuracy, tasks),
             "necessity": necessary(overwritten, tasks), "kinds": kinds}
    if not decides:
        for key in ("one_shot", "rank_one", "han", "nadaf", "necessity"):
            found[key]["outcome"] = verdicts.UNDECIDED
    return found

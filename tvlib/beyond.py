"""Questions the paper leaves open, asked with its own machinery: how many demonstrations theta needs, whether a
task's theta averaged over many contexts works as well as a per-context one, whether theta carries over to another
prompt format, and what if theta is added to the query's state instead of replacing it."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from tvlib.experiments import Protocol, _rows, evaluate_task, prepare, summarize, task_vectors
from tvlib.models import LM
from tvlib.prompts import PAPER_FORMAT, PromptFormat, sample_contexts
from tvlib.tasks import Task
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


def _setup(lm: LM, task: Task, protocol: Protocol):
    """The task as this tokenizer sees it, its dev and test contexts (the main experiment's), and bare test queries."""
    task = prepare(lm, task, protocol)
    dev = sample_contexts(task, protocol.n_dev, protocol.demos, protocol.seed, "dev", protocol.n_dummy)
    test = sample_contexts(task, protocol.n_test, protocol.demos, protocol.seed, "test", protocol.n_dummy)
    bare = [protocol.fmt.render((), c.query.input, task.space) for c in test]
    return task, dev, test, bare


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
    the paper's replacement (alpha NaN). Tidy rows with the column `alpha`."""
    task, _, test, bare = _setup(lm, task, protocol)
    lm.check_layer(layer)
    thetas = task_vectors(lm, task, test, protocol)[:, layer]
    queries, layers = [c.query for c in test], [layer] * len(test)
    frames = [_rows(lm, task, "replace", queries, predict(lm, bare, thetas, layers, protocol.batch_size), bare,
                    layer).assign(alpha=float("nan"))]
    for alpha in alphas:
        answers = predict(lm, bare, thetas, layers, protocol.batch_size, alpha=alpha)
        frames.append(_rows(lm, task, "add", queries, answers, bare, layer).assign(alpha=float(alpha)))
    return pd.concat(frames, ignore_index=True).assign(category=task.category)


def accuracy(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Accuracy per task, method and `by` (averaged, alpha): the numbers a figure or a sentence reads."""
    return (frame.groupby(["task", "method", by], dropna=False)["correct"].mean().rename("accuracy")
            .reset_index())


def by_demonstrations(lm: LM, task: Task, protocol: Protocol = Protocol(),
                      counts: tuple[int, ...] = DEMONSTRATIONS) -> pd.DataFrame:
    """The main experiment at each number of demonstrations k (L re-chosen on dev contexts for each k): one row per
    k with baseline, regular, hypothesis and L, as `summarize` gives them. Counts the task cannot fill are skipped."""
    rows = []
    for k in counts:
        if k + 1 > len(prepare(lm, task, replace(protocol, demos=1)).examples):
            continue
        rows.append(summarize(evaluate_task(lm, task, replace(protocol, demos=k))).assign(demos=k))
    return pd.concat(rows, ignore_index=True)


def format_transfer(lm: LM, task: Task, layer: int, protocol: Protocol = Protocol(),
                    formats: dict[str, PromptFormat] = FORMATS) -> pd.DataFrame:
    """Theta built from demonstrations in one format (`source`), patched at `layer` into the bare query of another
    (`target`), for every pair: is theta a property of the task or of the format? Tidy rows per query."""
    lm.check_layer(layer)
    frames = []
    for source, fmt in formats.items():
        task_s, _, test, _ = _setup(lm, task, replace(protocol, fmt=fmt))
        thetas = task_vectors(lm, task_s, test, replace(protocol, fmt=fmt))[:, layer]
        for target, other in formats.items():
            bare = [other.render((), c.query.input, task_s.space) for c in test]
            answers = predict(lm, bare, thetas, [layer] * len(test), protocol.batch_size)
            frames.append(_rows(lm, task_s, "hypothesis", [c.query for c in test], answers, bare, layer)
                          .assign(source=source, target=target))
    return pd.concat(frames, ignore_index=True).assign(category=task.category)

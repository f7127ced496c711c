"""Questions the paper leaves open, asked with its own machinery: does a task's theta averaged over many contexts
work as well as a per-context one, and what if theta is added to the query's state instead of replacing it?"""

from __future__ import annotations

import pandas as pd

from tvlib.experiments import Protocol, _rows, prepare, task_vectors
from tvlib.models import LM
from tvlib.prompts import sample_contexts
from tvlib.tasks import Task
from tvlib.vectors import predict

AVERAGED = (1, 2, 5, 10, 25, 50)
"""How many dev contexts a task's mean theta averages over."""
ALPHAS = (0.5, 1.0, 2.0, 4.0)
"""Strengths of theta added to the query's state."""


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

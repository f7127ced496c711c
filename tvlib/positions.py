"""Where in the dummy prompt the task sits: the state of each position (not only the last `->`) at each layer,
written into the bare query's last position, as activation-patching maps read a prompt position by layer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from tvlib.errors import TvlibError
from tvlib.experiments import Protocol, dev_and_test, targets
from tvlib.intervals import N_BOOT, bounds
from tvlib.models import LM
from tvlib.progress import progress_bar
from tvlib.prompts import Context, PromptFormat
from tvlib.tasks import Example, Task
from tvlib.vectors import block_hooks, sweep

CONTEXTS = 20
"""Test contexts per task in the map: 22 positions x every layer x 20 contexts is 7,920 patched queries per task
on Gemma 3 270M (a sixth of the main experiment's contexts would give intervals too wide to read a cell)."""

FINAL = "->"
"""The last position of the dummy prompt: the paper's theta."""


def role_names(demos: int) -> list[str]:
    """The positions read, in prompt order: per demonstration its input x, arrow, output y and separator, then the
    dummy query x' and the final arrow."""
    per = [f"{part} {k}" for k in range(1, demos + 1) for part in ("x", "arrow", "y", "sep")]
    return [*per, "x'", FINAL]


def _slots(template: str, has_y: bool) -> tuple[str, str, str]:
    """A template cut at its slots: before {x}, between {x} and {y} (or after {x}), after {y}."""
    if template.count("{x}") != 1 or template.count("{y}") != int(has_y):
        raise TvlibError(f"the position map needs a template with one {{x}}{' and one {y}' if has_y else ''}: "
                         f"{template!r}")
    head, rest = template.split("{x}")
    if not has_y:
        return head, rest, ""
    mid, tail = rest.split("{y}")
    if not mid:
        raise TvlibError(f"the position map needs text between {{x}} and {{y}} (the arrow): {template!r}")
    return head, mid, tail


def role_spans(fmt: PromptFormat, demos: tuple[Example, ...], x: str, space: bool) -> dict[str, tuple[int, int]]:
    """Each role's character span in `fmt.render(demos, x, space)` (checked against it), in `role_names` order."""
    sp = " " if space else ""
    demo, query = fmt.templates(space)
    (head, mid, tail), (q_head, q_arrow, _) = _slots(demo, True), _slots(query, False)
    if not q_arrow:
        raise TvlibError(f"the position map needs text after {{x}} in the query template (the arrow): {query!r}")
    text, spans = fmt.prefix, {}

    def put(name: str, piece: str) -> None:
        nonlocal text
        spans[name] = (len(text), len(text) + len(piece))
        text += piece

    for k, example in enumerate(demos, 1):
        text += head
        put(f"x {k}", sp + example.input), put(f"arrow {k}", mid), put(f"y {k}", sp + example.output)
        text += tail
        put(f"sep {k}", fmt.sep)
    text += q_head
    put("x'", sp + x), put(FINAL, q_arrow)
    if text != fmt.render(demos, x, space):
        raise TvlibError("the position map could not follow this prompt format; use the paper's format")
    return spans


def role_positions(tokenizer, fmt: PromptFormat, demos: tuple[Example, ...], x: str, space: bool) -> list[int]:
    """Each role's token: the last token that overlaps its characters (a fast tokenizer's offsets)."""
    if not getattr(tokenizer, "is_fast", False):
        raise TvlibError("the position map needs a fast tokenizer (its character offsets); load the model's "
                         "tokenizer.json, or use AutoTokenizer with use_fast=True")
    text = fmt.render(demos, x, space)
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    positions = []
    for name, (start, end) in role_spans(fmt, demos, x, space).items():
        hits = [i for i, (a, b) in enumerate(offsets) if a < end and b > start and b > a]
        if not hits:
            raise TvlibError(f"no token covers {name!r} in {text!r}")
        positions.append(hits[-1])
    return positions


@torch.no_grad()
def position_states(lm: LM, task: Task, contexts: list[Context], protocol: Protocol) -> torch.Tensor:
    """The state after every block at every role's token, averaged over each context's dummy prompts as theta is:
    [contexts, roles, n_layers, d] (float32, CPU); the last role is the paper's theta."""
    out = []
    for context in contexts:
        per_dummy = []
        for dummy in context.dummies:
            text = protocol.fmt.render(context.demos, dummy.input, task.space)
            where = torch.tensor(role_positions(lm.tokenizer, protocol.fmt, context.demos, dummy.input, task.space))
            states: dict[int, torch.Tensor] = {}

            def keep(layer: int):
                def hook(hidden: torch.Tensor) -> None:
                    states[layer] = hidden[0, where.to(hidden.device)].float().cpu()
                return hook
            batch = lm.tokenizer([text], return_tensors="pt").to(lm.device)
            with block_hooks(lm, {layer: keep(layer) for layer in range(lm.n_layers)}):
                lm.model(**batch, use_cache=False)
            per_dummy.append(torch.stack([states[i] for i in range(lm.n_layers)], dim=1))  # [roles, L, d]
        out.append(torch.stack(per_dummy).mean(0))
    return torch.stack(out)


def position_map(lm: LM, task: Task, protocol: Protocol = Protocol(), n: int = CONTEXTS,
                 progress: bool = False) -> pd.DataFrame:
    """One task's map: for its first `n` test contexts, each role's state at each layer written into the bare
    query's last position at that layer. One row per (role, layer, context): correct, margin, logprob, logit_diff."""
    task, _, test = dev_and_test(lm, task, protocol)
    contexts = test[:n]
    states = position_states(lm, task, contexts, protocol)
    bare = [protocol.fmt.render((), c.query.input, task.space) for c in contexts]
    queries = [c.query for c in contexts]
    layers = list(range(lm.n_layers))
    wanted = targets(lm, task, queries, repeat=len(layers))
    frames = []
    for r, role in enumerate(progress_bar(role_names(protocol.demos), "positions", progress)):
        answers = sweep(lm, bare, states[:, r], layers, protocol.batch_size, targets=wanted)
        texts = answers.texts(lm)
        frames.append(pd.DataFrame({
            "task": task.name, "category": task.category, "role": role, "order": r,
            "layer": [layer for layer in layers for _ in contexts], "context": list(range(len(contexts))) * len(layers),
            "expected": [q.output for q in queries] * len(layers), "prediction": [t.strip() for t in texts],
            "correct": [task.score(t, q) for t, q in zip(texts, queries * len(layers))],
            "margin": answers.margins, "logprob": answers.measures["logprob"],
            "logit_diff": answers.measures["logit_diff"]}))
    return pd.concat(frames, ignore_index=True)


def cells(frame: pd.DataFrame, measure: str = "correct") -> pd.DataFrame:
    """Mean of `measure` per (role, layer), over tasks and contexts: the map a heatmap draws (roles in prompt
    order as rows, layers as columns)."""
    table = frame.groupby(["order", "role", "layer"])[measure].mean().reset_index()
    wide = table.pivot(index=["order", "role"], columns="layer", values=measure).sort_index()
    wide.index = wide.index.get_level_values("role")
    return wide



def at_layers(frame: pd.DataFrame, layers: dict[str, int], n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Each role's accuracy with its state taken at each task's own L, mean over tasks, and its paired difference
    from the final arrow's (the same contexts): a replicate redraws each task's contexts, the tasks held fixed."""
    rows = frame[frame["layer"] == frame["task"].map(layers)]
    grid = rows.pivot_table(index=["task", "context"], columns="role", values="correct", aggfunc="mean")
    tasks = grid.index.get_level_values("task")
    rng = np.random.default_rng([seed, len(set(tasks))])
    draws = []
    for task in sorted(set(tasks)):
        where = np.flatnonzero(tasks == task)
        draws.append(where[rng.integers(0, len(where), (n_boot, len(where)))])
    order = list(dict.fromkeys(frame.sort_values("order", kind="stable")["role"]))

    def task_means(values: np.ndarray) -> np.ndarray:  # [n_boot] mean over tasks of each task's resampled mean
        return np.mean([values[d].mean(1) for d in draws], axis=0)

    final = grid[FINAL].to_numpy(float)
    out = []
    for role in order:
        mine = grid[role].to_numpy(float)
        point = float(np.mean([mine[tasks == t].mean() for t in sorted(set(tasks))]))
        gap = point - float(np.mean([final[tasks == t].mean() for t in sorted(set(tasks))]))
        (low, high), (gap_low, gap_high) = bounds(task_means(mine)), bounds(task_means(mine - final))
        out.append({"role": role, "accuracy": point, "low": low, "high": high, "minus final arrow": gap,
                    "gap low": gap_low, "gap high": gap_high})
    return pd.DataFrame(out)


def say_positions(table: pd.DataFrame, n_tasks: int) -> str:
    """Which positions carry the task at L, in one sentence from the table."""
    final = table[table["role"] == FINAL].iloc[0]
    others = table[table["role"] != FINAL].sort_values("accuracy", ascending=False)
    best = others.iloc[0]
    below = int((others["gap high"] < 0).sum())
    level = [r for r, high in zip(others["role"], others["gap high"]) if high >= 0]
    return (f"Over {n_tasks} tasks, with each position's state taken at the task's own L, the final arrow gives "
            f"{final['accuracy']:.2f} [{final['low']:.2f}, {final['high']:.2f}]; the best other position is "
            f"'{best['role']}' at {best['accuracy']:.2f} [{best['low']:.2f}, {best['high']:.2f}] "
            f"({best['minus final arrow']:+.2f} [{best['gap low']:+.2f}, {best['gap high']:+.2f}] against the arrow, "
            f"paired); {below} of the {len(others)} other positions fall below the arrow by a paired bootstrap 95% "
            "interval over test contexts (tasks fixed)"
            + (f", and {', '.join(repr(r) for r in level)} cannot be told from it." if 0 < len(level) <= 4 else
               f", and {len(level)} cannot be told from it." if level else "."))


def read_all(frame: pd.DataFrame, layers: dict[str, int], n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """The map's cells (mean accuracy over tasks and contexts), each role at each task's L against the final arrow,
    and the sentence."""
    table = at_layers(frame, layers, n_boot, seed)
    return {"cells": cells(frame), "table": table, "tasks": sorted(frame["task"].unique()),
            "sentence": say_positions(table, frame["task"].nunique())}

"""Answers of several tokens: theta's effect on a whole generated answer, scored whole and by the paper's first token.

The paper scores one greedy token. Here every pair of a task is kept (`tasks.whole_answers`), each answer is
generated to its end (`generation.generate`), and four rules score it side by side (`RULES`): the paper's rule on the
first token (`Task.score`), the first token as the start of the answer, the generation beginning with the whole
answer, and the whole answer exactly (`Task.score_whole`).
L is chosen per patch (prefill only, or every step) on the dev contexts by whole-answer accuracy (`chosen_layer`).
"""

from __future__ import annotations

import pandas as pd

from tvlib.experiments import Protocol, task_vectors
from tvlib.generation import MAX_NEW_TOKENS, PATCHES, Generations, generate
from tvlib.models import LM
from tvlib.prompts import Context, sample_contexts, sample_queries
from tvlib.tasks import Example, Task, answer_length, load_task, whole_answers

RULES = {"first token": "correct_first", "answer start": "correct_start", "answer leads": "correct_lead",
         "whole answer": "correct_whole"}
"""The scoring rules and the frame's column of each: the paper's rule on the first token; the first token starts
the answer; the generation begins with the whole answer (and may go on past it); exactly the whole answer."""

MIN_SPLIT = 20
"""A task enters the chapter where at least this many of its answers take several tokens for the tokenizer: enough
for a few of its 50 test queries to have one."""


def _lengths(task: Task, tokenizer) -> list[int]:
    """Each answer's length in tokens, as the task's prompts space it."""
    spaced = whole_answers(task, tokenizer)
    return [answer_length(tokenizer, spaced, e) for e in spaced.examples]


def split_count(task: Task, tokenizer) -> int:
    """How many of the task's answers take several tokens for this tokenizer (as its prompts space them)."""
    return sum(n > 1 for n in _lengths(task, tokenizer))


def answer_lengths(tokenizer, names: list[str]) -> pd.DataFrame:
    """Per task: its pairs, how many answers take several tokens for this tokenizer, and the longest answer in
    tokens (as its prompts space them): what decides which tasks the Several tokens chapter runs on."""
    rows = []
    for name in names:
        lengths = _lengths(load_task(name), tokenizer)
        rows.append({"task": name, "pairs": len(lengths), "several_tokens": sum(n > 1 for n in lengths),
                     "longest": max(lengths, default=0)})
    return pd.DataFrame(rows, columns=["task", "pairs", "several_tokens", "longest"])


def split_tasks(lengths: pd.DataFrame, names: list[str], minimum: int = MIN_SPLIT) -> list[str]:
    """The tasks of `names` whose answers split for the tokenizer (at least `minimum` of them, read from
    `answer_lengths`), in the order given."""
    several = dict(zip(lengths["task"], lengths["several_tokens"]))
    return [name for name in names if several.get(name, 0) >= minimum]


def _starts(prediction: str, example: Example) -> bool:
    """The first token is the start of an answer (the paper's knowledge rule, for every category)."""
    pred = prediction.strip()
    return bool(pred) and any(a.startswith(pred) for a in example.answers)


def _leads(generated: str, example: Example) -> bool:
    """The generation begins with a whole answer, ended there or by a character that cannot continue a word: the
    answer is carried, whether or not the model then stops."""
    text = generated.strip()
    return any(text.startswith(a) and (len(text) == len(a) or not text[len(a)].isalnum()) for a in example.answers)


def _rows(lm: LM, task: Task, split: str, method: str, patch: str, layer: int | None, queries: list[Example],
          out: Generations, prompts: list[str]) -> pd.DataFrame:
    """One row per generated answer, scored by every rule of `RULES`."""
    texts, firsts = out.texts(lm), out.first(lm)
    return pd.DataFrame({
        "task": task.name, "category": task.category, "split": split, "method": method, "patch": patch,
        "layer": layer, "context": range(len(queries)), "query": [q.input for q in queries],
        "expected": [q.output for q in queries],
        "answer_tokens": [answer_length(lm.tokenizer, task, q) for q in queries],
        "generated": [t.strip() for t in texts], "first": [f.strip() for f in firsts],
        "correct_first": [task.score(f, q) for f, q in zip(firsts, queries)],
        "correct_start": [_starts(f, q) for f, q in zip(firsts, queries)],
        "correct_lead": [_leads(t, q) for t, q in zip(texts, queries)],
        "correct_whole": [task.score_whole(t, q) for t, q in zip(texts, queries)],
        "stopped": out.stopped, "margin": out.margins, "prompt": prompts,
    })


def _patched(lm: LM, task: Task, contexts: list[Context], thetas, layers: list[int], patch: str,
             protocol: Protocol, max_new_tokens: int, split: str) -> pd.DataFrame:
    """Bare queries with theta written at each layer of `layers` (all contexts at each), answers generated."""
    bare = [protocol.fmt.render((), c.query.input, task.space) for c in contexts]
    n = len(contexts)
    out = generate(lm, bare * len(layers), thetas[:, layers].transpose(0, 1).reshape(n * len(layers), -1),
                   [layer for layer in layers for _ in range(n)], patch, max_new_tokens, protocol.batch_size,
                   protocol.progress, f"theta ({patch}, {split})")
    queries = [c.query for c in contexts]
    parts = []
    for i, layer in enumerate(layers):
        part = Generations(out.ids[i * n:(i + 1) * n], out.margins[i * n:(i + 1) * n], out.stopped[i * n:(i + 1) * n])
        parts.append(_rows(lm, task, split, "hypothesis", patch, layer, queries, part, bare))
    return pd.concat(parts, ignore_index=True)


def whole_curve(frame: pd.DataFrame, patch: str) -> pd.DataFrame:
    """Dev accuracy per layer of one patch, by each rule (columns layer, then one per rule)."""
    dev = frame[(frame["split"] == "dev") & (frame["patch"] == patch)]
    columns = {column: rule for rule, column in RULES.items()}
    return dev.groupby("layer", as_index=False)[list(columns)].mean().rename(columns=columns)


def chosen_layer(curve: pd.DataFrame) -> int:
    """The layer of best whole-answer dev accuracy; a tie (all zero, say, where no layer gives a whole answer) goes
    to the best start of the answer, then to the lowest layer, so a tie never falls to layer 0 by default alone."""
    ordered = curve.sort_values("layer")
    keys = list(zip(ordered["whole answer"], ordered["answer start"]))
    return int(ordered["layer"].iloc[max(range(len(keys)), key=lambda i: (keys[i], -i))])


def evaluate_task(lm: LM, task: Task, protocol: Protocol = Protocol(), max_new_tokens: int = MAX_NEW_TOKENS,
                  patches: tuple[str, ...] = PATCHES) -> pd.DataFrame:
    """The main experiment with whole answers: the query alone, ICL, and theta by each patch swept over every layer
    on dev contexts, then at the layer of best whole-answer dev accuracy (`chosen_layer`) on test contexts."""
    task = whole_answers(task, lm.tokenizer, min_examples=protocol.demos + 1)
    dev = sample_contexts(task, protocol.n_dev, protocol.demos, protocol.seed, "dev", protocol.n_dummy)
    test = sample_contexts(task, protocol.n_test, protocol.demos, protocol.seed, "test", protocol.n_dummy)
    queries = sample_queries(task, protocol.n_baseline, protocol.seed)
    bare = [protocol.fmt.render((), q.input, task.space) for q in queries]
    icl = [protocol.fmt.render(c.demos, c.query.input, task.space) for c in test]
    parts = [
        _rows(lm, task, "baseline", "baseline", "none", None, queries,
              generate(lm, bare, max_new_tokens=max_new_tokens, batch_size=protocol.batch_size,
                       progress=protocol.progress, desc="query alone"), bare),
        _rows(lm, task, "test", "regular", "none", None, [c.query for c in test],
              generate(lm, icl, max_new_tokens=max_new_tokens, batch_size=protocol.batch_size,
                       progress=protocol.progress, desc="ICL"), icl),
    ]
    dev_thetas, test_thetas = task_vectors(lm, task, dev, protocol), task_vectors(lm, task, test, protocol)
    for patch in patches:
        swept = _patched(lm, task, dev, dev_thetas, list(range(lm.n_layers)), patch, protocol, max_new_tokens, "dev")
        layer = chosen_layer(whole_curve(swept, patch))
        parts += [swept, _patched(lm, task, test, test_thetas, [layer], patch, protocol, max_new_tokens, "test")]
    return pd.concat(parts, ignore_index=True)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per task, method and patch: test accuracy by each rule (and the dev-chosen layer of a patch)."""
    test = frame[frame["split"] != "dev"]
    columns = {column: rule for rule, column in RULES.items()}
    out = (test.groupby(["task", "category", "method", "patch"], sort=False, dropna=False)
           .agg(**{rule: (column, "mean") for column, rule in columns.items()}, layer=("layer", "first"),
                n=("context", "size")).reset_index())
    return out

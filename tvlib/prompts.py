"""Prompt format, reproducible context sampling, and left-padded batches with correct position ids."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from tvlib.errors import TvlibError
from tvlib.tasks import Example, Task


@dataclass(frozen=True)
class PromptFormat:
    """The paper's `example:{x}->{y}` lines joined by newlines; every piece is configurable."""

    demo: str = "example:{x}->{y}"
    query: str = "example:{x}->"
    sep: str = "\n"
    prefix: str = ""

    def render(self, demos: tuple[Example, ...], x: str, space: bool = False) -> str:
        """Demonstrations then the query; with `space`, x and y get a leading space (the tokenizer's choice), which
        a template that already has one before the slot (`Q: {x}`) keeps single."""
        sp = " " if space else ""
        demo, query = self.templates(space)
        lines = [demo.format(x=sp + d.input, y=sp + d.output) for d in demos]
        return self.prefix + self.sep.join([*lines, query.format(x=sp + x)])

    def templates(self, space: bool = False) -> tuple[str, str]:
        """The demonstration and query templates as `render` fills them (values with a space bring their own)."""
        return (_one_space(self.demo), _one_space(self.query)) if space else (self.demo, self.query)


def _one_space(template: str) -> str:
    """The template without the space before {x} and {y}, for values that bring their own."""
    return template.replace(" {x}", "{x}").replace(" {y}", "{y}")


PAPER_FORMAT = PromptFormat()


@dataclass(frozen=True)
class Context:
    """One sampled episode: k demonstrations, the test query, and dummy queries x' for building theta."""

    demos: tuple[Example, ...]
    query: Example
    dummies: tuple[Example, ...]


def sample_contexts(task: Task, n: int, demos: int, seed: int, split: str = "test", n_dummy: int = 2,
                    dummy_pool: Sequence[Example] | None = None) -> list[Context]:
    """`n` contexts drawn from the sorted examples with a generator keyed by (seed, task, split): reproducible anywhere.

    The query never appears among its demos, and no dummy query equals the test query. Dummy queries come from the
    task's own examples, or from `dummy_pool` (the conflicting-tasks experiment reads B's demos through A's inputs).
    """
    pool = sorted(task.examples, key=lambda e: e.input)
    if len(pool) < demos + 1:
        raise TvlibError(f"task {task.name} has {len(pool)} usable examples; {demos} demos + 1 query need "
                         f"{demos + 1}. Use fewer demos or add examples.")
    rng = random.Random(f"{seed}:{task.name}:{split}")
    outside = None if dummy_pool is None else sorted(dummy_pool, key=lambda e: e.input)
    contexts = []
    for _ in range(n):
        query = pool[rng.randrange(len(pool))]
        others = [e for e in pool if e.input != query.input]
        chosen = rng.sample(others, demos)
        if dummy_pool is None:
            candidates = others if len(others) >= n_dummy else pool
        else:
            candidates = [e for e in outside if e.input != query.input]
        dummies = rng.sample(candidates, n_dummy) if n_dummy else []
        contexts.append(Context(tuple(chosen), query, tuple(dummies)))
    return contexts


def sample_queries(task: Task, n: int, seed: int, split: str = "baseline") -> list[Example]:
    """`n` queries for the zero-shot baseline (without replacement while the task has enough)."""
    pool = sorted(task.examples, key=lambda e: e.input)
    rng = random.Random(f"{seed}:{task.name}:{split}")
    if n <= len(pool):
        return rng.sample(pool, n)
    return [pool[rng.randrange(len(pool))] for _ in range(n)]


@dataclass
class Batch:
    """Token ids, attention mask and position ids for left-padded prompts: the last position is every prompt's end."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device))

    def kwargs(self) -> dict:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}


def encode(tokenizer, texts: list[str]) -> Batch:
    """Left-pad and derive position ids from the mask, so a batched prompt matches the prompt alone (GPT-2 too)."""
    enc = tokenizer(list(texts), return_tensors="pt", padding=True)
    mask = enc["attention_mask"]
    if tokenizer.padding_side != "left" and bool((mask[:, -1] == 0).any()):
        raise TvlibError("the tokenizer pads on the right; wrap the model with tvlib.models.wrap first")
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(enc["input_ids"], mask, positions)


def first_token(tokenizer, fmt: PromptFormat = PAPER_FORMAT) -> dict:
    """What every prompt starts with once tokenized: the first token of a bare query, and whether it is a special
    token the tokenizer adds (a BOS) rather than the prompt's own first piece."""
    ids = tokenizer(fmt.render((), "x"))["input_ids"]
    return {"token": tokenizer.convert_ids_to_tokens(ids[0]), "special": ids[0] in tokenizer.all_special_ids}


def chunks(items: list, size: int) -> list[list]:
    """Consecutive slices of at most `size` items."""
    return [items[i:i + size] for i in range(0, len(items), size)]

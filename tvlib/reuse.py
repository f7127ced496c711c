"""Run each shared prompt prefix once and reuse its keys and values: the fast path of A and of the layer sweep.

A prompt is split into a prefix (run once, cached) and a continuation (run per row, attending to the cache). The
split is taken on token ids, so the prefix and continuation together are exactly the tokens of the whole prompt:
the fast path computes the same function as one plain forward pass, only with less work.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator, Sequence

import torch

from tvlib.errors import TvlibError
from tvlib.memory import Fit
from tvlib.models import LM


@dataclass(frozen=True)
class Row:
    """One continuation: which prefix it extends, its own tokens, and a tag the hooks read (e.g. its layer)."""

    prefix: int
    tokens: tuple[int, ...]
    tag: int = -1


@lru_cache(maxsize=None)
def forward_names(model_class: type) -> tuple[str, bool]:
    """The cache keyword of forward() (`cache` from transformers 5.2x, `past_key_values` before) and logits_to_keep."""
    params = inspect.signature(model_class.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


def token_ids(lm: LM, texts: Sequence[str]) -> list[list[int]]:
    """Each prompt's ids exactly as a batched forward pass would see them (special tokens included)."""
    return [list(ids) for ids in lm.tokenizer(list(texts))["input_ids"]]


def split_common(groups: Sequence[Sequence[list[int]]]) -> tuple[list[list[int]], list[Row]]:
    """For each group of prompts, their longest common prefix (at least one token left to each) and the rest."""
    prefixes, rows = [], []
    for g, ids in enumerate(groups):
        n = min(len(x) for x in ids) - 1
        common = next((i for i in range(n) if len({x[i] for x in ids}) > 1), n)
        prefixes.append(list(ids[0][:common]))
        rows.extend(Row(g, tuple(x[common:])) for x in ids)
    return prefixes, rows


def empty_cache(lm: LM):
    """A fresh cache of the kind the model builds for itself (sliding-window layers included)."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=lm.model.config)
    except TypeError:  # transformers versions whose DynamicCache takes no config
        return DynamicCache()


def _select(cache, index: torch.Tensor):
    """The cache's rows `index`, as a new cache: the prefix cache itself is never written to."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    new.batch_select_indices(index)
    return new


@dataclass
class _Prefixes:
    cache: object
    mask: torch.Tensor      # [n, P] left-padded attention mask of the prefixes
    lengths: torch.Tensor   # [n] real tokens per prefix


def _run_prefixes(lm: LM, prefixes: list[list[int]]) -> _Prefixes:
    """One left-padded forward pass over the prefixes, keeping every block's keys and values."""
    pad = lm.tokenizer.pad_token_id
    width = max(len(p) for p in prefixes)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prefixes])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prefixes])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache_kw, keeps = forward_names(type(lm.model))
    cache = empty_cache(lm)
    device = lm.device
    lm.model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
             use_cache=True, **{cache_kw: cache}, **({"logits_to_keep": 1} if keeps else {}))
    return _Prefixes(cache, mask, mask.sum(-1))


def _continue(lm: LM, pre: _Prefixes, rows: list[Row]) -> torch.Tensor:
    """Last-position logits of equal-length continuations, each attending to its own cached prefix."""
    index = torch.tensor([r.prefix for r in rows])
    ids = torch.tensor([list(r.tokens) for r in rows])
    steps = ids.shape[1]
    mask = torch.cat([pre.mask[index], torch.ones(len(rows), steps, dtype=pre.mask.dtype)], dim=1)
    positions = pre.lengths[index, None] + torch.arange(steps)[None]
    cache_kw, keeps = forward_names(type(lm.model))
    device = lm.device
    out = lm.model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                   use_cache=True, **{cache_kw: _select(pre.cache, index.to(device))},
                   **({"logits_to_keep": 1} if keeps else {}))
    return out.logits[:, -1].float()


def _by_length(rows: list[tuple[int, Row]]) -> Iterator[list[tuple[int, Row]]]:
    """Rows grouped by continuation length, so no padding sits between prefix and continuation."""
    for n in sorted({len(r.tokens) for _, r in rows}):
        yield [item for item in rows if len(item[1].tokens) == n]


Batch = Callable[[list[int], list[Row]], tuple[object, Callable[[list[int], torch.Tensor], None]]]


def run(lm: LM, prefixes: list[list[int]], rows: list[Row], on_batch: Batch, prefix_batch: int = 32,
        row_batch: int = 256, wrap: Callable = lambda chunks: chunks) -> None:
    """Prefixes in chunks of `prefix_batch`, then their continuations in chunks of at most `row_batch`.

    Before each continuation pass `on_batch(row_numbers, rows)` returns a context manager (hooks) and a callback
    that receives the row numbers and their last-position logits. `wrap` may add a progress bar over the chunks.
    On an out-of-memory error the batch that failed is redone in halves (`memory.Fit`: prefixes and continuations
    each keep their own size), so a callback must write each row to its own place: a row given twice (its prefix
    chunk redone) gets the same numbers twice.
    """
    if any(len(p) == 0 for p in prefixes):
        raise TvlibError("every prefix needs at least one token: use the plain forward pass for such prompts")
    owner: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        owner.setdefault(row.prefix, []).append(i)
    starts = list(range(0, len(prefixes), prefix_batch))
    prefix_fit, row_fit = Fit(prefix_batch), Fit(row_batch)
    with torch.no_grad():
        for start in wrap(starts):
            chunk = list(range(start, min(start + prefix_batch, len(prefixes))))
            prefix_fit.each(chunk, lambda part: _chunk(lm, prefixes, rows, owner, part, on_batch, row_fit))


def _chunk(lm: LM, prefixes: list[list[int]], rows: list[Row], owner: dict[int, list[int]], part: list[int],
           on_batch: Batch, row_fit: Fit) -> None:
    """One chunk of prefixes run once, then all their continuations in batches that fit."""
    pre = _run_prefixes(lm, [prefixes[g] for g in part])
    local = [(i, Row(g - part[0], rows[i].tokens, rows[i].tag)) for g in part for i in owner.get(g, [])]

    def continue_rows(batch: list[tuple[int, Row]]) -> None:
        numbers, batch_rows = [i for i, _ in batch], [r for _, r in batch]
        hooks, receive = on_batch(numbers, batch_rows)
        with hooks:
            logits = _continue(lm, pre, batch_rows)
        receive(numbers, logits)

    for same_length in _by_length(local):
        row_fit.each(same_length, continue_rows)

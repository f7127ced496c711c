"""Greedy decoding with theta: the paper scores one token; an answer of several tokens needs the rest generated.

theta is written into block L's output at the bare query's last position on the first forward pass (`prefill`,
the paper's patch carried on), or also at every generated token's position as it is fed back (`every_step`). The
keys and values of later blocks at a patched position come from the patched state, so the cache holds the same
numbers a pass over the whole sequence would: the tests check the tokens against a loop without the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import torch

from tvlib import reuse
from tvlib.errors import TvlibError
from tvlib.models import LM
from tvlib.progress import progress_bar
from tvlib.memory import Fit
from tvlib.prompts import chunks, encode
from tvlib.vectors import block_hooks, _writes

PATCHES = ("prefill", "every_step")
"""Where theta goes while an answer is generated: the prompt's last position only, or every generated one too."""

MAX_NEW_TOKENS = 8
"""Tokens generated at most per answer: room for the longest answer of the shipped tasks for the offline tokenizers
(data/README.md tables it) and the newline after it."""


@dataclass
class Generations:
    """Each prompt's generated token ids up to (without) the stop, and the top-2 logit margin of its first token."""

    ids: list[list[int]] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    stopped: list[bool] = field(default_factory=list)

    def texts(self, lm: LM) -> list[str]:
        """The answers as text, without the stop."""
        return [lm.tokenizer.decode(ids) for ids in self.ids]

    def first(self, lm: LM) -> list[str]:
        """The first generated token of each answer: what the paper's one-token rule scores."""
        return [lm.tokenizer.decode(ids[:1]) for ids in self.ids]

    def extend(self, other: "Generations") -> None:
        self.ids += other.ids
        self.margins += other.margins
        self.stopped += other.stopped


@lru_cache(maxsize=8)
def _eos_ids(tokenizer) -> frozenset[int]:
    """The tokens that end a text (a model may end an answer with one instead of a newline)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    return frozenset(ids)


def is_stop(tokenizer, token: int) -> bool:
    """An answer ends at a token that starts a new line (the prompt format's separator) or ends the text."""
    return token in _eos_ids(tokenizer) or "\n" in tokenizer.decode([token])


def _step(lm: LM, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
    """One forward pass that extends `cache`; the last position's logits."""
    cache_kw, keeps = reuse.forward_names(type(lm.model))
    device = lm.device
    out = lm.model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                   use_cache=True, **{cache_kw: cache}, **({"logits_to_keep": 1} if keeps else {}))
    return out.logits[:, -1].float()


def _hooks(lm: LM, thetas: torch.Tensor | None, layers: Sequence[int] | None):
    """The write of theta_i into block layers[i] at the last position, or no hook at all."""
    if thetas is None:
        return block_hooks(lm, {})
    return block_hooks(lm, _writes(torch.as_tensor(list(layers)), thetas))


@torch.no_grad()
def _batch(lm: LM, texts: list[str], thetas: torch.Tensor | None, layers: Sequence[int] | None, every_step: bool,
           max_new_tokens: int) -> Generations:
    """Greedy decoding of one left-padded batch with the KV cache, until every row has stopped."""
    tok = lm.tokenizer
    batch = encode(tok, texts)
    mask, positions = batch.attention_mask, batch.position_ids
    cache = reuse.empty_cache(lm)
    with _hooks(lm, thetas, layers):
        logits = _step(lm, batch.input_ids, mask, positions, cache)
    top = logits.topk(2, dim=-1)
    out = Generations([[] for _ in texts], (top.values[:, 0] - top.values[:, 1]).tolist(), [False] * len(texts))
    done = [False] * len(texts)
    for step in range(max_new_tokens):
        tokens = logits.argmax(-1).cpu()
        for i, token in enumerate(tokens.tolist()):
            if not done[i]:
                if is_stop(tok, token):
                    done[i] = out.stopped[i] = True
                else:
                    out.ids[i].append(token)
        if all(done) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(len(texts), 1, dtype=mask.dtype)], dim=1)
        positions = positions[:, -1:] + 1
        with _hooks(lm, thetas if every_step else None, layers):
            logits = _step(lm, tokens[:, None], mask, positions, cache)
    return out


def generate(lm: LM, texts: Sequence[str], thetas: torch.Tensor | None = None, layers: Sequence[int] | None = None,
             patch: str = "prefill", max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 32,
             progress: bool = False, desc: str = "generate") -> Generations:
    """Greedy answers to `texts`, each until a newline or the end of text (at most `max_new_tokens`), with theta_i
    written into block layers[i] at the prompt's last position (`patch="prefill"`) or at every step
    (`"every_step"`); without thetas, plain greedy decoding."""
    if patch not in PATCHES:
        raise TvlibError(f"patch must be one of {', '.join(PATCHES)}, not {patch!r}")
    for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TvlibError(f"{name} must be a whole number of at least 1, not {value!r}")
    if thetas is not None:
        if layers is None or len(layers) != len(texts) or len(thetas) != len(texts):
            raise TvlibError("generate needs one theta and one layer per prompt")
        width = lm.model.get_input_embeddings().embedding_dim
        if thetas.ndim != 2 or thetas.shape[1] != width:
            raise TvlibError(f"each theta must be a vector of the model's width {width}, not of shape "
                             f"{tuple(thetas.shape[1:])}: read theta from this model's blocks")
        layers = [lm.check_layer(layer) for layer in layers]
    result, fit = Generations(), Fit(batch_size)  # halved on an out-of-memory error (tvlib.memory)

    def run(rows: list[int]) -> None:
        result.extend(_batch(lm, [texts[i] for i in rows], None if thetas is None else thetas[rows],
                             None if layers is None else [layers[i] for i in rows], patch == "every_step",
                             max_new_tokens))

    for rows in progress_bar(chunks(list(range(len(texts))), batch_size), desc, progress):
        fit.each(rows, run)
    return result

"""The paper's two halves: A reads the last-token state of every block; f writes theta into block L's output."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Iterator, Sequence

import torch

from tvlib.models import LM
from tvlib.prompts import chunks, encode


class _Stop(Exception):
    """Raised by a hook once the last needed block has run, so A skips the rest of the model."""


def _tensor(output) -> torch.Tensor:
    """A block's hidden states, whether transformers returns a tensor or a tuple."""
    return output[0] if isinstance(output, tuple) else output


def _with_tensor(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextmanager
def block_hooks(lm: LM, make: Callable[[int], Callable]) -> Iterator[None]:
    """Forward hooks on every block (make(layer) builds each), always removed, also after an exception."""
    handles = [block.register_forward_hook(make(i)) for i, block in enumerate(lm.blocks)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def progress_bar(items: list, desc: str, enabled: bool | None = True):
    """A tqdm bar over items when enabled (None: only on a terminal); plain items for short or silent loops."""
    if enabled is False or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, disable=None if enabled is None else False)


@lru_cache(maxsize=None)
def _keeps_last_logits(model_class: type) -> bool:
    """Whether forward() takes logits_to_keep (unembed only the last position; Gemma's 262k vocabulary needs it)."""
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def _forward(lm: LM, texts: list[str]) -> torch.Tensor:
    """Last-position logits of one left-padded batch."""
    batch = encode(lm.tokenizer, texts).to(lm.device)
    keep = {"logits_to_keep": 1} if _keeps_last_logits(type(lm.model)) else {}
    out = lm.model(**batch.kwargs(), use_cache=False, **keep)
    return out.logits[:, -1].float()


@torch.no_grad()
def last_token_states(lm: LM, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> torch.Tensor:
    """A: output of every block at the last token, shape [len(texts), n_layers, d_model], float32 on the CPU."""
    results: list[torch.Tensor] = []
    for group in progress_bar(chunks(list(texts), batch_size), "A (theta)", progress):
        states: dict[int, torch.Tensor] = {}

        def make(layer: int):
            def hook(_module, _inputs, output):
                states[layer] = _tensor(output)[:, -1].float().cpu()
                if layer == lm.n_layers - 1:
                    raise _Stop
            return hook

        with block_hooks(lm, make):
            try:
                _forward(lm, group)
            except _Stop:
                pass
        results.append(torch.stack([states[i] for i in range(lm.n_layers)], dim=1))
    return torch.cat(results) if results else torch.empty(0, lm.n_layers, 0)


@torch.no_grad()
def last_logits(lm: LM, texts: Sequence[str], thetas: torch.Tensor | None = None,
                layers: Sequence[int] | None = None) -> torch.Tensor:
    """f for one batch: next-token logits, with theta_i written into block layers[i]'s output at the last position."""
    if thetas is None:
        return _forward(lm, list(texts))
    layer_of = torch.as_tensor([lm.check_layer(layer) for layer in layers])

    def make(layer: int):
        rows = (layer_of == layer).nonzero().flatten()

        def hook(_module, _inputs, output):
            if rows.numel() == 0:
                return None
            hidden = _tensor(output).clone()
            idx = rows.to(hidden.device)
            hidden[idx, -1] = thetas[rows].to(hidden.device, hidden.dtype)
            return _with_tensor(output, hidden)
        return hook

    with block_hooks(lm, make):
        return _forward(lm, list(texts))


def predict(lm: LM, texts: Sequence[str], thetas: torch.Tensor | None = None, layers: Sequence[int] | None = None,
            batch_size: int = 32, progress: bool = False, desc: str = "f") -> list[str]:
    """Greedy next token for each prompt, decoded (optionally patched): the paper's one-token answer."""
    ids: list[int] = []
    index = list(range(len(texts)))
    for group in progress_bar(chunks(index, batch_size), desc, progress):
        batch_texts = [texts[i] for i in group]
        if thetas is None:
            logits = last_logits(lm, batch_texts)
        else:
            logits = last_logits(lm, batch_texts, thetas[group], [layers[i] for i in group])
        ids.extend(logits.argmax(-1).tolist())
    return [lm.tokenizer.decode([i]) for i in ids]

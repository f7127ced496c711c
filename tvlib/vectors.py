"""The paper's two halves: A reads the last-token state of every block; f writes theta into block L's output."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from typing import Callable, Iterator, Sequence

import torch

from tvlib import reuse
from tvlib.measures import MEASURES, Targets
from tvlib.memory import Fit
from tvlib.models import LM
from tvlib.progress import progress_bar
from tvlib.prompts import chunks, encode


class _Stop(Exception):
    """Raised by a hook once the last needed block has run, so A skips the rest of the model."""


Hook = Callable[[torch.Tensor], "torch.Tensor | None"]
"""Receives a block's hidden states [batch, positions, d]; returns new ones, or None to keep them."""


def _on_hidden(hook: Hook) -> Callable:
    """A torch forward hook around `hook`: the one place that unpacks and repacks a block's tuple output."""
    def forward_hook(_module, _inputs, output):
        hidden = hook(output[0] if isinstance(output, tuple) else output)
        if hidden is None:
            return None
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
    return forward_hook


@contextmanager
def block_hooks(lm: LM, hooks: dict[int, Hook]) -> Iterator[None]:
    """Hooks on the blocks an experiment touches, and only those; always removed, also after an exception."""
    handles = [lm.blocks[layer].register_forward_hook(_on_hidden(hook)) for layer, hook in sorted(hooks.items())]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _readers(lm: LM, states: dict[int, torch.Tensor], stop: bool = False) -> dict[int, Hook]:
    """A's hooks: every block's output at the last position into `states` (float32, CPU); with `stop`, the pass
    ends after the last block (A needs no final norm and no logits)."""
    def read(layer: int) -> Hook:
        def keep(hidden: torch.Tensor) -> None:
            states[layer] = hidden[:, -1].float().cpu()
            if stop and layer == lm.n_layers - 1:
                raise _Stop
        return keep
    return {layer: read(layer) for layer in range(lm.n_layers)}


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
    fit = Fit(batch_size)

    def run(group: list[str]) -> None:
        states: dict[int, torch.Tensor] = {}
        with block_hooks(lm, _readers(lm, states, stop=True)):
            try:
                _forward(lm, group)
            except _Stop:
                pass
        results.append(torch.stack([states[i] for i in range(lm.n_layers)], dim=1))

    for group in progress_bar(chunks(list(texts), batch_size), "A (theta)", progress):
        fit.each(group, run)
    return torch.cat(results) if results else torch.empty(0, lm.n_layers, 0)


@torch.no_grad()
def last_logits(lm: LM, texts: Sequence[str], thetas: torch.Tensor | None = None,
                layers: Sequence[int] | None = None, alpha: float | None = None) -> torch.Tensor:
    """f for one batch: next-token logits, with theta_i written into block layers[i]'s output at the last position
    (or, with `alpha`, alpha x theta_i added to it: a question beyond the paper)."""
    if thetas is None:
        return _forward(lm, list(texts))
    layer_of = torch.as_tensor([lm.check_layer(layer) for layer in layers])
    with block_hooks(lm, _writes(layer_of, thetas, alpha)):
        return _forward(lm, list(texts))


def _writes(layer_of: torch.Tensor, values: torch.Tensor, alpha: float | None = None) -> dict[int, Hook]:
    """f's patch: row i gets values[i] written into block layer_of[i]'s output at the last position (hooks only on
    the blocks some row patches); with `alpha`, alpha x values[i] is added to that state instead."""
    def write(rows: torch.Tensor) -> Hook:
        def patch(hidden: torch.Tensor) -> torch.Tensor:
            hidden = hidden.clone()
            idx, theta = rows.to(hidden.device), values[rows].to(hidden.device, hidden.dtype)
            hidden[idx, -1] = theta if alpha is None else hidden[idx, -1] + alpha * theta
            return hidden
        return patch
    return {int(layer): write((layer_of == layer).nonzero().flatten()) for layer in layer_of.unique()}


@dataclass
class Answers:
    """Greedy answers and how far each won by: the top-2 logit margin says which answers a rounding could flip;
    with targets, the continuous measures too (`measures.MEASURES`), and with `keep` each row's log-probabilities."""

    ids: list[int] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    measures: dict[str, list[float]] = field(default_factory=dict)
    logprobs: list[torch.Tensor] = field(default_factory=list)

    def add(self, logits: torch.Tensor, rows: Sequence[int] = (), targets: Targets | None = None,
            keep: bool = False) -> None:
        """Append one batch; `rows` are its row numbers in `targets`."""
        top = logits.float().topk(2, dim=-1)
        self.ids.extend(top.indices[:, 0].tolist())
        self.margins.extend((top.values[:, 0] - top.values[:, 1]).tolist())
        if targets is not None:
            for name, values in targets.of(rows, logits).items():
                self.measures.setdefault(name, []).extend(values.tolist())
        if keep:
            self.logprobs.extend(logits.float().log_softmax(-1).cpu())

    def texts(self, lm: LM) -> list[str]:
        return [lm.tokenizer.decode([i]) for i in self.ids]

    def __getitem__(self, part: slice) -> "Answers":
        """Some rows; kept log-probabilities follow only when every row kept them (else they are dropped)."""
        kept = self.logprobs[part] if len(self.logprobs) == len(self.ids) else []
        return Answers(self.ids[part], self.margins[part], {k: v[part] for k, v in self.measures.items()}, kept)


def predict(lm: LM, texts: Sequence[str], thetas: torch.Tensor | None = None, layers: Sequence[int] | None = None,
            batch_size: int = 32, progress: bool = False, desc: str = "f", alpha: float | None = None,
            targets: Targets | None = None, keep: bool = False) -> Answers:
    """Greedy next token for each prompt (optionally patched), one plain forward pass per batch: the reference path.
    With `targets` (rows as `texts`), the continuous measures; with `keep`, each prompt's log-probabilities."""
    answers = Answers()
    fit = Fit(batch_size)  # halved on an out-of-memory error; a part adds its answers only once it has run

    def run(group: list[int]) -> None:
        batch_texts = [texts[i] for i in group]
        if thetas is None:
            logits = last_logits(lm, batch_texts)
        else:
            logits = last_logits(lm, batch_texts, thetas[group], [layers[i] for i in group], alpha)
        answers.add(logits, group, targets, keep)

    for group in progress_bar(chunks(list(range(len(texts))), batch_size), desc, progress):
        fit.each(group, run)
    return answers


# --------------------------------------------------------------------------- the fast path: shared prefixes run once


def _scatter(answers: Answers, n: int, targets: Targets | None = None,
             keep: Sequence[int] = ()) -> Callable[[list[int], torch.Tensor], None]:
    """An `after` callback that writes each batch's answers (and measures) into their global rows, and keeps the
    log-probabilities of the rows in `keep`, in that order."""
    answers.ids, answers.margins = [0] * n, [0.0] * n
    if targets is not None:
        answers.measures = {name: [float("nan")] * n for name in MEASURES}
    slot = {row: k for k, row in enumerate(keep)}
    kept: list[torch.Tensor | None] = [None] * len(keep)
    answers.logprobs = kept  # filled in place as the rows arrive

    def after(rows: list[int], logits: torch.Tensor) -> None:
        part = Answers()
        part.add(logits, rows, targets)
        for k, i in enumerate(rows):
            answers.ids[i], answers.margins[i] = part.ids[k], part.margins[k]
            for name, values in part.measures.items():
                answers.measures[name][i] = values[k]
            if i in slot:
                kept[slot[i]] = logits[k].float().log_softmax(-1).cpu()
    return after


@torch.no_grad()
def states_and_answers(lm: LM, groups: Sequence[Sequence[str]], batch_size: int = 32,
                       progress: bool = False, targets: Targets | None = None,
                       keep: Sequence[int] = ()) -> tuple[torch.Tensor, Answers]:
    """A and plain ICL together: prompts of one group share their demonstrations, which run once.

    Returns every prompt's last-token state at every block, [rows, n_layers, d] (float32, CPU), and its greedy
    answer, rows in group order; the same numbers as `last_token_states` and `predict` on each prompt alone.
    With `targets` (one per row), the measures; the log-probabilities of the rows in `keep`, in `answers.logprobs`.
    """
    flat = reuse.token_ids(lm, [text for group in groups for text in group])  # one tokenizer call for all
    bounds = [0, *accumulate(len(group) for group in groups)]
    prefixes, rows = reuse.split_common([flat[a:b] for a, b in zip(bounds, bounds[1:])])
    states: list[torch.Tensor | None] = [None] * len(rows)
    answers = Answers()
    after = _scatter(answers, len(rows), targets, keep)

    def on_batch(global_rows: list[int], _rows: list[reuse.Row]):
        captured: dict[int, torch.Tensor] = {}

        def collect(rows_: list[int], logits: torch.Tensor) -> None:
            stacked = torch.stack([captured[i] for i in range(lm.n_layers)], dim=1)
            for k, i in enumerate(rows_):
                states[i] = stacked[k]
            after(rows_, logits)
        return block_hooks(lm, _readers(lm, captured)), collect

    _run(lm, prefixes, rows, on_batch, batch_size, progress, "A + ICL")
    return torch.stack(states), answers


@torch.no_grad()
def sweep(lm: LM, texts: Sequence[str], thetas: torch.Tensor, layers: Sequence[int], batch_size: int = 32,
          progress: bool = False, targets: Targets | None = None) -> Answers:
    """f at every layer in `layers`: the bare query runs once; per L only its last token runs, theta_L patched in.

    Answers come layer-major (all queries at layers[0], then layers[1], ...), as `predict` gives them for the
    texts repeated once per layer; so do `targets`' rows, when given (`Targets.query` maps them to contexts).
    """
    n = len(texts)
    ids = reuse.token_ids(lm, texts)
    prefixes = [x[:-1] for x in ids]
    rows = [reuse.Row(q, (ids[q][-1],), lm.check_layer(layer)) for layer in layers for q in range(n)]
    answers = Answers()
    after = _scatter(answers, len(rows), targets)

    def on_batch(global_rows: list[int], batch: list[reuse.Row]):
        tags = torch.tensor([r.tag for r in batch])
        return block_hooks(lm, _writes(tags, thetas[[i % n for i in global_rows], tags])), after

    _run(lm, prefixes, rows, on_batch, batch_size, progress, "f (sweep)")
    return answers


def _run(lm: LM, prefixes: list[list[int]], rows: list[reuse.Row], on_batch: reuse.Batch, batch_size: int,
         progress: bool, desc: str) -> None:
    """reuse.run with this module's progress bar. Continuations are mostly one token, so they go 16x wider:
    on 2 cores a 900-row pass ran the Gemma sweep in 7.2 s against 9.5 s in 256-row passes."""
    reuse.run(lm, prefixes, rows, on_batch, 2 * batch_size, 16 * batch_size,
              wrap=lambda starts: progress_bar(starts, desc, progress))

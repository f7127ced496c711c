"""Continuous measures of a next-token distribution: top-1 accuracy says only whether the answer won, these say by
how much, and how close a patched distribution is to ICL's (Zhang & Nanda 2024 ask for both in patching work)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

MEASURES = ("logprob", "logit_diff", "kl")
"""Stored with every prediction of the main experiment: the log-probability of the expected answer's first token,
its logit minus the best other token's (above 0 exactly when it is the greedy answer), and, where ICL ran on the
same context, KL(ICL || this row) in nats over the next-token distribution."""

LABELS = {"logprob": "log p(answer's first token)", "logit_diff": "logit difference to the best wrong token",
          "kl": "KL(ICL || patched), nats"}


def target_id(tokenizer, output: str, space: bool) -> int:
    """The first token of the answer as the prompt writes it after `->` (with the task's space)."""
    ids = tokenizer.encode((" " if space else "") + output, add_special_tokens=False)
    return int(ids[0])


def target_ids(tokenizer, outputs: Sequence[str], space: bool) -> torch.Tensor:
    """Each answer's first token id, in order."""
    return torch.tensor([target_id(tokenizer, output, space) for output in outputs], dtype=torch.long)


def measure(logits: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor | None = None) -> dict:
    """The three measures of each row of `logits` [rows, vocab] against `targets` [rows] and, when given, ICL's
    log-probabilities `reference` [rows, vocab] (a row of NaN where no ICL run matches: its KL is NaN)."""
    logits = logits.float()  # no copy of the [rows, vocab] logits is made beyond what KL needs (a sweep's hot loop)
    index = targets.to(logits.device)[:, None]
    mine = logits.gather(1, index)[:, 0]
    top = logits.topk(2, dim=-1)
    wrong = torch.where(top.indices[:, 0] == index[:, 0], top.values[:, 1], top.values[:, 0])
    normaliser = logits.logsumexp(-1)
    out = {"logprob": mine - normaliser, "logit_diff": mine - wrong}
    if reference is None:
        out["kl"] = torch.full((len(logits),), float("nan"))
    else:
        ref = reference.to(logits.device).float()
        out["kl"] = (ref.exp() * (ref - logits.log_softmax(-1))).sum(-1)
    return {name: values.cpu() for name, values in out.items()}


@dataclass(frozen=True)
class Targets:
    """What each row's distribution is measured against: its expected first token, and ICL's log-probabilities for
    its context (`reference[query[row]]`), so a sweep of many layers keeps one ICL distribution per context."""

    ids: torch.Tensor                       # [rows] expected first-token id
    reference: torch.Tensor | None = None   # [contexts, vocab] ICL log-probabilities
    query: torch.Tensor | None = None       # [rows] each row's context in `reference`

    def of(self, rows: Sequence[int], logits: torch.Tensor) -> dict:
        """The measures of these rows' logits."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        ref = None if self.reference is None else self.reference[self.query[index]]
        return measure(logits, self.ids[index], ref)

"""Attention heads and block outputs as sites to read and patch: the one entry point every intervention goes through.

A head's site is its slice of the input to its layer's attention output projection (`o_proj`, `dense`,
`out_proj`, `c_proj`): the head's output before it is mixed into the residual stream. `project` maps such a slice
to what the head adds to the residual stream. Grouped-query attention shares keys and values between heads, never
this slice, so every query head has its own. A patch edits, per row, any number of sites at one position (or all),
in one of three modes: replace, add, mean-ablate (replace by a mean taken elsewhere).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from tvlib.errors import TvlibError
from tvlib.models import LM
from tvlib.progress import progress_bar
from tvlib.prompts import chunks, encode
from tvlib.vectors import Answers, last_logits

MODES = ("replace", "add", "mean-ablate")
_OUT_NAMES = ("o_proj", "out_proj", "dense", "c_proj")


@dataclass(frozen=True)
class Site:
    """Where an edit lands: block `layer`'s output (head None), or head `head` of layer `layer`."""

    layer: int
    head: int | None = None

    def __str__(self) -> str:
        return f"L{self.layer}" if self.head is None else f"L{self.layer}H{self.head}"


@dataclass(frozen=True)
class Edit:
    """One site and the vector for it: [d_model] for a block, [head_dim] for a head."""

    site: Site
    value: torch.Tensor


def shape(lm: LM) -> tuple[int, int]:
    """(heads per layer, head dimension) from the config: Gemma's head_dim is not hidden_size / heads."""
    config = lm.model.config
    config = getattr(config, "text_config", None) or config
    n_heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    return n_heads, int(head_dim)


def _in_features(module: nn.Module) -> int:
    """A Linear's input width, or a GPT-2 Conv1D's (its weight is stored [in, out])."""
    return module.in_features if isinstance(module, nn.Linear) else module.weight.shape[0]


def out_proj(lm: LM, layer: int) -> nn.Module:
    """The attention output projection of block `layer`: the layout table's, else the one module whose name and
    input width fit (so an unlisted architecture works, or fails here with the fix, never silently)."""
    block = lm.blocks[lm.check_layer(layer)]
    n_heads, head_dim = shape(lm)
    if lm.layout.attn_out:
        module = block.get_submodule(lm.layout.attn_out)
    else:
        found = [m for name, m in block.named_modules()
                 if name.rsplit(".", 1)[-1] in _OUT_NAMES and "att" in name.lower() and hasattr(m, "weight")
                 and _in_features(m) == n_heads * head_dim]
        if len(found) != 1:
            raise TvlibError(f"cannot find the attention output projection of {type(lm.model).__name__}: add its "
                             "path inside a block as attn_out to tvlib.models.LAYOUTS")
        module = found[0]
    if _in_features(module) != n_heads * head_dim:
        raise TvlibError(f"{lm.name}: the attention output projection takes {_in_features(module)} inputs, not "
                         f"{n_heads} heads x {head_dim}: fix attn_out in tvlib.models.LAYOUTS")
    return module


def project(lm: LM, layer: int, head: int, values: torch.Tensor) -> torch.Tensor:
    """What head `head` adds to the residual stream for head outputs `values` [..., head_dim] (no bias: the bias
    belongs to the layer, not to one head). Todd et al.'s function vector is a sum of these."""
    module = out_proj(lm, layer)
    _, head_dim = shape(lm)
    cols = slice(head * head_dim, (head + 1) * head_dim)
    weight = module.weight.detach().float()
    part = weight[:, cols] if isinstance(module, nn.Linear) else weight[cols, :].T
    return values.float().to(part.device) @ part.T


def attention_rms(lm: LM, reads: torch.Tensor) -> torch.Tensor:
    """Per layer, the root mean square of the whole attention output (the projection of all heads, bias
    included) over the prompts of `reads` [n, n_layers, n_heads, head_dim]: the scale a post-attention norm
    divides by, for `residual`."""
    rms = []
    for layer in range(lm.n_layers):
        module = out_proj(lm, layer)
        weight = next(module.parameters())
        with torch.no_grad():
            out = module(reads[:, layer].flatten(1).to(weight.device, weight.dtype)).float()
        rms.append(out.pow(2).mean(-1).sqrt().mean().cpu())
    return torch.stack(rms)


def residual(lm: LM, layer: int, head: int, values: torch.Tensor, rms: torch.Tensor | None = None) -> torch.Tensor:
    """What head `head` adds to the residual stream: `project`, then, where the architecture normalises the
    attention output before adding it (Gemma 2 and 3: an RMSNorm that scales it some 50-100x), that norm's gain
    over `rms` (the layer's attention-output RMS, `attention_rms`). Summed over all heads this is the norm of the
    summed outputs; skipping the norm leaves a function vector 1-2% of the hidden state's size on Gemma."""
    out = project(lm, layer, head, values)
    if not lm.layout.attn_post_norm:
        return out
    if rms is None:
        raise TvlibError(f"{lm.name} normalises the attention output before the residual stream: pass the "
                         "layer's attention-output RMS (heads.attention_rms)")
    norm = lm.blocks[layer].get_submodule(lm.layout.attn_post_norm)
    weight = next(norm.parameters())
    eps = float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 0.0)))
    with torch.no_grad():  # an RMSNorm of ones is its gain over sqrt(1 + eps)
        gain = norm(torch.ones(out.shape[-1], device=weight.device, dtype=weight.dtype)).float() * (1 + eps) ** 0.5
    return out * gain.to(out.device) / (float(rms) ** 2 + eps) ** 0.5


# --------------------------------------------------------------------------- reading


@torch.no_grad()
def read(lm: LM, texts: Sequence[str], where: str = "last", batch_size: int = 32,
         progress: bool = False) -> torch.Tensor:
    """Every head's output for each prompt, [n, n_layers, n_heads, head_dim] float32 on the CPU: at the last
    token (`where="last"`), or averaged over the prompt's real tokens (`"mean"`, what mean-ablation writes)."""
    if where not in ("last", "mean"):
        raise TvlibError(f"where must be 'last' or 'mean', not {where!r}")
    n_heads, head_dim = shape(lm)
    found: list[torch.Tensor] = []
    for group in progress_bar(chunks(list(texts), batch_size), "heads (read)", progress):
        batch = encode(lm.tokenizer, group).to(lm.device)
        seen: dict[int, torch.Tensor] = {}
        mask = batch.attention_mask[..., None].float()

        def keep(layer: int):
            def hook(_module, args):
                x = args[0].float()
                x = x[:, -1] if where == "last" else (x * mask).sum(1) / mask.sum(1)
                seen[layer] = x.reshape(len(group), n_heads, head_dim).cpu()
            return hook

        with ExitStack() as stack:
            for layer in range(lm.n_layers):
                stack.enter_context(_removing(out_proj(lm, layer).register_forward_pre_hook(keep(layer))))
            lm.model(**batch.kwargs(), use_cache=False)
        found.append(torch.stack([seen[i] for i in range(lm.n_layers)], dim=1))
    return torch.cat(found) if found else torch.empty(0, lm.n_layers, n_heads, head_dim)


@contextmanager
def _removing(handle) -> Iterator[None]:
    try:
        yield
    finally:
        handle.remove()


# --------------------------------------------------------------------------- writing


def _check(lm: LM, edits: Sequence[Sequence[Edit]], mode: str) -> None:
    """Refuse a mode, layer or head out of range, or a vector of the wrong width, before any forward pass."""
    if mode not in MODES:
        raise TvlibError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    n_heads, head_dim = shape(lm)
    d_model = lm.model.get_input_embeddings().weight.shape[1]
    for row in edits:
        for edit in row:
            lm.check_layer(edit.site.layer)
            if edit.site.head is not None and not 0 <= edit.site.head < n_heads:
                raise TvlibError(f"head {edit.site.head} is out of range: {lm.name} has heads 0..{n_heads - 1}")
            width = d_model if edit.site.head is None else head_dim
            if edit.value.shape[-1] != width:
                raise TvlibError(f"an edit at {edit.site} needs a vector of {width}, not {edit.value.shape[-1]}")


class _Tally:
    """Which edits a forward pass applied: an edit whose hook never ran is the silent no-op this module refuses."""

    def __init__(self, edits: Sequence[Sequence[Edit]]):
        self.wanted = {str(e.site) for row in edits for e in row}
        self.done: set[str] = set()

    def missing(self) -> list[str]:
        return sorted(self.wanted - self.done)


def _apply(x: torch.Tensor, rows: torch.Tensor, cols: slice, values: torch.Tensor, mode: str,
           position: int | None) -> None:
    """Write (or add) `values` [rows, width] into x[rows, position, cols] in place; every position with None."""
    values = values.to(x.device, x.dtype)
    if position is None:
        target = x[rows, :, cols]
        values = values[:, None].expand_as(target)
        x[rows, :, cols] = target + values if mode == "add" else values
    else:
        x[rows, position, cols] = x[rows, position, cols] + values if mode == "add" else values


def _grouped(edits: Sequence[Sequence[Edit]], mode: str) -> dict[Site, tuple[torch.Tensor, torch.Tensor]]:
    """{site: (rows, values)}: one indexed write per site, whatever mix of sites the rows ask for. Two edits of
    one row at one site add up in mode add (the last one wins otherwise): an indexed write with a repeated row
    would keep only one."""
    by_site: dict[Site, dict[int, torch.Tensor]] = {}
    for row, row_edits in enumerate(edits):
        for edit in row_edits:
            rows = by_site.setdefault(edit.site, {})
            value = edit.value.float()
            rows[row] = rows[row] + value if mode == "add" and row in rows else value
    return {site: (torch.tensor(list(rows)), torch.stack(list(rows.values()))) for site, rows in by_site.items()}


@contextmanager
def hooks(lm: LM, edits: Sequence[Sequence[Edit]], mode: str = "replace", position: int | None = -1,
          tally: _Tally | None = None) -> Iterator[None]:
    """The edits of one batch as forward hooks (row i of the batch gets edits[i]); removed on exit. Usable around
    a plain forward pass or `reuse.run`'s continuations (where the last position is the only one)."""
    _check(lm, edits, mode)
    _, head_dim = shape(lm)
    grouped = _grouped(edits, mode)
    with ExitStack() as stack:
        for layer in sorted({s.layer for s in grouped}):
            heads = {s: v for s, v in grouped.items() if s.layer == layer and s.head is not None}
            block = {s: v for s, v in grouped.items() if s.layer == layer and s.head is None}
            if heads:
                def on_heads(_module, args, heads=heads):
                    x = args[0].clone()
                    for site, (rows, values) in heads.items():
                        _apply(x, rows.to(x.device), slice(site.head * head_dim, (site.head + 1) * head_dim),
                               values, mode, position)
                        tally and tally.done.add(str(site))
                    return (x, *args[1:])
                stack.enter_context(_removing(out_proj(lm, layer).register_forward_pre_hook(on_heads)))
            if block:
                def on_block(_module, _args, output, block=block):
                    hidden = (output[0] if isinstance(output, tuple) else output).clone()
                    for site, (rows, values) in block.items():
                        _apply(hidden, rows.to(hidden.device), slice(None), values, mode, position)
                        tally and tally.done.add(str(site))
                    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
                stack.enter_context(_removing(lm.blocks[layer].register_forward_hook(on_block)))
        yield


@torch.no_grad()
def patched_logits(lm: LM, texts: Sequence[str], edits: Sequence[Sequence[Edit]], mode: str = "replace",
                   position: int | None = -1, verify: bool = True) -> torch.Tensor:
    """One batch's last-position logits with row i's edits applied. With `verify`, raise if an edit's hook never
    ran, or if rows whose edits must change the answer's logits come out exactly as without them."""
    if len(edits) != len(texts):
        raise TvlibError(f"{len(texts)} prompts but {len(edits)} rows of edits: give one list (maybe empty) per prompt")
    tally = _Tally(edits)
    with hooks(lm, edits, mode, position, tally):
        logits = last_logits(lm, list(texts))
    if tally.missing():
        raise TvlibError(f"the patch at {', '.join(tally.missing())} never ran: {lm.name}'s forward pass does not go "
                         "through the module tvlib hooked; fix its entry in tvlib.models.LAYOUTS")
    if verify:
        touched = [i for i, row in enumerate(edits) if any(_changes(e, mode) for e in row)]
        if touched and torch.equal(logits[touched], last_logits(lm, list(texts))[touched]):  # the same batch
            raise TvlibError("the patch left every logit exactly unchanged: the edited state is not on the path to "
                             "the output (a no-op intervention; check the site and tvlib.models.LAYOUTS), or each "
                             "edit wrote back the value already there (pass verify=False for such a check)")
    return logits


def _changes(edit: Edit, mode: str) -> bool:
    """Whether an edit can be expected to move the logits: adding zeros cannot."""
    return not (mode == "add" and not bool(edit.value.abs().sum()))


def patch(lm: LM, texts: Sequence[str], edits: Sequence[Sequence[Edit]], mode: str = "replace",
          position: int | None = -1, batch_size: int = 32, progress: bool = False, desc: str = "patch") -> Answers:
    """Greedy answers of every prompt with its edits applied (`vectors.Answers`): the general intervention, of
    which `vectors.predict` with thetas (block output, replace, last position) and `vectors.sweep` are the fast
    special cases. The first batch is verified against an unpatched pass (see `patched_logits`)."""
    answers = Answers()
    for k, group in enumerate(progress_bar(chunks(list(range(len(texts))), batch_size), desc, progress)):
        answers.add(patched_logits(lm, [texts[i] for i in group], [edits[i] for i in group], mode, position,
                                   verify=k == 0))
    return answers

"""Greedy decoding with theta (tvlib.generation) on tiny models of every architecture, checked token for token
against a loop written here: no KV cache, one prompt at a time (no padding), the whole sequence rerun every step,
theta written by this file's own forward hook."""

from contextlib import contextmanager

import pytest
import torch

from tvlib import generation, vectors
from tvlib.errors import TvlibError
from tvlib.generation import generate
from tvlib.tiny import ARCHITECTURES, tiny_lm

PROMPTS = [
    "example:a->",
    "example:hello world->HELLO WORLD\nexample:tree->",  # longer than the tiny gemma3's sliding window (16)
    "example:xy->",
    "example:dog->chien\nexample:cat->",
]
N = 8
SHARPEN = 5.0
"""Block weights are multiplied by this: a tiny model at its default initialisation mostly repeats the last token
whatever came before, so a cache or position error would hardly show; sharpened, its answers depend on the context."""


@pytest.fixture(scope="module", params=ARCHITECTURES)
def lm(request):
    lm = tiny_lm(request.param)
    with torch.no_grad():
        for p in lm.blocks.parameters():
            if p.dim() == 2:
                p.mul_(SHARPEN)
    return lm


def layers_of(lm):
    """One layer per prompt, the first and the last block among them."""
    return [0, lm.n_layers - 1, 1, lm.n_layers - 2]


def thetas_of(lm, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(PROMPTS), lm.model.config.hidden_size, generator=g) * 3


def own_stop(tokenizer, token):
    return token == tokenizer.eos_token_id or "\n" in tokenizer.decode([token])


@torch.no_grad()
def reference(lm, prompt, theta=None, layer=None, every_step=False, max_new_tokens=N):
    """(ids, stopped, first margin) of one prompt alone: the whole sequence rerun each step without a cache, theta
    written into block `layer`'s output at the prompt's last position (and at every generated position too)."""
    tok = lm.tokenizer
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    last = ids.shape[1] - 1

    def write(_module, _inputs, output):
        hidden = (output[0] if isinstance(output, tuple) else output).clone()
        end = hidden.shape[1] if every_step else last + 1
        hidden[0, last:end] = theta.to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    out, stopped, margin = [], False, None
    for step in range(max_new_tokens):
        handle = lm.blocks[layer].register_forward_hook(write) if theta is not None else None
        try:
            logits = lm.model(input_ids=ids, use_cache=False).logits[0, -1].float()
        finally:
            if handle is not None:
                handle.remove()
        if step == 0:
            top = logits.topk(2).values
            margin = float(top[0] - top[1])
        token = int(logits.argmax())
        if own_stop(tok, token):
            stopped = True
            break
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out, stopped, margin


def references(lm, thetas=None, layers=None, patch="prefill", max_new_tokens=N, prompts=PROMPTS):
    return [reference(lm, p, None if thetas is None else thetas[i], None if layers is None else layers[i],
                      patch == "every_step", max_new_tokens) for i, p in enumerate(prompts)]


@contextmanager
def stop_after(lm, trigger, stop):
    """A deterministic change of the model: right after it reads `trigger` it says `stop` (the logit is raised
    above all others), so an answer ends after a known token."""
    seen = {}

    def before(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen["last"] = ids[:, -1]

    def after(_module, _inputs, logits):
        hit = (seen["last"] == trigger).to(logits.device)
        logits = logits.clone()
        logits[hit, -1, stop] = logits[hit, -1].max(-1).values + 10
        return logits

    handles = [lm.model.register_forward_pre_hook(before, with_kwargs=True), lm.unembed.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def trigger_of(lm):
    """The plain first answer token of the first prompt, which no prompt ends with (they all end with '>')."""
    trigger = generate(lm, PROMPTS[:1], max_new_tokens=1).ids[0][0]
    assert all(lm.tokenizer(p)["input_ids"][-1] != trigger for p in PROMPTS)
    return trigger


# --------------------------------------------------------------------------- the generator against the reference


def test_generation_with_theta_equals_the_loop_without_cache(lm):
    thetas, layers = thetas_of(lm), layers_of(lm)
    runs = {}
    for patch in generation.PATCHES:
        out = generate(lm, PROMPTS, thetas, layers, patch, max_new_tokens=N)
        ref = references(lm, thetas, layers, patch)
        assert out.ids == [r[0] for r in ref], patch
        assert out.stopped == [r[1] for r in ref], patch
        assert out.margins == pytest.approx([r[2] for r in ref], abs=1e-4)
        runs[patch] = out.ids
    plain = generate(lm, PROMPTS, max_new_tokens=N).ids
    assert any(ids for ids in runs["prefill"])  # something was generated at all
    assert runs["prefill"] != runs["every_step"]  # the generated positions' patch mattered somewhere
    assert runs["prefill"] != plain  # theta changed the answers


def test_generation_without_theta_equals_the_loop_and_transformers_generate(lm):
    out = generate(lm, PROMPTS, max_new_tokens=N)
    ref = references(lm)
    assert out.ids == [r[0] for r in ref] and out.stopped == [r[1] for r in ref]
    assert out.margins == pytest.approx([r[2] for r in ref], abs=1e-4)
    assert (out.ids, out.stopped) == hf_greedy(lm, PROMPTS, N)


def hf_greedy(lm, prompts, max_new_tokens):
    """transformers' own greedy decoding of the left-padded batch, each row cut at its first stop."""
    tok = lm.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any()  # the batch is padded, on the left
    with torch.no_grad():
        full = lm.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
    ids, stopped = [], []
    for row in full[:, enc["input_ids"].shape[1]:].tolist():
        cut = next((k for k, t in enumerate(row) if generation.is_stop(tok, t)), None)
        ids.append(row if cut is None else row[:cut])
        stopped.append(cut is not None)
    return ids, stopped


def test_transformers_generate_agrees_where_answers_stop(lm):
    """The same with a stop after a known token, so rows end at different steps (and HF runs past the newline)."""
    trigger = trigger_of(lm)
    newline = lm.tokenizer.convert_tokens_to_ids("\n")
    with stop_after(lm, trigger, newline):
        out = generate(lm, PROMPTS, max_new_tokens=N)
        assert (out.ids, out.stopped) == hf_greedy(lm, PROMPTS, N)
    assert out.stopped[0] and out.ids[0] == [trigger]


# --------------------------------------------------------------------------- the first token is the one-token path


def test_the_first_generated_token_is_what_predict_answers(lm):
    thetas, layers = thetas_of(lm), layers_of(lm)
    cases = [(None, None, generate(lm, PROMPTS, max_new_tokens=2))]
    cases += [(thetas, layers, generate(lm, PROMPTS, thetas, layers, patch, max_new_tokens=2))
              for patch in generation.PATCHES]
    for th, ly, out in cases:
        pred = vectors.predict(lm, PROMPTS) if th is None else vectors.predict(lm, PROMPTS, th, ly)
        for ids, stopped, token in zip(out.ids, out.stopped, pred.ids):
            if ids:
                assert ids[0] == token
            else:
                assert stopped and generation.is_stop(lm.tokenizer, token)
        assert out.margins == pytest.approx(pred.margins, abs=1e-4)
    assert sum(bool(ids) for _, _, out in cases for ids in out.ids) > 0


def test_batch_size_does_not_change_the_answers(lm):
    thetas, layers = thetas_of(lm), layers_of(lm)
    for patch in generation.PATCHES:
        runs = [generate(lm, PROMPTS, thetas, layers, patch, N, batch_size=size) for size in (1, 3, len(PROMPTS))]
        for other in runs[1:]:
            assert other.ids == runs[0].ids and other.stopped == runs[0].stopped
            assert other.margins == pytest.approx(runs[0].margins, abs=1e-4)
    plain = [generate(lm, PROMPTS, max_new_tokens=N, batch_size=size) for size in (1, 3)]
    assert plain[0].ids == plain[1].ids


# --------------------------------------------------------------------------- length and stops


def expected_with_stop(prompt_last, ids, stopped, trigger, max_new_tokens):
    """What an answer becomes once the model stops right after reading `trigger`, from the answer without it."""
    before = [prompt_last, *ids]
    steps = len(ids) + 1 if stopped else max_new_tokens
    for k in range(steps):
        if before[k] == trigger:
            return ids[:k], True
    return ids, stopped


@pytest.mark.parametrize("stop", ["newline", "eos"])
def test_max_new_tokens_bounds_the_answer_and_stopped_marks_exactly_the_rows_that_stopped(lm, stop):
    tok = lm.tokenizer
    stop_id = tok.eos_token_id if stop == "eos" else tok.convert_tokens_to_ids("\n")
    thetas, layers = thetas_of(lm), layers_of(lm)
    lasts = [tok(p)["input_ids"][-1] for p in PROMPTS]
    trigger = trigger_of(lm)
    seen = {"stopped after tokens": 0, "stopped at once": 0, "ran to the bound": 0}
    for max_new in (1, 2, 5):
        for kwargs in ({}, dict(thetas=thetas, layers=layers, patch="prefill")):
            free = generate(lm, PROMPTS, max_new_tokens=max_new, **kwargs)
            with stop_after(lm, trigger, stop_id):
                out = generate(lm, PROMPTS, max_new_tokens=max_new, **kwargs)
                ref = references(lm, kwargs.get("thetas"), kwargs.get("layers"), max_new_tokens=max_new)
            assert out.ids == [r[0] for r in ref] and out.stopped == [r[1] for r in ref]
            for i, (ids, stopped) in enumerate(zip(out.ids, out.stopped)):
                assert len(ids) <= max_new and (stopped or len(ids) == max_new)
                assert (ids, stopped) == expected_with_stop(lasts[i], free.ids[i], free.stopped[i], trigger, max_new)
                key = ("stopped after tokens" if ids else "stopped at once") if stopped else "ran to the bound"
                seen[key] += 1
            if not kwargs:
                # the first prompt reads the trigger after its first token: past the bound at 1, a stop after it
                assert (out.ids[0], out.stopped[0]) == (([trigger], False) if max_new == 1 else ([trigger], True))
    assert seen["stopped after tokens"] and seen["ran to the bound"]


def test_a_row_that_stops_at_once_does_not_hold_back_the_others(lm):
    """theta written at the last block as the unembedding's own row for the newline: that row stops at once."""
    newline = lm.tokenizer.convert_tokens_to_ids("\n")
    layers = [lm.n_layers - 1] * len(PROMPTS)
    thetas = thetas_of(lm)
    thetas[2] = lm.unembed.weight[newline].detach() * 50
    with torch.no_grad():
        forced = lm.unembed(lm.final_norm(thetas[2]))
    assert int(forced.argmax()) == newline
    out = generate(lm, PROMPTS, thetas, layers, "prefill", max_new_tokens=N)
    assert out.ids[2] == [] and out.stopped[2]
    ref = references(lm, thetas, layers)
    assert out.ids == [r[0] for r in ref] and out.stopped == [r[1] for r in ref]
    assert any(len(ids) > 1 for ids in out.ids)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_fix(lm):
    thetas, layers = thetas_of(lm), layers_of(lm)
    before = [len(block._forward_hooks) for block in lm.blocks]
    with pytest.raises(TvlibError, match="patch must be one of prefill, every_step, not 'both'"):
        generate(lm, PROMPTS, thetas, layers, patch="both")
    for bad in (0, -1, 2.5):
        with pytest.raises(TvlibError, match="max_new_tokens must be a whole number of at least 1"):
            generate(lm, PROMPTS, max_new_tokens=bad)
    with pytest.raises(TvlibError, match="one theta and one layer per prompt"):
        generate(lm, PROMPTS, thetas)
    with pytest.raises(TvlibError, match="one theta and one layer per prompt"):
        generate(lm, PROMPTS, thetas, layers[:-1])
    with pytest.raises(TvlibError, match="one theta and one layer per prompt"):
        generate(lm, PROMPTS, thetas[:-1], layers)
    for layer in (lm.n_layers, -1):
        with pytest.raises(TvlibError, match=rf"layer {layer} is out of range: .* has blocks 0\.\.{lm.n_layers - 1}"):
            generate(lm, PROMPTS, thetas, [0, 1, 0, layer])
    assert [len(block._forward_hooks) for block in lm.blocks] == before


def test_a_bool_count_a_zero_batch_and_a_theta_of_the_wrong_width_are_refused():
    from tvlib.tiny import tiny_lm

    lm = tiny_lm("llama", layers=2)
    with pytest.raises(TvlibError, match="max_new_tokens must be a whole number"):
        generation.generate(lm, ["ab->"], max_new_tokens=True)
    with pytest.raises(TvlibError, match="batch_size must be a whole number"):
        generation.generate(lm, ["ab->"], batch_size=0)
    with pytest.raises(TvlibError, match="model's width 64"):
        generation.generate(lm, ["ab->"], torch.zeros(1, 65), [0])

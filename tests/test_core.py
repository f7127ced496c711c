"""Invariants of A and f on tiny random models of every architecture in the table (no download)."""

import pytest
import torch

from tvlib.errors import TvlibError
from tvlib.models import LAYOUTS, _generic_layout
from tvlib.prompts import encode
from tvlib.tiny import ARCHITECTURES, tiny_lm
from tvlib.vectors import block_hooks, last_logits, last_token_states

PROMPTS = ["example:a->b\nexample:c->", "example:hello->HELLO\nexample:tree->TREE\nexample:sun->", "example:x->"]


@pytest.fixture(scope="module", params=ARCHITECTURES)
def lm(request):
    return tiny_lm(request.param)


def test_a_tokenizer_without_a_pad_token_pads_with_eos(lm):
    assert lm.tokenizer.pad_token == lm.tokenizer.eos_token and lm.tokenizer.padding_side == "left"


def test_the_generic_fallback_finds_what_the_table_says(lm):
    guess = _generic_layout(lm.model)
    assert lm.model.get_submodule(guess.blocks) is lm.blocks
    assert lm.model.get_submodule(guess.norm) is lm.final_norm
    assert lm.model.get_submodule(guess.unembed) is lm.unembed


def test_every_architecture_is_in_the_table():
    assert set(ARCHITECTURES) <= set(LAYOUTS)


def test_writing_a_blocks_own_output_back_changes_no_logit(lm):
    states = last_token_states(lm, PROMPTS)
    clean = last_logits(lm, PROMPTS)
    for layer in range(lm.n_layers):
        patched = last_logits(lm, PROMPTS, states[:, layer], [layer] * len(PROMPTS))
        torch.testing.assert_close(patched, clean, rtol=1e-5, atol=1e-5)


def test_patching_another_state_does_change_the_logits(lm):
    states = last_token_states(lm, PROMPTS)
    clean = last_logits(lm, PROMPTS)
    patched = last_logits(lm, PROMPTS, states[[1, 2, 0], 0], [0, 0, 0])
    assert not torch.allclose(patched, clean, atol=1e-4)


def test_final_norm_and_unembedding_of_the_last_block_give_the_logits(lm):
    states = last_token_states(lm, PROMPTS)
    torch.testing.assert_close(lm.logits_of(states[:, -1]), last_logits(lm, PROMPTS), rtol=1e-4, atol=1e-4)


def test_a_left_padded_batch_equals_each_prompt_alone(lm):
    batch = last_logits(lm, PROMPTS)
    alone = torch.cat([last_logits(lm, [p]) for p in PROMPTS])
    torch.testing.assert_close(batch, alone, rtol=1e-4, atol=1e-4)
    states = last_token_states(lm, PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        torch.testing.assert_close(states[i], last_token_states(lm, [prompt])[0], rtol=1e-4, atol=1e-4)


def test_theta_equals_transformers_hidden_states(lm):
    states = last_token_states(lm, PROMPTS)
    batch = encode(lm.tokenizer, PROMPTS)
    with torch.no_grad():
        hidden = lm.model(**batch.kwargs(), output_hidden_states=True).hidden_states
    assert len(hidden) == lm.n_layers + 1
    for layer in range(lm.n_layers - 1):  # transformers applies the final norm to its last entry
        torch.testing.assert_close(states[:, layer], hidden[layer + 1][:, -1].float(), rtol=1e-5, atol=1e-5)


def test_layers_may_differ_within_one_batch(lm):
    states = last_token_states(lm, PROMPTS)
    layers = [0, lm.n_layers - 1, 1]
    thetas = states[[2, 0, 1], 0]
    mixed = last_logits(lm, PROMPTS, thetas, layers)
    for i, prompt in enumerate(PROMPTS):
        torch.testing.assert_close(mixed[i], last_logits(lm, [prompt], thetas[i:i + 1], [layers[i]])[0],
                                   rtol=1e-4, atol=1e-4)


def test_hooks_sit_only_on_touched_blocks_and_are_removed_after_an_exception(lm):
    def boom(_hidden):
        raise RuntimeError("boom")

    before = [len(block._forward_hooks) for block in lm.blocks]
    with pytest.raises(RuntimeError):
        with block_hooks(lm, {1: boom}):
            assert [len(b._forward_hooks) - n for b, n in zip(lm.blocks, before)] == [
                int(i == 1) for i in range(lm.n_layers)]
            last_logits(lm, PROMPTS[:1])
    assert [len(block._forward_hooks) for block in lm.blocks] == before


def test_a_hook_sees_and_returns_a_tensor(lm):
    """Blocks return tuples in some architectures: the hook still gets a tensor, and what it returns is used."""
    seen = []

    def zero(hidden):
        seen.append(type(hidden))
        return torch.zeros_like(hidden)

    plain = last_logits(lm, PROMPTS[:1])
    with block_hooks(lm, {lm.n_layers - 1: zero}):
        zeroed = last_logits(lm, PROMPTS[:1])
    with block_hooks(lm, {0: lambda hidden: None}):
        kept = last_logits(lm, PROMPTS[:1])
    assert seen == [torch.Tensor] and not torch.allclose(plain, zeroed)
    torch.testing.assert_close(plain, kept)


def test_a_layer_out_of_range_names_the_valid_range(lm):
    with pytest.raises(TvlibError, match=rf"0\.\.{lm.n_layers - 1}"):
        last_logits(lm, PROMPTS, torch.zeros(3, 64), [0, 1, lm.n_layers])


def test_auto_dtype_is_float32_where_bfloat16_would_be_emulated(monkeypatch):
    import tvlib.models as models

    monkeypatch.setattr(models, "native_bfloat16", lambda: False)
    assert models.resolve_dtype("auto", "cpu") == torch.float32 and models.dtype_name("auto") == "float32"
    monkeypatch.setattr(models, "native_bfloat16", lambda: True)
    assert models.resolve_dtype("auto", "cpu") == torch.bfloat16 and models.dtype_name("auto") == "bfloat16"
    assert models.dtype_name("fp32") == "float32" and models.resolve_dtype(torch.float16) == torch.float16
    with pytest.raises(TvlibError, match="unknown dtype 'float8'"):
        models.resolve_dtype("float8")


def test_a_stored_result_is_keyed_by_the_concrete_dtype(monkeypatch):
    import tvlib.models as models
    from tvlib.runs import Runner

    monkeypatch.setattr(models, "native_bfloat16", lambda: False)
    assert Runner()._config("main", Runner().protocol)["dtype"] == "float32"
    assert Runner(dtype="auto")._config("main", Runner().protocol)["dtype"] == "float32"
    assert Runner(dtype="bfloat16")._config("main", Runner().protocol)["dtype"] == "bfloat16"


def test_importing_tvlib_changes_nothing_in_the_callers_process():
    """The offline switch and warning filters are applied when tvlib first loads a model, not on import."""
    import os
    import subprocess
    import sys

    code = ("import os, warnings, torch, pandas, matplotlib, seaborn, sklearn; before = len(warnings.filters); "
            "import tvlib.book, tvlib.claims, tvlib.models, tvlib.plots, tvlib.runs; "
            "assert 'HF_HUB_OFFLINE' not in os.environ; assert len(warnings.filters) == before")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_NO_ADVISORY_WARNINGS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr

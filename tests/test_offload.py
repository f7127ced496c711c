"""Large models: blocks placed by an accelerate device_map, some offloaded to CPU or disk, give the same theta and
the same answers as the plain model (reading and writing theta does not care where a block's weights live)."""

import pytest
import torch

from tvlib import vectors
from tvlib.models import load_model, wrap
from tvlib.tiny import save_tiny

PROMPTS = ["example:a->A\nexample:b->", "example:k->K\nexample:q->Q\nexample:z->", "example:m->"]


@pytest.fixture(scope="module")
def plain_and_offloaded(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    folder = save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", layers=4)
    plain = load_model(str(folder), "cpu", "float32")
    placement = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
                 "model.layers.1": "cpu", "model.layers.2": "disk", "model.layers.3": "disk", "model.norm": "cpu",
                 "lm_head": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, device_map=placement,
                                                 offload_folder=str(tmp_path_factory.mktemp("offload")))
    return plain, wrap(model, plain.tokenizer, "offloaded")


def test_the_blocks_really_are_offloaded(plain_and_offloaded):
    _, offloaded = plain_and_offloaded
    assert {p.device.type for p in offloaded.blocks[3].parameters()} == {"meta"}  # weights wait on disk
    assert offloaded.device == torch.device("cpu")


def test_theta_and_patched_answers_match_the_plain_model(plain_and_offloaded):
    plain, offloaded = plain_and_offloaded
    states = vectors.last_token_states(plain, PROMPTS)
    torch.testing.assert_close(vectors.last_token_states(offloaded, PROMPTS), states)
    layers = [1, 2, 3]  # a block in memory, and two whose weights come from disk
    thetas = states[[2, 0, 1], layers]
    torch.testing.assert_close(vectors.last_logits(offloaded, PROMPTS, thetas, layers),
                               vectors.last_logits(plain, PROMPTS, thetas, layers))
    fast = vectors.sweep(offloaded, PROMPTS, states, [0, 2, 3])
    assert fast.ids == vectors.sweep(plain, PROMPTS, states, [0, 2, 3]).ids

"""Tiny randomly initialised models of the paper's architectures, for tests and dry runs with no download."""

from __future__ import annotations

from pathlib import Path

import torch

from tvlib.models import LM, wrap
from tvlib.shapes import char_tokenizer

ARCHITECTURES = ("llama", "gemma3_text", "qwen2", "gpt_neox", "gptj", "gpt2")


def tiny_config(arch: str, vocab_size: int, layers: int = 4):
    """A config of the given model_type with a handful of small layers."""
    from transformers import AutoConfig

    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    sizes = {
        "gpt2": dict(n_layer=layers, n_embd=64, n_head=4, n_positions=256),
        "gptj": dict(n_layer=layers, n_embd=64, n_head=4, n_positions=256, rotary_dim=8),
        "gpt_neox": dict(num_hidden_layers=layers, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                         max_position_embeddings=256),
    }.get(arch, dict(num_hidden_layers=layers, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=128, max_position_embeddings=256, head_dim=16))
    if arch == "gemma3_text":
        sizes.update(sliding_window=16, layer_types=["sliding_attention", "full_attention"] * (layers // 2))
    return AutoConfig.for_model(arch, **common, **sizes)


def tiny_lm(arch: str, layers: int = 4, seed: int = 0, tokenizer=None) -> LM:
    """A randomly initialised model of `arch` in float32, with the character tokenizer unless one is given."""
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer or char_tokenizer()
    torch.manual_seed(seed)
    config = tiny_config(arch, len(tokenizer), layers)
    config.tie_word_embeddings = True  # half the size when the vocabulary is large (Gemma's 262k)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return wrap(model, tokenizer, f"tiny-{arch}")


def save_tiny(arch: str, folder: str | Path, layers: int = 4, tokenizer=None) -> Path:
    """Write a tiny model to a folder, so it can be passed as `--model PATH` (papermill, the command line)."""
    lm = tiny_lm(arch, layers, tokenizer=tokenizer)
    folder = Path(folder)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder

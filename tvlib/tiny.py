"""Tiny randomly initialised models of the paper's architectures, for tests and dry runs with no download."""

from __future__ import annotations

import string
from pathlib import Path

import torch

from tvlib.errors import TvlibError
from tvlib.models import LM, wrap

ARCHITECTURES = ("llama", "gemma3_text", "qwen2", "gpt_neox", "gptj", "gpt2")


def char_tokenizer():
    """A character-level fast tokenizer (printable ASCII + <bos>/<eos>/<pad>), built in code: no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\r\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", *chars])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")


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


# --------------------------------------------------------------------------- the paper's shapes, randomly initialised

PAPER_SHAPES: dict[str, tuple[str, dict]] = {
    "llama-7b": ("llama", dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                               num_key_value_heads=32, intermediate_size=11008, vocab_size=32000,
                               max_position_embeddings=2048, rms_norm_eps=1e-6)),
    "gpt-j-6b": ("gptj", dict(n_embd=4096, n_layer=28, n_head=16, rotary_dim=64, vocab_size=50400,
                              n_positions=2048)),
    "pythia-6.9b": ("gpt_neox", dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                                     intermediate_size=16384, vocab_size=50432, max_position_embeddings=2048,
                                     rotary_pct=0.25)),
}

# (hidden, layers, heads, intermediate) keys of each architecture's config
_SIZE_KEYS = {"gptj": ("n_embd", "n_layer", "n_head", None),
              "llama": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"),
              "gpt_neox": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}


def paper_shape_config(name: str, scale: int = 1):
    """The config of a paper model with hidden, intermediate, layer and head counts divided by `scale`.

    Heads shrink with the width, so the head size stays the paper's until one head is left (heads always divide
    hidden); the vocabulary keeps its size.
    """
    from transformers import AutoConfig

    if name not in PAPER_SHAPES:
        raise TvlibError(f"unknown paper shape {name!r}: use one of {', '.join(PAPER_SHAPES)}")
    if scale < 1:
        raise TvlibError(f"scale must be a positive integer, not {scale}")
    arch, sizes = PAPER_SHAPES[name]
    sizes = dict(sizes)
    hidden, layers, heads, inter = _SIZE_KEYS[arch]
    sizes[hidden] = max(8, sizes[hidden] // scale)
    sizes[layers] = max(1, sizes[layers] // scale)
    n_heads = max(1, sizes[heads] // scale)
    while sizes[hidden] % n_heads:
        n_heads -= 1
    sizes[heads] = n_heads
    if "num_key_value_heads" in sizes:
        sizes["num_key_value_heads"] = n_heads
    if inter:
        sizes[inter] = max(8, sizes[inter] // scale)
    if "rotary_dim" in sizes:
        sizes["rotary_dim"] = min(sizes["rotary_dim"], sizes[hidden] // n_heads)
    return AutoConfig.for_model(arch, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
                                **sizes)


def paper_shape_lm(name: str, device: str = "cpu", dtype: str | torch.dtype = "float32", scale: int = 1,
                   seed: int = 0) -> LM:
    """A randomly initialised model of a paper shape (PAPER_SHAPES), to time a GPU without downloading weights.

    It uses the character tokenizer (`char_tokenizer`), so a prompt is several times more tokens than with the
    paper's BPE tokenizers (roughly 2x for single letters, ~4x for words): seconds per task are pessimistic, and
    only tasks whose outputs are single characters (e.g. algorithmic_to_upper, _next_letter) survive the
    single-token filter. Weights are drawn in float32 from `seed` and then cast, so a bfloat16 model and its
    float32 rebuild are the same weights rounded. On CUDA the model is built on the GPU directly (no 27 GB CPU copy).
    """
    from transformers import AutoModelForCausalLM

    from tvlib.models import _check_device, resolve_dtype

    _check_device(device)
    config = paper_shape_config(name, scale)
    torch.manual_seed(seed)
    if device.startswith("cuda"):
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(device)
    model = model.to(resolve_dtype(dtype, device))
    suffix = f"/{scale}" if scale > 1 else ""
    return wrap(model, char_tokenizer(), f"random-{name}{suffix}")

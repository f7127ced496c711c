"""`compute`: every result the chapters need for one model, in one process with one model load, in a fixed order,
so that `run-book --stored` then executes the chapters from stored results alone, and a shard i/N (a GPU of a node,
a task of a cluster's array job) always takes the same units.

A unit is one stored result (or one experiment that stores several files at once). The units of every chapter are
listed in chapter order, per-task units first (they are most of the work and split evenly), then those that read
across tasks; each is skipped when already stored. The chapter parameters are the chapters' own defaults overlaid
with the profile's and `-p`'s, read as `run-book` reads them, so both compute the same results.
"""

from __future__ import annotations

import ast
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from tvlib import book, runbook, store
from tvlib.errors import TvlibError
from tvlib.experiments import Protocol, summarize
from tvlib.progress import progress_bar

PROTOCOL = ("n_dev", "n_test", "n_baseline", "demos", "seed")


@dataclass(frozen=True)
class Unit:
    """One piece of stored work: a label that names it (the same in every process) and how to compute it."""

    label: str
    run: Callable[[], object]
    per_task: bool = False


def chapter_parameters(notebook: Path, given: dict) -> dict:
    """The values a chapter runs with: its parameters cell's defaults, overlaid with `given` where it declares them."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    values = {}
    for name, spec in declared.items():
        try:
            values[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            values[name] = spec["default"]
    return values | {k: v for k, v in given.items() if k in declared}


def _runner(p: dict, models: dict):
    """The Runner a chapter's `book.setup` makes from its parameters, sharing `models` (one load per process)."""
    from tvlib.runs import Runner
    from tvlib.tasks import task_list

    protocol = Protocol(**{k: p[k] for k in PROTOCOL if k in p})
    runner = Runner(p["model"], p.get("device", "cpu"), p.get("dtype", "float32"), protocol, p.get("results_dir"),
                    shared=models)
    return runner, task_list(p.get("tasks", "all"))


def _main(runner, names: list[str]) -> list[Unit]:
    where = runner.place("main").name
    return [Unit(f"{where}/{t}", lambda t=t: runner.main(t, measures=True), per_task=True) for t in names]


def _ch01(runner, names, p):
    return [Unit(f"trace/{p['task']}", lambda: runner.trace(p["task"]))]


def _ch03(runner, names, p):
    seeds = [int(s) for s in str(p.get("seeds", runner.protocol.seed)).split(",") if s.strip()]
    return [u for s in seeds for u in _main(replace(runner, protocol=replace(runner.protocol, seed=s)), names)]


def _ch04(runner, names, p):
    return _main(runner, names) + [Unit(f"robustness/{p['layer']}", lambda: runner.robustness(
        names, p["layer"], n=p["n_vectors"], demos=p["robustness_demos"]))]


def _ch05(runner, names, p):
    from tvlib.runs import CONFLICTS

    def dominance():  # B's main experiment for the pairs this tokenizer can answer, as the chapter reads it
        rows = runner.conflicting(CONFLICTS, n=p["n_queries"], demos=p["conflict_demos"])
        return runner.main_all(sorted(set(rows["task_b"])), measures=True)
    return [Unit("conflicting", dominance)]


def _ch06(runner, names, p):
    return _main(runner, names) + [Unit("projection", lambda: runner.projection(names, top=p["top"]))]


def _ch07(runner, names, p):
    return _main(runner, names) + [Unit(f"robustness/{at}", lambda at=at: runner.robustness(
        names, at, n=p["n_vectors"], demos=p["robustness_demos"])) for at in (None, "window")]


def _ch08(runner, names, p):
    from tvlib import beyond

    def tables():
        picked = beyond.pick_tasks(summarize(runner.main_all(names)), p["per_category"])
        return beyond.tables(runner, picked, counts=tuple(int(k) for k in str(p["demo_counts"]).split(",")))
    return _main(runner, names) + [Unit("beyond", tables)]


def _ch09(runner, names, p):
    return _main(runner, names) + [Unit("function_vectors", lambda: runner.function_vectors(names, k=p["k"]))]


def _ch10(runner, names, p):
    from tvlib import multitoken

    def several():
        chosen = multitoken.split_tasks(runner.answer_lengths(), names, p["min_split"]) or names
        return runner.several_tokens(chosen, p["max_new_tokens"])
    return [Unit("several_tokens", several)]


def _ch11(runner, names, p):
    def accounts():
        runner.accounts(names)
        runner.position_reads(runner.continuous(names)["tasks"])
    return _main(runner, names) + [Unit("accounts", accounts)]


NEEDS = {"01": _ch01, "02": lambda r, n, p: _main(r, n), "03": _ch03, "04": _ch04, "05": _ch05, "06": _ch06,
         "07": _ch07, "08": _ch08, "09": _ch09, "10": _ch10, "11": _ch11}
"""What each chapter computes, by the same Runner calls its cells make (a test runs every chapter from these alone)."""


def plan(model: str, device: str = "cpu", dtype: str = "float32", profile: str = "paper",
         parameters: dict | None = None, out: Path | str | None = None,
         chapters: list[str] | None = None, models: dict | None = None) -> tuple[list[Unit], Path]:
    """Every unit the chapters need, deduplicated by label, per-task units first, in chapter order; and the run
    folder (`run-book`'s, so `run-book --stored` finds the results). `models` may hold the model already loaded,
    keyed (model, device, dtype), as the dry run's stand-in is."""
    config = runbook.configuration(model, device, dtype, profile, parameters or {})
    out = Path(out or runbook.default_out(model, profile)).resolve()
    given = {"model": model, "device": device, "dtype": dtype, **config["parameters"],
             "results_dir": str(out / "results")}
    models = {} if models is None else models  # every runner of the plan loads the model here: one load per process
    found: dict[str, Unit] = {}
    notebooks = book.chapters(chapters)
    declared = set().union(*runbook.declared_parameters(notebooks).values())
    unknown = sorted(set(config["parameters"]) - declared)
    if unknown:
        raise TvlibError(f"no chapter takes the parameter(s) {', '.join(unknown)}; they take: "
                         f"{', '.join(sorted(declared))}")
    for notebook in notebooks:
        needs = NEEDS.get(notebook.stem[:2])
        if needs is None:
            continue
        p = chapter_parameters(notebook, given)
        runner, names = _runner(p, models)
        for unit in needs(runner, names, p):
            found.setdefault(unit.label, unit)
    units = list(found.values())
    return [u for u in units if u.per_task] + [u for u in units if not u.per_task], out


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/N' (0 <= i < N) into (i, N); None is the whole plan, (0, 1)."""
    if text is None:
        return 0, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise TvlibError(f"--shard takes i/N with whole numbers, e.g. 0/4, not {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise TvlibError(f"--shard {text}: N must be at least 1 and i between 0 and N-1")
    return index, count


def launcher_shard() -> tuple[int, int] | None:
    """The shard a launcher gave this process: accelerate's (and torchrun's) RANK and WORLD_SIZE, an MPI rank (what
    `accelerate launch --cpu` starts several processes with), or a SLURM array task's; None outside a launcher."""
    for rank, size in (("RANK", "WORLD_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                       ("PMI_RANK", "PMI_SIZE"), ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")):
        if rank in os.environ and size in os.environ:
            return int(os.environ[rank]), int(os.environ[size])
    return None


def rank_device(device: str) -> str:
    """`cuda` inside a launcher's rank means that rank's own GPU (LOCAL_RANK), not every rank's first one."""
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{local}" if device == "cuda" and local is not None else device


def mine(units: list[Unit], shard: tuple[int, int]) -> list[Unit]:
    """Shard i of N: every N-th unit from the i-th, so shards differ by at most one unit of each kind."""
    index, count = shard
    return units[index::count]


def run(units: list[Unit]) -> list[dict]:
    """Each unit in order (already stored ones return at once), timed, with its peak GPU memory where there is a
    GPU; one line per unit on stderr."""
    import torch

    gpu = torch.cuda.is_available()
    done = []
    for unit in progress_bar(units, "compute", enabled=None):
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        unit.run()
        seconds = round(time.perf_counter() - start, 1)
        peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None
        done.append({"unit": unit.label, "seconds": seconds, "peak_gpu_gib": peak})
        print(f"{unit.label}: {seconds:.1f} s" + (f", peak {peak} GiB on the GPU" if gpu else ""), file=sys.stderr,
              flush=True)
    return done


def record(out: Path, done: list[dict], shard: tuple[int, int]) -> Path:
    """compute_<i>of<N>.csv in the run folder: what this shard ran and how long each unit took."""
    import pandas as pd

    path = out / f"compute_{shard[0]}of{shard[1]}.csv"
    store.write_csv(path, pd.DataFrame(done, columns=["unit", "seconds", "peak_gpu_gib"]))
    return path


def weights(model: str, dtype: str) -> tuple[int, int, object]:
    """Parameters and bytes of the model in `dtype`, from its config alone (built on the meta device: no memory,
    no download beyond the config), and the config."""
    import torch
    from transformers import AutoModelForCausalLM

    from tvlib.models import model_config

    config = model_config(model)
    with torch.device("meta"):
        built = AutoModelForCausalLM.from_config(getattr(config, "text_config", None) or config)
    count = sum(p.numel() for p in built.parameters())
    size = torch.empty((), dtype=getattr(torch, dtype if dtype != "auto" else "float32")).element_size()
    return count, count * size, getattr(config, "text_config", None) or config


def activation_bytes(config, protocol: Protocol, prompt_tokens: int = 64) -> int:
    """An upper estimate of one batch's peak activations on the fast path: a continuation batch's float32 logits
    over the vocabulary with the measures' working copies (four of them), plus the prefix batch's keys and values
    at every block."""
    rows = 16 * protocol.batch_size  # vectors._run: continuations go 16x wider than prompts
    logits = 4 * rows * config.vocab_size * 4
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cache = 2 * config.num_hidden_layers * 2 * protocol.batch_size * prompt_tokens * heads * head_dim * 4
    return logits + cache


def main_passes(protocol: Protocol, n_layers: int) -> int:
    """Prompts through the model for one task's main experiment: the baseline queries, A's dummy prompts and ICL
    on the test contexts, A on the dev contexts, and the patched bare query at every layer on both."""
    return (protocol.n_baseline + protocol.n_test * (protocol.n_dummy + 1) + protocol.n_dev * protocol.n_dummy
            + n_layers * (protocol.n_dev + protocol.n_test))


def stand_in(model: str):
    """A tiny random model with the model's tokenizer, depth and heads: the same prompts, batches and forward
    passes as the model itself (only generation lengths depend on the weights), at a fraction of the work."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tvlib.models import load_tokenizer, model_config, wrap

    real = model_config(model)
    real = getattr(real, "text_config", None) or real
    heads = int(getattr(real, "num_attention_heads", None) or getattr(real, "n_head"))
    layers = int(getattr(real, "num_hidden_layers", None) or getattr(real, "n_layer"))
    tokenizer = load_tokenizer(model)
    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), num_hidden_layers=layers,
                                  num_attention_heads=heads, num_key_value_heads=heads, head_dim=8,
                                  hidden_size=8 * heads, intermediate_size=16 * heads, max_position_embeddings=4096,
                                  tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    return wrap(AutoModelForCausalLM.from_config(config, dtype=torch.float32), tokenizer, f"stand-in for {model}")


def counted(settings: dict) -> list[dict]:
    """Every unit of the plan run on the stand-in in a scratch folder: its forward passes and tokens, and the
    multiply-accumulates they would take on the model (its weights per token, its unembedding per row)."""
    import tempfile

    from tvlib.bench import count_macs

    count, _, real = weights(settings["model"], "float32")
    vocab, width = real.vocab_size, real.hidden_size
    per_token = count - vocab * width * (1 if getattr(real, "tie_word_embeddings", True) else 2)
    lm = stand_in(settings["model"])
    block_weights = sum(p.numel() for block in lm.blocks for p in block.parameters())
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        key = (settings["model"], settings.get("device", "cpu"), settings.get("dtype", "float32"))
        units, _ = plan(**{**settings, "out": scratch, "models": {key: lm}})
        for unit in progress_bar(units, "dry run", enabled=None):
            with count_macs(lm) as counter:
                unit.run()
            tokens = counter.blocks // block_weights
            macs = tokens * per_token + counter.unembed // lm.unembed.weight.numel() * vocab * width
            rows.append({"unit": unit.label, "forwards": counter.forwards, "tokens": tokens, "gmacs": macs / 1e9})
    return rows


def describe(units: list[Unit], chosen: list[Unit], shard: tuple[int, int], model: str, dtype: str,
             protocol: Protocol = Protocol(), counts: list[dict] | None = None) -> list[str]:
    """What `compute --dry-run` prints: the weights, a batch's activations, this shard's units and, with `counts`
    (`counted`), each unit's forward passes, tokens and multiply-accumulates on the model."""
    count, size, config = weights(model, dtype)
    lines = [f"model {model}: {count / 1e6:.1f} M parameters, {size / 2**30:.2f} GiB of weights in {dtype}",
             f"peak activations per batch (batch size {protocol.batch_size}): about "
             f"{activation_bytes(config, protocol) / 2**30:.2f} GiB (halved automatically on an out-of-memory error)",
             f"main experiment: {main_passes(protocol, config.num_hidden_layers)} prompts through the model per task",
             f"shard {shard[0]}/{shard[1]}: {len(chosen)} of {len(units)} units (those already stored return at once)"]
    found = {row["unit"]: row for row in counts or []}
    for unit in chosen:
        row = found.get(unit.label)
        lines.append(f"  {unit.label}" + (f": {row['forwards']} forward passes, {row['tokens']} tokens, "
                                          f"{row['gmacs']:.0f} GMAC" if row else ""))
    if counts:
        mine = [found[u.label] for u in chosen if u.label in found]
        lines.append(f"this shard: {sum(r['forwards'] for r in mine)} forward passes, "
                     f"{sum(r['gmacs'] for r in mine) / 1e3:.1f} TMAC (counted on a stand-in with the model's "
                     "tokenizer, depth and heads; answers of several tokens as long as a random model makes them)")
    return lines


def protocol_of(profile: str = "paper", parameters: dict | None = None) -> Protocol:
    """The protocol the chapters run at for this profile and these parameters."""
    chosen = runbook.configuration("m", "cpu", "float32", profile, parameters or {})["parameters"]
    return Protocol(**{k: chosen[k] for k in PROTOCOL if k in chosen})

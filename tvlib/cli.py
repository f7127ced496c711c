"""The command line: `evaluate` runs the paper's main experiment; `tasks` lists the data; `run-book` the chapters;
`bench` times the protocol on this machine; `claims` checks the paper's five claims on stored results."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from functools import partial
from pathlib import Path

from tvlib import defaults as PAPER  # the one home of the settings; heavy modules load inside each command
from tvlib.errors import TvlibError

DEFAULT_MODEL = PAPER.DEFAULT_MODEL


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default where there is one worth showing (not None, False or an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, []) or action.help is None:
            return action.help or ""
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tvlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = partial(sub.add_parser, formatter_class=_Help)

    ev = sub.add_parser("evaluate", help="baseline, regular ICL, the dev sweep over layers, and hypothesis at the best L")
    ev.add_argument("--model", default=DEFAULT_MODEL, help="alias, local path or hub id")
    ev.add_argument("--task", action="append", required=True, help="task name or JSON file; repeat for several")
    ev.add_argument("--category", choices=["algorithmic", "translation", "linguistic", "knowledge", "custom"],
                    help="category of the --task files, which decides scoring and filter (default: the file's "
                         "folder as the paper's layout has it, knowledge/x.json, else its name's prefix, else custom)")
    ev.add_argument("--n-dev", type=int, default=PAPER.N_DEV, help="dev contexts per task, for choosing L")
    ev.add_argument("--n-test", type=int, default=PAPER.N_TEST, help="test contexts per task")
    ev.add_argument("--n-baseline", type=int, default=PAPER.N_BASELINE, help="queries without demonstrations")
    ev.add_argument("--demos", type=int, default=PAPER.DEMOS, help="demonstrations per context")
    ev.add_argument("--dummies", type=int, default=PAPER.N_DUMMY, help="dummy queries averaged into theta")
    ev.add_argument("--seed", type=int, default=PAPER.SEED, help="seed of the context sampling")
    ev.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, or auto (accelerate device_map)")
    ev.add_argument("--dtype", default="auto",
                    help="auto (bfloat16 on a GPU or a CPU with native bfloat16, else float32), float32, bfloat16 "
                         "or float16")
    ev.add_argument("--batch-size", type=int, default=PAPER.BATCH_SIZE, help="prompts per forward pass")
    ev.add_argument("--max-new-tokens", type=int, metavar="N",
                    help="answers of several tokens: keep every pair, generate up to N tokens an answer (to the "
                         "newline), and report whole-answer accuracy, L chosen on dev by whole answers")
    ev.add_argument("--patch", choices=["prefill", "every_step"], default="prefill",
                    help="with --max-new-tokens: write theta at the prompt's last position only, or at every step")
    ev.add_argument("--json", action="store_true", help="one JSON object per task per line on stdout (progress "
                                                          "bars stay on stderr)")
    ev.add_argument("--out", help="also write every prediction to this CSV file")

    ts = sub.add_parser("tasks", help="list the tasks with their sizes before and after the paper's filter, and how "
                                      "many answers take several tokens")
    ts.add_argument("--model", default=DEFAULT_MODEL, help="tokenizer for the paper's per-tokenizer filter")
    ts.add_argument("--json", action="store_true")
    rb = sub.add_parser("run-book", help="execute every chapter with papermill into a run folder (resumable), "
                                         "or in place; --build renders the run as a book")
    rb.add_argument("--model", default=DEFAULT_MODEL, help="alias, local path or hub id")
    rb.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, or auto (accelerate device_map, offloading "
                                                     "to CPU and disk when the model does not fit)")
    rb.add_argument("--dtype", default="float32", help="float32 (the stored results), bfloat16 or float16")
    rb.add_argument("--profile", default="paper", choices=sorted(PAPER.PROFILES),
                    help="paper: the paper's protocol; quick: 5 tasks and few contexts, a smoke run")
    rb.add_argument("--random-config", metavar="SHAPE", help="instead of --model, a randomly initialised paper "
                    "shape (llama-7b, gpt-j-6b, pythia-6.9b; e.g. llama-7b/16 divides its sizes by 16): the GPU "
                    "path with no download; the character tokenizer limits it to one-letter tasks")
    rb.add_argument("--out", help="run folder (default: runs/<model>-<profile>/); a chapter already executed there "
                                  "for the same settings is skipped")
    rb.add_argument("--in-place", action="store_true",
                    help="overwrite the committed chapters/ instead (default model, paper profile only)")
    rb.add_argument("--build", action="store_true", help="then render the run folder's notebooks as a book "
                                                         "(<out>/book/_build/html)")
    rb.add_argument("--chapter", action="append", help="e.g. 03, 03_accuracy or verdict; repeat (default: every chapter)")
    rb.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help="any other chapter parameter, the value read as YAML: -p tasks knowledge -p n_test 20 "
                         "-p layer null -p tasks '[algorithmic_to_upper, translation_en_fr]'")
    rb.add_argument("--stored", action="store_true", help="read stored results only (what `compute` stored): no "
                                                          "chapter loads the model; a missing result is an error")
    cp = sub.add_parser("compute", help="every result the chapters need, in one process with one model load, in a "
                                        "fixed order; --shard i/N (or accelerate launch, or --slurm) splits it")
    cp.add_argument("--model", default=DEFAULT_MODEL, help="alias, local path or hub id")
    cp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, or auto (accelerate device_map)")
    cp.add_argument("--dtype", default="float32", help="float32 (the stored results), bfloat16 or float16")
    cp.add_argument("--profile", default="paper", choices=sorted(PAPER.PROFILES), help="as for run-book")
    cp.add_argument("--out", help="run folder (default: runs/<model>-<profile>/, where run-book --stored reads)")
    cp.add_argument("--chapter", action="append", help="only these chapters' results (e.g. 02, 11); repeat")
    cp.add_argument("--tasks", help="the chapters' task list (as -p tasks): all, a category or comma-separated names")
    cp.add_argument("--shard", metavar="i/N", help="take units i, i+N, ... of the plan (default: accelerate's or "
                                                   "SLURM's rank when launched by one, else all)")
    cp.add_argument("--random-config", metavar="SHAPE", help="instead of --model, a randomly initialised paper shape, "
                                                             "as for run-book")
    cp.add_argument("--dry-run", action="store_true", help="print the plan (units, forward passes, memory) and "
                                                           "compute nothing")
    cp.add_argument("--count", action="store_true", help="with --dry-run: run the plan on a tiny stand-in with the "
                                                         "model's tokenizer and depth to count each unit's forward "
                                                         "passes and MACs (minutes on a CPU)")
    cp.add_argument("--slurm", metavar="PARTITION", help="submit --workers shards as a SLURM array job (submitit)")
    cp.add_argument("--workers", type=int, default=1, help="shards for --slurm (one array task each)")
    cp.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help="any chapter parameter, as for run-book")
    cl = sub.add_parser("claims", help="the paper's five claims on a model's stored results (no model load)")
    cl.add_argument("--model", default=DEFAULT_MODEL, help="alias, local path or hub id")
    cl.add_argument("--dtype", default="float32", help="dtype of the stored results")
    cl.add_argument("--results-dir", help="folder holding <model>/ results (default: this repository's results/)")
    bn = sub.add_parser("bench", help="time the protocol here: fast vs naive sweep, seconds per task, MAC rate, loads")
    bn.add_argument("--model", default=DEFAULT_MODEL, help="alias, local path or hub id")
    bn.add_argument("--tasks", help="comma-separated task names (default: algorithmic_to_upper,translation_en_fr,"
                                    "knowledge_country_capital; with --random-config three single-letter tasks)")
    bn.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    bn.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    bn.add_argument("--random-config", metavar="NAME",
                    help="a randomly initialised paper shape instead of --model (llama-7b, gpt-j-6b, pythia-6.9b; "
                         "llama-7b/16 divides its sizes by 16)")
    bn.add_argument("--batch-size", type=int, default=32)
    bn.add_argument("--json", action="store_true", help="also print the report as one JSON line before the summary")
    bn.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)  # shrink --random-config (tests)
    bn.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # 4 dev, 4 test, 4 baseline (tests)
    return parser


def _bench(args: argparse.Namespace) -> None:
    """The readable report, then the one summary line scripts parse (always last)."""
    from tvlib import bench

    size = dict(n_dev=4, n_test=4, n_baseline=4) if args.quick else {}
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    report = bench.run(args.model, tasks, args.device, args.dtype, args.random_config, args.batch_size, args.scale,
                       **size)
    lines = bench.lines(report)
    print("\n".join(lines[:-1]), flush=True)
    if args.json:
        print(bench.as_json(report))
    print(lines[-1], flush=True)


def _run_book(args: argparse.Namespace) -> None:
    from tvlib import book, runbook

    params = {name: runbook.parse_value(value) for name, value in args.param}
    if args.random_config:
        args.model = f"random:{args.random_config}"
    if args.in_place:
        if args.model != DEFAULT_MODEL or args.profile != "paper" or args.out or args.build:
            raise TvlibError("--in-place rewrites the committed chapters: only for the default model and the paper "
                             "profile, without --out or --build")
        book.run(args.chapter, None, {"model": args.model, "device": args.device, "dtype": args.dtype, **params})
        return
    out = runbook.run_book(args.model, args.device, args.dtype, args.profile, params, args.out, args.chapter,
                           args.stored)
    print(f"run folder: {out}", flush=True)
    if args.build:
        print(f"book: {runbook.build(out)}", flush=True)


def _compute(args: argparse.Namespace) -> None:
    """The plan, this process's shard of it (or a SLURM array of shards), run or only described."""
    from tvlib import compute, runbook

    params = {name: runbook.parse_value(value) for name, value in args.param}
    if args.tasks:
        params["tasks"] = args.tasks
    if args.random_config:
        args.model = f"random:{args.random_config}"
    settings = dict(model=args.model, device=compute.rank_device(args.device), dtype=args.dtype, profile=args.profile,
                    parameters=params, out=args.out, chapters=args.chapter)
    if args.slurm:
        from tvlib import cluster

        print(cluster.submit(settings, args.slurm, args.workers)[0], flush=True)
        return
    shard = compute.parse_shard(args.shard) if args.shard else compute.launcher_shard() or (0, 1)
    units, out = compute.plan(**settings)
    chosen = compute.mine(units, shard)
    if args.dry_run:
        protocol = compute.protocol_of(args.profile, params)
        counts = compute.counted(settings) if args.count else None
        print("\n".join(compute.describe(units, chosen, shard, args.model, args.dtype, protocol, counts)), flush=True)
        return
    done = compute.run(chosen)
    print(f"shard {shard[0]}/{shard[1]}: {len(done)} of {len(units)} units, {sum(d['seconds'] for d in done):.0f} s; "
          f"record {compute.record(out, done, shard)}; results in {out / 'results'}", flush=True)


def _evaluate(args: argparse.Namespace) -> None:
    import pandas as pd

    if args.max_new_tokens is not None:
        return _evaluate_whole(args)

    from tvlib.experiments import dev_curve, evaluate_task, summarize
    from tvlib.intervals import per_task, task_replicates
    from tvlib.models import load_model
    from tvlib.store import write_csv

    protocol, tasks = _protocol_and_tasks(args)
    lm = load_model(args.model, args.device, args.dtype)
    frames = []
    for i, task in enumerate(tasks, 1):
        logging.getLogger("tvlib").info(
            "%s (task %d of %d): %d baseline queries, %d dev and %d test contexts, swept over %d blocks", task.name,
            i, len(tasks), protocol.n_baseline, protocol.n_dev, protocol.n_test, lm.n_layers)
        frame = evaluate_task(lm, task, protocol)
        frames.append(frame)
        row = summarize(frame).iloc[0]
        curve = dev_curve(frame).sort_values("layer")["accuracy"].round(4).tolist()
        out = {"task": task.name, "baseline": row["baseline"], "regular": row["regular"],
               "hypothesis": row["hypothesis"], "best_layer": int(row["best_layer"]), "dev_curve": curve}
        ci = per_task(task_replicates(frame)).iloc[0]
        out.update({f"{m}_ci": [round(float(ci[f"{m}_low"]), 4), round(float(ci[f"{m}_high"]), 4)]
                    for m in ("baseline", "regular", "hypothesis")})
        if args.json:
            print(json.dumps(out), flush=True)
        else:
            print(f"{task.name}: baseline {out['baseline']:.2f}  regular {out['regular']:.2f}  "
                  f"hypothesis {out['hypothesis']:.2f} at layer {out['best_layer']} of {lm.n_layers}  "
                  f"(95% intervals: baseline {out['baseline_ci']}, regular {out['regular_ci']}, "
                  f"hypothesis {out['hypothesis_ci']})")
            print("  dev accuracy by layer: " + " ".join(f"{a:.2f}" for a in curve), flush=True)
    if args.out:
        write_csv(args.out, pd.concat(frames, ignore_index=True))


def _protocol_and_tasks(args: argparse.Namespace) -> tuple:
    """The protocol and tasks `evaluate` was asked for: both checked before any model loads."""
    from tvlib.experiments import Protocol
    from tvlib.tasks import load_task

    protocol = Protocol(n_dev=args.n_dev, n_test=args.n_test, n_baseline=args.n_baseline, demos=args.demos,
                        n_dummy=args.dummies, seed=args.seed, batch_size=args.batch_size, progress=True)
    tasks = [load_task(t, args.category if t.endswith(".json") or Path(t).exists() else None) for t in args.task]
    return protocol, tasks


def _evaluate_whole(args: argparse.Namespace) -> None:
    """`evaluate --max-new-tokens N`: whole-answer accuracy of the query alone, ICL and theta (one patch), each with
    its bootstrap 95% interval over queries or test contexts; L is chosen on dev by whole answers and held fixed."""
    import pandas as pd

    from tvlib import multitoken
    from tvlib.intervals import proportion
    from tvlib.models import load_model
    from tvlib.store import write_csv

    if args.max_new_tokens < 1:
        raise TvlibError(f"--max-new-tokens must be at least 1, not {args.max_new_tokens}")
    protocol, tasks = _protocol_and_tasks(args)
    lm = load_model(args.model, args.device, args.dtype)
    frames = []
    for i, task in enumerate(tasks, 1):
        logging.getLogger("tvlib").info("%s (task %d of %d): whole answers of up to %d tokens, theta at %s",
                                        task.name, i, len(tasks), args.max_new_tokens, args.patch)
        frame = multitoken.evaluate_task(lm, task, protocol, args.max_new_tokens, (args.patch,))
        frames.append(frame)
        out = {"task": task.name, "patch": args.patch, "max_new_tokens": args.max_new_tokens}
        for method in ("baseline", "regular", "hypothesis"):
            part = frame[(frame["split"] != "dev") & (frame["method"] == method)]
            for rule, column in (("whole", "correct_whole"), ("first_token", "correct_first")):
                values = part[column].to_numpy(float)
                out[f"{method}_{rule}"] = round(float(values.mean()), 4)
                out[f"{method}_{rule}_ci"] = [round(v, 4) for v in proportion(values)]
            if method == "hypothesis":
                out["best_layer"] = int(part["layer"].iloc[0])
        if args.json:
            print(json.dumps(out), flush=True)
        else:
            print(f"{task.name}, whole answers (up to {args.max_new_tokens} tokens, theta at {args.patch}): "
                  + "  ".join(f"{m} {out[f'{m}_whole']:.2f} {out[f'{m}_whole_ci']}"
                              for m in ("baseline", "regular", "hypothesis"))
                  + f"  at layer {out['best_layer']} of {lm.n_layers} (chosen on dev by whole answers)")
            print("  by the first token: " + "  ".join(f"{m} {out[f'{m}_first_token']:.2f}"
                                                     for m in ("baseline", "regular", "hypothesis")), flush=True)
    if args.out:
        write_csv(args.out, pd.concat(frames, ignore_index=True))


def _claims(args: argparse.Namespace) -> None:
    from tvlib.claims import report

    for line in report(args.model, args.results_dir, args.dtype):
        print(line, flush=True)


def _tasks(args: argparse.Namespace) -> None:
    from tvlib.models import load_tokenizer
    from tvlib.multitoken import split_count
    from tvlib.tasks import for_tokenizer, load_task, task_names

    tokenizer = load_tokenizer(args.model)
    for name in task_names():
        task = load_task(name)
        used = for_tokenizer(task, tokenizer)
        row = {"name": name, "category": task.category, "n_pairs": len(task), "n_used": len(used.examples),
               "space": used.space, "n_several_tokens": split_count(task, tokenizer)}
        print(json.dumps(row) if args.json else f"{name:45s} {row['category']:12s} {row['n_pairs']:5d} pairs "
              f"{row['n_used']:5d} used {row['n_several_tokens']:5d} of several tokens"
              f"{' (spaced)' if used.space else ''}")


class _Stderr(logging.Handler):
    """`tvlib: message` lines on the stderr of the moment of writing (a redirected or captured one included), not
    the stream there was when the handler was made; stdout stays for the results (`--json`)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"tvlib: {record.getMessage()}", file=sys.stderr, flush=True)
        except Exception:  # a closed stream must not end the run
            self.handleError(record)


def _log_to_stderr() -> None:
    """Show the "tvlib" logger's INFO lines (model conversion and loading) on stderr: once, however often `main`
    runs in one process. Only the command line does this, so a notebook's stored outputs never carry them."""
    logger = logging.getLogger("tvlib")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run a command; a TvlibError prints its message (which names the fix) and exits 2, with no traceback."""
    args = _parser().parse_args(argv)
    _log_to_stderr()
    try:
        {"evaluate": _evaluate, "tasks": _tasks, "run-book": _run_book, "bench": _bench, "claims": _claims,
         "compute": _compute}[args.command](args)
    except TvlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `tasks --json | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0

"""`compute` on a tiny model: one model load for every chapter, then `run-book --stored` with none; shards from
accelerate launch and from submitit's local executor give the bytes of one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tvlib import cluster, compute
from tvlib.errors import TvlibError
from tvlib.tiny import save_tiny

SMALL = ["-p", "n_dev", "4", "-p", "n_test", "4", "-p", "n_baseline", "4"]
TASKS = "algorithmic_to_upper,algorithmic_next_letter"
CHAPTERS = ["--chapter", "02", "--chapter", "04", "--chapter", "11"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(save_tiny("llama", tmp_path_factory.mktemp("model") / "tiny", layers=4))


def _tvlib(*args: str, launcher: tuple[str, ...] = ("-m", "tvlib")) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *launcher, *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _results(folder: Path) -> dict:
    """Every stored file's bytes under a run folder's results/, a manifest's compute time aside."""
    found = {}
    for path in sorted((folder / "results").rglob("*")):
        if path.is_dir() or path.name.endswith(".lock"):
            continue
        key = path.relative_to(folder).as_posix()
        if path.suffix == ".json":
            meta = json.loads(path.read_text())
            meta.pop("computed", None)
            found[key] = meta
        else:
            found[key] = path.read_bytes()
    return found


def test_compute_loads_the_model_once_and_every_chapter_then_runs_without_it(tiny, tmp_path):
    out = tmp_path / "run"
    settings = ["--model", tiny, "--out", str(out), "--profile", "quick", "-p", "tasks", TASKS, *SMALL]
    done = _tvlib("compute", *settings)
    assert done.stderr.count("tvlib: loading") == 1  # every chapter's results, one load of the weights
    assert "robustness/window" in done.stderr and "accounts" in done.stderr
    _tvlib("run-book", "--stored", *settings)
    notebooks = sorted(out.glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) == 11
    for notebook in notebooks:
        outputs = ["".join(o.get("text") or o.get("data", {}).get("text/markdown") or "")
                   for cell in json.loads(notebook.read_text())["cells"] for o in cell.get("outputs", [])]
        assert outputs[0].startswith("Stored results, no model loaded"), notebook.name
        assert not any("tvlib: loading" in text for text in outputs), notebook.name


def test_two_accelerate_ranks_and_two_submitit_workers_store_what_one_process_does(tiny, tmp_path):
    settings = ["--model", tiny, "--tasks", TASKS, *CHAPTERS, *SMALL]
    _tvlib("compute", "--out", str(tmp_path / "one"), *settings)
    with socket.socket() as free:  # a port of our own, so parallel test runs do not meet
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    # --multi_gpu runs torchrun, which starts the ranks on a CPU too (accelerate 1.15 starts several --cpu
    # processes only through mpirun, which this machine lacks); each rank reads its shard from RANK/WORLD_SIZE
    ranked = _tvlib("--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                    "--dynamo_backend", "no", "--main_process_port", port, "-m", "tvlib", "compute",
                    "--out", str(tmp_path / "ranks"), *settings, launcher=("-m", "accelerate.commands.launch"))
    assert "shard 0/2" in ranked.stdout and "shard 1/2" in ranked.stdout
    plan = dict(model=tiny, parameters={"tasks": TASKS, "n_dev": 4, "n_test": 4, "n_baseline": 4},
                out=str(tmp_path / "workers"), chapters=["02", "04", "11"])
    message, jobs = cluster.submit(plan, None, 2, cluster="local")
    records = [job.result() for job in jobs]
    assert "2 of 2 shards" in message and len(set(records)) == 2
    assert cluster.pending(plan, 2) == [] and cluster.submit(plan, None, 2, cluster="local")[1] == []
    one = _results(tmp_path / "one")
    assert len(one) > 10 and _results(tmp_path / "ranks") == one and _results(tmp_path / "workers") == one


def test_a_shard_is_every_nth_unit_and_bad_shards_are_refused(monkeypatch):
    units = [compute.Unit(str(i), lambda: None) for i in range(7)]
    assert [u.label for u in compute.mine(units, (1, 3))] == ["1", "4"]
    assert sorted(u.label for i in range(3) for u in compute.mine(units, (i, 3))) == sorted(map(str, range(7)))
    assert compute.parse_shard("2/4") == (2, 4) and compute.parse_shard(None) == (0, 1)
    for bad in ("4/4", "x/2", "1/0", "-1/3"):
        with pytest.raises(TvlibError, match="shard"):
            compute.parse_shard(bad)
    for name in ("RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE",
                 "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert compute.launcher_shard() is None
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1"), monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert compute.launcher_shard() == (1, 2)


def test_the_dry_run_sizes_a_paper_model_without_its_weights():
    lines = compute.describe([], [], (0, 1), "random:llama-7b", "bfloat16")
    assert lines[0].startswith("model random:llama-7b: 6738.4 M parameters, 12.55 GiB of weights in bfloat16")
    assert "3550 prompts through the model per task" in lines[2]


def test_the_counted_dry_run_makes_the_forward_passes_the_model_makes(tiny, tmp_path):
    """The stand-in has the model's tokenizer, depth and heads, so each unit runs the same batches: its forward
    passes and tokens equal those of the model itself, counted the same way."""
    from tvlib.bench import count_macs
    from tvlib.models import load_model

    settings = dict(model=tiny, parameters={"tasks": TASKS, "n_dev": 4, "n_test": 4, "n_baseline": 4},
                    chapters=["02", "04"])
    counts = compute.counted(settings)
    lm = load_model(tiny)
    units, _ = compute.plan(**settings, out=tmp_path, models={(tiny, "cpu", "float32"): lm})
    block_weights = sum(p.numel() for block in lm.blocks for p in block.parameters())
    for unit, row in zip(units, counts):
        with count_macs(lm) as counter:
            unit.run()
        assert (row["unit"], row["forwards"], row["tokens"]) == (unit.label, counter.forwards,
                                                                counter.blocks // block_weights)
    assert all(row["forwards"] > 0 and row["gmacs"] > 0 for row in counts)
    lines = compute.describe(units, units, (0, 1), tiny, "float32", counts=counts)
    assert lines[-1].startswith(f"this shard: {sum(r['forwards'] for r in counts)} forward passes")

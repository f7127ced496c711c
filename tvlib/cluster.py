"""`compute --slurm PARTITION --workers N`: the plan's N shards as one SLURM array job through submitit, one shard
per array task; running the same command again submits only the shards that have not finished (their record
`compute_<i>of<N>.csv` is missing), which resubmits the failed ones and skips every stored result."""

from __future__ import annotations

from pathlib import Path

from tvlib import compute, runbook
from tvlib.errors import TvlibError

TIMEOUT_MIN = 24 * 60
"""Each array task's time limit, in minutes (a shard of the paper profile on LLaMA 30B fits in hours on one GPU)."""


def run_shard(settings: dict, index: int, count: int) -> str:
    """One shard, in the array task's process: the plan, its part, run and recorded (picklable by submitit)."""
    units, out = compute.plan(**settings)
    done = compute.run(compute.mine(units, (index, count)))
    return str(compute.record(out, done, (index, count)))


def _out(settings: dict) -> Path:
    return Path(settings.get("out") or runbook.default_out(settings["model"], settings.get("profile", "paper")))


def pending(settings: dict, workers: int) -> list[int]:
    """The shards with no record yet: never run, still running, or failed."""
    out = _out(settings).resolve()
    return [i for i in range(workers) if not (out / f"compute_{i}of{workers}.csv").exists()]


def executor(settings: dict, partition: str | None, cluster: str | None = "slurm"):
    """A submitit executor logging to <run folder>/slurm/ (cluster "local" runs the tasks as local processes)."""
    try:
        import submitit
    except ModuleNotFoundError:
        raise TvlibError("--slurm needs submitit: pip install submitit==1.5.4") from None
    folder = _out(settings).resolve() / "slurm"  # submitit names each task's log after its job id
    made = submitit.AutoExecutor(folder=folder, cluster=cluster)
    made.update_parameters(timeout_min=TIMEOUT_MIN, name=f"tvlib-{Path(settings['model']).name}")
    if partition and cluster == "slurm":
        made.update_parameters(slurm_partition=partition, gpus_per_node=1)
    return made


def submit(settings: dict, partition: str | None, workers: int, cluster: str | None = "slurm") -> tuple[str, list]:
    """Submit the pending shards as one array job; returns a line naming the job and where its logs go, and the
    submitit jobs (`job.result()` waits for one)."""
    if workers < 1:
        raise TvlibError(f"--workers must be at least 1, not {workers}")
    todo = pending(settings, workers)
    if not todo:
        return f"all {workers} shards have finished; results in {_out(settings) / 'results'}", []
    made = executor(settings, partition, cluster)
    if cluster == "slurm":
        made.update_parameters(slurm_array_parallelism=workers)
    jobs = made.map_array(run_shard, [settings] * len(todo), todo, [workers] * len(todo))
    return (f"submitted {len(jobs)} of {workers} shards ({', '.join(map(str, todo))}) as job "
            f"{jobs[0].job_id.split('_')[0]}; logs in {_out(settings).resolve() / 'slurm'}; run the same command "
            "again to resubmit any shard that fails"), jobs

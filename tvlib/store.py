"""Results on disk: one tidy CSV per unit of work plus a JSON manifest, written atomically, reused when the config matches.
A name ending in .csv.gz is stored gzip-compressed (for the large per-layer sweeps), byte-reproducibly as well."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import platform
from pathlib import Path
from typing import Callable

import pandas as pd

from tvlib.errors import TvlibError

READS: list[Path] = []
"""Every stored result this process has loaded or saved, in order: a page records them (`tvlib.provenance`)."""


def slug(model: str) -> str:
    """A folder name for a model: aliases stay, hub ids lose their slash, local paths keep their last part."""
    path = Path(model)
    if path.exists():
        return path.resolve().name
    return model.replace("/", "__").replace(":", "-")  # random:llama-7b -> random-llama-7b


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    """The CSV as bytes, with a fixed float format so the same numbers give the same file."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n", float_format="%.6g")
    return buffer.getvalue().encode("utf-8")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """A tidy frame to CSV, atomically and byte-reproducibly (the command line's --out)."""
    _atomic_write(Path(path), _csv_bytes(frame))


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside the target, then rename: a crash never leaves half a file, and a failed
    write (no space, no permission, a file where a folder should be) leaves the target as it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):  # where the folder is a file, there is no temporary file either
            tmp.unlink(missing_ok=True)
        raise TvlibError(f"cannot write {path}: {err.strerror or err}. Free space, fix the permissions, or choose "
                         "another folder") from None


def config_key(config: dict) -> str:
    """A short stable hash of a configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def manifest_of(csv: Path) -> Path:
    """The manifest beside a result: x.json for x.csv and for x.csv.gz."""
    return csv.with_name(csv.name.removesuffix(".gz")).with_suffix(".json")


def _stored_bytes(csv: Path, frame: pd.DataFrame) -> bytes:
    """The file's bytes: the CSV, gzip-compressed for a .gz name (no timestamp, so the same frame, the same bytes)."""
    data = _csv_bytes(frame)
    return gzip.compress(data, compresslevel=9, mtime=0) if csv.suffix == ".gz" else data


def _read(csv: Path, data: bytes) -> pd.DataFrame:
    """Stored bytes back to the frame (strings stay strings: 'NA' is not missing)."""
    return pd.read_csv(io.BytesIO(data), compression="gzip" if csv.suffix == ".gz" else None,
                       keep_default_na=False, na_values=[""])


def load(csv: Path, config: dict, columns: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """The stored frame if its manifest matches `config`, its bytes are intact and it has `columns` (a result
    stored before a column was added is recomputed by a caller that reads it), else None."""
    manifest = manifest_of(csv)
    if not (csv.exists() and manifest.exists()):
        return None
    meta = json.loads(manifest.read_text())
    data = csv.read_bytes()
    if meta.get("key") != config_key(config) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    frame = _read(csv, data)
    if any(column not in frame.columns for column in columns):
        return None
    READS.append(Path(csv))
    return frame


def save(csv: Path, frame: pd.DataFrame, config: dict, seconds: float | None = None) -> pd.DataFrame:
    """Write the CSV, then its manifest (config, its key, the CSV's hash, the versions and, given `seconds`, how
    long computing it took and on what): the manifest is the commit point."""
    data = _stored_bytes(csv, frame)
    _atomic_write(csv, data)
    meta = {"key": config_key(config), "sha256": hashlib.sha256(data).hexdigest(), "rows": len(frame), "config": config,
            "environment": _environment()}
    if seconds is not None:
        meta["computed"] = _machine(seconds)
    write_json(manifest_of(csv), meta)
    READS.append(Path(csv))
    return _read(csv, data)


def _machine(seconds: float) -> dict:
    """How long a result took and where: not part of its key (the CSV is the same on every CPU), but what a reader
    needs to size a rerun."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                 if l.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"seconds": round(seconds, 1), "cpu": cpu, "threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() and torch.cuda.is_initialized() else "cpu"}


def _environment() -> dict:
    """The library versions that computed a result: recorded beside it (not part of its key, since the tests show
    the answers agree across CPUs and kernels)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("torch", "transformers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def cached(csv: Path, config: dict, compute: Callable[[], pd.DataFrame],
           columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Reuse the stored result for this config (with `columns`), or compute, store and return it (read back, so
    both paths agree). A result stored for other settings is never overwritten: that is an error naming what
    differs; one of the same settings without `columns` is recomputed in place."""
    frame = load(csv, config, columns)
    if frame is not None:
        return frame
    with _file_lock(csv):  # a second process computing the same result waits, then reuses; others go on
        frame = load(csv, config, columns)
        if frame is not None:
            return frame
        refuse_other_settings(csv, config)
        import time

        start = time.perf_counter()
        frame = compute()
        return save(csv, frame, config, seconds=time.perf_counter() - start)


@contextlib.contextmanager
def _file_lock(csv: Path):
    """An exclusive lock on one result: flock on a hidden `.<name>.lock` beside it, so workers on other results of
    the same folder never wait. Released when the block ends or the process dies (SIGKILL included); the empty
    lock file stays, since removing it would race a process that is waiting on it."""
    import fcntl

    csv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(csv.with_name(f".{csv.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def refuse_other_settings(csv: Path, config: dict) -> None:
    """Raise when `csv` holds a result of another configuration (a damaged file of this one is recomputed)."""
    manifest = manifest_of(csv)
    if not manifest.exists():
        return
    stored = json.loads(manifest.read_text()).get("config", {})
    if config_key(stored) == config_key(config):
        return
    raise TvlibError(f"{csv} holds a result for other settings ({', '.join(differing(stored, config))}): delete it "
                     "to recompute, or keep this run apart in another results folder (a chapter's -p results_dir DIR, "
                     "Runner(results_dir=DIR), or run-book's --out DIR)")


def differing(a: dict, b: dict) -> list[str]:
    """The top-level keys whose values differ between two configurations, for an error that says what changed."""
    return sorted(k for k in {*a, *b} if a.get(k) != b.get(k))


def write_json(path: Path | str, data: dict) -> None:
    """A JSON file, atomically, keys sorted: the same data gives the same bytes."""
    _atomic_write(Path(path), (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode())

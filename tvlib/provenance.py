"""Which stored results a page read, and with which configuration, library versions and compute time they were
made: each chapter records its reads (`record`), and the Provenance page tabulates them per chapter and model
(`table`) from the results' manifests, so a reader can tell how every number on a page was computed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tvlib import store

READS_SUFFIX = ".reads.json"


def record(page: str, runner) -> None:
    """Write the stored results this process has read under the runner's model folder as <page>.reads.json in its
    pages folder (`runner.place("pages")`): their paths relative to the model folder, sorted, so the same reads
    give the same file. A page calls it last; `table` then reads the same paths in every model's folder."""
    folder = runner.folder.resolve()
    read = sorted({p.resolve().relative_to(folder).as_posix() for p in store.READS
                   if p.resolve().is_relative_to(folder)})
    target = runner.place("pages") / f"{page}{READS_SUFFIX}"
    store.write_json(target, {"page": page, "results": read})  # returns nothing: a page's last cell shows nothing


def pages(folder: Path | str) -> dict[str, list[str]]:
    """The reads every page recorded under a model's results folder at the paper's protocol: {page: [paths]}."""
    found = sorted((Path(folder) / "pages").glob(f"*{READS_SUFFIX}"))
    return {f.name[: -len(READS_SUFFIX)]: json.loads(f.read_text(encoding="utf-8"))["results"] for f in found}


def _versions(manifests: list[dict]) -> str:
    """The distinct library versions of a page's results, and how many results carry none."""
    seen = sorted({", ".join(f"{k} {v}" for k, v in sorted(m["environment"].items()))
                   for m in manifests if m.get("environment")})
    missing = sum(not m.get("environment") for m in manifests)
    return "; ".join(seen + ([f"not recorded for {missing} of {len(manifests)}"] if missing else []))


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def _seconds(manifests: list[dict]) -> str:
    """The compute time a page's results took, summed where their manifests record it."""
    timed = [m["computed"]["seconds"] for m in manifests if "computed" in m]
    if not timed:
        return "not recorded"
    total = f"{sum(timed):.0f} s"
    cpus = sorted({f"{m['computed']['cpu']}, {_threads(m['computed']['threads'])}" for m in manifests
                   if "computed" in m})
    total += f" on {'; '.join(cpus)}"
    return total if len(timed) == len(manifests) else f"{total} (for {len(timed)} of {len(manifests)} results)"


def compute_time(folder: Path | str) -> str:
    """How long every result stored under `folder` took to compute, and on what: what a page says it costs."""
    manifests = [json.loads(m.read_text(encoding="utf-8")) for m in sorted(Path(folder).rglob("*.json"))
                 if not m.name.endswith(READS_SUFFIX)]
    return _seconds([m for m in manifests if "key" in m])


def row(folder: Path | str, results: list[str]) -> dict:
    """One page on one model: how many of the page's results are stored, their combined configuration key (the
    keys of all of them, hashed: equal keys mean the same computations), their library versions and time."""
    csvs = [Path(folder) / r for r in results if r.endswith(".csv")]
    manifests = [json.loads(store.manifest_of(c).read_text(encoding="utf-8")) for c in csvs
                 if store.manifest_of(c).exists()]
    return {"results": f"{len(manifests)} of {len(csvs)}",
            "configuration key": store.config_key({"keys": sorted(m["key"] for m in manifests)}),
            "protocols": "; ".join(sorted({_protocol(m["config"]) for m in manifests})),
            "versions": _versions(manifests), "compute time": _seconds(manifests)}


def _protocol(config: dict) -> str:
    p = config.get("protocol", {})
    return (f"{p.get('demos')} demos, {p.get('n_dev')}/{p.get('n_test')} dev/test, seed {p.get('seed')}"
            if p else "-")


def table(models: list[str], results_dir: Path | str, recorded_on: str) -> pd.DataFrame:
    """Per page and model, `row`: the pages and their reads are those recorded under `recorded_on`'s folder (the
    model the book's chapters ran on); each model's own manifests give the rest."""
    root = Path(results_dir)
    read = pages(root / store.slug(recorded_on))
    rows = [{"page": page, "model": m, **row(root / store.slug(m), results)}
            for page, results in read.items() for m in models]
    return pd.DataFrame(rows)

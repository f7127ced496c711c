"""`run-book --out`: every chapter through papermill for one model and configuration, into a run folder of its own
(executed notebooks, that model's results store, summaries); resumable, and rendered as a book of its own.

A run folder holds `run.json` (the configuration), `results/` (the store the chapters fill), one executed notebook
per chapter (stamped with the configuration's key), `chapters.csv` (status and seconds per chapter) and
`summary.csv` (each task's accuracies from the stored main experiment). Each chapter runs in its own kernel, so
the model's memory is given back when the chapter ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tvlib import __version__, book, defaults, paths, store
from tvlib.errors import TvlibError
from tvlib.progress import progress_bar

RUN_FILE = "run.json"


def parse_value(text: str):
    """A `-p NAME VALUE` value read as YAML, as papermill reads its own: `null`, `10`, `[a, b]`, or a string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def configuration(model: str, device: str, dtype: str, profile: str, parameters: dict) -> dict:
    """What keys a run: the model, where and how it runs, and the chapters' parameters (the profile's, then -p's)."""
    if profile not in defaults.PROFILES:
        raise TvlibError(f"unknown profile {profile!r}: use one of {', '.join(defaults.PROFILES)}")
    chosen = {**defaults.PROFILES[profile], **parameters}
    if model.startswith("random:") and "tasks" not in parameters:  # a character tokenizer: one-letter answers only
        chosen["tasks"] = defaults.RANDOM_TASKS
    return {"model": model, "device": device, "dtype": dtype, "profile": profile, "parameters": chosen,
            "tvlib": __version__}


def default_out(model: str, profile: str) -> Path:
    return Path("runs") / f"{store.slug(model)}-{profile}"


def _claim(out: Path, config: dict) -> None:
    """Write run.json on the first call; a later call must bring the same configuration (never mix two runs)."""
    file = out / RUN_FILE
    if file.exists():
        stored = json.loads(file.read_text(encoding="utf-8"))
        if store.config_key(stored) != store.config_key(config):
            raise TvlibError(f"{out} holds a run with other settings ({', '.join(store.differing(stored, config))}): "
                             f"pass another --out, or delete {out} to start over")
        return
    out.mkdir(parents=True, exist_ok=True)
    store.write_json(file, config)


def _done(target: Path, key: str) -> bool:
    """The chapter's executed notebook exists and was made by this configuration."""
    if not target.exists():
        return False
    return json.loads(target.read_text(encoding="utf-8"))["metadata"].get("tvlib", {}).get("run") == key


def declared_parameters(notebooks: list[Path]) -> dict[str, set[str]]:
    """The parameters each chapter's `parameters` cell declares (papermill reads them without running anything)."""
    import papermill

    return {nb.stem: set(papermill.inspect_notebook(str(nb))) for nb in notebooks}


def _seconds(out: Path) -> dict[str, float]:
    """Each chapter's running time from an earlier call's chapters.csv."""
    file = out / "chapters.csv"
    return dict(pd.read_csv(file)[["chapter", "seconds"]].dropna().values) if file.exists() else {}


def run_book(model: str, device: str = "cpu", dtype: str = "float32", profile: str = "paper",
             parameters: dict | None = None, out: Path | str | None = None,
             selected: list[str] | None = None, stored: bool = False) -> Path:
    """Execute the chapters into `out` (default runs/<model>-<profile>/), skipping those already done for this
    configuration; stops at the first failing chapter with its cell and error. With `stored`, every chapter reads
    stored results only (what `compute` stored) and none loads the model. Returns the run folder."""
    previous = os.environ.get(book.STORED_ONLY)
    os.environ[book.STORED_ONLY] = "1" if stored else "0"  # the chapters' kernels inherit it
    try:
        return _run_book(model, device, dtype, profile, parameters, out, selected)
    finally:
        if previous is None:
            os.environ.pop(book.STORED_ONLY, None)
        else:
            os.environ[book.STORED_ONLY] = previous


def _run_book(model: str, device: str, dtype: str, profile: str, parameters: dict | None, out: Path | str | None,
              selected: list[str] | None) -> Path:
    config = configuration(model, device, dtype, profile, parameters or {})
    out = Path(out or default_out(model, profile)).resolve()
    key = store.config_key(config)
    params = {"model": model, "device": device, "dtype": dtype, **config["parameters"],
              "results_dir": str(out / "results")}
    notebooks = book.chapters(selected)
    declared = declared_parameters(notebooks)
    unknown = sorted(set(params) - set().union(*declared.values()))
    if unknown:
        known = ", ".join(sorted(set().union(*declared.values())))
        raise TvlibError(f"no chapter takes the parameter(s) {', '.join(unknown)}; the chapters take: {known}")
    _claim(out, config)
    rows = []
    earlier = _seconds(out)
    bar = progress_bar(notebooks, "chapters", enabled=True)
    for notebook in bar:
        target = out / notebook.name
        start = time.perf_counter()
        if _done(target, key):  # the seconds it took when it ran
            rows.append({"chapter": notebook.stem, "status": "done before", "seconds": earlier.get(notebook.stem)})
            store.write_csv(out / "chapters.csv", pd.DataFrame(rows))
            continue
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(notebook.stem)
        mine = {k: v for k, v in params.items() if k in declared[notebook.stem]}  # each chapter its own
        book.execute(notebook, target, mine, stamp={"run": key, "model": model, "profile": profile})
        rows.append({"chapter": notebook.stem, "status": "ran", "seconds": round(time.perf_counter() - start, 1)})
        print(f"{notebook.stem}: {rows[-1]['seconds']:.0f} s -> {target}", file=sys.stderr, flush=True)
        store.write_csv(out / "chapters.csv", pd.DataFrame(rows))  # kept up to date, should a later one fail
    store.write_csv(out / "chapters.csv", pd.DataFrame(rows))
    _summarize(out, model, dtype, params)
    return out


def _summarize(out: Path, model: str, dtype: str, params: dict) -> None:
    """summary.csv: each task's baseline, regular and hypothesis accuracy and L, read from the run's store."""
    from tvlib import experiments
    from tvlib.experiments import Protocol
    from tvlib.runs import Runner
    from tvlib.tasks import task_list

    names = {"n_dev", "n_test", "n_baseline", "demos", "seed"}
    protocol = Protocol(**{k: v for k, v in params.items() if k in names})
    runner = Runner(model, dtype=dtype, protocol=protocol, results_dir=out / "results", stored_only=True)
    frames = []
    for task in task_list(params.get("tasks", "all")):
        try:
            frames.append(runner.main(task))
        except TvlibError:
            continue  # not computed by the chapters that ran (a --chapter selection)
    if frames:
        store.write_csv(out / "summary.csv", experiments.summarize(pd.concat(frames, ignore_index=True)))


# --------------------------------------------------------------------------- a book of the run


def build(out: Path | str) -> Path:
    """Render the run's executed notebooks as a book of their own (out/book/_build/html), titled with the model."""
    out = Path(out).resolve()
    if not (out / RUN_FILE).exists():
        raise TvlibError(f"{out} is not a run folder (no {RUN_FILE}): run `python -m tvlib run-book --out {out}` first")
    config = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    executed = [out / p.name for p in book.chapters() if (out / p.name).exists()]
    if not executed:
        raise TvlibError(f"{out} holds no executed chapter yet")
    source = out / "book"
    shutil.rmtree(source, ignore_errors=True)
    (source / "chapters").mkdir(parents=True)
    for notebook in executed:
        shutil.copy2(notebook, source / "chapters" / notebook.name)
    shutil.copytree(paths.PACKAGE, source / "tvlib", ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copytree(paths.CHECKOUT / "_static", source / "_static")
    shutil.copy2(paths.chapters_dir() / "bibliography.md", source / "chapters" / "bibliography.md")  # {cite} needs it
    for pages in sorted((out / "results").glob("**/pages*")):  # the CSVs the pages link ('/results/...')
        shutil.copytree(pages, source / pages.relative_to(out))
    _book_files(source, config, [p.stem for p in executed] + ["bibliography"], out)
    done = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(source), "-W",
                           "--keep-going"], capture_output=True, text=True)
    if done.returncode != 0:
        raise TvlibError(f"the book of {out} did not build:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return source / "_build" / "html" / "index.html"


def _book_files(source: Path, config: dict, stems: list[str], out: Path) -> None:
    """_config.yml (the repository's, retitled, its local extensions found in this checkout), _toc.yml, index.md."""
    import yaml

    settings = yaml.safe_load((paths.CHECKOUT / "_config.yml").read_text(encoding="utf-8"))
    settings["title"] = f"In-Context Learning Creates Task Vectors, on {config['model']}"
    settings["sphinx"]["local_extensions"] = {name: str(paths.CHECKOUT / "tools")
                                              for name in settings["sphinx"]["local_extensions"]}
    (source / "_config.yml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    toc = {"format": "jb-book", "root": "index", "chapters": [{"file": f"chapters/{stem}"} for stem in stems]}
    (source / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")
    timing = pd.read_csv(out / "chapters.csv") if (out / "chapters.csv").exists() else None
    lines = [f"# Task vectors on {config['model']}", "",
             f"The chapters of the task-vector book, executed on **{config['model']}** ({config['dtype']} on "
             f"{config['device']}) with the **{config['profile']}** profile, by tvlib {config['tvlib']}.", "",
             "Parameters laid over the chapters' defaults (the paper's protocol):", "",
             "| parameter | value |", "| --- | --- |",
             *[f"| `{k}` | {str(v).replace(',', ', ')} |" for k, v in config["parameters"].items()]]
    if (out / "summary.csv").exists():
        summary = pd.read_csv(out / "summary.csv")
        lines += ["", "Each task's accuracy on the test contexts, and its layer L (chapters 2 and 3 say how):", "",
                  "| task | baseline | regular | hypothesis | L |", "| --- | --- | --- | --- | --- |",
                  *[f"| {r.task} | {r.baseline:.2f} | {r.regular:.2f} | {r.hypothesis:.2f} | {r.best_layer} |"
                    for r in summary.itertuples()]]
    if timing is not None:
        lines += ["", "| chapter | status | seconds |", "| --- | --- | --- |",
                  *[f"| {r.chapter} | {r.status} | {r.seconds:.0f} |" for r in timing.fillna(0).itertuples()]]
    (source / "index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

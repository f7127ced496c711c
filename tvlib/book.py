"""Execute the book's chapters with papermill for any model and device, and keep the stored notebooks tidy."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tvlib import paths
from tvlib.errors import TvlibError

STORED_ONLY = "TVLIB_STORED_ONLY"
"""Set to 1 by `run-book --stored`: every chapter reads stored results and never loads the model (a missing result
is an error naming `compute`)."""

SUMMARY_PAGES = ("own_task", "verdict", "across_models", "index", "provenance")
"""Pages run in place only, after the chapters, or when named: the tutorial on a task of one's own (its results go
to a temporary folder, so a run folder has nothing to keep of it), then the pages that read several models' stored
results (parameter `models`); Provenance last, since it reads what every other page recorded."""


def chapters(selected: list[str] | None = None, summary: bool = False) -> list[Path]:
    """The chapter notebooks in order (and the summary pages after them with `summary`), or those whose name
    starts with one of `selected` ('03', '03_accuracy', 'verdict')."""
    found = sorted(paths.chapters_dir().glob("[0-9][0-9]_*.ipynb"))
    pages = [paths.chapters_dir() / f"{name}.ipynb" for name in SUMMARY_PAGES]
    if not selected:
        return found + (pages if summary else [])
    chosen = [p for p in found + pages if any(p.stem.startswith(s) for s in selected)]
    if not chosen:
        raise TvlibError(f"no chapter matches {selected}; chapters are: {', '.join(p.stem for p in found + pages)}")
    return chosen


def _tidy(path: Path, stamp: dict | None = None) -> None:
    """Drop papermill's per-cell timings and the kernel's run metadata: the same results give the same file. A
    `stamp` (run-book's configuration key) goes into the metadata, so a rerun knows the chapter is done."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    if stamp:
        nb["metadata"]["tvlib"] = stamp
    nb["metadata"].pop("papermill", None)
    nb["metadata"].pop("widgets", None)
    nb["metadata"].pop("jupytext", None)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
        if cell.get("metadata", {}).get("tags") == []:  # papermill's empty list would shadow the source's tags
            del cell["metadata"]["tags"]
        if cell.get("metadata", {}).get("tags") == ["injected-parameters"]:
            cell["metadata"]["tags"] = ["injected-parameters", "remove-cell"]
            cell["id"] = "injected-parameters"  # papermill draws a fresh random id on every run
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _pair(notebook: Path) -> None:
    """Rewrite the chapter's MyST source (chapters/jupytext.toml) from the executed notebook, so the two stay in sync."""
    import jupytext

    jupytext.write(jupytext.read(notebook), notebook.with_suffix(".md"), fmt="md:myst")


def execute(notebook: Path, target: Path, parameters: dict, stamp: dict | None = None) -> Path:
    """One chapter through papermill, run in chapters/ as Jupyter Book and nbval do. Written to a hidden file first,
    tidied (with `stamp` in its metadata), then renamed: a failed chapter leaves nothing behind and never replaces
    the stored one, and the error names the chapter, the cell and the exception."""
    import papermill

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.running.ipynb")
    try:
        papermill.execute_notebook(str(notebook), str(tmp), parameters=parameters, kernel_name="python3",
                                   cwd=str(paths.chapters_dir()), progress_bar=False)
        _tidy(tmp, stamp)
        tmp.replace(target)
    except papermill.PapermillExecutionError as err:
        raise TvlibError(f"chapter {notebook.stem} failed in cell [{err.exec_count}] (cell {err.cell_index} of the "
                         f"notebook): {err.ename}: {err.evalue}") from None
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; after a failure, so is every trace of the run
    return target


def run(selected: list[str] | None, out_dir: Path | None, parameters: dict) -> list[Path]:
    """Execute chapters (in place when out_dir is None: the chapters, then the summary pages, each re-paired with
    its MyST source), or into out_dir."""
    written = []
    for notebook in chapters(selected, summary=out_dir is None):
        target = execute(notebook, notebook if out_dir is None else Path(out_dir) / notebook.name, parameters)
        if out_dir is None:
            _pair(target)
        written.append(target)
        print(f"executed {notebook.name} -> {target}", flush=True)
    return written


def setup(model: str, device: str = "cpu", dtype: str = "float32", tasks: str = "all",
          results_dir: str | None = None, **protocol) -> tuple:
    """A chapter's first line after its parameters: the runner and task list, and a printed line naming the model,
    its number of blocks and the protocol, so a page rerun on another model says which one it ran on."""
    from tvlib.experiments import Protocol
    from tvlib.models import n_blocks
    from tvlib.runs import Runner
    from tvlib.tasks import task_list

    settings = Protocol(**protocol)
    stored = os.environ.get(STORED_ONLY) == "1"
    runner = Runner(model, device, dtype, settings, results_dir, stored_only=stored)
    names = task_list(tasks)
    if stored:
        say("Stored results, no model loaded (`run-book --stored`, after `compute`).")
    say(f"Model: {model}, {n_blocks(model)} blocks, {dtype} on {device}. Protocol: {settings.demos} demonstrations, "
        f"{settings.n_dev} dev and {settings.n_test} test contexts, {settings.n_baseline} baseline queries, "
        f"seed {settings.seed}; {len(names)} task(s).")
    return runner, names


def say(*sentences: str) -> None:
    """Computed prose as the page's own Markdown: in a notebook each sentence is displayed as a Markdown paragraph
    (rendered as text on the page, numbers inline, and compared by nbval); elsewhere it is printed, wrapped."""
    import textwrap

    from IPython import get_ipython
    from IPython.display import Markdown, display

    in_notebook = getattr(get_ipython(), "kernel", None) is not None
    for sentence in sentences:
        display(Markdown(_literal_tags(sentence))) if in_notebook else print(textwrap.fill(sentence, 72))


def _literal_tags(text: str) -> str:
    """A computed token such as '<bos>' stays text in Markdown (not an HTML tag the page would swallow); code spans
    and roles between backticks are left as they are."""
    import re

    parts = text.split("`")
    return "`".join(re.sub(r"<(?=[A-Za-z/!?])", "&lt;", p) if i % 2 == 0 else p for i, p in enumerate(parts))


def download(frame, folder: Path | str, name: str, fig=None) -> None:
    """Show a table (or the figure `fig` drawn from it) and link its numbers as `folder`/NAME.csv (a chapter passes
    `runner.place("pages")`, so a rerun at other settings writes beside the committed tables), so a reader can take
    every figure's and table's data from the page. The same table gives the same bytes (`store.write_csv`); the link
    names the file from the book's source root ('/results/<model>/pages/...'), which holds the results folder in
    this checkout and in a run folder's book alike."""
    import os

    from IPython.display import display

    from tvlib import store

    path = Path(folder) / f"{name}.csv"
    import pandas as pd

    store.write_csv(path, frame if isinstance(frame.index, pd.RangeIndex) else frame.reset_index())
    if fig is not None:
        import matplotlib.pyplot as plt

        display(fig)
        plt.close(fig)  # shown once, here, above its link
    else:
        display(frame)
    root = next((p for p in path.resolve().parents if p.name == "results"), None)  # the book's source holds it
    link = f"/results/{path.resolve().relative_to(root).as_posix()}" if root else os.path.relpath(path)
    say(f"{{download}}`Download the data ({path.name}) <{link}>`")

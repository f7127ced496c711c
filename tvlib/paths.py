"""Where tvlib reads its data and writes results and caches: one module decides, each place with an environment
override, so a checkout, an installed wheel and a CI runner all find the same files.

| place    | override        | in a checkout                  | installed from a wheel                |
|----------|-----------------|--------------------------------|---------------------------------------|
| data     | `TVLIB_DATA`    | `data/` beside `tvlib/`        | `tvlib/data/` inside the package      |
| results  | `TVLIB_RESULTS` | `results/` beside `tvlib/`     | `results/` in the working directory   |
| caches   | `TVLIB_CACHE`   | `$XDG_CACHE_HOME/tvlib`, else `~/.cache/tvlib`                         |
| chapters | -               | `chapters/` beside `tvlib/`    | none (the book lives in the checkout)  |
"""

from __future__ import annotations

import os
from pathlib import Path

from tvlib.errors import TvlibError

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent  # the repository, when tvlib runs from a clone (editable install or PYTHONPATH)


def in_checkout() -> bool:
    """True when tvlib runs from the repository (its data/ and chapters/ sit beside the package)."""
    return (CHECKOUT / "data" / "tasks").is_dir() and (CHECKOUT / "pyproject.toml").is_file()


def _override(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """The task files, the paper's numbers and the describing words (read-only)."""
    folder = _override("TVLIB_DATA") or (CHECKOUT / "data" if in_checkout() else PACKAGE / "data")
    if not (folder / "tasks").is_dir():
        raise TvlibError(f"no task data in {folder}: set TVLIB_DATA to a folder holding tasks/ and paper/, or "
                         "reinstall tvlib (pip install .) so its data ships inside the package")
    return folder


def tasks_dir() -> Path:
    return data_dir() / "tasks"


def paper_dir() -> Path:
    return data_dir() / "paper"


def results_dir() -> Path:
    """Where computed results are stored, one folder per model (written by `runs.Runner`)."""
    return _override("TVLIB_RESULTS") or (CHECKOUT / "results" if in_checkout() else Path.cwd() / "results")


def cache_dir() -> Path:
    """Converted and assembled models (the GGUF aliases): large, rebuildable, never committed."""
    xdg = _override("XDG_CACHE_HOME") or Path.home() / ".cache"
    return _override("TVLIB_CACHE") or xdg / "tvlib"


def chapters_dir() -> Path:
    """The book's chapters; they exist only in a checkout of the repository."""
    if not in_checkout():
        raise TvlibError("the chapters live in a checkout of the repository: clone it and run `python -m tvlib "
                         "run-book` there")
    return CHECKOUT / "chapters"

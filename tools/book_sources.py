"""What the book reads besides its pages: this checkout's tvlib (for autodoc), its references.bib, and which MyST
files are only the paired sources of a notebook.

A local Sphinx extension (listed under ``sphinx: local_extensions`` in ``_config.yml``), so the same rules hold for
``jupyter-book build .`` and for the book of a run folder (``python -m tvlib run-book --build``, whose sources are
copied elsewhere and which finds this file in the checkout):

- the checkout's root goes first on ``sys.path``, so the API page (chapters/api.md) documents this checkout's
  ``tvlib`` whatever is installed;
- a ``bibtex_bibfiles`` entry missing from the book's folder is read from the checkout (a run folder's book has no
  copy of references.bib);
- in a folder with a ``jupytext.toml`` (chapters/), a ``.md`` file beside an ``.ipynb`` of the same name is the
  notebook's paired source and is left out of the build (the executed notebook is rendered); any other ``.md`` file
  there (the bibliography, the API reference) is a page of its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sphinx.application import Sphinx

CHECKOUT = Path(__file__).resolve().parents[1]

if str(CHECKOUT) not in sys.path:
    sys.path.insert(0, str(CHECKOUT))


def paired_sources(srcdir: Path) -> list[str]:
    """The MyST sources jupytext pairs with a notebook, relative to the book's folder, in POSIX form."""
    found = []
    for toml in sorted(srcdir.glob("*/jupytext.toml")) + sorted(srcdir.glob("jupytext.toml")):
        for source in sorted(toml.parent.glob("*.md")):
            if source.with_suffix(".ipynb").exists():
                found.append(source.relative_to(srcdir).as_posix())
    return found


def _bibfile(name: str, confdir: Path) -> str:
    """The bib file as configured when the book's folder has it, else the checkout's copy (absolute)."""
    if (confdir / name).exists() or not (CHECKOUT / name).exists():
        return name
    return str(CHECKOUT / name)


def configure(app: Sphinx, config) -> None:
    srcdir = Path(app.srcdir)
    config.exclude_patterns = [*config.exclude_patterns, *paired_sources(srcdir)]
    if getattr(config, "bibtex_bibfiles", None):
        config.bibtex_bibfiles = [_bibfile(name, Path(app.confdir)) for name in config.bibtex_bibfiles]


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", configure)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

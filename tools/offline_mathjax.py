"""Serve MathJax from the built book instead of a CDN.

A local Sphinx extension (listed under ``sphinx: local_extensions`` in
``_config.yml``).  It takes MathJax 3.2.2 from the PyPI package
``sphinx-mathjax-offline`` (pinned in requirements.txt), copies it into
``<html output>/_static/mathjax/`` when an HTML build finishes, and points
Sphinx's ``mathjax_path`` at it.  Nothing is written to the source tree, so
the files never land in the source ``_static/`` folder (where Jupyter Book
would add every .js file as a <script> tag on each page).

Only the package's data files are used; its own Sphinx extension is not loaded.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

PACKAGE = "sphinx-mathjax-offline"  # its import name really contains hyphens
BUNDLE = "tex-mml-chtml.js"  # the same bundle Sphinx takes from the CDN by default
TARGET = "mathjax"  # under the output's _static/


def mathjax_source() -> Path:
    """Folder of the MathJax files that the installed package ships."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ExtensionError(
            f"offline_mathjax: the package {PACKAGE!r} is not installed "
            "(pip install -r requirements.txt)"
        )
    folder = Path(spec.origin).parent / "static" / "mathjax"
    if not (folder / BUNDLE).is_file():
        raise ExtensionError(f"offline_mathjax: {folder / BUNDLE} is missing")
    return folder


def set_path(app: Sphinx, config: Config) -> None:
    mathjax_source()  # fail early, before anything is built
    config.mathjax_path = f"{TARGET}/{BUNDLE}"  # relative paths resolve under _static/


def copy_files(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    source = mathjax_source()

    def other_bundles(folder: str, names: list[str]) -> list[str]:
        # The top-level *.js files are alternative entry points (tex-svg.js, ...)
        # that the chosen bundle never loads; the subfolders hold the components
        # it loads on demand (fonts, TeX extensions, menu, accessibility).
        if Path(folder) != source:
            return []
        return [n for n in names if n.endswith(".js") and n != BUNDLE]

    dest = Path(app.outdir) / "_static" / TARGET
    shutil.copytree(source, dest, ignore=other_bundles, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", set_path)
    app.connect("build-finished", copy_files)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

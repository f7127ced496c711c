"""Drop from every page what the book does not use: sphinx-thebe's scripts (the book runs no live kernels) and the
sidebar's second search box (the header keeps one).

A local Sphinx extension (listed under ``sphinx: local_extensions`` in ``_config.yml``). Jupyter Book 1.x always loads
sphinx-thebe, which adds its loader and a CDN URL to each page even with ``launch_buttons: thebe: false``.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def _uses_thebe(asset: object) -> bool:
    """True for a script or stylesheet that sphinx-thebe added (by file name or inline body)."""
    text = f"{getattr(asset, 'filename', '') or ''} {getattr(asset, 'attributes', {}).get('body', '')}"
    return "thebe" in text


def drop_unused(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: object) -> None:
    """Remove thebe assets from the page context before the page is written."""
    for key in ("script_files", "css_files"):
        if key in context:
            context[key] = [asset for asset in context[key] if not _uses_thebe(asset)]


def unhook_thebe(app: Sphinx, config: object) -> None:
    """Disconnect sphinx-thebe's event handlers, which add its loader script and a per-page config block."""
    for event, listeners in app.events.listeners.items():
        for listener in list(listeners):
            if getattr(listener.handler, "__module__", "").startswith("sphinx_thebe"):
                app.disconnect(listener.id)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", unhook_thebe)
    app.connect("html-page-context", drop_unused, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

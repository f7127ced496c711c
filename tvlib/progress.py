"""Progress bars for long loops: on stderr (so `--json` on stdout stays clean), off for short or silent ones."""

from __future__ import annotations

from typing import Iterable


def progress_bar(items: list, desc: str, enabled: bool | None = True) -> Iterable:
    """A tqdm bar over items. Asked for (True, the command line): shown even for one batch, since one batch of a
    large model is a long step and the bar names it. None (the library's loops): only on a terminal and for two
    items or more, so a notebook's stored outputs never gain one. False: plain items."""
    if enabled is False or not items or (enabled is None and len(items) < 2):
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, disable=None if enabled is None else False)

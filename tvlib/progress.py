"""Progress bars for long loops: on stderr (so `--json` on stdout stays clean), off for short or silent ones."""

from __future__ import annotations

from typing import Iterable


def progress_bar(items: list, desc: str, enabled: bool | None = True) -> Iterable:
    """A tqdm bar over items when enabled (None: only on a terminal); plain items for short or silent loops."""
    if enabled is False or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, disable=None if enabled is None else False)

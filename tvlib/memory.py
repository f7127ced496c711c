"""Batches that fit: on an out-of-memory error the batch halves and is retried, so a run sized for one GPU finishes
on a smaller one instead of ending; every row is computed once, by the same function, whatever the batch."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


def out_of_memory(err: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error, the kind a smaller batch avoids."""
    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and "out of memory" in str(err))


def _release() -> None:
    """Give the failed batch's memory back to the device before the retry."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Fit:
    """The largest batch that has fit so far: halved on each out-of-memory error, and kept for the rest of the run
    (the next batches start at the size that fitted, not at the one that failed)."""

    size: int

    def each(self, items: Sequence, run: Callable[[list], None]) -> None:
        """`run(part)` over consecutive parts of `items` of at most `size`; a part that runs out of memory is
        retried at half the size (down to one item, which re-raises). `run` must have no effect when it raises."""
        start = 0
        items = list(items)
        while start < len(items):
            part = items[start:start + self.size]
            try:
                run(part)
            except BaseException as err:  # torch.OutOfMemoryError derives from RuntimeError
                if not out_of_memory(err) or self.size == 1:
                    raise
                _release()
                self.size = max(1, len(part) // 2)
                print(f"tvlib: out of memory at a batch of {len(part)}; retrying at {self.size}", file=sys.stderr)
                continue
            start += len(part)

"""Do two runs agree? Exactly, except answers decided by a near-tie that another CPU's rounding may flip.

Every stored prediction carries its top-2 logit margin. In float32, two kernel sets (AVX2 against generic, or the
fast path against the plain one) move a logit by ~1e-5, so only a prediction whose margin is below
`TIE_TOLERANCE` may change; anything else that differs is a real change in the results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tvlib.measures import MEASURES

TIE_TOLERANCE = 1e-3
"""Margins below this may flip between CPUs: 50x the largest float32 margin change measured (2e-5, between AVX2 and
lesser kernel sets, and between batch compositions)."""

DECIDED_BY_MARGIN = ("prediction", "correct", "correct_a", "correct_b", "margin")

CONTINUOUS = MEASURES
"""Columns that move with the logits themselves (not with a tie): equal within `MEASURE_TOLERANCE` on every row."""

MEASURE_TOLERANCE = 1e-3
"""The same bound as a margin's, relative to the value's size where it exceeds 1 (a log-probability of -12 is
stored to six digits)."""


@dataclass(frozen=True)
class Agreement:
    """How a fresh run compares with a stored one."""

    rows: int
    near_ties: int            # stored predictions with a margin below the tolerance
    changed: int              # predictions that differ
    unexplained: int          # predictions that differ although neither run was near a tie
    max_margin_change: float  # largest margin difference where the prediction is the same
    columns_differ: tuple[str, ...]  # columns that must match exactly and do not

    @property
    def ok(self) -> bool:
        return (self.unexplained == 0 and not self.columns_differ
                and self.max_margin_change <= TIE_TOLERANCE)

    def __str__(self) -> str:
        return (f"{self.rows} rows, {self.near_ties} near ties (margin < {TIE_TOLERANCE:g}), {self.changed} changed, "
                f"{self.unexplained} unexplained, largest margin change {self.max_margin_change:.2g}"
                + (f", columns that differ: {', '.join(self.columns_differ)}" if self.columns_differ else ""))


def compare(stored: pd.DataFrame, fresh: pd.DataFrame, tolerance: float = TIE_TOLERANCE) -> Agreement:
    """Every column equal, except predictions (and their scores) where either run's margin is below `tolerance`."""
    if list(stored.columns) != list(fresh.columns) or len(stored) != len(fresh):
        return Agreement(len(stored), 0, 0, 0, float("inf"), ("shape",))
    stored, fresh = stored.reset_index(drop=True), fresh.reset_index(drop=True)
    exact = [c for c in stored.columns if c not in DECIDED_BY_MARGIN + CONTINUOUS]
    differ = tuple(c for c in exact if not stored[c].equals(fresh[c]))
    differ += tuple(c for c in CONTINUOUS if c in stored.columns and not _close(stored[c], fresh[c]))
    # An answer that decodes to whitespace is stored empty and read back as missing: compare it as "".
    changed = stored["prediction"].fillna("").astype(str) != fresh["prediction"].fillna("").astype(str)
    tie = (stored["margin"] < tolerance) | (fresh["margin"] < tolerance)
    same = ~changed
    margin_change = (stored["margin"][same] - fresh["margin"][same]).abs().max() if same.any() else 0.0
    return Agreement(rows=len(stored), near_ties=int((stored["margin"] < tolerance).sum()), changed=int(changed.sum()),
                     unexplained=int((changed & ~tie).sum()), max_margin_change=float(margin_change),
                     columns_differ=differ)


def _close(a: pd.Series, b: pd.Series) -> bool:
    """Equal within MEASURE_TOLERANCE (relative above 1), missing in the same rows."""
    x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
    return bool(np.allclose(x, y, rtol=MEASURE_TOLERANCE, atol=MEASURE_TOLERANCE, equal_nan=True))

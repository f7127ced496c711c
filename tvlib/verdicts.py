"""Fixed criteria for the paper's five claims, so 'holds' or 'does not hold' is read off the numbers by a rule set
before the results, the same for our models and for the paper's numbers. The thresholds are those of the claims
check (`python -m tvlib claims`); do not tune them after seeing results: a failed claim is a result, not a bug."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tvlib.tasks import short_name

KEEPS_OF_ICL = 0.8        # claim 1: hypothesis / regular at least this over Figure 4's tasks ...
BASELINE_AT_MOST = 0.2    # ... and the mean baseline on the same tasks at most this
MIDDLE = (0.3, 0.7)       # claim 2: Figure 3's mean dev curve peaks within this share of the depth, (L + 1) / N ...
FALLS_WITHIN = 5          # ... and falls below half of its peak within this many blocks after it
KNN_AT_LEAST = 0.9        # claim 3: 5-NN task accuracy at least this, and every task nearer itself than others
B_AT_LEAST = 0.6          # claim 4: patched accuracy on B's labels at least this ...
PAIRS_AT_LEAST = 3        # ... in at least this many of the paper's non-translation pairs where ICL does A
TASKS_NAMED = 3           # claim 5: at least this many tasks with a describing word in the top 20 at L + 2


@dataclass(frozen=True)
class Verdict:
    """One claim on one set of numbers: passed (True / False), the numbers behind it, and the rule."""

    number: int
    claim: str
    passed: bool
    evidence: str
    criterion: str

    @property
    def verdict(self) -> str:
        return "holds" if self.passed else "does not hold"

    def sentence(self, who: str) -> str:
        return f"{who}: the claim {self.verdict} ({self.evidence}; criterion: {self.criterion})."

    def line(self) -> str:
        return f"claim {self.number}: {'PASS' if self.passed else 'FAIL'} {self.evidence}"


def accuracy(average: pd.Series, ci: dict | None = None) -> Verdict:
    """Claim 1 from a Figure 4 average (`experiments.figure4_average`), with optional intervals per key."""
    ratio, base = average["hypothesis / regular"], average["baseline"]
    return Verdict(1, "theta keeps most of ICL; the query alone is near zero",
                   bool(ratio >= KEEPS_OF_ICL and base <= BASELINE_AT_MOST),
                   f"hypothesis/regular={ratio:.3f}{_ci(ci, 'hypothesis / regular')} "
                   f"baseline={base:.3f}{_ci(ci, 'baseline')} over {int(average['tasks kept'])} tasks",
                   f"hypothesis/regular >= {KEEPS_OF_ICL} and baseline <= {BASELINE_AT_MOST} over Figure 4's tasks")


def layers(peak: pd.Series, ci: tuple[float, float] | None = None) -> Verdict:
    """Claim 2 from one row of `experiments.depth_peaks` (Figure 3's filter)."""
    lo, hi = MIDDLE
    depth, fall = peak["relative depth"], peak["blocks to fall"]
    falls = bool(pd.notna(fall) and fall <= FALLS_WITHIN)
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return Verdict(2, "theta works from a middle layer on and collapses after it",
                   bool(lo <= depth <= hi and falls),
                   f"peak at block {int(peak['peak layer'])} of {int(peak['blocks'])}, depth={depth:.2f}{interval}, "
                   + (f"below half of the peak {int(fall)} block(s) later" if pd.notna(fall)
                      else "never below half of the peak after it"),
                   f"peak depth (L+1)/N in {lo}-{hi} and below half of the peak within {FALLS_WITHIN} blocks")


def clusters(scores: pd.DataFrame, means: pd.DataFrame, ci: tuple[float, float] | None = None) -> Verdict:
    """Claim 3 from `clusters.scores` and per-task mean distances (columns 'within task', 'across tasks')."""
    value = scores.set_index("metric")["value"]
    knn = value.filter(like="-NN task accuracy").iloc[0]
    closer = int((means["within task"] < means["across tasks"]).sum())
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return Verdict(3, "the thetas of one task cluster together", bool(knn >= KNN_AT_LEAST and closer == len(means)),
                   f"5nn_accuracy={knn:.3f}{interval} within<across for {closer}/{len(means)} tasks",
                   f"5-NN task accuracy >= {KNN_AT_LEAST} and every task's within-task distance below its across")


def dominance(table: pd.DataFrame, ci: dict | None = None) -> Verdict:
    """Claim 4 from a flagged dominance table (`experiments.flag_dominance`), on the non-translation pairs."""
    pairs = table[~table["task_a_demos"].str.startswith("translation_")]
    valid = pairs[pairs["icl_does_a"]]
    reached = valid[valid["patched_acc_on_b"] >= B_AT_LEAST]
    shown = ", ".join(f"{short_name(a)}->{short_name(b)}={v:.2f}{_ci(ci, (a, b))}" for a, b, v in
                      zip(pairs["task_a_demos"], pairs["task_b_vector"], pairs["patched_acc_on_b"]))
    return Verdict(4, "a patched theta of B overrides demonstrations of A", len(reached) >= PAIRS_AT_LEAST,
                   f"patched_on_B>={B_AT_LEAST} in {len(reached)} of {len(valid)} valid pairs "
                   f"({len(pairs) - len(valid)} flagged: ICL fails on A): {shown}",
                   f"patched accuracy on B >= {B_AT_LEAST} in at least {PAIRS_AT_LEAST} of the paper's 4 "
                   "non-translation pairs, counting pairs where ICL on A >= 0.5")


def describing(tokens: pd.DataFrame, words: dict[str, list[str]]) -> pd.Series:
    """Per task: the describing words (data/describing_words.json) among its tokens, case-insensitive."""
    return tokens.groupby("task")["token"].apply(
        lambda t: sorted({w.lower() for w in t} & {w.lower() for w in words.get(t.name, [])}))


def interpretation(tokens: pd.DataFrame, words: dict[str, list[str]]) -> Verdict:
    """Claim 5 from one list per task (the top 20 tokens at L + 2)."""
    found = describing(tokens, words)
    named = found[found.map(len) > 0]
    return Verdict(5, "projected onto the vocabulary, theta names its task", len(named) >= TASKS_NAMED,
                   f"{len(named)} of {len(found)} tasks name themselves"
                   + (": " + ", ".join(f"{short_name(t)} ({'/'.join(w)})" for t, w in named.items())
                      if len(named) else ""),
                   f"a describing word among the top 20 tokens at L+2 for at least {TASKS_NAMED} tasks")


def _ci(ci: dict | None, key) -> str:
    return f" [{ci[key][0]:.3f}, {ci[key][1]:.3f}]" if ci and key in ci else ""

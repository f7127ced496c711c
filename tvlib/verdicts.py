"""Fixed criteria for the paper's five claims, so 'holds' or 'does not hold' is read off the numbers by a rule stated
before the run, the same for our model and for the paper's numbers, never from looking at one run."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

KEEPS_OF_ICL = 0.8        # claim 1: hypothesis keeps at least 80% of regular (the low end of the paper's 80-90%)
BASELINE_AT_MOST = 0.2    # claim 1: and the query alone stays below this
MIDDLE = (0.25, 0.75)     # claim 2: the mean dev curve peaks in the middle half of the blocks ...
                          # ... and falls below half of its peak before the last block
KNN_AT_LEAST = 0.9        # claim 3: a 5-nearest-neighbour vote finds a vector's task at least this often
NAMES_SHARE = 0.25        # claim 5: a list names its task when at least this share of it is in the output space


@dataclass(frozen=True)
class Verdict:
    """One claim on one set of numbers: 'holds', 'does not hold' or 'cannot be tested', with the numbers and rule."""

    claim: str
    verdict: str
    evidence: str
    criterion: str

    def sentence(self, who: str) -> str:
        return f"{who}: the claim {self.verdict} ({self.evidence}; criterion: {self.criterion})."


def _holds(ok: bool) -> str:
    return "holds" if ok else "does not hold"


def accuracy(average: pd.Series) -> Verdict:
    """Claim 1 from a Figure 4 average (`experiments.figure4_average`)."""
    ratio, base = average["hypothesis / regular"], average["baseline"]
    return Verdict("theta keeps most of ICL; the query alone is near zero",
                   _holds(ratio >= KEEPS_OF_ICL and base < BASELINE_AT_MOST),
                   f"hypothesis keeps {ratio:.0%} of regular, baseline {base:.2f}",
                   f"keeps at least {KEEPS_OF_ICL:.0%} and baseline below {BASELINE_AT_MOST}")


def layers(peak: pd.Series) -> Verdict:
    """Claim 2 from one row of `experiments.depth_peaks`."""
    lo, hi = MIDDLE
    depth, fall = peak["relative depth"], peak["blocks to fall"]
    falls = pd.notna(fall)
    return Verdict("theta works from a middle layer on and collapses after it",
                   _holds(lo <= depth <= hi and falls),
                   f"peak at relative depth {depth:.2f}, "
                   + (f"below half of the peak {int(fall)} block(s) later" if falls else "never below half after it"),
                   f"peak at relative depth {lo}-{hi}, and below half of the peak before the last block")


def clusters(scores: pd.DataFrame) -> Verdict:
    """Claim 3 from `clusters.scores`."""
    value = scores.set_index("metric")["value"]
    knn = value.filter(like="-NN task accuracy").iloc[0]
    within, across = value["mean cosine distance within task"], value["mean cosine distance across tasks"]
    return Verdict("the thetas of one task cluster together", _holds(knn >= KNN_AT_LEAST and within < across),
                   f"5-NN task accuracy {knn:.2f}, mean distance within {within:.3f} against across {across:.3f}",
                   f"5-NN accuracy at least {KNN_AT_LEAST} and within-task distance below across-task")


def dominance(table: pd.DataFrame) -> Verdict:
    """Claim 4 from a flagged dominance table (`experiments.flag_dominance`)."""
    valid = table[table["icl_does_a"]]
    wins = int(valid["theta_dominates"].sum())
    rule = "theta of B dominates in more than half of the pairs where plain ICL does task A"
    if valid.empty:
        return Verdict("a patched theta of B overrides demonstrations of A", "cannot be tested",
                       "plain ICL does task A in no pair", rule)
    return Verdict("a patched theta of B overrides demonstrations of A", _holds(wins > len(valid) / 2),
                   f"dominates in {wins} of {len(valid)} valid pairs", rule)


def interpretation(shares: pd.DataFrame) -> Verdict:
    """Claim 5 from one source's rows of `projection.output_space_share`."""
    named = int((shares["share"] >= NAMES_SHARE).sum())
    return Verdict("projected onto the vocabulary, theta names its task", _holds(named > len(shares) / 2),
                   f"{named} of {len(shares)} lists have at least {NAMES_SHARE:.0%} of their tokens in the task's "
                   "output space",
                   f"more than half of the lists at least {NAMES_SHARE:.0%} in the output space")

"""Fixed criteria for the paper's five claims, so 'holds', 'does not hold' or 'cannot be decided' is read off the
numbers by a rule set before the results, the same for our models and for the paper's numbers. The thresholds are
those of the claims check (`python -m tvlib claims`); do not tune them after seeing results: a failed claim is a
result, not a bug. A verdict is decided only where its whole 95% interval lies on one side of a bound; a point on
a bound, an interval that straddles it, or a tie whose members the rule reads differently leaves it undecided, and
the verdict says which. Every rule's wording (`RULES`) is built from the constants below, so the pages cannot
describe another rule than the one applied."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from tvlib.tasks import short_name

KEEPS_OF_ICL = 0.8        # claim 1: hypothesis / regular at least this over Figure 4's tasks ...
BASELINE_AT_MOST = 0.2    # ... and the mean baseline on the same tasks at most this
MIDDLE = (0.3, 0.7)       # claim 2: Figure 3's mean dev curve peaks within this share of the depth, (L + 1) / N ...
FALLS_WITHIN = 5          # ... and falls below half of its peak within this many blocks after it
KNN_AT_LEAST = 0.9        # claim 3: 5-NN task accuracy at least this, and every task nearer itself than others
B_AT_LEAST = 0.6          # claim 4: patched accuracy on B's labels at least this ...
PAIRS_AT_LEAST = 3        # ... in at least this many of the paper's non-translation pairs ...
ICL_DOES_A = 0.5          # ... counting a pair only where plain ICL on A's demonstrations scores this on A
TASKS_NAMED = 3           # claim 5: at least this many tasks with a describing word in the top 20 at L + 2
MIN_GAIN = 0.2            # every claim on theta: a task tests it only where ICL adds this over the query alone
TIE = 1e-9                # two numbers closer than this are a tie (accuracies are ratios of whole counts)

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "cannot be decided"
WORDS = (HOLDS, FAILS, UNDECIDED)
"""The three outcomes, as the pages and `python -m tvlib claims` print them."""

RULES = {
    1: f"hypothesis/regular >= {KEEPS_OF_ICL} and baseline <= {BASELINE_AT_MOST} over Figure 4's tasks (regular - "
       f"baseline >= {MIN_GAIN}), each decided only where its 95% interval over tasks and contexts lies on one side",
    2: f"the peak of Figure 3's mean dev curve at relative depth (L+1)/N strictly inside {MIDDLE[0]}-{MIDDLE[1]} "
       f"(its 95% interval too) and below half of the peak within {FALLS_WITHIN} blocks after it; a tied peak "
       "whose layers the rule reads differently is undecided",
    3: f"5-NN task accuracy >= {KNN_AT_LEAST} (its 95% interval above it) and every task's mean within-task "
       f"distance below its across-task distance, over the tasks where ICL adds >= {MIN_GAIN} over the query alone",
    4: f"patched accuracy on B >= {B_AT_LEAST} (its 95% interval above it) in at least {PAIRS_AT_LEAST} of the "
       f"paper's non-translation pairs; a pair tests the claim only where plain ICL on A scores >= {ICL_DOES_A} "
       f"on A's labels and ICL adds >= {MIN_GAIN} over the query alone on B (else theta_B carries no task)",
    5: f"a describing word among the top 20 tokens at L+2 for at least {TASKS_NAMED} tasks, counting the tasks "
       f"where ICL adds >= {MIN_GAIN} over the query alone (elsewhere L is a layer where theta carries no task)",
}
"""Each rule in words, generated from the constants the code applies."""


@dataclass(frozen=True)
class Verdict:
    """One claim on one set of numbers: its outcome (one of WORDS), the numbers behind it, the rule, and what left
    it undecided or was left out (`notes`)."""

    number: int
    claim: str
    outcome: str
    evidence: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    headline: str = ""
    """The verdict's deciding number in a few words, for a table at a glance (the index)."""

    @property
    def criterion(self) -> str:
        return RULES[self.number]

    @property
    def passed(self) -> bool:
        return self.outcome == HOLDS

    @property
    def verdict(self) -> str:
        return self.outcome

    def sentence(self, who: str) -> str:
        """The verdict in words, with its numbers and notes (a page states the rule once, from `RULES`)."""
        notes = "".join(f" {n[0].upper()}{n[1:]}." for n in self.notes)
        return f"{who}: the claim {self.outcome} ({self.evidence}).{notes}"

    def line(self) -> str:
        return f"claim {self.number}: {self.outcome}: {self.evidence}" + "".join(f"; {n}" for n in self.notes)


# --------------------------------------------------------------------------- three-valued reading of one number


def at_least(value: float, bound: float, ci: tuple[float, float] | None = None) -> str:
    """`value >= bound`, decided only where the value (and its whole interval) lies strictly above or below the
    bound: on the bound, or with an interval that reaches it, the sample cannot decide."""
    low, high = ci if ci is not None else (value, value)
    low, high = min(low, value), max(high, value)
    if low > bound + TIE:
        return HOLDS
    return FAILS if high < bound - TIE else UNDECIDED


def at_most(value: float, bound: float, ci: tuple[float, float] | None = None) -> str:
    """`value <= bound`, read as `-value >= -bound`."""
    flipped = None if ci is None else (-ci[1], -ci[0])
    return at_least(-value, -bound, flipped)


def inside(value: float, band: tuple[float, float], ci: tuple[float, float] | None = None) -> str:
    """`band[0] <= value <= band[1]`: holds strictly inside, fails wholly outside, else undecided."""
    return both(at_least(value, band[0], ci), at_most(value, band[1], ci))


def both(*outcomes: str) -> str:
    """The outcome of 'all of these': one failure fails, else one undecided leaves it undecided."""
    if FAILS in outcomes:
        return FAILS
    return UNDECIDED if UNDECIDED in outcomes else HOLDS


def count_reaches(decided: int, open_: int, needed: int) -> str:
    """'At least `needed` items hold', with `decided` items that hold and `open_` that could still go either way
    (undecided, or not testable here)."""
    if decided >= needed:
        return HOLDS
    return FAILS if decided + open_ < needed else UNDECIDED


def testable(summary: pd.DataFrame, min_gain: float = MIN_GAIN) -> pd.Series:
    """Per task (summary rows): does ICL add at least `min_gain` over the query alone? Where it does not (the query
    alone answers, or ICL does not do the task), the dev curve is flat and the chosen L carries no task: no claim
    about theta can be tested there. This is the paper's Figure 4 filter, compared as its code compares it."""
    return (summary["regular"] - summary["baseline"]) >= min_gain


def _ci(ci: tuple[float, float] | None, digits: int = 3) -> str:
    return f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci is not None else ""


def _where(outcome: str, what: str) -> tuple[str, ...]:
    return (f"undecided: {what}",) if outcome == UNDECIDED else ()


# --------------------------------------------------------------------------- the five claims


def accuracy(average: pd.Series, ci: dict | None = None) -> Verdict:
    """Claim 1 from a Figure 4 average (`experiments.figure4_average`), with optional intervals per key (from
    `intervals.over_tasks`: tasks and contexts resampled)."""
    ci = ci or {}
    ratio, base = average["hypothesis / regular"], average["baseline"]
    keeps = at_least(ratio, KEEPS_OF_ICL, ci.get("hypothesis / regular"))
    low = at_most(base, BASELINE_AT_MOST, ci.get("baseline"))
    outcome = both(keeps, low)
    notes = (_where(keeps, f"the hypothesis/regular interval reaches {KEEPS_OF_ICL}")
             + _where(low, f"the baseline interval reaches {BASELINE_AT_MOST}"))
    return Verdict(1, "theta keeps most of ICL; the query alone is near zero", outcome,
                   f"hypothesis/regular={ratio:.3f}{_ci(ci.get('hypothesis / regular'))} "
                   f"baseline={base:.3f}{_ci(ci.get('baseline'))} over {int(average['tasks kept'])} tasks", notes,
                   f"keeps {ratio:.2f}{_ci(ci.get('hypothesis / regular'), 2)} of ICL, baseline {base:.2f}")


def _peak_outcome(depth: float, fall, ci: tuple[float, float] | None) -> str:
    falls = HOLDS if pd.notna(fall) and fall <= FALLS_WITHIN else FAILS
    return both(inside(depth, MIDDLE, ci), falls)


def layers(peak: pd.Series, ci: tuple[float, float] | None = None, ties: pd.DataFrame | None = None) -> Verdict:
    """Claim 2 from one row of `experiments.depth_peaks` (Figure 3's filter), the bootstrap interval of the peak's
    depth, and `ties` (`experiments.tied_peaks`: every layer whose mean equals the peak, with its depth and fall)."""
    if pd.isna(peak.get("peak layer")):
        return Verdict(2, "theta works from a middle layer on and collapses after it", UNDECIDED,
                       "no task passes Figure 3's filter", ("undecided: no mean dev curve to read",), "no curve")
    ci = None if ci is None or any(map(pd.isna, ci)) else ci
    depth, fall = peak["relative depth"], peak["blocks to fall"]
    outcome = _peak_outcome(depth, fall, ci)
    notes = list(_where(outcome, f"the depth interval reaches an edge of the band {MIDDLE[0]}-{MIDDLE[1]}"))
    if ties is not None and len(ties) > 1:
        each = {int(r["peak layer"]): _peak_outcome(r["relative depth"], r["blocks to fall"], None)
                for r in ties.to_dict("records")}
        listed = ", ".join(f"{layer} (depth {(layer + 1) / peak['blocks']:.3f}: {o})" for layer, o in each.items())
        notes.append(f"the mean dev curve ties at blocks {listed}, {peak['peak accuracy']:.3f} each")
        if len(set(each.values())) > 1:
            outcome, notes = UNDECIDED, [f"undecided: {notes[-1]}"]
    interval = _ci(ci, 2)
    return Verdict(2, "theta works from a middle layer on and collapses after it", outcome,
                   f"peak at block {int(peak['peak layer'])} of {int(peak['blocks'])}, depth={depth:.3f}{interval}, "
                   + (f"below half of the peak {int(fall)} block(s) later" if pd.notna(fall)
                      else "never below half of the peak after it"), tuple(notes),
                   f"peak at depth {depth:.2f}{interval}" + (", tied" if ties is not None and len(ties) > 1 else ""))


def clusters(scores: pd.DataFrame, means: pd.DataFrame, ci: tuple[float, float] | None = None,
             left_out: list[str] | None = None) -> Verdict:
    """Claim 3 from `clusters.scores` and per-task mean distances (columns 'within task', 'across tasks'), both over
    the tasks that can test it; `left_out` names the others."""
    value = scores.set_index("metric")["value"].filter(like="-NN task accuracy")
    if value.empty:  # fewer than two tasks can test it: nothing to cluster apart
        return Verdict(3, "the thetas of one task cluster together", UNDECIDED, f"{len(means)} testable task(s)",
                       ("undecided: fewer than two tasks can test it",) + _left_out(left_out), "too few tasks")
    knn = value.iloc[0]
    closer = int((means["within task"] < means["across tasks"]).sum())
    near = at_least(knn, KNN_AT_LEAST, ci)
    outcome = both(near, HOLDS if closer == len(means) else FAILS)
    notes = _where(near, f"the 5-NN interval reaches {KNN_AT_LEAST}") + _left_out(left_out)
    return Verdict(3, "the thetas of one task cluster together", outcome,
                   f"5nn_accuracy={knn:.3f}{_ci(ci, 2)} within<across for {closer}/{len(means)} tasks", notes,
                   f"5-NN {knn:.2f}{_ci(ci, 2)}, {closer} of {len(means)} tasks apart")


def _left_out(tasks: list[str] | None, why: str = f"ICL adds < {MIN_GAIN} over the query alone") -> tuple[str, ...]:
    return (f"left out ({why}): {', '.join(map(short_name, tasks))}",) if tasks else ()


def dominance(table: pd.DataFrame, ci: dict | None = None) -> Verdict:
    """Claim 4 from a flagged dominance table (`experiments.flag_dominance`, columns icl_does_a and b_carries), on
    the non-translation pairs, with optional intervals of patched accuracy on B per (A, B)."""
    ci = ci or {}
    pairs = table[~table["task_a_demos"].str.startswith("translation_")]
    valid = pairs[pairs["icl_does_a"] & pairs["b_carries"]]
    reads = {(a, b): at_least(v, B_AT_LEAST, ci.get((a, b)))
             for a, b, v in zip(valid["task_a_demos"], valid["task_b_vector"], valid["patched_acc_on_b"])}
    reached = sum(o == HOLDS for o in reads.values())
    open_ = sum(o == UNDECIDED for o in reads.values()) + len(pairs) - len(valid)
    outcome = count_reaches(reached, open_, PAIRS_AT_LEAST)
    name = lambda a, b: f"{short_name(a)}->{short_name(b)}"
    shown = ", ".join(f"{name(a, b)}={v:.2f}{_ci(ci.get((a, b)))}" for a, b, v in
                      zip(valid["task_a_demos"], valid["task_b_vector"], valid["patched_acc_on_b"]))
    notes = []
    for why, mask in ((f"ICL on A < {ICL_DOES_A}", ~pairs["icl_does_a"]),
                      (f"ICL adds < {MIN_GAIN} over the query alone on B", pairs["icl_does_a"] & ~pairs["b_carries"])):
        flagged = pairs[mask]
        if len(flagged):
            notes.append(f"flagged ({why}): " + ", ".join(name(a, b) for a, b in
                                                          zip(flagged["task_a_demos"], flagged["task_b_vector"])))
    straddle = [name(a, b) for (a, b), o in reads.items() if o == UNDECIDED]
    if straddle:
        notes.append(f"interval reaches {B_AT_LEAST}: {', '.join(straddle)}")
    if outcome == UNDECIDED:
        notes.append(f"undecided: {reached} pair(s) reach {B_AT_LEAST}, {open_} could still go either way, "
                     f"{PAIRS_AT_LEAST} needed")
    return Verdict(4, "a patched theta of B overrides demonstrations of A", outcome,
                   f"patched_on_B>={B_AT_LEAST} in {reached} of {len(valid)} testable pairs "
                   f"(of {len(pairs)} non-translation pairs)" + (f": {shown}" if shown else ""), tuple(notes),
                   f"{reached} of {len(valid)} testable pairs reach {B_AT_LEAST} ({PAIRS_AT_LEAST} needed)")


def describing(tokens: pd.DataFrame, words: dict[str, list[str]]) -> pd.Series:
    """Per task: the describing words (data/describing_words.json) among its tokens, case-insensitive."""
    return tokens.groupby("task")["token"].apply(
        lambda t: sorted({w.lower() for w in t} & {w.lower() for w in words.get(t.name, [])}))


def interpretation(tokens: pd.DataFrame, words: dict[str, list[str]], left_out: list[str] | None = None,
                   unseen: int = 0) -> Verdict:
    """Claim 5 from one list per task (the top 20 tokens at L + 2), over the tasks that can test it; `left_out`
    names the others (dropped from `tokens` here too); `unseen` counts tasks whose lists are not published (the
    paper's Tables 3 and 7 show 4 of 18), which could still go either way."""
    tokens = tokens[~tokens["task"].isin(left_out or [])]
    found = describing(tokens, words)
    named = found[found.map(len) > 0]
    outcome = count_reaches(len(named), unseen, TASKS_NAMED)
    if len(found) + unseen < TASKS_NAMED:
        outcome = UNDECIDED
    notes = _left_out(left_out)
    if outcome == UNDECIDED:
        notes += (f"undecided: {len(named)} named, {unseen} task(s) unpublished, {TASKS_NAMED} needed" if unseen
                  else f"undecided: fewer than {TASKS_NAMED} tasks can test it",)
    return Verdict(5, "projected onto the vocabulary, theta names its task", outcome,
                   f"{len(named)} of {len(found)} tasks name themselves"
                   + (": " + ", ".join(f"{short_name(t)} ({'/'.join(w)})" for t, w in named.items())
                      if len(named) else ""), notes,
                   f"{len(named)} of {len(found)} tasks named ({TASKS_NAMED} needed)")

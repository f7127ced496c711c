"""Sentences that state a result and that more than one page prints, computed from the numbers so that no page
carries a fixed sentence that could drift from them."""

from __future__ import annotations

import pandas as pd


def depth_against_paper(peaks: pd.DataFrame, ours: list[str]) -> str:
    """Where our models' Figure 3 means peak, in relative depth (L + 1) / N, against the paper's models with
    per-layer curves (`experiments.depth_peaks` rows): a consistent difference is said, not left to the eye."""
    filtered = peaks[(peaks["tasks"] == "Figure 3 filter") & peaks["relative depth"].notna()]
    mine = filtered[filtered["model"].isin(ours)]
    theirs = filtered[~filtered["model"].isin(ours)]
    if mine.empty or theirs.empty:
        return "No depth comparison: " + ("none of our models" if mine.empty else "no paper curve") + " has a peak."
    low, high = theirs["relative depth"].min(), theirs["relative depth"].max()
    each = ", ".join(f"{r['model']} {r['relative depth']:.2f}" for r in mine.to_dict("records"))
    where = ("later than every one of" if mine["relative depth"].min() > high else
             "earlier than every one of" if mine["relative depth"].max() < low else "within or across the range of")
    return (f"The Figure 3 mean peaks at relative depth {each}: {where} the paper's {len(theirs)} models with "
            f"per-layer curves ({low:.2f}-{high:.2f}). The layer rule is the same; where in the network theta is "
            "best read is a property of the model.")


def glance(found: dict[str, list], paper: dict[int, str], chapters: dict[int, str]) -> str:
    """The verdicts of every model beside the paper's numbers, one row a claim with a link to the chapter that
    tests it, as a Markdown table: the book's answer, read off the same `Verdict`s the Verdict page prints."""
    models = list(found)
    rows = ["| claim | " + " | ".join(models) + " | the paper's numbers, same rule |",
            "| --- " * (len(models) + 2) + "|"]
    for first in found[models[0]]:
        number, cells = first.number, []
        for m in models:
            v = next(v for v in found[m] if v.number == number)
            cells.append(f"**{v.outcome}**: {v.headline}")
        link = f"{{doc}}`chapter {int(chapters[number][:2])} <{chapters[number]}>`"
        rows.append(f"| {number}. {first.claim[0].upper()}{first.claim[1:]} ({link}) | " + " | ".join(cells) + f" | {paper[number]} |")
    return "\n".join(rows)

"""Write the default model's per-task accuracy into the data card, from the stored results (no model run).

Run from the repository root after the main experiment is stored: `python data/accuracy_table.py`.
It replaces the lines between the two markers in data/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from tvlib.experiments import summarize
from tvlib.models import load_tokenizer
from tvlib.runs import Runner, task_list

CARD = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- accuracy table: begin -->", "<!-- accuracy table: end -->"


def table() -> str:
    runner = Runner()
    dtypes = sorted({json.loads(p.read_text())["config"]["dtype"] for p in (runner.folder / "main").glob("*.json")})
    predictions = runner.main_all(task_list("all"))
    summary = summarize(predictions)
    spaced = predictions.groupby("task")["prompt"].agg(lambda p: p.str.contains("example: ", regex=False).any())
    lines = ["| task | baseline | regular ICL | hypothesis (theta) | L | spaced |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for row in summary.itertuples():
        lines.append(f"| {row.task} | {row.baseline:.2f} | {row.regular:.2f} | {row.hypothesis:.2f} | {row.best_layer} "
                     f"| {'yes' if spaced[row.task] else 'no'} |")
    p = runner.protocol
    lines.append("")
    lines.append(f"{runner.model} ({', '.join(dtypes)}, CPU), {p.demos} demos, baseline n = {p.n_baseline} queries, "
                 f"regular and hypothesis n = {p.n_test} test contexts, L chosen on {p.n_dev} dev contexts, seed "
                 f"{p.seed}; from `results/{runner.folder.name}/main/`.")
    lines.append("")
    good = summary[summary["regular"] >= 0.5]
    weak = summary[summary["regular"] < 0.5]
    lines.append(f"Regular ICL reaches 0.5 on {len(good)} of the {len(summary)} tasks. Below 0.5, with the most "
                 "common wrong answers of regular ICL on the test queries:")
    lines.append("")
    icl = predictions[predictions["method"] == "regular"]
    tokenizer = load_tokenizer(runner.model)
    for task, regular in zip(weak["task"], weak["regular"]):
        rows = icl[icl["task"] == task]
        wrong = rows[~rows["correct"].astype(bool)]["prediction"].fillna("").value_counts().head(4)
        line = f"* {task} (regular {regular:.2f}): " + ", ".join(f"`{w or ' '}` x{n}" for w, n in wrong.items())
        several = rows["expected"].map(lambda e: len(tokenizer.encode(e, add_special_tokens=False)) > 1)
        if several.any() and (~several).any():
            line += (f"; answers of one token right {rows[~several]['correct'].mean():.2f} (n = {(~several).sum()}),"
                     f" of several tokens {rows[several]['correct'].mean():.2f} (n = {several.sum()})")
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    text = CARD.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    CARD.write_text(f"{head}{BEGIN}\n{table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()

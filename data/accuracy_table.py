"""Write the default model's per-task accuracy into the data card, from the stored results (no model run).

Run from the repository root after the main experiment is stored: `python data/accuracy_table.py`.
It replaces the lines between the two markers in data/README.md.
"""

from __future__ import annotations

from pathlib import Path

from tvlib.experiments import summarize
from tvlib.runs import Runner, task_list

CARD = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- accuracy table: begin -->", "<!-- accuracy table: end -->"


def table() -> str:
    runner = Runner()
    summary = summarize(runner.main_all(task_list("all")))
    lines = ["| task | baseline | regular ICL | hypothesis (theta) | L |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in summary.itertuples():
        lines.append(f"| {row.task} | {row.baseline:.2f} | {row.regular:.2f} | {row.hypothesis:.2f} | {row.best_layer} |")
    p = runner.protocol
    lines.append("")
    lines.append(f"Gemma 3 270M (bfloat16, CPU), {p.demos} demos, baseline n = {p.n_baseline} queries, "
                 f"regular and hypothesis n = {p.n_test} test contexts, L chosen on {p.n_dev} dev contexts, seed "
                 f"{p.seed}; from `results/gemma-3-270m/main/`.")
    return "\n".join(lines)


def main() -> None:
    text = CARD.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    CARD.write_text(f"{head}{BEGIN}\n{table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()

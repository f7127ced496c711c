"""Write the data card's table of answers that take several tokens, per offline tokenizer (no model run).

Run from the repository root: `python data/several_tokens.py`. It reads each model's stored table
(`Runner.answer_lengths`, made from its tokenizer once) and replaces the lines between the two markers in
data/README.md; tests/test_data.py checks that the card holds exactly what this script writes.
"""

from __future__ import annotations

from pathlib import Path

from tvlib import multitoken
from tvlib.runs import Runner
from tvlib.tasks import task_names

CARD = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- several tokens: begin -->", "<!-- several tokens: end -->"
MODELS = ("gemma-3-270m", "smollm2-135m")


def table() -> str:
    """Per task: its pairs, and per tokenizer how many answers take several tokens and the longest answer."""
    lengths = {model: Runner(model).answer_lengths().set_index("task") for model in MODELS}
    head = "| task | pairs | " + " | ".join(f"several tokens, {m} | longest, {m}" for m in MODELS) + " |"
    lines = [head, "|" + " --- |" + " ---: |" * (1 + 2 * len(MODELS))]
    for name in task_names():
        cells = [name, str(lengths[MODELS[0]].loc[name, "pairs"])]
        for model in MODELS:
            cells += [str(lengths[model].loc[name, "several_tokens"]), str(lengths[model].loc[name, "longest"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for model in MODELS:
        names = multitoken.split_tasks(lengths[model].reset_index(), task_names())
        lines.append(f"With at least {multitoken.MIN_SPLIT} answers of several tokens (`multitoken.MIN_SPLIT`), the "
                     f"chapter runs on {len(names)} tasks for {model}: {', '.join(names)}.")
        lines.append("")
    return "\n".join(lines).rstrip()


def main() -> None:
    text = CARD.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    CARD.write_text(f"{head}{BEGIN}\n{table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()

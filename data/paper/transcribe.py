"""Rewrite the paper's reported numbers (a reference folder holding its tables and the official code's outputs) as
tidy CSVs with the project's task names.

Run from the repository root: `python data/paper/transcribe.py REFERENCE_DIR`. The outputs are committed, so the
book needs no access to the reference folder; rerunning gives the same bytes.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if len(sys.argv) != 2:
    sys.exit("usage: python data/paper/transcribe.py REFERENCE_DIR  (the folder of the paper's reference numbers)")
REFERENCE = Path(sys.argv[1])
CATEGORY = {"Algorithmic": "algorithmic", "Translation": "translation", "Linguistic": "linguistic",
            "Knowledge": "knowledge"}
MODELS = {"gpt-j_6B": "GPT-J 6B", "llama_7B": "LLaMA 7B", "pythia_6.9B": "Pythia 6.9B"}
N_LAYERS = {"GPT-J 6B": 28, "LLaMA 7B": 32, "Pythia 6.9B": 32}


def task_name(category: str, label: str) -> str:
    """'Translation', 'Fr en' -> translation_fr_en (the paper's code names)."""
    return f"{CATEGORY[category]}_{label.lower().replace(' ', '_')}"


def write(name: str, header: list[str], rows: list[list]) -> None:
    with open(HERE / name, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)


def main() -> None:
    with open(REFERENCE / "table6_main_results.csv", encoding="utf-8") as handle:
        table6 = [[r["model"], CATEGORY[r["category"]], task_name(r["category"], r["task"]), r["baseline"],
                   r["hypothesis"], r["regular"]] for r in csv.DictReader(handle)]
    write("table6_main_results.csv", ["model", "category", "task", "baseline", "hypothesis", "regular"],
          sorted(table6))
    with open(REFERENCE / "table2_conflicting_llama13B.csv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    write("table2_conflicting_llama13B.csv", rows[0], rows[1:])
    dev = json.loads((REFERENCE / "dev_accuracy_by_layer_and_top_tokens.json").read_text())
    curves, tokens, summary = [], [], []
    for key, model in MODELS.items():
        for task in sorted(dev[key]):
            entry = dev[key][task]
            summary.append([model, task, N_LAYERS[model], entry["best_dev_layer"], entry["baseline"], entry["icl"],
                            entry["tv"]])
            curves += [[model, task, int(layer), acc] for layer, acc in sorted(entry["dev_acc_by_layer"].items(),
                                                                               key=lambda kv: int(kv[0]))]
            for where in ("best_layer", "best_layer_plus2"):
                tokens += [[model, task, where, rank + 1, tok]
                           for rank, tok in enumerate(entry[f"top_tokens_{where}"])]
    write("dev_accuracy_by_layer.csv", ["model", "task", "layer", "accuracy"], curves)
    write("dev_summary.csv", ["model", "task", "n_layers", "best_dev_layer", "baseline", "icl", "tv"], summary)
    write("top_tokens.csv", ["model", "task", "where", "rank", "token"], tokens)
    with open(REFERENCE / "table3_7_top_tokens.csv", encoding="utf-8") as handle:
        published = [[r["model"], r["task"], rank + 1, token.strip()] for r in csv.DictReader(handle)
                     for rank, token in enumerate(r["top_tokens"].split(","))]
    write("table3_7_top_tokens.csv", ["model", "task", "rank", "token"], published)


if __name__ == "__main__":
    main()

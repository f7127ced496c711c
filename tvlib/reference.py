"""The paper's reported numbers (data/paper/), so every chapter can put them beside ours."""

from __future__ import annotations

import pandas as pd

from tvlib import paths

PAPER_MODELS = ("Pythia 2.8B", "Pythia 6.9B", "Pythia 12B", "GPT-J 6B", "LLaMA 7B", "LLaMA 13B", "LLaMA 30B")
"""The paper's seven models, in the order of its Figure 4 and Table 6."""


def table6() -> pd.DataFrame:
    """Appendix Table 6: baseline / hypothesis / regular per model and task, models in the paper's order."""
    table = pd.read_csv(paths.paper_dir() / "table6_main_results.csv")
    order = {m: i for i, m in enumerate(PAPER_MODELS)}
    return table.sort_values("model", key=lambda m: m.map(order), kind="stable").reset_index(drop=True)


def table2() -> pd.DataFrame:
    """Table 2: conflicting tasks on LLaMA 13B."""
    return pd.read_csv(paths.paper_dir() / "table2_conflicting_llama13B.csv")


def dev_curves() -> pd.DataFrame:
    """Dev accuracy by layer for the models whose official outputs have it (GPT-J 6B, LLaMA 7B, Pythia 6.9B), with
    relative depth (layer + 1) / n_layers."""
    curves = pd.read_csv(paths.paper_dir() / "dev_accuracy_by_layer.csv")
    n_layers = pd.read_csv(paths.paper_dir() / "dev_summary.csv").groupby("model")["n_layers"].first()
    curves["depth"] = (curves["layer"] + 1) / curves["model"].map(n_layers)
    return curves


def dev_summary() -> pd.DataFrame:
    """Best dev layer and accuracies per model and task."""
    return pd.read_csv(paths.paper_dir() / "dev_summary.csv")


def top_tokens() -> pd.DataFrame:
    """The paper's top vocabulary-projection tokens."""
    return pd.read_csv(paths.paper_dir() / "top_tokens.csv", keep_default_na=False)


def table3_7() -> pd.DataFrame:
    """The paper's Tables 3 and 7: top 20 projection tokens at best layer + 2 of LLaMA 13B, Pythia 12B and GPT-J 6B
    on four tasks, as the official outputs list them (with `where` = 'best_layer_plus2', like `top_tokens`)."""
    table = pd.read_csv(paths.paper_dir() / "table3_7_top_tokens.csv", keep_default_na=False)
    return table.assign(where="best_layer_plus2")[["model", "task", "where", "rank", "token"]]


def all_top_tokens() -> pd.DataFrame:
    """Every published list at best + 2: the official outputs' three models, then Tables 3 and 7 (their models
    named '<model> (Tables 3, 7)', since GPT-J 6B is in both)."""
    outputs = top_tokens().query("where == 'best_layer_plus2'")
    tables = table3_7().assign(model=lambda t: t["model"] + " (Tables 3, 7)")
    return pd.concat([outputs, tables], ignore_index=True)

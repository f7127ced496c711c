"""The readings of the continuous measures and of the position map, on frames whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from tvlib import continuous, positions, verdicts


def test_a_curve_has_risen_halfway_from_layer_zero_to_its_peak():
    assert continuous.rise_layer(pd.Series([0.0, 0.1, 0.2, 0.6, 1.0, 0.3])) == 3
    assert continuous.rise_layer(pd.Series([-9.0, -8.0, -4.5, -1.0], index=[0, 1, 2, 3])) == 2  # exactly halfway
    assert np.isnan(continuous.rise_layer(pd.Series([0.5, 0.5, 0.5])))  # flat: it never rises


def _curves(acc_at: int, measure_at: int, tasks: int = 6, layers: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for t in range(tasks):
        for layer in range(layers):
            rows.append({"task": f"t{t}", "layer": layer, "correct": float(layer >= acc_at) * rng.uniform(0.6, 1),
                         "logprob": -10 + 9 * float(layer >= measure_at),
                         "logit_diff": -3 + 6 * float(layer >= measure_at)})
    return pd.DataFrame(rows)


def test_a_measure_rising_three_layers_before_accuracy_is_read_as_earlier():
    table = continuous.rises(_curves(6, 3), [f"t{i}" for i in range(6)], n_boot=200)
    row = table.set_index("measure").loc["logprob"]
    assert (row["rise layer"], row["vs accuracy"]) == (3, -3) and row["rises earlier"] == verdicts.HOLDS
    assert "layer 6" in continuous.say_rises(table, 6)


def test_a_measure_rising_with_accuracy_is_not_earlier():
    table = continuous.rises(_curves(4, 4), [f"t{i}" for i in range(6)], n_boot=200)
    assert table.set_index("measure").loc["logit_diff", "rises earlier"] == verdicts.FAILS


def _predictions(gap: float, tasks: int = 4, contexts: int = 8) -> pd.DataFrame:
    """Main-experiment rows where theta's log p is ICL's plus `gap` on every context, L = 1 chosen on dev."""
    rng = np.random.default_rng(2)
    rows = []
    for t in range(tasks):
        for c in range(contexts):
            icl = -rng.uniform(0, 3)
            rows.append({"task": f"t{t}", "category": "x", "split": "test", "method": "regular", "layer": None,
                         "context": c, "correct": True, "logprob": icl, "logit_diff": 1.0, "kl": np.nan})
            rows.append({"task": f"t{t}", "category": "x", "split": "baseline", "method": "baseline",
                         "layer": None, "context": c, "correct": False, "logprob": -9.0, "logit_diff": -2.0,
                         "kl": np.nan})
            for layer in (0, 1):
                rows.append({"task": f"t{t}", "category": "x", "split": "test", "method": "hypothesis",
                             "layer": layer, "context": c, "correct": bool(layer), "logprob": icl + gap,
                             "logit_diff": 0.5, "kl": 0.1 * (t + 1)})
                rows.append({"task": f"t{t}", "category": "x", "split": "dev", "method": "hypothesis",
                             "layer": layer, "context": c, "correct": bool(layer), "logprob": -1.0,
                             "logit_diff": 0.0, "kl": np.nan})
    return pd.DataFrame(rows)


def test_the_paired_gap_of_a_constant_difference_has_no_width():
    found = continuous.paired_gap(_predictions(-0.7), [f"t{i}" for i in range(4)], "logprob", n_boot=200)
    assert found["value"] == pytest.approx(-0.7) and found["ci"] == pytest.approx((-0.7, -0.7))


def test_kl_ranks_read_from_the_table():
    table = continuous.at_l(_predictions(-0.7), [f"t{i}" for i in range(4)])
    assert table["L"].tolist() == [1, 1, 1, 1] and table["kl"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    table["theta correct"] = [0.9, 0.7, 0.5, 0.2]  # the higher the KL, the lower the accuracy
    assert continuous.kl_ranks(table, n_boot=200)["value"] == pytest.approx(-1.0)
    assert continuous.kl_ranks(table.iloc[:2], n_boot=200)["outcome"] == verdicts.UNDECIDED  # too few tasks


def test_positions_at_each_tasks_layer_against_the_final_arrow():
    rows = []
    for t, layer in (("a", 1), ("b", 2)):
        for r, role in enumerate(positions.role_names(1)):
            for lay in range(3):
                for c in range(10):
                    hit = (role == positions.FINAL and lay == layer) or (role == "y 1" and c < 5)
                    rows.append({"task": t, "role": role, "order": r, "layer": lay, "context": c, "correct": hit})
    table = positions.at_layers(pd.DataFrame(rows), {"a": 1, "b": 2}, n_boot=200).set_index("role")
    assert table.loc[positions.FINAL, "accuracy"] == 1.0 and table.loc["y 1", "accuracy"] == 0.5
    assert table.loc["x 1", "gap high"] == -1.0 and table.loc["y 1", "gap high"] < 0
    assert list(table.index) == positions.role_names(1)
    sentence = positions.say_positions(table.reset_index(), 2)
    assert "'y 1' at 0.50" in sentence and "5 of the 5 other positions" in sentence


def test_a_curve_that_never_rises_decides_nothing():
    curves = _curves(4, 4).assign(correct=0.0)
    table = continuous.rises(curves, [f"t{i}" for i in range(6)], n_boot=50).set_index("measure")
    assert table["rises earlier"].iloc[1:].eq(verdicts.UNDECIDED).all()
    assert "never rises" in continuous.say_rises(table.reset_index(), 6)

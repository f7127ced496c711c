"""Experiments beyond the paper (tvlib.beyond) on a tiny model: what they compute, checked against the paper's f."""

import pytest
import torch

from tvlib import beyond, vectors
from tvlib.experiments import Protocol
from tvlib.tasks import load_task
from tvlib.tiny import tiny_lm

SMALL = Protocol(n_dev=6, n_test=5, n_baseline=2, demos=3)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama")


def test_adding_theta_with_alpha_zero_is_no_patch_and_alpha_scales_what_is_added(lm):
    texts = ["example:a->A\nexample:b->", "example:k->"]
    theta = torch.randn(2, lm.model.config.hidden_size)
    plain = vectors.last_logits(lm, texts)
    torch.testing.assert_close(vectors.last_logits(lm, texts, theta, [1, 2], alpha=0.0), plain)
    assert not torch.allclose(vectors.last_logits(lm, texts, theta, [1, 2], alpha=1.0), plain)
    torch.testing.assert_close(vectors.last_logits(lm, texts, theta, [1, 1], alpha=2.0),
                               vectors.last_logits(lm, texts, 2 * theta, [1, 1], alpha=1.0))


def test_averaged_theta_keeps_the_per_context_baseline_and_each_size(lm):
    frame = beyond.averaged_theta(lm, load_task("algorithmic_to_upper"), 1, SMALL, sizes=(1, 2, 6, 50))
    counts = frame.groupby(["method", "averaged"]).size().to_dict()
    assert counts == {("mean theta", 1): 5, ("mean theta", 2): 5, ("mean theta", 6): 5, ("per context", 0): 5}
    one = frame[(frame["averaged"] == 1)]
    assert one["prompt"].tolist() == frame[frame["method"] == "per context"]["prompt"].tolist()  # same queries
    table = beyond.accuracy(frame, "averaged")
    assert set(table.columns) == {"task", "method", "averaged", "accuracy"} and table["accuracy"].between(0, 1).all()


def test_strength_compares_adding_with_replacing(lm):
    frame = beyond.strength(lm, load_task("algorithmic_to_upper"), 2, SMALL, alphas=(0.5, 4.0))
    assert frame.groupby("method").size().to_dict() == {"add": 10, "replace": 5}
    assert frame.loc[frame["method"] == "replace", "alpha"].isna().all()
    with pytest.raises(Exception, match="out of range"):
        beyond.strength(lm, load_task("algorithmic_to_upper"), lm.n_layers, SMALL)


def test_by_demonstrations_reruns_the_main_experiment_per_count(lm):
    frame = beyond.by_demonstrations(lm, load_task("algorithmic_to_upper"), SMALL, counts=(1, 3, 30))
    assert frame["demos"].tolist() == [1, 3]  # 30 demonstrations + a query need more than 26 letters
    assert {"baseline", "regular", "hypothesis", "best_layer"} <= set(frame.columns)


def test_format_transfer_fills_the_source_by_target_matrix(lm):
    frame = beyond.format_transfer(lm, load_task("algorithmic_to_upper"), 1, SMALL)
    assert frame.groupby(["source", "target"]).size().tolist() == [5] * 9
    qa = frame[(frame["source"] == "example:x->y") & (frame["target"] == "Q: x / A: y")]
    assert qa["prompt"].str.startswith("Q: ").all() and qa["prompt"].str.endswith("\nA:").all()

"""The continuous measures: their arithmetic on hand-made logits, and on tiny models each stored column recomputed
another way (plain forward passes, torch's own KL), plus a stored result without them being recomputed."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from tvlib import experiments, store
from tvlib.errors import TvlibError
from tvlib.experiments import Protocol
from tvlib.measures import MEASURES, Targets, measure, target_ids
from tvlib.runs import Runner
from tvlib.tasks import load_task
from tvlib.tiny import tiny_lm
from tvlib.vectors import predict

SMALL = Protocol(n_dev=3, n_test=4, n_baseline=3, demos=3)


def test_measures_of_hand_made_logits():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    out = measure(logits, torch.tensor([0, 2]))
    np.testing.assert_allclose(out["logprob"], torch.log_softmax(logits, -1)[[0, 1], [0, 2]], rtol=1e-6)
    np.testing.assert_allclose(out["logit_diff"], [1.0, -2.0])  # ahead of the runner-up; behind the winner
    assert out["kl"].isnan().all()  # no ICL distribution to compare with


def test_kl_is_zero_against_itself_and_matches_torch():
    torch.manual_seed(0)
    logits, other = torch.randn(5, 11), torch.randn(5, 11)
    targets = torch.zeros(5, dtype=torch.long)
    assert measure(logits, targets, logits.log_softmax(-1))["kl"].abs().max() < 1e-6
    reference = other.log_softmax(-1)
    want = torch.nn.functional.kl_div(logits.log_softmax(-1), reference, log_target=True, reduction="none").sum(-1)
    np.testing.assert_allclose(measure(logits, targets, reference)["kl"], want, rtol=1e-5)
    assert (measure(logits, targets, reference)["kl"] > 0).all()


def test_targets_map_a_sweep_row_to_its_context():
    reference = torch.randn(2, 7).log_softmax(-1)
    wanted = Targets(torch.tensor([1, 2, 1, 2]), reference, torch.tensor([0, 1, 0, 1]))
    logits = torch.randn(4, 7)
    got = wanted.of([2, 3], logits[2:])
    np.testing.assert_allclose(got["kl"], measure(logits[2:], torch.tensor([1, 2]), reference)["kl"], rtol=1e-6)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama")


@pytest.fixture(scope="module")
def frame(lm):
    return experiments.evaluate_task(lm, load_task("algorithmic_to_upper"), SMALL)


def test_every_prediction_carries_the_measures_and_kl_only_where_icl_ran(frame):
    assert all(column in frame.columns for column in MEASURES)
    assert frame[["logprob", "logit_diff"]].notna().all().all() and (frame["logprob"] <= 0).all()
    swept = (frame["split"] == "test") & (frame["method"] == "hypothesis")
    assert frame.loc[swept, "kl"].notna().all() and (frame.loc[swept, "kl"] >= -1e-6).all()
    assert frame.loc[~swept, "kl"].isna().all()


def test_the_logit_difference_is_the_margin_for_the_greedy_token_and_negative_for_any_other(lm):
    texts = [f"example:{w}->" for w in ("a", "bc", "def", "g", "hi", "jkl")]
    greedy = predict(lm, texts)
    chosen = [token if i % 2 == 0 else (token + 1) % len(lm.tokenizer) for i, token in enumerate(greedy.ids)]
    got = predict(lm, texts, targets=Targets(torch.tensor(chosen)), batch_size=4)
    diff = np.array(got.measures["logit_diff"])
    np.testing.assert_array_equal(diff > 0, [i % 2 == 0 for i in range(len(texts))])
    np.testing.assert_allclose(diff[::2], np.array(greedy.margins)[::2], rtol=1e-5)
    assert got.ids == greedy.ids  # the measures change nothing about the answers


def test_stored_kl_and_logprob_equal_plain_passes(lm, frame):
    """The sweep's KL at one layer, recomputed from two plain forward passes and torch's kl_div."""
    task, _, test = experiments.dev_and_test(lm, load_task("algorithmic_to_upper"), SMALL)
    plain = replace(SMALL, fast=False)
    thetas = experiments.task_vectors(lm, task, test, plain)
    layer = 2
    icl_texts = [SMALL.fmt.render(c.demos, c.query.input, task.space) for c in test]
    bare = [SMALL.fmt.render((), c.query.input, task.space) for c in test]
    icl = torch.stack(predict(lm, icl_texts, keep=True).logprobs)
    patched = torch.stack(predict(lm, bare, thetas[:, layer], [layer] * len(bare), keep=True).logprobs)
    want_kl = torch.nn.functional.kl_div(patched, icl, log_target=True, reduction="none").sum(-1)
    ids = target_ids(lm.tokenizer, [c.query.output for c in test], task.space)
    rows = frame[(frame["split"] == "test") & (frame["method"] == "hypothesis") & (frame["layer"] == layer)]
    np.testing.assert_allclose(rows["kl"], want_kl, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(rows["logprob"], patched[torch.arange(len(ids)), ids], rtol=1e-3, atol=1e-4)


def test_a_stored_result_without_the_measures_is_recomputed_only_when_asked(tmp_path, lm):
    runner = Runner(model="tiny", protocol=SMALL, results_dir=tmp_path, loaded=lm)
    fresh = runner.main("algorithmic_to_upper")
    csv = runner.place("main") / "algorithmic_to_upper.csv"
    manifest = json.loads(csv.with_suffix(".json").read_text())
    store.save(csv, fresh.drop(columns=list(MEASURES)), manifest["config"])  # as stored before the measures
    stale = Runner(model="tiny", protocol=SMALL, results_dir=tmp_path, stored_only=True)
    assert "logprob" not in stale.main("algorithmic_to_upper").columns  # a page that reads accuracy keeps it
    with pytest.raises(TvlibError, match="column a page reads"):
        stale.main("algorithmic_to_upper", measures=True)
    again = runner.main("algorithmic_to_upper", measures=True)
    assert list(again.columns) == list(fresh.columns)
    np.testing.assert_allclose(again["logprob"], fresh["logprob"])

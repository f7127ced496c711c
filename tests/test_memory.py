"""Out-of-memory errors halve the batch and retry it: each item runs once, and a run with an injected error gives
the results of a run without one."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from tvlib import experiments
from tvlib.experiments import Protocol
from tvlib.measures import MEASURES
from tvlib.memory import Fit, out_of_memory
from tvlib.tasks import load_task
from tvlib.tiny import tiny_lm


def _limited(most: int, seen: list):
    def run(part):
        if len(part) > most:
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected at a batch of {len(part)})")
        seen.extend(part)
    return run


def test_a_part_that_does_not_fit_is_halved_and_every_item_runs_once_in_order():
    seen = []
    fit = Fit(8)
    fit.each(range(19), _limited(3, seen))
    assert seen == list(range(19)) and fit.size == 2  # 8 failed, 4 failed, 2 fitted and stayed


def test_other_errors_and_a_single_item_that_does_not_fit_are_raised():
    with pytest.raises(ValueError):
        Fit(4).each(range(3), lambda part: (_ for _ in ()).throw(ValueError("not memory")))
    with pytest.raises(torch.OutOfMemoryError):
        Fit(4).each(range(3), _limited(0, []))
    assert out_of_memory(RuntimeError("CUDA error: out of memory")) and not out_of_memory(RuntimeError("shape"))


@pytest.mark.parametrize("fast", [True, False])
def test_an_injected_out_of_memory_error_changes_no_result(monkeypatch, fast):
    """Every forward pass of more than two rows fails, as on a device too small for the batch: the main
    experiment still completes, with the answers, margins and measures of a run where everything fits."""
    lm = tiny_lm("llama")
    protocol = Protocol(n_dev=3, n_test=5, n_baseline=5, demos=2, batch_size=4, fast=fast)
    task = load_task("algorithmic_to_upper")
    whole = experiments.evaluate_task(lm, task, protocol)
    forward, calls = lm.model.forward, {"failed": 0}

    def small_device(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[0] > 2:
            calls["failed"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(lm.model, "forward", small_device)
    halved = experiments.evaluate_task(lm, task, protocol)
    assert calls["failed"] > 0  # the error was raised, and recovered from
    floats = ["margin", *MEASURES]
    pd.testing.assert_frame_equal(whole.drop(columns=floats), halved.drop(columns=floats))
    for column in floats:
        np.testing.assert_allclose(whole[column], halved[column], atol=1e-4, err_msg=column)


def test_generation_survives_an_injected_out_of_memory_error(monkeypatch):
    from tvlib.generation import generate

    lm = tiny_lm("gpt2")
    texts = [f"example:{w}->" for w in ("a", "bc", "def", "gh", "ijk")]
    whole = generate(lm, texts, max_new_tokens=3, batch_size=4)
    forward, failed = lm.model.forward, []

    def small_device(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[0] > 1:
            failed.append(ids.shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(lm.model, "forward", small_device)
    halved = generate(lm, texts, max_new_tokens=3, batch_size=4)
    assert failed[:2] == [4, 2]  # the first batch failed, then its half
    assert halved.ids == whole.ids and halved.stopped == whole.stopped
    np.testing.assert_allclose(halved.margins, whole.margins, atol=1e-4)

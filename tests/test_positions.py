"""The position x layer map on tiny models: roles found where the prompt puts them, the final arrow's row equal to
the paper's theta and to the main sweep, other rows equal to a plain patched pass, bad formats refused."""

import numpy as np
import pandas as pd
import pytest
import torch

from tvlib import experiments, positions
from tvlib.errors import TvlibError
from tvlib.experiments import Protocol
from tvlib.prompts import PAPER_FORMAT, PromptFormat
from tvlib.tasks import Example, load_task
from tvlib.tiny import tiny_lm
from tvlib.vectors import predict

SMALL = Protocol(n_dev=3, n_test=3, n_baseline=3, demos=2)
DEMOS = (Example("cat", "CAT"), Example("dog", "DOG"))


@pytest.mark.parametrize("space", [False, True])
def test_each_role_covers_its_own_text(space):
    text = PAPER_FORMAT.render(DEMOS, "sun", space)
    spans = positions.role_spans(PAPER_FORMAT, DEMOS, "sun", space)
    assert list(spans) == positions.role_names(2)
    pieces = {name: text[a:b] for name, (a, b) in spans.items()}
    sp = " " if space else ""
    assert pieces == {"x 1": sp + "cat", "arrow 1": "->", "y 1": sp + "CAT", "sep 1": "\n", "x 2": sp + "dog",
                      "arrow 2": "->", "y 2": sp + "DOG", "sep 2": "\n", "x'": sp + "sun", "->": "->"}


def test_tokens_are_the_last_of_each_role():
    lm = tiny_lm("llama")  # a character tokenizer: every character is a token, after a BOS
    where = positions.role_positions(lm.tokenizer, PAPER_FORMAT, DEMOS, "sun", False)
    ids = lm.tokenizer(PAPER_FORMAT.render(DEMOS, "sun"))["input_ids"]
    assert [lm.tokenizer.decode([ids[i]]) for i in where] == ["t", ">", "T", "\n", "g", ">", "G", "\n", "n", ">"]
    assert where[-1] == len(ids) - 1


def test_formats_the_map_cannot_follow_are_refused():
    with pytest.raises(TvlibError, match="between"):
        positions.role_spans(PromptFormat(demo="{x}{y}"), DEMOS, "sun", False)
    with pytest.raises(TvlibError, match="after"):
        positions.role_spans(PromptFormat(query="Q {x}"), DEMOS, "sun", False)


@pytest.fixture(scope="module")
def setup():
    lm = tiny_lm("gpt_neox")
    task = load_task("algorithmic_to_upper")
    return lm, task, positions.position_map(lm, task, SMALL, n=3)


def test_the_final_arrow_is_the_papers_theta_and_its_row_the_main_sweep(setup):
    lm, task, frame = setup
    prepared, _, test = experiments.dev_and_test(lm, task, SMALL)
    states = positions.position_states(lm, prepared, test, SMALL)
    thetas = experiments.task_vectors(lm, prepared, test, SMALL)
    torch.testing.assert_close(states[:, -1], thetas, rtol=1e-4, atol=1e-4)
    main = experiments.evaluate_task(lm, task, SMALL)
    swept = main[(main["split"] == "test") & (main["method"] == "hypothesis")]
    final = frame[frame["role"] == positions.FINAL]
    keys = ["layer", "context", "prediction", "correct"]
    pd.testing.assert_frame_equal(final[keys].reset_index(drop=True), swept[keys].reset_index(drop=True),
                                  check_dtype=False)


def test_another_role_equals_a_plain_patched_pass(setup):
    lm, task, frame = setup
    prepared, _, test = experiments.dev_and_test(lm, task, SMALL)
    states = positions.position_states(lm, prepared, test, SMALL)
    role, layer = positions.role_names(SMALL.demos).index("y 1"), 1
    bare = [SMALL.fmt.render((), c.query.input, prepared.space) for c in test]
    want = predict(lm, bare, states[:, role, layer], [layer] * len(bare))
    rows = frame[(frame["role"] == "y 1") & (frame["layer"] == layer)]
    assert rows["prediction"].fillna("").tolist() == [t.strip() for t in want.texts(lm)]
    np.testing.assert_allclose(rows["margin"], want.margins, atol=1e-4)


def test_the_map_has_every_role_by_every_layer(setup):
    lm, _, frame = setup
    table = positions.cells(frame)
    assert list(table.index) == positions.role_names(SMALL.demos)
    assert list(table.columns) == list(range(lm.n_layers))
    assert table.notna().all().all() and len(frame) == len(table.index) * lm.n_layers * 3

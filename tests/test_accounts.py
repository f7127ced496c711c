"""Later accounts of theta: each rule read on frames with a known answer, and the layer reads on a tiny model
against an independent k-NN."""

import numpy as np
import pandas as pd
import pytest

from tvlib import accounts, verdicts
from tvlib.tasks import Example, Task

N = 40
LAYERS = 4


def _right(rng, share: float, n: int = N) -> np.ndarray:
    out = np.zeros(n, bool)
    out[rng.permutation(n)[:round(share * n)]] = True
    return out


def _main(task: str, regular: float, hypothesis: list[float], baseline: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A main-experiment frame: baseline, regular, and dev and test sweeps with the given accuracy per layer."""
    rng = np.random.default_rng(seed)

    def rows(split, method, correct, layer=None):
        return pd.DataFrame({"task": task, "category": task.split("_")[0], "split": split, "method": method,
                             "layer": layer, "context": range(len(correct)), "correct": correct})

    parts = [rows("baseline", "baseline", _right(rng, baseline, 2 * N)), rows("test", "regular", _right(rng, regular))]
    for layer, share in enumerate(hypothesis):
        parts += [rows("dev", "hypothesis", _right(rng, share), layer), rows("test", "hypothesis", _right(rng, share),
                                                                             layer)]
    return pd.concat(parts, ignore_index=True)


def _shot(task: str, regular: float, seed: int = 1) -> pd.DataFrame:
    return _main(task, regular, [0.0] * LAYERS, seed=seed).assign(demos=1)


def test_a_task_of_few_outputs_maps_many_to_one():
    continent = Task("k", "knowledge", tuple(Example(f"c{i}", "Asia" if i % 2 else "Europe") for i in range(10)))
    words = Task("t", "translation", tuple(Example(f"w{i}", f"m{i}") for i in range(10)))
    assert accounts.mapping_kind(continent) == "many-to-one" and accounts.mapping_kind(words) == "one-to-one"


def test_theta_level_with_one_demonstration_holds_and_far_above_it_fails():
    tasks = [f"t{i}_x" for i in range(12)]  # enough for the mean's interval to fit inside the margin
    main = pd.concat([_main(t, 0.9, [0.1, 0.6, 0.3, 0.1], seed=i) for i, t in enumerate(tasks)], ignore_index=True)
    level = pd.concat([_shot(t, 0.6, seed=10 + i) for i, t in enumerate(tasks)], ignore_index=True)
    found = accounts.one_shot(main, level, tasks)
    assert found["value"] == pytest.approx(0.0) and found["outcome"] == verdicts.HOLDS
    assert -accounts.EQUIVALENT < found["ci"][0] <= found["ci"][1] < accounts.EQUIVALENT
    low = pd.concat([_shot(t, 0.1, seed=10 + i) for i, t in enumerate(tasks)], ignore_index=True)
    found = accounts.one_shot(main, low, tasks)
    assert found["value"] == pytest.approx(0.5) and found["outcome"] == verdicts.FAILS
    assert "the account does not hold" in accounts.say_one_shot(found, len(tasks))


def test_an_equivalence_interval_that_reaches_the_margin_cannot_be_decided():
    tasks = ["a_x"]
    main = _main("a_x", 0.9, [0.1, 0.6, 0.3, 0.1])
    found = accounts.one_shot(main, _shot("a_x", 0.5), tasks)  # +0.10, its interval straddling the margin
    assert found["outcome"] == verdicts.UNDECIDED


def test_many_to_one_tasks_keeping_more_of_icl_reads_as_the_account_holding():
    kinds = {"m1_a": "many-to-one", "m2_b": "many-to-one", "o1_c": "one-to-one", "o2_d": "one-to-one"}
    shares = {"m1_a": 0.8, "m2_b": 0.75, "o1_c": 0.3, "o2_d": 0.25}
    main = pd.concat([_main(t, 0.8, [0.0, s, 0.0, 0.0], seed=i) for i, (t, s) in enumerate(shares.items())],
                     ignore_index=True)
    found = accounts.rank_one(main, kinds, list(kinds))
    assert found["value"] == pytest.approx((1.0 + 0.9375) / 2 - (0.375 + 0.3125) / 2)
    assert found["outcome"] == verdicts.HOLDS and found["ci"][0] > 0
    one_group = accounts.rank_one(main, {t: "one-to-one" for t in kinds}, list(kinds))
    assert one_group["outcome"] == verdicts.UNDECIDED  # no many-to-one task: nothing to compare


def _reads(tasks: list[str], decodable) -> pd.DataFrame:
    return pd.DataFrame([{"task": t, "layer": layer, "decodability": decodable(i, layer), "words": 20,
                          "in output space": 0 if layer < 2 else 5, "share": 0.0 if layer < 2 else 0.25,
                          "top words": ""} for i, t in enumerate(tasks) for layer in range(LAYERS)])


def test_decodability_that_rises_with_accuracy_reads_as_han_holding():
    tasks = [f"t{i}_x" for i in range(5)]
    main = pd.concat([_main(t, 0.9, [0.05, 0.3, 0.6, 0.9], seed=i) for i, t in enumerate(tasks)], ignore_index=True)
    accuracy = accounts.sweep_accuracy(main)
    rising = accounts.decodability(_reads(tasks, lambda i, layer: 0.2 * layer + 0.01 * i), accuracy, tasks)
    assert rising["value"] > 0.8 and rising["outcome"] == verdicts.HOLDS
    falling = accounts.decodability(_reads(tasks, lambda i, layer: 1 - 0.2 * layer), accuracy, tasks)
    assert falling["outcome"] == verdicts.FAILS
    assert "Spearman's rho is" in accounts.say_decodability(rising)


def test_steering_with_nothing_in_the_top_words_is_counted_per_task():
    tasks = [f"t{i}_x" for i in range(4)]
    steer_early = [0.9, 0.9, 0.1, 0.1]  # steers at layers 0-1, where the reads show nothing of the task
    steer_late = [0.1, 0.1, 0.9, 0.9]   # steers at layers 2-3, where they do
    main = pd.concat([_main(t, 0.9, steer_early if i < 3 else steer_late, seed=i) for i, t in enumerate(tasks)],
                     ignore_index=True)
    found = accounts.steerable_not_decodable(_reads(tasks, lambda i, layer: 0.5), accounts.sweep_accuracy(main), tasks)
    assert found["tasks"] == 3 and found["outcome"] == verdicts.HOLDS
    table = found["table"].set_index("task")
    assert table.loc["t0_x", "of them showing nothing"] == 2 and table.loc["t3_x", "of them showing nothing"] == 0
    fewer = accounts.steerable_not_decodable(_reads(tasks, lambda i, layer: 0.5), accounts.sweep_accuracy(main),
                                             tasks[1:])
    assert fewer["tasks"] == 2 and fewer["outcome"] == verdicts.FAILS


def test_layer_reads_decodability_matches_an_independent_nearest_neighbour_vote():
    """On a tiny model: one row per task and layer, shares in [0, 1], and the decodability equals scikit-learn's
    5-NN (cosine, the vector itself left out) on the same thetas."""
    import torch
    from sklearn.neighbors import NearestNeighbors

    from tvlib.experiments import Protocol, dev_and_test, task_vectors
    from tvlib.models import load_tokenizer
    from tvlib.tasks import load_task
    from tvlib.tiny import tiny_lm

    torch.manual_seed(0)
    lm = tiny_lm("gpt_neox", tokenizer=load_tokenizer())
    tasks = [load_task("algorithmic_to_upper"), load_task("algorithmic_next_letter")]
    protocol = Protocol(n_dev=3, n_test=9, n_baseline=3, demos=3)
    reads = accounts.layer_reads(lm, tasks, protocol)
    assert len(reads) == 2 * lm.n_layers and reads["share"].between(0, 1).all()
    thetas = torch.cat([task_vectors(lm, *dev_and_test(lm, t, protocol)[::2], protocol) for t in tasks])
    labels = np.repeat([t.name for t in tasks], 9)
    for layer in range(lm.n_layers):
        x = thetas[:, layer].numpy()
        _, idx = NearestNeighbors(n_neighbors=6, metric="cosine").fit(x).kneighbors(x)
        votes = [pd.Series(labels[row[row != i][:5]]).value_counts().index[0] for i, row in enumerate(idx)]
        own = np.asarray(votes) == labels
        got = reads[reads["layer"] == layer].set_index("task")["decodability"]
        for task in tasks:
            assert got[task.name] == pytest.approx(own[labels == task.name].mean())


def test_necessity_keeps_plain_icl_unpatched_and_overwrites_with_independently_built_thetas():
    """On a tiny model: the 'none' rows are plain ICL on the test contexts (`experiments.regular`), and each
    overwrite gives what `vectors.predict` gives with the mean thetas built on the plain (uncached) path."""
    import torch

    from tvlib.experiments import Protocol, dev_and_test, regular, task_vectors
    from tvlib.models import load_tokenizer
    from tvlib.tasks import load_task
    from tvlib.tiny import tiny_lm
    from tvlib.vectors import predict

    torch.manual_seed(0)
    lm = tiny_lm("gpt_neox", tokenizer=load_tokenizer())
    tasks = [load_task("algorithmic_to_upper"), load_task("algorithmic_next_letter"), load_task("algorithmic_to_lower")]
    layers = {"algorithmic_to_upper": 1, "algorithmic_next_letter": 2, "algorithmic_to_lower": 0}
    protocol = Protocol(n_dev=3, n_test=5, n_baseline=3, demos=3)
    rows = accounts.necessity(lm, tasks, layers, protocol)
    assert set(rows["overwritten by"]) == {"none", *accounts.NECESSITY} and len(rows) == 3 * 3 * 5
    plain = Protocol(n_dev=3, n_test=5, n_baseline=3, demos=3, fast=False)
    prepared = [dev_and_test(lm, t, plain) for t in tasks]
    means = torch.stack([task_vectors(lm, p, test, plain).mean(0) for p, _, test in prepared])
    for i, (task, _, test) in enumerate(prepared):
        mine = rows[rows["task"] == task.name].set_index(["overwritten by", "context"])
        icl = regular(lm, task, test, plain)
        assert list(mine.loc["none", "prediction"]) == list(icl["prediction"])
        layer = layers[task.name]
        texts = [plain.fmt.render(c.demos, c.query.input, task.space) for c in test]
        for name, state in ((accounts.NECESSITY[0], means[(i + 1) % 3, layer]), (accounts.NECESSITY[1],
                                                                                 means[:, layer].mean(0))):
            expected = predict(lm, texts, state.expand(len(texts), -1), [layer] * len(texts)).texts(lm)
            assert list(mine.loc[name, "prediction"]) == [p.strip() for p in expected]


def test_a_fall_of_icl_past_the_bound_reads_as_necessary():
    rng = np.random.default_rng(0)
    frames = []
    for i, task in enumerate(f"t{k}_x" for k in range(6)):
        for name, share in (("none", 0.9), (accounts.NECESSITY[0], 0.2), (accounts.NECESSITY[1], 0.85)):
            frames.append(pd.DataFrame({"task": task, "overwritten by": name, "context": range(N),
                                        "correct": _right(rng, share)}))
    rows = pd.concat(frames, ignore_index=True)
    found = accounts.necessary(rows, sorted(rows["task"].unique()))
    assert found["value"] == pytest.approx(0.7) and found["outcome"] == verdicts.HOLDS
    assert found["falls"][accounts.NECESSITY[1]]["value"] == pytest.approx(0.05)
    assert "theta at L is necessary: holds" in accounts.say_necessity(found)
    small = rows.assign(correct=np.where(rows["overwritten by"] == accounts.NECESSITY[0],
                                         rows["correct"] | _right(rng, 0.65, len(rows)), rows["correct"]))
    assert accounts.necessary(small, sorted(rows["task"].unique()))["outcome"] != verdicts.HOLDS

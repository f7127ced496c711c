"""Answers of several tokens (tvlib.multitoken): the whole-answer rule, the task view that keeps every pair, the
split counts, and the experiment's frame on a tiny model, each checked against a direct computation."""

import itertools
from dataclasses import replace

import pandas as pd
import pytest
import torch

from tvlib import experiments, generation, multitoken
from tvlib.errors import TooFewExamples
from tvlib.experiments import Protocol
from tvlib.models import load_tokenizer
from tvlib.prompts import PAPER_FORMAT, sample_contexts
from tvlib.tasks import Example, Task, answer_length, for_tokenizer, load_task, whole_answers
from tvlib.tiny import tiny_lm

SMALL = Protocol(n_dev=4, n_test=3, n_baseline=2, demos=2)  # three counts apart, so none stands in for another
WORDS = ["a", "b", "bird", "book", "cat", "dog", "fish", "moon", "rain", "snow", "star", "sun", "tree", "wind"]
UPPER = Task("custom_upper", "custom", tuple(Example(w, w.upper()) for w in WORDS))


# --------------------------------------------------------------------------- scoring


def test_a_whole_answer_is_the_answer_exactly_and_a_prefix_is_not():
    paris = Example("France", "Paris", ("Paris, France",))
    for category in ("knowledge", "translation", "custom"):
        task = Task("t", category, (paris,))
        assert task.score_whole("Paris", paris) and task.score_whole(" Paris \n", paris)
        assert task.score_whole("Paris, France", paris)  # an accepted alternative
        for wrong in ("Par", "P", "Paris is", "paris", "", "   ", "Lyon"):
            assert not task.score_whole(wrong, paris), (category, wrong)
    knowledge, translation = Task("k", "knowledge", (paris,)), Task("t", "translation", (paris,))
    # the paper's one-token rule takes a prefix either way for knowledge, and only the answer otherwise
    assert knowledge.score("Par", paris) and knowledge.score(" P", paris) and knowledge.score("Paris is", paris)
    assert not translation.score("Par", paris) and translation.score(" Paris", paris)
    assert not knowledge.score("Lyon", paris) and not knowledge.score(" ", paris)


# --------------------------------------------------------------------------- the task view and the split counts


@pytest.fixture(scope="module")
def gemma():
    return load_tokenizer("gemma-3-270m")


def prompt_length(tokenizer, task, example):
    """The answer's tokens as a prompt has them: a demonstration line's tokens minus those of its query part."""
    line = PAPER_FORMAT.render((example,), "q", task.space).split("\n")[0]
    query = PAPER_FORMAT.render((), example.input, task.space)
    assert line.startswith(query) and line[len(query):].strip() == example.output
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    return count(line) - count(query)


def test_whole_answers_keeps_every_pair_and_spaces_as_the_one_token_view(gemma):
    for name in ("translation_en_fr", "knowledge_country_capital"):
        task = load_task(name)
        whole, single = whole_answers(task, gemma), for_tokenizer(task, gemma)
        assert whole.examples == task.examples and whole.space == single.space
        lengths = [answer_length(gemma, whole, e) for e in whole.examples]
        assert lengths == [prompt_length(gemma, whole, e) for e in whole.examples]
        assert max(lengths) > 1  # answers split for this tokenizer
        if task.category == "knowledge":
            assert single.examples == task.examples  # the paper keeps every knowledge pair too
        else:
            assert set(single.examples) < set(task.examples)  # the single-token filter drops the split ones
            assert all(answer_length(gemma, single, e) == 1 for e in single.examples)
    fr = whole_answers(load_task("translation_en_fr"), gemma)
    assert fr.space  # so the leading space is counted, and it changes some counts
    unspaced = replace(fr, space=False)
    assert any(answer_length(gemma, fr, e) != answer_length(gemma, unspaced, e) for e in fr.examples)
    with pytest.raises(TooFewExamples, match="Use fewer demos"):
        whole_answers(Task("two", "custom", UPPER.examples[:2]), gemma, min_examples=3)


def test_split_counts_and_split_tasks_agree_with_a_direct_count(gemma):
    names = ["knowledge_country_capital", "translation_fr_en", "translation_en_fr", "algorithmic_to_upper",
             "linguistic_antonyms"]
    counts = {}
    for name in names:
        task = whole_answers(load_task(name), gemma)
        counts[name] = sum(prompt_length(gemma, task, e) > 1 for e in task.examples)
        assert multitoken.split_count(load_task(name), gemma) == counts[name]
    assert len(set(counts.values())) > 2
    lengths = multitoken.answer_lengths(gemma, names)
    assert dict(zip(lengths["task"], lengths["several_tokens"])) == counts
    assert (lengths["longest"] >= 1).all() and (lengths["pairs"] == [len(load_task(n)) for n in names]).all()
    middle = sorted(counts.values())[len(names) // 2]
    for minimum in (0, middle, middle + 1, max(counts.values()), max(counts.values()) + 1, multitoken.MIN_SPLIT):
        assert multitoken.split_tasks(lengths, names, minimum) == [n for n in names if counts[n] >= minimum]
    kept = multitoken.split_tasks(lengths, names, middle)
    assert 0 < len(kept) < len(names)  # that minimum keeps some and excludes others
    assert multitoken.split_tasks(lengths, names) == multitoken.split_tasks(lengths, names, multitoken.MIN_SPLIT)
    assert multitoken.split_tasks(lengths, ["not_in_the_table"], 0) == ["not_in_the_table"]


# --------------------------------------------------------------------------- the experiment on a tiny model


@pytest.fixture(scope="module")
def lm():
    """A tiny model with its block weights sharpened (x5), so its answers differ across contexts and layers."""
    lm = tiny_lm("llama")
    with torch.no_grad():
        for p in lm.blocks.parameters():
            if p.dim() == 2:
                p.mul_(5)
    return lm


def hypothesis_rows(frame, split, patch, layer=None):
    rows = frame[(frame["split"] == split) & (frame["method"] == "hypothesis") & (frame["patch"] == patch)]
    return rows if layer is None else rows[rows["layer"] == layer]


def accepting(task, extra):
    """The task with more accepted answers per input: its prompts (and so every generation) stay the same."""
    return replace(task, examples=tuple(replace(e, accept=(*e.accept, *sorted(extra.get(e.input, ()))))
                                        for e in task.examples))


@pytest.fixture(scope="module")
def runs(lm):
    """The experiment on UPPER; then on UPPER accepting what one dev layer generated whole (and what another one's
    first token was), so the whole-answer curve has a peak that is not simply layer 0; then that again."""
    first = multitoken.evaluate_task(lm, UPPER, SMALL)
    dev = hypothesis_rows(first, "dev", "prefill")
    by_layer = [tuple(dev[dev["layer"] == layer]["generated"]) for layer in range(lm.n_layers)]
    target = next(layer for layer in range(1, lm.n_layers) if by_layer[layer] not in by_layer[:layer])
    extra: dict[str, set] = {}
    for _, row in dev[dev["layer"] == target].iterrows():
        extra.setdefault(row["query"], set()).add(row["generated"])
    for _, row in hypothesis_rows(first, "dev", "every_step", 0).iterrows():
        if row["first"]:
            extra.setdefault(row["query"], set()).add(row["first"])
    task = accepting(UPPER, extra)
    return dict(plain=first, task=task, target=target, frame=multitoken.evaluate_task(lm, task, SMALL),
                again=multitoken.evaluate_task(lm, task, SMALL))


def own_curve(task, rows):
    """Dev accuracy per layer by the whole answer and by the answer's start, re-scored here."""
    answers = {e.input: e.answers for e in task.examples}
    whole = [g.strip() in answers[q] for g, q in zip(rows["generated"], rows["query"])]
    start = [f != "" and any(a.startswith(f) for a in answers[q]) for f, q in zip(rows["first"], rows["query"])]
    frame = pd.DataFrame({"layer": rows["layer"].to_numpy(), "whole answer": whole, "answer start": start})
    return frame.groupby("layer").mean()


def own_choice(curve):
    """Best whole answer; a tie to the best start of the answer, then to the lowest layer."""
    return min(curve.index, key=lambda layer: (-curve.loc[layer, "whole answer"], -curve.loc[layer, "answer start"],
                                               layer))


def test_the_layer_is_the_best_whole_answer_then_the_best_start_then_the_lowest():
    def curve(whole, start, order=None):
        layers = list(range(len(whole))) if order is None else order
        return pd.DataFrame({"layer": layers, "whole answer": whole, "answer start": start, "first token": 0.0})

    assert multitoken.chosen_layer(curve([0.2, 0.5, 0.5, 0.1], [0.9, 0.1, 0.3, 0.3])) == 2  # tie on whole: start
    assert multitoken.chosen_layer(curve([0.0, 0.0, 0.0], [0.0, 0.4, 0.4])) == 1  # then the lowest layer
    assert multitoken.chosen_layer(curve([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])) == 0
    assert multitoken.chosen_layer(curve([0.3, 0.3, 0.1], [0.5, 0.5, 1.0], order=[2, 0, 1])) == 0  # any row order


def test_the_frame_sweeps_dev_at_every_layer_and_tests_at_the_best_whole_answer_layer(lm, runs):
    frame, task = runs["frame"], runs["task"]
    space = whole_answers(task, lm.tokenizer).space
    assert len(frame[frame["method"] == "baseline"]) == SMALL.n_baseline
    assert (frame[frame["method"] == "baseline"][["split", "patch"]].drop_duplicates().values.tolist()
            == [["baseline", "none"]])
    regular = frame[frame["method"] == "regular"]
    assert len(regular) == SMALL.n_test and set(regular["split"]) == {"test"} and set(regular["patch"]) == {"none"}
    assert set(frame["patch"]) == {"none", *generation.PATCHES}
    chosen = {}
    for (run, scored), patch in itertools.product([(runs["plain"], UPPER), (frame, task)], generation.PATCHES):
        dev = hypothesis_rows(run, "dev", patch)
        assert sorted(dev["layer"].unique()) == list(range(lm.n_layers))
        assert (dev.groupby("layer").size() == SMALL.n_dev).all()
        test = hypothesis_rows(run, "test", patch)
        assert len(test) == SMALL.n_test and test["layer"].nunique() == 1
        mine = own_curve(scored, dev)
        theirs = multitoken.whole_curve(run, patch).set_index("layer")
        for rule in mine.columns:
            assert theirs[rule].to_dict() == pytest.approx(mine[rule].to_dict())
        chosen[scored.name, patch] = int(test["layer"].iloc[0])
        assert chosen[scored.name, patch] == own_choice(mine), patch
    assert chosen[task.name, "prefill"] == runs["target"] != 0  # the accepted answers moved the peak off layer 0
    # the test rows are the test contexts, the same queries as ICL's, read as bare prompts
    for patch in generation.PATCHES:
        test = hypothesis_rows(frame, "test", patch)
        assert test["query"].tolist() == regular["query"].tolist()
        assert test["prompt"].tolist() == [PAPER_FORMAT.render((), q, space) for q in test["query"]]
    assert all(p.endswith(PAPER_FORMAT.render((), q, space)) and p.count("\n") == SMALL.demos
               for p, q in zip(regular["prompt"], regular["query"]))


def test_the_correct_columns_are_the_rules_applied_to_what_was_generated(lm, runs):
    frame, task = runs["frame"], runs["task"]
    examples = {e.input: e for e in task.examples}
    space = whole_answers(task, lm.tokenizer).space
    for _, row in frame.iterrows():
        example = examples[row["query"]]
        assert row["expected"] == example.output
        assert row["answer_tokens"] == len(example.output) + space  # one token per character
        assert row["correct_whole"] == (row["generated"] in example.answers)
        assert row["correct_first"] == task.score(row["first"], example)
        assert row["correct_start"] == (row["first"] != "" and any(a.startswith(row["first"])
                                                                    for a in example.answers))
        assert row["generated"].startswith(row["first"]) and "\n" not in row["generated"]
    for column in [*multitoken.RULES.values(), "stopped"]:
        assert frame[column].any() and not frame[column].all(), column
    # the accepted answers change the scores, never what was generated
    plain = runs["plain"]
    same = ["split", "method", "patch", "query", "generated", "first", "stopped", "margin"]
    dev = lambda f: f[f["split"] != "test"][same].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(dev(plain), dev(frame))
    assert plain["correct_whole"].sum() < frame["correct_whole"].sum()


def test_the_experiment_is_deterministic_and_summarize_averages_the_test_rows(runs):
    pd.testing.assert_frame_equal(runs["frame"], runs["again"])
    n = len(runs["frame"])
    patterned = runs["frame"].assign(correct_first=[i % 2 == 0 for i in range(n)],
                                     correct_start=[i % 3 == 0 for i in range(n)],
                                     correct_whole=[i % 5 < 2 for i in range(n)])
    for frame in (runs["frame"], patterned):
        check_summary(frame)


def check_summary(frame):
    summary = multitoken.summarize(frame)
    assert len(summary) == 4 and summary[["method", "patch"]].values.tolist() == [
        ["baseline", "none"], ["regular", "none"], ["hypothesis", "prefill"], ["hypothesis", "every_step"]]
    for _, row in summary.iterrows():
        rows = frame[(frame["method"] == row["method"]) & (frame["patch"] == row["patch"])
                     & (frame["split"] != "dev")]
        assert row["n"] == len(rows) == (SMALL.n_baseline if row["method"] == "baseline" else SMALL.n_test)
        for rule, column in multitoken.RULES.items():
            assert row[rule] == pytest.approx(rows[column].mean())
        if row["method"] == "hypothesis":
            assert row["layer"] == rows["layer"].iloc[0]
        else:
            assert pd.isna(row["layer"])


def test_one_dev_cell_equals_generating_with_the_task_vectors_directly(lm, runs):
    frame, task = runs["frame"], runs["task"]
    whole = whole_answers(task, lm.tokenizer, min_examples=SMALL.demos + 1)
    dev = sample_contexts(whole, SMALL.n_dev, SMALL.demos, SMALL.seed, "dev", SMALL.n_dummy)
    bare = [SMALL.fmt.render((), c.query.input, whole.space) for c in dev]
    thetas = experiments.task_vectors(lm, whole, dev, SMALL)
    for patch in generation.PATCHES:
        for layer in sorted({runs["target"], lm.n_layers - 1}):
            out = generation.generate(lm, bare, thetas[:, layer], [layer] * len(bare), patch)
            texts = out.texts(lm)
            cell = hypothesis_rows(frame, "dev", patch, layer)
            assert cell["query"].tolist() == [c.query.input for c in dev]
            assert cell["generated"].tolist() == [t.strip() for t in texts]
            assert cell["stopped"].tolist() == out.stopped
            assert cell["margin"].tolist() == pytest.approx(out.margins, abs=1e-5)
            accuracy = sum(task.score_whole(t, c.query) for t, c in zip(texts, dev)) / len(dev)
            assert cell["correct_whole"].mean() == pytest.approx(accuracy)
    assert hypothesis_rows(frame, "dev", "prefill", runs["target"])["correct_whole"].all()


def test_a_task_with_no_single_token_answer_either_way_stays_unspaced():
    from tvlib.models import load_tokenizer
    from tvlib.tasks import Example, Task, for_tokenizer, whole_answers

    tok = load_tokenizer("gemma-3-270m")
    long_words = Task("custom_long", "custom", tuple(Example(f"w{i}", f"antidisestablishment{i}xq") for i in range(8)))
    assert for_tokenizer(long_words, tok).examples == ()
    assert whole_answers(long_words, tok).space is False and len(whole_answers(long_words, tok).examples) == 8


def test_an_answer_leads_where_the_generation_begins_with_it_and_a_word_ends_there():
    from tvlib.multitoken import _leads
    from tvlib.tasks import Example

    believed = Example("believe", "believed")
    assert _leads("believed, believe_believe", believed) and _leads(" believed", believed)
    assert not _leads("believedly", believed) and not _leads("believe", believed)
    capital = Example("Argentina", "Buenos Aires", ("B. Aires",))
    assert _leads("Buenos Aires!", capital) and _leads("B. Aires is", capital)
    assert not _leads("Buenos", capital) and not _leads("Tunisia", Example("Tunisia", "Tunis"))

"""Function vectors (tvlib.function_vectors) and their reading (tvlib.fv_readings) on tiny models: what each step
computes, checked against a direct computation, and the Runner's stored results read back without a model."""

from dataclasses import replace

import pandas as pd
import pytest
import torch

from tvlib import fv_readings, heads, experiments, verdicts
from tvlib import function_vectors as fvs
from tvlib.errors import TvlibError
from tvlib.experiments import Protocol
from tvlib.heads import Edit, Site
from tvlib.prompts import Context
from tvlib.runs import Runner
from tvlib.tasks import Example, load_task
from tvlib.tiny import tiny_lm

SMALL = Protocol(n_dev=6, n_test=5, n_baseline=2, demos=3)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama")


def test_shuffled_labels_keep_the_inputs_and_the_query_and_move_every_label():
    demos = tuple(Example(x, x.upper()) for x in "abcd")
    context = Context(demos, Example("e", "E"), ())
    moved = fvs.shuffled([context] * 3, 41, "t")
    for c in moved:
        assert [d.input for d in c.demos] == list("abcd") and c.query == context.query
        assert sorted(d.output for d in c.demos) == list("ABCD")
        assert all(d.output != d.input.upper() for d in c.demos)  # no demonstration keeps its own label
    assert moved == fvs.shuffled([context] * 3, 41, "t")  # seeded
    assert moved != fvs.shuffled([context] * 3, 42, "t")


def test_the_indirect_effect_of_a_head_is_the_probability_its_mean_output_restores(lm):
    """AIE through the prefix cache equals the same patch made on the whole prompt, head by head."""
    task = load_task("algorithmic_to_upper")
    setup = fvs.task_setup(lm, task, SMALL)
    aie = fvs.indirect_effects(lm, replace(setup, corrupted=setup.corrupted[:2], targets=setup.targets[:2]))
    n_heads, _ = heads.shape(lm)
    assert len(aie) == lm.n_layers * n_heads
    row = aie.iloc[5]
    site = Site(int(row["layer"]), int(row["head"]))
    texts = setup.corrupted[:2]
    target = torch.tensor(setup.targets[:2])
    plain = vectors_probs(lm, texts, target, [[], []])
    patched = vectors_probs(lm, texts, target, [[Edit(site, setup.means[site.layer, site.head])]] * 2)
    assert row.aie == pytest.approx(float((patched - plain).mean()), abs=1e-5)
    assert row.p_corrupted == pytest.approx(float(plain.mean()), abs=1e-5)


def vectors_probs(lm, texts, target, edits):
    logits = heads.patched_logits(lm, texts, edits, verify=False)
    return logits.softmax(-1).gather(1, target[:, None])[:, 0]


def test_top_heads_average_over_tasks_and_break_ties_by_position():
    aie = pd.DataFrame({"task": ["a"] * 3 + ["b"] * 3, "layer": [0, 1, 2] * 2, "head": [0, 0, 0] * 2,
                        "aie": [0.1, 0.3, 0.3, 0.5, 0.1, 0.1]})
    assert fvs.top_heads(aie, 2) == [Site(0, 0), Site(1, 0)]  # means 0.3, 0.2, 0.2: the tie goes to layer 1


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_the_heads_contributions_sum_to_what_attention_adds_to_the_residual_stream(arch):
    """`residual` summed over all heads (plus the projection's bias) is the attention output as the residual stream
    receives it: through Gemma's post-attention norm where the architecture has one."""
    lm = tiny_lm(arch)
    reads = heads.read(lm, ["abc->", "hello->"])
    rms = heads.attention_rms(lm, reads[:1])
    n_heads, _ = heads.shape(lm)
    layer = 1
    module = heads.out_proj(lm, layer)
    with torch.no_grad():
        out = module(reads[0, layer].flatten())
        if lm.layout.attn_post_norm:
            out = lm.blocks[layer].get_submodule(lm.layout.attn_post_norm)(out)
            bias = 0
        else:
            bias = module.bias if getattr(module, "bias", None) is not None else 0
    total = sum(heads.residual(lm, layer, h, reads[0, layer, h], rms[layer]) for h in range(n_heads)) + bias
    torch.testing.assert_close(total, out.float(), atol=1e-4, rtol=1e-4)
    if lm.layout.attn_post_norm:
        with pytest.raises(TvlibError, match="attention_rms"):
            heads.residual(lm, layer, 0, reads[0, layer, 0])


def test_the_fv_layer_is_chosen_on_dev_and_ties_go_low():
    rows = [{"split": split, "added_at": layer, "correct": correct}
            for split, layer, correct in [("dev", 0, 0), ("dev", 1, 1), ("dev", 2, 1), ("test", 0, 1)]]
    assert fvs.chosen_layer(pd.DataFrame(rows)) == 1
    assert fvs.todd_layer(28) == 9  # Todd et al.'s layer for GPT-J


def test_induction_scores_find_a_head_that_attends_to_the_token_after_the_last_occurrence(lm):
    """A head made into an induction head by hand (its attention pattern forced) scores 1; the others do not."""
    scores = fvs.induction_scores(lm, seed=0, length=8, sequences=2)
    n_heads, _ = heads.shape(lm)
    assert len(scores) == lm.n_layers * n_heads and scores["induction"].between(0, 1).all()
    assert lm.model.config._attn_implementation != "eager" or True  # restored after (checked below)
    before = lm.model.config._attn_implementation
    fvs.induction_scores(lm, seed=0, length=4, sequences=1)
    assert lm.model.config._attn_implementation == before
    sets = fvs.head_sets([Site(0, 0)], scores, 1, seed=3)
    assert set(sets) == {"FV heads", "induction heads", "random heads"}
    assert sets["induction heads"] == fvs.top_induction(scores, 1)


def test_mean_ablation_at_every_position_changes_icl_and_an_empty_set_does_not(lm):
    task = load_task("algorithmic_to_upper")
    setup = fvs.task_setup(lm, task, SMALL)
    frame = fvs.ablated(lm, setup, {"all of layer 0": [Site(0, h) for h in range(heads.shape(lm)[0])]}, SMALL)
    none = frame[frame["ablated"] == "none"]
    regular = experiments.regular(lm, setup.task, setup.test, SMALL)
    assert none["prediction"].tolist() == regular["prediction"].tolist()  # the same ICL as the main experiment
    assert set(frame["ablated"]) == {"none", "all of layer 0"}


def test_the_runner_stores_every_question_and_the_page_reads_them_back(lm, tmp_path):
    tasks = ["algorithmic_next_letter", "algorithmic_to_upper"]
    small = replace(SMALL, n_dev=4, n_test=4)
    runner = Runner("tiny", protocol=small, results_dir=tmp_path, loaded=lm)
    found = runner.function_vectors(tasks, k=2)
    stored = Runner("tiny", protocol=small, results_dir=tmp_path, stored_only=True).function_vectors(tasks, k=2)
    for name in found:
        pd.testing.assert_frame_equal(found[name], stored[name])
    assert runner._place("function_vectors", k=(2, fvs.TOP_K)).name.endswith("_k2")  # k is in the folder name
    zero = found["zero_shot"]
    assert set(zero["method"]) == {"fv", "theta", "query alone"} and zero["format"].nunique() == 3
    # theta written at L into the paper's bare query is the main experiment's hypothesis at L, query by query
    main = runner.main_all(tasks)
    layers = runner.best_layers(tasks)
    for task in tasks:
        theirs = main.query("task == @task and split == 'test' and method == 'hypothesis' and layer == @layers[@task]")
        ours = zero.query("task == @task and method == 'theta' and format == 'example:x->y'")
        assert ours["prediction"].tolist() == theirs["prediction"].tolist()
    summary = experiments.summarize(main).assign(baseline=0.0, regular=1.0)  # every task testable
    read = fv_readings.tables(found, summary, k=2)
    assert read["tasks"]["task"].tolist() == sorted(tasks)
    sentence = fv_readings.answer_heads_or_state(read)
    assert sentence.endswith(("theta.", "FV.", f"{verdicts.UNDECIDED}."))
    assert "paired difference" in " ".join(fv_readings.say_zero_shot(read))
    table = fv_readings.models_table({"tiny": read})
    assert table.loc["testable tasks", "tiny"] == "2"
    assert "as it is (`self_attn.o_proj`)" in fv_readings.say_residual(read)  # llama: no post-attention norm
    none = fv_readings.tables(found, summary.assign(regular=0.0), k=2)  # no task where ICL adds anything
    assert not none["decides"] and none["tasks"]["task"].tolist() == sorted(tasks)
    assert fv_readings.answer_heads_or_state(none).endswith(f"{verdicts.UNDECIDED}.")
    with pytest.raises(TvlibError, match="choose k from 1 to"):
        fvs.head_sets([], found["induction"], 99, seed=0)


def test_a_reading_says_cannot_be_decided_when_the_paired_interval_holds_zero():
    contrasts = pd.DataFrame([("a", 0.1, 0.02, 0.2, "above"), ("b", 0.0, -0.1, 0.1, "level with")],
                             columns=["measure", "difference", "low", "high", "reading"])
    assert fv_readings.verdict(contrasts, "a", "up", "down") == "up"
    assert fv_readings.verdict(contrasts, "b", "up", "down") == verdicts.UNDECIDED


def test_the_fv_added_through_the_prefix_cache_answers_as_the_plain_pass_does(lm):
    """`_added` runs each bare query once and its last token per layer; the plain pass with the vector added
    (`vectors.predict` with alpha 1) must give the same answers, layer by layer."""
    from tvlib import vectors

    task = load_task("algorithmic_to_upper")
    setup = fvs.task_setup(lm, task, SMALL)
    vector = torch.randn(lm.model.config.hidden_size) * 3
    frame = fvs._added(lm, setup.task, setup.test, SMALL.fmt, vector, [0, 2], SMALL, "fv")
    bare = [SMALL.fmt.render((), c.query.input, setup.task.space) for c in setup.test]
    for layer in (0, 2):
        plain = vectors.predict(lm, bare, vector.expand(len(bare), -1), [layer] * len(bare), alpha=1.0)
        assert frame[frame["layer"] == layer]["prediction"].tolist() == [p.strip() for p in plain.texts(lm)]

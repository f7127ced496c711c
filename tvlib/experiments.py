"""The paper's experiments as functions that return tidy pandas DataFrames (no plotting, no files)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch

from tvlib import defaults, verdicts
from tvlib.errors import TvlibError
from tvlib.measures import Targets, target_ids
from tvlib.models import LM
from tvlib.prompts import PAPER_FORMAT, Context, PromptFormat, sample_contexts, sample_queries
from tvlib.tasks import Task, for_tokenizer
from tvlib.vectors import Answers, last_token_states, predict, states_and_answers, sweep


@dataclass(frozen=True)
class Protocol:
    """The paper's settings (5 demos, 2 dummy queries, 50 dev / 50 test contexts, 100 baseline queries, seed 41)."""

    n_dev: int = defaults.N_DEV
    n_test: int = defaults.N_TEST
    n_baseline: int = defaults.N_BASELINE
    demos: int = defaults.DEMOS
    n_dummy: int = defaults.N_DUMMY
    seed: int = defaults.SEED
    batch_size: int = defaults.BATCH_SIZE
    progress: bool = False
    fast: bool = True
    fmt: PromptFormat = field(default_factory=lambda: PAPER_FORMAT)

    def __post_init__(self) -> None:
        """Counts of zero or less would give empty or meaningless results: refuse them with the fix."""
        for name in ("n_dev", "n_test", "n_baseline", "demos", "n_dummy", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TvlibError(f"{name} must be a whole number of at least 1, not {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TvlibError(f"seed must be a whole number, not {self.seed!r}")

    def config(self) -> dict:
        """What determines the results: everything but how they are computed (batch size, progress, fast path)."""
        out = asdict(self)
        out.pop("batch_size"), out.pop("progress"), out.pop("fast")
        return out


def prepare(lm: LM, task: Task, protocol: Protocol) -> Task:
    """The task filtered to this tokenizer's single-token outputs, with a clear error when too few remain."""
    return for_tokenizer(task, lm.tokenizer, min_examples=protocol.demos + 1)


def dev_and_test(lm: LM, task: Task, protocol: Protocol) -> tuple[Task, list[Context], list[Context]]:
    """The task as this tokenizer sees it, and the main experiment's dev and test contexts: every experiment that
    reads the same contexts draws them here."""
    task = prepare(lm, task, protocol)
    dev = sample_contexts(task, protocol.n_dev, protocol.demos, protocol.seed, "dev", protocol.n_dummy)
    test = sample_contexts(task, protocol.n_test, protocol.demos, protocol.seed, "test", protocol.n_dummy)
    return task, dev, test


def _rows(lm: LM, task: Task, method: str, queries, answers: Answers, prompts: list[str], layer=None,
          split="test") -> pd.DataFrame:
    """One row per prediction, with the exact prompt the model read; `margin` (top-2 logit gap) marks the answers
    a different CPU could flip; the continuous measures follow where they were computed."""
    predictions = answers.texts(lm)
    return pd.DataFrame({
        "task": task.name, "split": split, "method": method, "layer": layer,
        "context": range(len(queries)), "query": [q.input for q in queries], "expected": [q.output for q in queries],
        "prediction": [p.strip() for p in predictions],
        "correct": [task.score(p, q) for p, q in zip(predictions, queries)],
        "margin": answers.margins, **answers.measures, "prompt": prompts,
    })


def targets(lm: LM, task: Task, queries, reference: torch.Tensor | None = None, repeat: int = 1) -> Targets:
    """The measures' targets for `queries` (repeated `repeat` times, layer-major as a sweep runs them), each
    against its context's ICL log-probabilities in `reference` when given."""
    ids = target_ids(lm.tokenizer, [q.output for q in queries], task.space)
    query = torch.arange(len(queries)).repeat(repeat)
    return Targets(ids[query], reference, query if reference is not None else None)


def baseline(lm: LM, task: Task, protocol: Protocol) -> pd.DataFrame:
    """The query alone, no demonstrations and no patch: what the model knows without ICL."""
    queries = sample_queries(task, protocol.n_baseline, protocol.seed)
    texts = [protocol.fmt.render((), q.input, task.space) for q in queries]
    preds = predict(lm, texts, batch_size=protocol.batch_size, progress=protocol.progress, desc="baseline",
                    targets=targets(lm, task, queries))
    return _rows(lm, task, "baseline", queries, preds, texts, split="baseline")


def regular(lm: LM, task: Task, contexts: list[Context], protocol: Protocol, split: str = "test") -> pd.DataFrame:
    """Ordinary k-shot ICL on the given contexts (the reference path; the fast one comes with `contexts_pass`)."""
    return icl_pass(lm, task, contexts, protocol, split)[0]


def icl_pass(lm: LM, task: Task, contexts: list[Context], protocol: Protocol,
             split: str = "test") -> tuple[pd.DataFrame, torch.Tensor]:
    """ICL's predictions and each context's next-token log-probabilities [n, vocab], which the patched runs'
    KL is measured against (the reference path)."""
    texts = [protocol.fmt.render(c.demos, c.query.input, task.space) for c in contexts]
    queries = [c.query for c in contexts]
    preds = predict(lm, texts, batch_size=protocol.batch_size, progress=protocol.progress, desc="ICL",
                    targets=targets(lm, task, queries), keep=True)
    return _rows(lm, task, "regular", queries, preds, texts, split=split), torch.stack(preds.logprobs)


def task_vectors(lm: LM, task: Task, contexts: list[Context], protocol: Protocol) -> torch.Tensor:
    """A(S): theta for every context and layer, averaged over its dummy queries; shape [n, n_layers, d]."""
    if protocol.fast:
        return contexts_pass(lm, task, contexts, protocol, with_query=False)[0]
    texts = [protocol.fmt.render(c.demos, d.input, task.space) for c in contexts for d in c.dummies]
    states = last_token_states(lm, texts, protocol.batch_size, protocol.progress)
    return states.view(len(contexts), len(contexts[0].dummies), *states.shape[1:]).mean(1)


def contexts_pass(lm: LM, task: Task, contexts: list[Context], protocol: Protocol,
                  with_query: bool = True) -> tuple[torch.Tensor, pd.DataFrame | None, torch.Tensor | None]:
    """The fast A, and with `with_query` plain ICL too: a context's demonstrations run once for all its prompts.
    Returns the thetas, ICL's predictions and ICL's log-probabilities per context (as `icl_pass`)."""
    groups = [[protocol.fmt.render(c.demos, d.input, task.space) for d in c.dummies]
              + ([protocol.fmt.render(c.demos, c.query.input, task.space)] if with_query else []) for c in contexts]
    per = len(groups[0])
    queries = [c.query for c in contexts]
    wanted = targets(lm, task, [e for c in contexts for e in ([*c.dummies, c.query] if with_query else c.dummies)])
    keep = list(range(per - 1, per * len(contexts), per)) if with_query else []
    states, answers = states_and_answers(lm, groups, protocol.batch_size, protocol.progress, wanted, keep)
    states = states.view(len(contexts), per, *states.shape[1:])
    thetas = states[:, :len(contexts[0].dummies)].mean(1)
    if not with_query:
        return thetas, None, None
    reference = torch.stack(answers.logprobs)
    icl = answers[per - 1::per]
    return thetas, _rows(lm, task, "regular", queries, icl, [g[-1] for g in groups]), reference


def hypothesis(lm: LM, task: Task, contexts: list[Context], thetas: torch.Tensor, layers: list[int],
               protocol: Protocol, split: str = "test", reference: torch.Tensor | None = None) -> pd.DataFrame:
    """f(x; theta): the bare query with theta written into block L, for every (context, L) pair; with ICL's
    log-probabilities on the same contexts (`reference`), each row's KL from ICL as well."""
    n = len(contexts)
    bare = [protocol.fmt.render((), c.query.input, task.space) for c in contexts]
    queries = [c.query for c in contexts]
    wanted = targets(lm, task, queries, reference, repeat=len(layers))
    if protocol.fast:
        preds = sweep(lm, bare, thetas, layers, protocol.batch_size, protocol.progress, wanted)
    else:
        flat = torch.cat([thetas[:, layer] for layer in layers])
        layer_list = [layer for layer in layers for _ in range(n)]
        preds = predict(lm, bare * len(layers), flat, layer_list, protocol.batch_size, protocol.progress,
                        desc="f (patched)", targets=wanted)
    return pd.concat([_rows(lm, task, "hypothesis", queries, preds[i * n:(i + 1) * n], bare, layer, split)
                      for i, layer in enumerate(layers)], ignore_index=True)


def best_layer(curve: pd.DataFrame) -> int:
    """The argmax of dev accuracy over layers; ties go to the lowest layer."""
    ordered = curve.sort_values("layer")
    return int(ordered.loc[ordered["accuracy"].idxmax(), "layer"])


def window_layers(n_layers: int, window: tuple[float, float]) -> list[int]:
    """The blocks whose relative depth (L + 1) / N lies in `window`: a window of blocks fixed for one model's depth
    (the robustness script's 10-19 of 32), carried to another; where no block falls inside, the one nearest its
    middle."""
    inside = [layer for layer in range(n_layers) if window[0] <= (layer + 1) / n_layers <= window[1]]
    if inside:
        return inside
    # a model too shallow for any block to fall inside (1 or 3 blocks): the block nearest the window's middle
    middle = (window[0] + window[1]) / 2
    return [min(range(n_layers), key=lambda layer: abs((layer + 1) / n_layers - middle))]


def best_layers_within(predictions: pd.DataFrame, window: tuple[float, float]) -> dict[str, int]:
    """Each task's best dev layer among the blocks of `window` (`window_layers`), ties to the lowest, read from the
    main experiment's dev sweep: the robustness script's rule on this book's sweep."""
    curves = dev_curve(predictions)
    n_layers = int(curves["layer"].max()) + 1
    inside = curves[curves["layer"].isin(window_layers(n_layers, window))]
    return {task: best_layer(curve) for task, curve in inside.groupby("task", sort=False)}


def dev_curve(predictions: pd.DataFrame) -> pd.DataFrame:
    """Dev accuracy per layer from the dev sweep's predictions."""
    dev = predictions[(predictions["split"] == "dev") & (predictions["method"] == "hypothesis")]
    return (dev.groupby(["task", "layer"], as_index=False)["correct"].mean()
            .rename(columns={"correct": "accuracy"}).astype({"layer": int}))


def _fall(mean: pd.Series, peak: int) -> int | None:
    """Blocks after `peak` until the curve first falls below half of its value there (None if it never does)."""
    drop = next((int(layer) for layer, acc in mean[mean.index > peak].items() if acc < mean[peak] / 2), None)
    return None if drop is None else drop - peak


def peak_and_fall(curves: pd.DataFrame, n_layers: int) -> dict:
    """The mean dev curve's peak (the first of tied maxima), and how many blocks after it the curve first falls below
    half of the peak (None if it never does): one rule for our curves and the paper's, so the two are compared
    alike. `tied_peaks` lists the other layers a tie could have chosen."""
    mean = curves.groupby("layer")["accuracy"].mean().sort_index()
    peak = int(mean.idxmax())
    return {"peak layer": peak, "peak accuracy": float(mean[peak]), "blocks": n_layers,
            "relative depth": (peak + 1) / n_layers, "blocks to fall": _fall(mean, peak)}


def tied_peaks(curves: pd.DataFrame, n_layers: int, tie: float = 1e-9) -> pd.DataFrame:
    """Every layer where the mean dev curve equals its maximum (within `tie`), with its depth and fall: a tie is
    reported, never broken silently, since the lowest-layer rule alone would decide a verdict."""
    mean = curves.groupby("layer")["accuracy"].mean().sort_index()
    tops = [int(layer) for layer, acc in mean.items() if acc >= mean.max() - tie]
    return pd.DataFrame([{"peak layer": p, "peak accuracy": float(mean[p]), "relative depth": (p + 1) / n_layers,
                          "blocks to fall": _fall(mean, p)} for p in tops])


FIGURE3_MIN_DEV = 0.75
"""The paper's Figure 3 averages the dev curves of tasks whose best dev accuracy exceeds this."""


def figure3_tasks(curves: pd.DataFrame, min_dev: float = FIGURE3_MIN_DEV) -> list[str]:
    """The tasks the paper's Figure 3 keeps: best dev accuracy over layers above 0.75."""
    best = curves.groupby("task")["accuracy"].max()
    return sorted(best[best > min_dev].index)


def depth_peaks(curves_by_model: dict[str, pd.DataFrame], min_dev: float = FIGURE3_MIN_DEV) -> pd.DataFrame:
    """`peak_and_fall` of each model's mean dev curve, over all tasks and over Figure 3's tasks: one row each, so
    peak layers come from the curves (ours and the paper's) by one rule, never typed in."""
    rows = []
    for model, curves in curves_by_model.items():
        n_layers = int(curves["layer"].max()) + 1
        for which, kept in (("all tasks", sorted(curves["task"].unique())),
                            ("Figure 3 filter", figure3_tasks(curves, min_dev))):
            row = {"model": model, "tasks": which, "n tasks": len(kept), "blocks": n_layers}
            if kept:
                row.update(peak_and_fall(curves[curves["task"].isin(kept)], n_layers))
            rows.append(row)
    return pd.DataFrame(rows).astype({"blocks to fall": "Int64"})


def evaluate_task(lm: LM, task: Task, protocol: Protocol = Protocol()) -> pd.DataFrame:
    """The main experiment for one task: baseline, regular, and hypothesis at every layer on dev and test contexts.

    Returns every prediction as one tidy frame (columns task, category, split, method, layer, context, query,
    expected, prediction, correct, margin, the continuous measures `measures.MEASURES` (KL only for the test
    sweep, against ICL on the same context), prompt). L is chosen on the dev sweep; the test sweep at every layer
    is kept so that an interval for hypothesis can re-choose L; `summarize` turns the frame into the paper's numbers.
    """
    task, dev, test = dev_and_test(lm, task, protocol)
    layers = list(range(lm.n_layers))
    if protocol.fast:
        test_thetas, icl, reference = contexts_pass(lm, task, test, protocol)
    else:
        test_thetas, (icl, reference) = task_vectors(lm, task, test, protocol), icl_pass(lm, task, test, protocol)
    parts = [baseline(lm, task, protocol), icl,
             hypothesis(lm, task, dev, task_vectors(lm, task, dev, protocol), layers, protocol, "dev"),
             hypothesis(lm, task, test, test_thetas, layers, protocol, "test", reference)]
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(1, "category", task.category)
    return frame


def summarize(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per task: baseline, regular, and hypothesis at the layer chosen on dev contexts (and that layer)."""
    rows = []
    for name, frame in predictions.groupby("task", sort=False):
        test = frame[frame["split"] != "dev"]
        acc = test.groupby("method")["correct"].mean()
        hyp = test[test["method"] == "hypothesis"]
        if (frame["split"] == "dev").any():
            layer = best_layer(dev_curve(frame))
        else:  # hypothesis run at one given layer, without a dev sweep
            layer = int(hyp["layer"].iloc[0]) if len(hyp) else None
        hyp = hyp[hyp["layer"] == layer]
        rows.append({"task": name, "category": frame["category"].iloc[0], "baseline": acc.get("baseline"),
                     "regular": acc.get("regular"), "hypothesis": hyp["correct"].mean() if len(hyp) else None,
                     "best_layer": layer})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- robustness: do thetas cluster by task?


def robustness_vectors(lm: LM, task: Task, layer: int, protocol: Protocol,
                       n: int = defaults.ROBUSTNESS_VECTORS) -> torch.Tensor:
    """`n` thetas of one task at one layer, each from its own demonstrations S and dummy queries x'."""
    task = prepare(lm, task, protocol)
    contexts = sample_contexts(task, n, protocol.demos, protocol.seed, "robustness", protocol.n_dummy)
    return task_vectors(lm, task, contexts, protocol)[:, lm.check_layer(layer)]


# --------------------------------------------------------------------------- dominance: theta of B against demos of A


def shared_queries(task_a: Task, task_b: Task) -> list[str]:
    """Inputs both tasks define, so one query has an A answer and a B answer."""
    return sorted({e.input for e in task_a.examples} & {e.input for e in task_b.examples})


def conflicting(lm: LM, task_a: Task, task_b: Task, protocol: Protocol,
                n: int = defaults.CONFLICT_QUERIES) -> pd.DataFrame:
    """Demos of A with theta of B patched in, as the paper's code runs it, beside plain ICL on the same prompts.

    Theta of B comes from B's demonstrations read through dummy queries drawn from A's inputs; B's layer is the
    argmax of a dev sweep of those thetas on B's bare queries. Every answer is scored against A's and B's labels.
    """
    task_a, task_b = prepare(lm, task_a, protocol), prepare(lm, task_b, protocol)
    shared = set(shared_queries(task_a, task_b))
    if not shared:
        raise TvlibError(f"{task_a.name} and {task_b.name} share no inputs: no query has an answer in both tasks")
    contexts = [c for c in sample_contexts(task_a, 4 * n, protocol.demos, protocol.seed, "conflict-a", 0)
                if c.query.input in shared][:n]
    b_contexts = sample_contexts(task_b, len(contexts), protocol.demos, protocol.seed, "conflict-b", protocol.n_dummy,
                                 dummy_pool=task_a.examples)
    thetas = task_vectors(lm, task_b, b_contexts, protocol)
    b_sweep = hypothesis(lm, task_b, b_contexts, thetas, list(range(lm.n_layers)), protocol, "dev")
    curve = dev_curve(b_sweep)
    layer = best_layer(curve)
    texts = [protocol.fmt.render(c.demos, c.query.input, task_a.space) for c in contexts]
    icl = predict(lm, texts, batch_size=protocol.batch_size)
    patched = predict(lm, texts, thetas[:, layer], [layer] * len(texts), protocol.batch_size)
    b_of = {e.input: e for e in task_b.examples}
    rows = []
    for method, answers in (("regular", icl), ("patched", patched)):
        for i, (c, p, margin) in enumerate(zip(contexts, answers.texts(lm), answers.margins)):
            b = b_of[c.query.input]
            rows.append({"task_a": task_a.name, "task_b": task_b.name, "method": method, "layer": layer,
                         "b_dev_accuracy": float(curve.loc[curve["layer"] == layer, "accuracy"].iloc[0]),
                         "context": i, "query": c.query.input, "label_a": c.query.output, "label_b": b.output,
                         "prediction": p.strip(), "correct_a": task_a.score(p, c.query),
                         "correct_b": task_b.score(p, b), "margin": margin, "prompt": texts[i]})
    return pd.DataFrame(rows)


def dominance_table(rows: pd.DataFrame, b_gain: pd.Series | dict,
                    min_icl: float = verdicts.ICL_DOES_A) -> pd.DataFrame:
    """Per pair: ICL and patched accuracy on A's and B's labels; theta of B dominates where the patched run follows
    B more often than A, counted only where the pair can test it (`flag_dominance`), else flagged."""
    acc = rows.groupby(["task_a", "task_b", "method"], sort=False)[["correct_a", "correct_b"]].mean().unstack("method")
    table = pd.DataFrame({
        "icl_acc_on_a": acc[("correct_a", "regular")], "icl_acc_on_b": acc[("correct_b", "regular")],
        "patched_acc_on_a": acc[("correct_a", "patched")], "patched_acc_on_b": acc[("correct_b", "patched")],
    })
    first = rows.groupby(["task_a", "task_b"], sort=False)
    table["layer"] = first["layer"].first()
    table["b_dev_accuracy"] = first["b_dev_accuracy"].first()  # theta of B on B's bare queries, no A in sight
    table["n"] = first.size() // 2
    table = table.reset_index().rename(columns={"task_a": "task_a_demos", "task_b": "task_b_vector"})
    return flag_dominance(table, b_gain, min_icl)


def flag_dominance(table: pd.DataFrame, b_gain: pd.Series | dict, min_icl: float = verdicts.ICL_DOES_A) -> pd.DataFrame:
    """The dominance rule on any table of pair accuracies (ours or the paper's Table 2), so both are read alike.
    A pair can test dominance only where plain ICL does task A (`icl_does_a`) and theta_B carries task B
    (`b_carries`: in the main experiment ICL adds at least `verdicts.MIN_GAIN` over the query alone on B, from
    `b_gain`, task -> regular - baseline; else B's dev curve is flat and its layer carries no task)."""
    out = table.copy()
    out["icl_does_a"] = out["icl_acc_on_a"] >= min_icl
    gain = out["task_b_vector"].map(dict(b_gain))
    if gain.isna().any():
        raise TvlibError(f"no main-experiment result for {sorted(out.loc[gain.isna(), 'task_b_vector'])}: "
                         "whether theta_B carries B is read there; run the main experiment on those tasks first")
    out["b_carries"] = gain >= verdicts.MIN_GAIN  # as `verdicts.testable` reads a task
    out["theta_dominates"] = out["icl_does_a"] & out["b_carries"] & (out["patched_acc_on_b"] > out["patched_acc_on_a"])
    return out


def gains(summary: pd.DataFrame) -> pd.Series:
    """Per task, what ICL adds over the query alone (regular - baseline): the test of whether theta can carry it."""
    return summary.set_index("task").eval("regular - baseline")


# --------------------------------------------------------------------------- interpretation: theta on the vocabulary


ALPHABETIC = re.compile(r"^[a-zA-Z]+$")
"""The paper's token filter for the vocabulary projection: ASCII letters only."""


def vocabulary_projection(lm: LM, task: Task, layers: list[int], protocol: Protocol, top: int = defaults.PROJECTION_TOP,
                          candidates: int = 100) -> pd.DataFrame:
    """Mean theta over test contexts, through the final norm and unembedding, as the paper reads it: of the top
    `candidates` tokens per layer, the alphabetic ones (ASCII letters), stripped and de-duplicated, at most `top`."""
    task = prepare(lm, task, protocol)
    contexts = sample_contexts(task, protocol.n_test, protocol.demos, protocol.seed, "test", protocol.n_dummy)
    mean = task_vectors(lm, task, contexts, protocol).mean(0)
    rows = [{"task": task.name, "layer": layer, "rank": rank, "token": word, "logit": logit}
            for layer in layers
            for rank, (word, logit) in enumerate(top_words(lm, mean[lm.check_layer(layer)], top, candidates), 1)]
    return pd.DataFrame(rows, columns=["task", "layer", "rank", "token", "logit"])


def top_words(lm: LM, state: torch.Tensor, top: int = defaults.PROJECTION_TOP,
              candidates: int = 100) -> list[tuple[str, float]]:
    """A state through the final norm and unembedding, read as the paper reads it: of the top `candidates`
    tokens, the alphabetic ones (ASCII letters), stripped and de-duplicated, at most `top`, with their logits."""
    logits = lm.logits_of(state[None])[0]
    logits = logits[:len(lm.tokenizer)]  # ids past the tokenizer (a padded or random unembedding) decode to ''
    seen: dict[str, float] = {}
    for token_id in torch.argsort(logits, descending=True)[:candidates].tolist():
        word = lm.tokenizer.decode([token_id]).strip()
        if ALPHABETIC.match(word) and word not in seen and len(seen) < top:
            seen[word] = float(logits[token_id])
    return list(seen.items())


# --------------------------------------------------------------------------- one worked example, and the paper's averages


def trace(lm: LM, task: Task, layer: int, protocol: Protocol, index: int = 0) -> dict:
    """One test context through A and f: the prompts, theta's shape and norm, and the three predictions."""
    task = prepare(lm, task, protocol)
    context = sample_contexts(task, index + 1, protocol.demos, protocol.seed, "test", protocol.n_dummy)[index]
    theta = task_vectors(lm, task, [context], protocol)[0, lm.check_layer(layer)]
    bare = protocol.fmt.render((), context.query.input, task.space)
    icl = protocol.fmt.render(context.demos, context.query.input, task.space)
    return {
        "task": task.name, "layer": layer, "n_layers": lm.n_layers, "expected": context.query.output,
        "a_prompts": [protocol.fmt.render(context.demos, d.input, task.space) for d in context.dummies],
        "bare_prompt": bare, "icl_prompt": icl, "theta_shape": tuple(theta.shape), "theta_norm": float(theta.norm()),
        "baseline": predict(lm, [bare]).texts(lm)[0].strip(), "regular": predict(lm, [icl]).texts(lm)[0].strip(),
        "hypothesis": predict(lm, [bare], theta[None], [layer]).texts(lm)[0].strip(),
    }


def figure4_kept(summary: pd.DataFrame, min_gain: float = verdicts.MIN_GAIN) -> pd.Series:
    """The paper's Figure 4 filter: a task counts where ICL adds at least 0.2 over the query alone (the same test
    decides which tasks can test a claim about theta, `verdicts.testable`)."""
    return verdicts.testable(summary, min_gain)


def figure4_average(summary: pd.DataFrame, min_gain: float = verdicts.MIN_GAIN) -> pd.Series:
    """The paper's Figure 4 average: tasks where regular - baseline < 0.2 are dropped (ICL adds too little there)."""
    kept = summary[figure4_kept(summary, min_gain)]
    out = kept[["baseline", "hypothesis", "regular"]].mean()
    out["hypothesis / regular"] = out["hypothesis"] / out["regular"]
    out["tasks kept"] = len(kept)
    return out


def table6_side(summary: pd.DataFrame, paper: pd.DataFrame, label: str, method: str = "hypothesis") -> pd.DataFrame:
    """One method's per-task accuracy, ours beside every model of the paper's Table 6 (one column a model), narrow
    enough to read on a page; call it once per method for the whole table."""
    columns = {f"{label} (ours)": summary.set_index("task")[method]}
    for model, frame in paper.groupby("model", sort=False):
        columns[model] = frame.set_index("task")[method]
    return pd.DataFrame(columns).reindex(summary["task"])

"""Todd et al.'s function vectors beside the paper's theta, on the same tasks, contexts and models.

A function vector (FV) is built from attention heads, not from one hidden state: shuffle the labels of an ICL
prompt, put back one head's mean output over clean prompts, and see how much the correct answer's probability
recovers (the head's indirect effect, averaged over prompts and tasks: AIE). The FV of a task is the sum of the
top-k heads' mean outputs, as the residual stream sees them, added to a zero-shot query at one layer. Heads are
chosen and FVs built on the main experiment's dev contexts; every accuracy is read on its test contexts.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import pandas as pd
import torch

from tvlib import heads, reuse
from tvlib.errors import TvlibError
from tvlib.experiments import Protocol, _rows, dev_and_test, task_vectors
from tvlib.heads import Edit, Site
from tvlib.models import LM
from tvlib.progress import progress_bar
from tvlib.prompts import Context
from tvlib.tasks import Example, Task
from tvlib.vectors import Answers, _scatter, predict

TOP_K = 10
"""Heads in a function vector: Todd et al.'s choice for GPT-J (10 of its 448)."""
K_SWEEP = (1, 2, 3, 5, 10, 20, 40)
"""Numbers of heads the FV is built from, for how k changes it."""
AIE_PROMPTS = 10
"""Shuffled-label dev prompts per task over which each head's indirect effect is averaged."""
INDUCTION_TOKENS = 25
"""Length of the random token sequence that an induction test repeats once."""
INDUCTION_SEQUENCES = 20
"""Repeated random sequences the induction score averages over."""


def todd_layer(n_layers: int) -> int:
    """Where Todd et al. add the FV: a third of the way up (their layer 9 of GPT-J's 28), rounded down. The book
    chooses the layer on dev contexts instead, as theta's L is chosen, and shows this one beside it."""
    return n_layers // 3


# --------------------------------------------------------------------------- the prompts


def shuffled(contexts: list[Context], seed: int, task: str) -> list[Context]:
    """The contexts with their demonstrations' labels permuted (no demonstration keeps its own where the labels
    allow): the prompt still looks like ICL, but its demonstrations no longer show the task."""
    out = []
    for i, context in enumerate(contexts):
        rng = random.Random(f"{seed}:{task}:shuffled:{i}")
        outputs = [d.output for d in context.demos]
        order = list(range(len(outputs)))
        for _ in range(100):
            rng.shuffle(order)
            if all(outputs[j] != outputs[k] for k, j in enumerate(order)):
                break
        demos = tuple(Example(d.input, outputs[j]) for d, j in zip(context.demos, order))
        out.append(replace(context, demos=demos))
    return out


def _icl_texts(task: Task, contexts: list[Context], protocol: Protocol) -> list[str]:
    return [protocol.fmt.render(c.demos, c.query.input, task.space) for c in contexts]


def answer_token(lm: LM, task: Task, example: Example) -> int:
    """The first token of the expected answer as the prompt spaces it: the token whose probability AIE reads."""
    text = (" " if task.space else "") + example.output
    return lm.tokenizer.encode(text, add_special_tokens=False)[0]


# --------------------------------------------------------------------------- indirect effects


def _all_heads(lm: LM) -> list[Site]:
    n_heads, _ = heads.shape(lm)
    return [Site(layer, head) for layer in range(lm.n_layers) for head in range(n_heads)]


def indirect_effects(lm: LM, setup: Setup, progress: bool = False) -> pd.DataFrame:
    """Per head: the mean rise in the answer's probability when its output on a shuffled-label prompt is replaced
    by its mean output on clean prompts (`means` [n_layers, n_heads, head_dim]). Each prompt's demonstrations run
    once; only its last token runs again, once per head (what a patch at the last position can change)."""
    sites, means, targets, task = _all_heads(lm), setup.means, setup.targets, setup.task
    ids = reuse.token_ids(lm, setup.corrupted)
    rows = [reuse.Row(p, (ids[p][-1],), tag) for p in range(len(ids)) for tag in range(-1, len(sites))]
    probs = torch.zeros(len(rows))

    def on_batch(numbers: list[int], batch: list[reuse.Row]):
        edits = [[] if r.tag < 0 else [Edit(sites[r.tag], means[sites[r.tag].layer, sites[r.tag].head])]
                 for r in batch]

        def receive(numbers_: list[int], logits: torch.Tensor) -> None:
            target = torch.tensor([targets[rows[i].prefix] for i in numbers_])
            probs[numbers_] = logits.softmax(-1).gather(1, target[:, None].to(logits.device))[:, 0].cpu()
        return heads.hooks(lm, edits), receive

    reuse.run(lm, [x[:-1] for x in ids], rows, on_batch, 8, 512,
              wrap=lambda starts: progress_bar(starts, f"AIE {task.name}", progress))
    grid = probs.view(len(ids), len(sites) + 1)
    effect = grid[:, 1:] - grid[:, :1]
    if not bool(effect.abs().sum()):
        raise TvlibError("no head patch moved the answer's probability: the patch did not reach the model")
    return pd.DataFrame({"task": task.name, "layer": [s.layer for s in sites], "head": [s.head for s in sites],
                         "aie": effect.mean(0).numpy().astype(float), "p_corrupted": float(grid[:, 0].mean())})


def top_heads(aie: pd.DataFrame, k: int) -> list[Site]:
    """The k heads of highest AIE averaged over the tasks given (Todd et al.'s universal set); ties go to the
    lower layer, then head."""
    mean = aie.groupby(["layer", "head"], sort=True)["aie"].mean().reset_index()
    best = mean.sort_values(["aie", "layer", "head"], ascending=[False, True, True], kind="stable").head(k)
    return [Site(int(r.layer), int(r.head)) for r in best.itertuples()]


def function_vector(lm: LM, setup: "Setup", sites: list[Site]) -> torch.Tensor:
    """The sum of the chosen heads' mean outputs as each adds it to the residual stream (`heads.residual`):
    [d_model]."""
    return sum(heads.residual(lm, s.layer, s.head, setup.means[s.layer, s.head], setup.rms[s.layer]) for s in sites)


# --------------------------------------------------------------------------- one task, every question


@dataclass
class Setup:
    """What every FV question of one task needs: the task as the tokenizer sees it, its dev and test contexts, the
    heads' mean outputs on clean dev prompts (at the last token: `means`; over all tokens, for mean-ablation:
    `ablation_means`; both [n_layers, n_heads, head_dim]), and shuffled-label dev prompts with their answers."""

    task: Task
    dev: list[Context]
    test: list[Context]
    means: torch.Tensor
    rms: torch.Tensor
    ablation_means: torch.Tensor
    corrupted: list[str]
    targets: list[int]


def task_setup(lm: LM, task: Task, protocol: Protocol) -> Setup:
    """Read the heads on the main experiment's clean dev prompts and shuffle the labels of the first AIE_PROMPTS."""
    task, dev, test = dev_and_test(lm, task, protocol)
    clean = _icl_texts(task, dev, protocol)
    corrupted = shuffled(dev[:AIE_PROMPTS], protocol.seed, task.name)
    last = heads.read(lm, clean, "last", protocol.batch_size, protocol.progress)
    return Setup(task, dev, test, last.mean(0), heads.attention_rms(lm, last),
                 heads.read(lm, clean, "mean", protocol.batch_size, protocol.progress).mean(0),
                 _icl_texts(task, corrupted, protocol), [answer_token(lm, task, c.query) for c in corrupted])


def _added(lm: LM, task: Task, contexts: list[Context], fmt, vector: torch.Tensor, layers: list[int],
           protocol: Protocol, method: str, **columns) -> pd.DataFrame:
    """The bare queries of `contexts` in `fmt` with `vector` added to block L's output at the last token, for
    each L in `layers` (rows layer-major). Each query runs once; per layer only its last token runs again."""
    bare = [fmt.render((), c.query.input, task.space) for c in contexts]
    ids = reuse.token_ids(lm, bare)
    rows = [reuse.Row(q, (ids[q][-1],), lm.check_layer(layer)) for layer in layers for q in range(len(bare))]
    answers = Answers()
    receive = _scatter(answers, len(rows))  # vectors.sweep's way of writing each batch into its rows

    def on_batch(numbers: list[int], batch: list[reuse.Row]):
        return heads.hooks(lm, [[Edit(Site(r.tag), vector)] for r in batch], "add"), receive

    reuse.run(lm, [x[:-1] for x in ids], rows, on_batch, 2 * protocol.batch_size, 16 * protocol.batch_size)
    n, queries = len(bare), [c.query for c in contexts]
    return pd.concat([_rows(lm, task, method, queries, answers[i * n:(i + 1) * n], bare, layer).assign(**columns)
                      for i, layer in enumerate(layers)], ignore_index=True)


def zero_shot(lm: LM, setup: Setup, sites: list[Site], theta_layer: int, fv_at: int, protocol: Protocol,
              formats: dict) -> pd.DataFrame:
    """On the test contexts, in every format: the bare query alone, with the FV added at block `fv_at`, and with
    the context's own theta (built in the paper's format) written at L: three methods, paired by context."""
    task, test = setup.task, setup.test
    fv = function_vector(lm, setup, sites)
    thetas = task_vectors(lm, task, test, protocol)[:, theta_layer]
    frames = []
    for name, fmt in formats.items():
        bare = [fmt.render((), c.query.input, task.space) for c in test]
        queries = [c.query for c in test]
        alone = predict(lm, bare, batch_size=protocol.batch_size)
        written = predict(lm, bare, thetas, [theta_layer] * len(bare), protocol.batch_size)
        frames += [_rows(lm, task, "query alone", queries, alone, bare).assign(format=name),
                   _rows(lm, task, "theta", queries, written, bare, theta_layer).assign(format=name),
                   _added(lm, task, test, fmt, fv, [fv_at], protocol, "fv", format=name)]
    return pd.concat(frames, ignore_index=True)


def by_heads(lm: LM, setup: Setup, ranked: list[Site], fv_at: int, protocol: Protocol,
             counts: tuple[int, ...] = K_SWEEP) -> pd.DataFrame:
    """The FV of the top k heads for each k, added at block `fv_at` to the paper-format bare test queries."""
    counts = [k for k in counts if k <= len(ranked)]
    return pd.concat([_added(lm, setup.task, setup.test, protocol.fmt, function_vector(lm, setup, ranked[:k]),
                             [fv_at], protocol, "fv", k=k) for k in counts], ignore_index=True)


def by_layer(lm: LM, setup: Setup, sites: list[Site], protocol: Protocol) -> pd.DataFrame:
    """The FV of the top heads added at every layer in turn to the paper-format bare queries of the dev and the
    test contexts: the dev rows choose the FV's layer as the main experiment chooses theta's L (`chosen_layer`)."""
    fv = function_vector(lm, setup, sites)
    every = list(range(lm.n_layers))
    frames = [_added(lm, setup.task, contexts, protocol.fmt, fv, every, protocol, "fv", split=split)
              for split, contexts in (("dev", setup.dev), ("test", setup.test))]
    return pd.concat(frames, ignore_index=True).assign(added_at=lambda f: f["layer"])


def chosen_layer(swept: pd.DataFrame) -> int:
    """The layer where the FV does best on dev contexts (ties go to the lowest), as theta's L is chosen."""
    dev = swept[swept["split"] == "dev"].groupby("added_at")["correct"].mean()
    return int(dev.idxmax())


def ablated(lm: LM, setup: Setup, head_sets: dict[str, list[Site]], protocol: Protocol) -> pd.DataFrame:
    """Five-shot ICL on the test contexts with each set of heads mean-ablated at every position (their outputs
    replaced by their mean over all tokens of clean dev prompts), and with none: which heads ICL needs."""
    task = setup.task
    texts = _icl_texts(task, setup.test, protocol)
    queries = [c.query for c in setup.test]
    frames = [_rows(lm, task, "regular", queries, predict(lm, texts, batch_size=protocol.batch_size), texts)
              .assign(ablated="none")]
    for name, sites in head_sets.items():
        edits = [[Edit(s, setup.ablation_means[s.layer, s.head]) for s in sites]] * len(texts)
        answers = heads.patch(lm, texts, edits, "mean-ablate", None, protocol.batch_size, protocol.progress,
                              f"ablate {name}")
        frames.append(_rows(lm, task, "regular", queries, answers, texts).assign(ablated=name))
    return pd.concat(frames, ignore_index=True)


def sites(lm: LM) -> pd.DataFrame:
    """The model's head layout, stored beside the results so a page can say how heads reach the residual stream
    without loading the model."""
    n_heads, head_dim = heads.shape(lm)
    return pd.DataFrame([{"n_layers": lm.n_layers, "n_heads": n_heads, "head_dim": head_dim,
                          "attn_out": lm.layout.attn_out, "attn_post_norm": lm.layout.attn_post_norm}])


# --------------------------------------------------------------------------- induction heads


@contextmanager
def _eager(lm: LM) -> Iterator[None]:
    """Attention weights need the eager implementation (SDPA returns none); the model's own comes back after."""
    before = lm.model.config._attn_implementation
    lm.model.set_attn_implementation("eager")
    try:
        yield
    finally:
        lm.model.set_attn_implementation(before)


@torch.no_grad()
def induction_scores(lm: LM, seed: int, length: int = INDUCTION_TOKENS,
                     sequences: int = INDUCTION_SEQUENCES) -> pd.DataFrame:
    """Per head, the attention a token of a repeated random sequence pays to the token after its first occurrence
    (Olsson et al.'s induction score), averaged over the second copy and over `sequences` sequences."""
    generator = torch.Generator().manual_seed(seed)
    special = set(lm.tokenizer.all_special_ids)
    vocab = torch.tensor([i for i in range(min(len(lm.tokenizer), 50_000)) if i not in special])
    chosen = vocab[torch.randint(len(vocab), (sequences, length), generator=generator)]
    ids = torch.cat([chosen, chosen], dim=1)
    bos = lm.tokenizer.bos_token_id
    if bos is not None:
        ids = torch.cat([torch.full((sequences, 1), bos), ids], dim=1)
    offset = int(bos is not None)
    with _eager(lm):
        attentions = lm.model(input_ids=ids.to(lm.device), output_attentions=True, use_cache=False).attentions
    queries = torch.arange(offset + length, offset + 2 * length)
    keys = queries - length + 1
    scores = torch.stack([a[:, :, queries, keys].float().mean((0, 2)).cpu() for a in attentions])  # layers x heads
    n_heads = scores.shape[1]
    return pd.DataFrame({"layer": [l for l in range(len(attentions)) for _ in range(n_heads)],
                         "head": [h for _ in range(len(attentions)) for h in range(n_heads)],
                         "induction": scores.flatten().numpy().astype(float)})


def head_sets(fv_heads: list[Site], induction: pd.DataFrame, k: int, seed: int) -> dict[str, list[Site]]:
    """The three sets of k heads ICL is measured without: the FV heads, the top induction heads, and k heads drawn
    at random (seeded) as the control that says what ablating any k heads costs."""
    everyone = sorted((int(r.layer), int(r.head)) for r in induction.itertuples())
    if not 1 <= k <= len(everyone):
        raise TvlibError(f"k = {k} heads, but the model has {len(everyone)}: choose k from 1 to {len(everyone)}")
    drawn = random.Random(f"{seed}:random_heads:{k}").sample(everyone, k)
    return {"FV heads": fv_heads, "induction heads": top_induction(induction, k),
            "random heads": [Site(layer, head) for layer, head in sorted(drawn)]}


def top_induction(scores: pd.DataFrame, k: int) -> list[Site]:
    """The k heads of highest induction score; ties go to the lower layer, then head."""
    best = scores.sort_values(["induction", "layer", "head"], ascending=[False, True, True], kind="stable").head(k)
    return [Site(int(r.layer), int(r.head)) for r in best.itertuples()]

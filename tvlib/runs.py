"""Experiments run once and stored under results/<model>/: the model is loaded only when a result is missing."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from tvlib import __version__, accounts, beyond, clusters, defaults, experiments, multitoken, paths, store
from tvlib import continuous, positions
from tvlib import function_vectors as fvs
from tvlib.errors import TooFewExamples, TvlibError
from tvlib.generation import MAX_NEW_TOKENS, PATCHES
from tvlib.experiments import Protocol
from tvlib.measures import MEASURES
from tvlib.models import DEFAULT_MODEL, LM, dtype_name, load_model, load_tokenizer
from tvlib.prompts import first_token
from tvlib.tasks import load_task, task_names
from tvlib.progress import progress_bar

PAPER = Protocol()
"""The paper's protocol: its results live in the plain folders (main/, robustness/, ...); any other protocol's in
folders named after what differs (main_seed42/)."""

Job = tuple[Path, dict, Callable[[], pd.DataFrame]]
"""One stored unit of work: its file, the configuration that keys it, and how to compute it."""

ROBUSTNESS_FRAMES = ("tsne", "distances", "task_distances", "neighbours", "scores")
"""What the robustness experiment stores, all under one configuration (`scores_testable` adds the testable tasks)."""

OFFSETS = (-2, -1, 0, 1, 2)
"""The projection's layers around each task's L, as the paper reads them."""

CONFLICTS = (
    ("algorithmic_next_letter", "algorithmic_to_upper"),
    ("algorithmic_list_last", "algorithmic_list_first"),
    ("algorithmic_prev_letter", "algorithmic_next_letter"),
    ("linguistic_present_simple_past_simple", "linguistic_present_simple_gerund"),
    ("translation_en_es", "translation_en_fr"),
)


@dataclass
class Runner:
    """One model's results folder; `lm` loads the model on first use only, so stored results need no model."""

    model: str = DEFAULT_MODEL
    device: str = "cpu"
    dtype: str = defaults.DTYPE  # stored results are float32: bfloat16 answers change with the CPU's kernels
    protocol: Protocol = field(default_factory=Protocol)
    results_dir: Path | str | None = None
    stored_only: bool = False  # True: a missing result is an error, never a model load (the claims check)
    loaded: LM | None = None  # a model already in memory (`models.wrap(model, tokenizer)`), used instead of `model`
    shared: dict | None = None  # models loaded by any runner holding this dict (`compute`: one load per process)

    @property
    def lm(self) -> LM:
        """The model: `loaded` if given, else loaded from `model` on first use."""
        if self.loaded is None and self.stored_only:
            raise TvlibError(f"a result of {self.model} is not stored in {self.folder} (or its settings differ): "
                             f"compute it first with `python -m tvlib compute --model {self.model} --out DIR` (or "
                             "run-book without --stored; a result stored before a column a page reads was added is "
                             "computed again that way)")
        if self.loaded is None:
            key = (self.model, self.device, self.dtype)
            if self.shared is not None and key in self.shared:
                self.loaded = self.shared[key]
            else:
                self.loaded = load_model(self.model, self.device, self.dtype)
                if self.shared is not None:
                    self.shared[key] = self.loaded
        return self.loaded

    @property
    def folder(self) -> Path:
        return Path(self.results_dir or paths.results_dir()) / store.slug(self.model)

    def _place(self, kind: str, **own: tuple) -> Path:
        """The folder of one experiment kind: the plain one (main/) at the paper's settings, else one named after
        each protocol setting that differs (main_seed42/, main_n_dev5_n_test5_n_baseline10/, main_fmt<hash>/)
        and each of the experiment's `own` settings, name=(value, paper's value), that differs
        (robustness_n_vectors10/): a rerun at other settings finds its own folder, and never another's."""
        mine, paper = self.protocol.config(), PAPER.config()
        parts = [_part(k, v) for k, v in mine.items() if _blob(v) != _blob(paper[k])]
        parts += [_part(k, value) for k, (value, default) in own.items() if _blob(value) != _blob(default)]
        return self.folder / "_".join([kind, *parts])

    def place(self, kind: str) -> Path:
        """The folder of one kind of output at this runner's protocol (`place("pages")` for a page's tables): a
        rerun at other settings writes beside the paper protocol's, never over them."""
        return self._place(kind)

    def _config(self, kind: str, protocol: Protocol, **extra) -> dict:
        return {"experiment": kind, "model": self.model, "dtype": dtype_name(self.dtype, self.device),
                "protocol": protocol.config(),
                "tvlib": __version__, **extra}

    def main(self, task: str, measures: bool = False) -> pd.DataFrame:
        """Every prediction of the main experiment for one task (baseline, regular, dev sweep, hypothesis); with
        `measures`, a stored result without the continuous measures (stored before they were) is recomputed."""
        return self._run([self._main_job(task)], columns=MEASURES if measures else ())[0]

    def _main_job(self, task: str) -> Job:
        data = load_task(task)
        config = self._config("main", self.protocol, task=task, data=data.fingerprint())
        return (self._place("main") / f"{data.name}.csv", config,
                lambda: experiments.evaluate_task(self.lm, data, self.protocol))

    def main_all(self, tasks: list[str], measures: bool = False) -> pd.DataFrame:
        """The main experiment over several tasks, one stored file each (an interrupted run resumes); `measures`
        as in `main`."""
        jobs = [self._main_job(t) for t in tasks]
        return pd.concat(self._run(jobs, "tasks", MEASURES if measures else ()), ignore_index=True)

    def _run(self, jobs: list[Job], desc: str = "", columns: tuple[str, ...] = ()) -> list[pd.DataFrame]:
        """Each job's stored result (with `columns`), or computed and stored. A result of other settings among them
        is refused before any is computed, so before the model loads and with nothing written."""
        _refuse_other_settings(jobs)
        return [store.cached(*job, columns=columns) for job in _progress(jobs, desc)]

    def first_token(self) -> pd.DataFrame:
        """What the tokenizer puts first in every prompt (`prompts.first_token`), stored so a page can say it for
        any model without its tokenizer at hand."""
        config = self._config("first_token", self.protocol)
        return store.cached(self._place("tokenizer") / "first_token.csv", config,
                            lambda: pd.DataFrame([first_token(load_tokenizer(self.model), self.protocol.fmt)]))

    def trace(self, task: str) -> dict:
        """`experiments.trace` of the task's first test context at its L (chapter 1's worked example), stored as
        one row so the page reads it without the model."""
        import json

        layer = self.best_layers([task])[task]
        config = self._config("trace", self.protocol, task=task, layer=layer, data=load_task(task).fingerprint())

        lists = ("a_prompts", "theta_shape")  # stored as JSON in their cells

        def compute() -> pd.DataFrame:
            found = experiments.trace(self.lm, load_task(task), layer, self.protocol)
            return pd.DataFrame([{k: json.dumps(v) if k in lists else v for k, v in found.items()}])

        row = store.cached(self._place("trace") / f"{task}.csv", config, compute).iloc[0].to_dict()
        row.update({k: json.loads(row[k]) for k in lists}, layer=int(row["layer"]), n_layers=int(row["n_layers"]))
        row["theta_shape"] = tuple(row["theta_shape"])
        return row

    def best_layers(self, tasks: list[str]) -> dict[str, int]:
        """Each task's layer chosen on dev contexts in the main experiment."""
        summary = experiments.summarize(self.main_all(tasks))
        return dict(zip(summary["task"], summary["best_layer"].astype(int)))

    def robustness(self, tasks: list[str], layer: int | str | None = None, n: int = defaults.ROBUSTNESS_VECTORS,
                   demos: int = defaults.ROBUSTNESS_DEMOS) -> dict[str, pd.DataFrame]:
        """Thetas of every task, each at its own L chosen in the main experiment (or all at `layer`; or, with
        `layer="window"`, each at its best dev layer within the official script's window of depth,
        `defaults.ROBUSTNESS_WINDOW`): t-SNE
        coordinates, distance histograms (pooled and per task), each task's nearest other task, and clustering
        scores over all tasks (`scores`) and over the tasks that can test the claim (`scores_testable`: ICL adds
        at least `verdicts.MIN_GAIN` over the query alone, so L carries the task)."""
        protocol = replace(self.protocol, demos=demos)
        summary = experiments.summarize(self.main_all(tasks))
        if isinstance(layer, str) and layer != "window":
            raise TvlibError(f"layer must be a block number, None (each task's own L) or 'window', not {layer!r}")
        if layer == "window":
            layers = experiments.best_layers_within(self.main_all(tasks), defaults.ROBUSTNESS_WINDOW)
        elif layer is None:
            layers = dict(zip(summary["task"], summary["best_layer"].astype(int)))
        else:
            layers = {t: layer for t in tasks}
        kept = sorted(summary.loc[experiments.figure4_kept(summary), "task"])
        config = self._config("robustness", protocol, tasks=tasks, layers=layers, n=n,
                              data=[load_task(t).fingerprint() for t in tasks])
        configs = {name: config for name in ROBUSTNESS_FRAMES} | {"scores_testable": {**config, "testable": kept}}
        sub = "robustness" if layer is None else "robustness_window" if layer == "window" \
            else f"robustness_layer{layer}"
        folder = self._place(sub, n_vectors=(n, defaults.ROBUSTNESS_VECTORS),
                             robustness_demos=(demos, defaults.ROBUSTNESS_DEMOS), tasks=(list(tasks), task_names()))
        files = {name: folder / f"{name}.csv" for name in configs}
        stored = {name: store.load(path, configs[name]) for name, path in files.items()}
        if all(frame is not None for frame in stored.values()):
            return stored
        for name, path in files.items():  # a result of other settings is an error, never overwritten
            store.refuse_other_settings(path, configs[name])
        vectors = [experiments.robustness_vectors(self.lm, load_task(t), layers[t], protocol, n).numpy()
                   for t in _progress(tasks, "thetas")]
        matrix = np.concatenate(vectors)
        labels = [t for t in tasks for _ in range(n)]
        mine = np.isin(labels, kept)
        xy = clusters.tsne(matrix, seed=protocol.seed)
        computed = {
            "tsne": lambda: pd.DataFrame({"task": labels, "layer": [layers[t] for t in labels],
                                          "context": [i for _ in tasks for i in range(n)], "x": xy[:, 0],
                                          "y": xy[:, 1]}),
            "distances": lambda: clusters.histogram(clusters.distance_pairs(matrix, labels)),
            "task_distances": lambda: clusters.task_histograms(matrix, labels),
            "neighbours": lambda: clusters.category_neighbours(clusters.task_distances(matrix, labels),
                                                               {t: load_task(t).category for t in tasks}),
            "scores": lambda: clusters.scores(matrix, labels),
            "scores_testable": lambda: clusters.scores(matrix[mine], list(np.asarray(labels)[mine]))
            if len(kept) > 1 else pd.DataFrame({"metric": [], "value": []}),  # one task cannot cluster apart
        }
        # only what is missing is written: a stored frame keeps its bytes when a newer frame joins the set
        return {name: frame if frame is not None else store.save(files[name], computed[name](), configs[name])
                for name, frame in stored.items()}

    def conflicting(self, pairs=CONFLICTS, n: int = defaults.CONFLICT_QUERIES,
                    demos: int = defaults.CONFLICT_DEMOS) -> pd.DataFrame:
        """Demos of task A with theta of task B (B's layer from its own 4-demo dev sweep), for each pair."""
        protocol = replace(self.protocol, demos=demos)
        folder = self._place("conflicting", n_queries=(n, defaults.CONFLICT_QUERIES),
                             conflict_demos=(demos, defaults.CONFLICT_DEMOS))
        jobs = {(a, b): (folder / f"{a}__{b}.csv",
                         self._config("conflicting", protocol, a=a, b=b, n=n,
                                      data=[load_task(a).fingerprint(), load_task(b).fingerprint()]),
                         lambda a=a, b=b: experiments.conflicting(self.lm, load_task(a), load_task(b), protocol, n))
                for a, b in pairs}
        _refuse_other_settings(list(jobs.values()))
        frames = []
        for (a, b), job in _progress(list(jobs.items()), "pairs"):
            try:
                if store.load(*job[:2]) is None:  # not stored: a pair the tokenizer cannot answer is skipped
                    self._usable([a, b], protocol)  # before the model loads (a stored-only run has none)
                frames.append(store.cached(*job))
            except TooFewExamples as err:  # a tokenizer that cannot answer one of the pair (a character one)
                print(f"pair {a} -> {b} skipped: {err}", file=sys.stderr)
        if not frames:
            raise TvlibError(f"no pair of tasks is usable with {self.model}'s tokenizer")
        return pd.concat(frames, ignore_index=True)

    def projection(self, tasks: list[str], offsets=OFFSETS, top: int = defaults.PROJECTION_TOP) -> pd.DataFrame:
        """Top vocabulary tokens of the mean theta at each task's chosen layer and the layers around it."""
        layers = self.best_layers(tasks)
        folder = self._place("projection", top=(top, defaults.PROJECTION_TOP), offsets=(list(offsets), OFFSETS))
        jobs = []
        for task in tasks:
            last = self._n_layers(task) - 1
            wanted = sorted({min(max(layers[task] + o, 0), last) for o in offsets})
            config = self._config("projection", self.protocol, task=task, layers=wanted, top=top,
                                  data=load_task(task).fingerprint())
            jobs.append((folder / f"{task}.csv", config, lambda task=task, wanted=wanted:
                         experiments.vocabulary_projection(self.lm, load_task(task), wanted, self.protocol, top)))
        frame = pd.concat(self._run(jobs, "projections"), ignore_index=True)
        frame["best_layer"] = frame["task"].map(layers)
        return frame

    # ----------------------------------------------------------------------- beyond the paper (tvlib.beyond)

    def demonstrations(self, tasks: list[str], counts: tuple[int, ...] = beyond.DEMONSTRATIONS) -> pd.DataFrame:
        """The main experiment of each task at each number of demonstrations k (L re-chosen for each k), with the
        column `demos`; k equal to the protocol's is the main experiment itself, reused. A k the task cannot fill
        (too few single-token examples) is skipped with a message."""
        work = [(task, k, self._demonstrations_job(task, k)) for task in tasks for k in counts]
        _refuse_other_settings([job for *_, job in work])
        frames = []
        for task, k, job in _progress(work, "demonstrations"):
            try:
                frames.append(store.cached(*job).assign(demos=k))
            except TooFewExamples as err:
                print(f"{task} with {k} demonstrations skipped: {err}", file=sys.stderr)
        return pd.concat(frames, ignore_index=True)

    def _demonstrations_job(self, task: str, k: int) -> Job:
        """The main experiment of `task` with k demonstrations: the protocol's own k is the main experiment."""
        if k == self.protocol.demos:
            return self._main_job(task)
        data, protocol = load_task(task), replace(self.protocol, demos=k)
        config = self._config("demonstrations", protocol, task=task, data=data.fingerprint())
        return (self._place("demonstrations") / f"{task}_k{k:02d}.csv.gz", config,
                lambda: experiments.evaluate_task(self.lm, data, protocol))

    def averaged(self, tasks: list[str], sizes: tuple[int, ...] = beyond.AVERAGED) -> pd.DataFrame:
        """`beyond.averaged_theta` of each task at its chosen L: a mean theta over m dev contexts against the
        per-context one."""
        return self._at_best_layer("averaged", tasks, lambda task, layer: beyond.averaged_theta(
            self.lm, task, layer, self.protocol, sizes), sizes=(sizes, beyond.AVERAGED))

    def strength(self, tasks: list[str], alphas: tuple[float, ...] = beyond.ALPHAS) -> pd.DataFrame:
        """`beyond.strength` of each task at its chosen L: alpha x theta added against theta written in."""
        return self._at_best_layer("strength", tasks, lambda task, layer: beyond.strength(
            self.lm, task, layer, self.protocol, alphas), alphas=(alphas, beyond.ALPHAS))

    def formats(self, tasks: list[str], formats: dict | None = None) -> pd.DataFrame:
        """`beyond.format_transfer` of each task: theta from one prompt format into another's bare query."""
        formats = formats or beyond.FORMATS
        described = {name: asdict(fmt) for name, fmt in formats.items()}
        folder = self._place("formats", formats=(described, {n: asdict(f) for n, f in beyond.FORMATS.items()}))
        jobs = []
        for task in tasks:
            data = load_task(task)
            config = self._config("formats", self.protocol, task=task, data=data.fingerprint(), formats=described)
            jobs.append((folder / f"{task}.csv.gz", config,
                         lambda data=data: beyond.format_transfer(self.lm, data, self.protocol, formats)))
        return pd.concat(self._run(jobs, "tasks"), ignore_index=True)

    def _at_best_layer(self, kind: str, tasks: list[str], compute, **own: tuple) -> pd.DataFrame:
        """An experiment run at each task's L chosen in the main experiment, stored one file a task; `own` are its
        settings, name=(value, paper's value), keyed into each file and naming the folder where they differ."""
        layers = self.best_layers(tasks)
        folder = self._place(kind, **own)
        jobs = []
        for task in tasks:
            data = load_task(task)
            config = self._config(kind, self.protocol, task=task, layer=layers[task], data=data.fingerprint(),
                                  **{name: value for name, (value, _) in own.items()})
            jobs.append((folder / f"{task}.csv", config, lambda data=data, task=task: compute(data, layers[task])))
        return pd.concat(self._run(jobs, kind), ignore_index=True)

    # ----------------------------------------------------------------------- function vectors (tvlib.function_vectors)

    def function_vectors(self, tasks: list[str], k: int = fvs.TOP_K) -> dict[str, pd.DataFrame]:
        """Todd et al.'s function vectors on these tasks: each head's AIE per task; the induction score of every
        head; then, with the k heads of highest AIE over all `tasks`, FV against theta on zero-shot queries in every
        format, FV by number of heads and by layer, and ICL with FV, induction or random heads mean-ablated."""
        setups: dict[str, fvs.Setup] = {}

        def setup(task: str) -> fvs.Setup:
            if task not in setups:
                setups[task] = fvs.task_setup(self.lm, load_task(task), self.protocol)
            return setups[task]

        folder = self.function_vectors_folder(k)
        base = {"aie_prompts": fvs.AIE_PROMPTS}
        aie = pd.concat(self._run([(folder / "aie" / f"{t}.csv", self._config(
            "fv_aie", self.protocol, task=t, data=load_task(t).fingerprint(), **base),
            lambda t=t: fvs.indirect_effects(self.lm, setup(t), self.protocol.progress)) for t in tasks], "AIE"),
            ignore_index=True)
        induction, sites = self._run([(folder / "induction.csv", self._config(
            "fv_induction", self.protocol, tokens=fvs.INDUCTION_TOKENS, sequences=fvs.INDUCTION_SEQUENCES),
            lambda: fvs.induction_scores(self.lm, self.protocol.seed)),
            (folder / "sites.csv", self._config("fv_sites", self.protocol), lambda: fvs.sites(self.lm))])
        ranked = fvs.top_heads(aie, max(fvs.K_SWEEP))
        sets = fvs.head_sets(ranked[:k], induction, k, self.protocol.seed)
        layers = self.best_layers(tasks)
        shared = {**base, "heads": [str(s) for s in ranked], "k": k, "ablated": {n: [str(s) for s in v]
                                                                              for n, v in sets.items()}}
        found = {"aie": aie, "induction": induction, "sites": sites}

        def stored(question: str, compute, fv_layers: dict | None = None) -> pd.DataFrame:
            """One file a task; where the FV's dev-chosen layer decides the result, it keys the file too."""
            jobs = [(folder / question / f"{t}.csv", self._config(
                f"fv_{question}", self.protocol, task=t, layer=layers[t], data=load_task(t).fingerprint(),
                **shared, **({"fv_layer": fv_layers[t]} if fv_layers else {})),
                lambda t=t: compute(t).assign(category=load_task(t).category)) for t in tasks]
            found[question] = pd.concat(self._run(jobs, question), ignore_index=True)
            return found[question]

        swept = stored("by_layer", lambda t: fvs.by_layer(self.lm, setup(t), ranked[:k], self.protocol))
        at = {t: fvs.chosen_layer(frame) for t, frame in swept.groupby("task")}
        stored("zero_shot", lambda t: fvs.zero_shot(self.lm, setup(t), ranked[:k], layers[t], at[t], self.protocol,
                                                    beyond.FORMATS), at)
        stored("by_heads", lambda t: fvs.by_heads(self.lm, setup(t), ranked, at[t], self.protocol), at)
        stored("ablated", lambda t: fvs.ablated(self.lm, setup(t), sets, self.protocol))
        return found

    def function_vectors_folder(self, k: int = fvs.TOP_K) -> Path:
        """Where `function_vectors` stores its results (named after k where it is not Todd et al.'s)."""
        return self._place("function_vectors", k=(k, fvs.TOP_K))

    # ----------------------------------------------------------------------- answers of several tokens (tvlib.multitoken)

    def several_tokens(self, tasks: list[str], max_new_tokens: int = MAX_NEW_TOKENS) -> pd.DataFrame:
        """`multitoken.evaluate_task` of each task: every pair kept, answers generated to their end with theta
        written at prefill only and at every step, scored whole and by the first token; one file a task."""
        folder = self.several_tokens_folder(max_new_tokens)
        jobs = []
        for task in tasks:
            data = load_task(task)
            config = self._config("several_tokens", self.protocol, task=task, data=data.fingerprint(),
                                  max_new_tokens=max_new_tokens, patches=list(PATCHES))
            jobs.append((folder / f"{task}.csv.gz", config,
                         lambda data=data: multitoken.evaluate_task(self.lm, data, self.protocol, max_new_tokens)))
        return pd.concat(self._run(jobs, "tasks"), ignore_index=True)

    def answer_lengths(self) -> pd.DataFrame:
        """`multitoken.answer_lengths` of every shipped task for this model's tokenizer, stored so that a page can
        choose its tasks without the tokenizer at hand."""
        names = task_names()
        config = self._config("answer_lengths", self.protocol, data=[load_task(t).fingerprint() for t in names])
        return store.cached(self._place("tokenizer") / "answer_lengths.csv", config,
                            lambda: multitoken.answer_lengths(load_tokenizer(self.model), names))

    def several_tokens_folder(self, max_new_tokens: int = MAX_NEW_TOKENS) -> Path:
        """Where `several_tokens` stores its results (named after max_new_tokens where it is not the default)."""
        return self._place("several_tokens", max_new_tokens=(max_new_tokens, MAX_NEW_TOKENS))

    # ----------------------------------------------------------------------- later accounts of theta (tvlib.accounts)

    def layer_reads(self, tasks: list[str], top: int = defaults.PROJECTION_TOP) -> pd.DataFrame:
        """`accounts.layer_reads` over these tasks: per task and layer, the k-NN decodability of the task from the
        test contexts' thetas and the output-space share of the mean theta's top words; one file for all tasks."""
        folder = self._place("accounts", top=(top, defaults.PROJECTION_TOP), tasks=(list(tasks), task_names()))
        config = self._config("layer_reads", self.protocol, tasks=list(tasks), top=top, knn=accounts.KNN,
                              data=[load_task(t).fingerprint() for t in tasks])
        return self._run([(folder / "layer_reads.csv", config, lambda: accounts.layer_reads(
            self.lm, [load_task(t) for t in tasks], self.protocol, top, self.protocol.progress))])[0]

    def accounts(self, tasks: list[str]) -> dict:
        """Every later account of theta (`accounts.read_all`) on these tasks: the main experiment, the 1-shot run of
        Beyond the paper, and the layer reads."""
        return accounts.read_all(self.main_all(tasks), self.demonstrations(tasks, counts=(1,)),
                                 self.layer_reads(tasks), self.necessity(tasks))

    def necessity(self, tasks: list[str]) -> pd.DataFrame:
        """`accounts.necessity` over these tasks, each at its L chosen in the main experiment; one file."""
        layers = self.best_layers(tasks)
        folder = self._place("accounts", tasks=(list(tasks), task_names()))
        config = self._config("necessity", self.protocol, tasks=list(tasks), layers=layers,
                              data=[load_task(t).fingerprint() for t in tasks])
        return self._run([(folder / "necessity.csv", config, lambda: accounts.necessity(
            self.lm, [load_task(t) for t in tasks], layers, self.protocol, self.protocol.progress))])[0]

    def positions(self, tasks: list[str], n: int = positions.CONTEXTS) -> pd.DataFrame:
        """`positions.position_map` for each task (one file each, so a longer task list reuses the stored ones):
        every role of the dummy prompt at every layer, written into the bare query."""
        folder = self._place("positions", n_contexts=(n, positions.CONTEXTS))
        jobs = [(folder / f"{t}.csv.gz", self._config("positions", self.protocol, task=t, n=n,
                                                      data=load_task(t).fingerprint()),
                 lambda t=t: positions.position_map(self.lm, load_task(t), self.protocol, n, self.protocol.progress))
                for t in tasks]
        return pd.concat(self._run(jobs, "tasks"), ignore_index=True)

    def continuous(self, tasks: list[str]) -> dict:
        """`continuous.read_all` on the main experiment of these tasks (its continuous measures recomputed where a
        stored result predates them)."""
        return continuous.read_all(self.main_all(tasks, measures=True))

    def position_reads(self, tasks: list[str]) -> dict:
        """`positions.read_all` on the position map of these tasks, each read at its L from the main experiment."""
        return positions.read_all(self.positions(tasks), self.best_layers(tasks))

    def _usable(self, names: list[str], protocol: Protocol) -> None:
        """Raise TooFewExamples where the tokenizer (no weights) leaves a task too few one-token examples."""
        from tvlib.tasks import for_tokenizer

        tokenizer = self.loaded.tokenizer if self.loaded is not None else load_tokenizer(self.model)
        for name in names:
            for_tokenizer(load_task(name), tokenizer, min_examples=protocol.demos + 1)

    def _n_layers(self, task: str) -> int:
        """Number of blocks, read from the stored dev sweep when there is one (no model load)."""
        main = self.main(task)
        return int(main.loc[main["split"] == "dev", "layer"].max()) + 1


def _progress(items: list, desc: str):
    return progress_bar(list(items), desc, enabled=None)


def _refuse_other_settings(jobs: list[Job]) -> None:
    """A one-line error naming the fix if any job's file holds a result of other settings (a dtype, a tvlib
    version or task data no folder name tells apart): checked for all of them before anything is computed."""
    for path, config, _ in jobs:
        store.refuse_other_settings(path, config)


def _blob(value) -> str:
    """A setting as canonical JSON: tuples and lists, key orders compare alike."""
    return json.dumps(value, sort_keys=True, default=str)


def _part(name: str, value) -> str:
    """One setting in a folder name: `n_dev5` for a whole number, `fmt<8 hex digits>` for anything larger."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{name}{value}"
    return name + hashlib.sha256(_blob(value).encode()).hexdigest()[:8]

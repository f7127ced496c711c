"""Experiments run once and stored under results/<model>/: the model is loaded only when a result is missing."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tvlib import __version__, beyond, clusters, defaults, experiments, paths, store
from tvlib.errors import TooFewExamples, TvlibError
from tvlib.experiments import Protocol
from tvlib.models import DEFAULT_MODEL, LM, dtype_name, load_model, load_tokenizer
from tvlib.prompts import PAPER_FORMAT, first_token
from tvlib.tasks import load_task
from tvlib.progress import progress_bar

PAPER_SEED = defaults.SEED
"""The paper's seed; results with it live in the plain folders (main/, robustness/, ...)."""

ROBUSTNESS_FRAMES = ("tsne", "distances", "task_distances", "neighbours", "scores")
"""What the robustness experiment stores, all under one configuration (`scores_testable` adds the testable tasks)."""

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

    @property
    def lm(self) -> LM:
        """The model: `loaded` if given, else loaded from `model` on first use."""
        if self.loaded is None and self.stored_only:
            raise TvlibError(f"a result of {self.model} is not stored in {self.folder} (or its settings differ): "
                             f"compute it first with `python -m tvlib run-book --model {self.model} --out DIR`")
        if self.loaded is None:
            self.loaded = load_model(self.model, self.device, self.dtype)
        return self.loaded

    @property
    def folder(self) -> Path:
        return Path(self.results_dir or paths.results_dir()) / store.slug(self.model)

    def _place(self, kind: str) -> Path:
        """The folder of one experiment kind. A seed other than the paper's 41 (main_seed42/) or another prompt
        format (main_fmt<hash>/) gets its own, so variants sit side by side and never overwrite each other."""
        parts = [] if self.protocol.seed == PAPER_SEED else [f"seed{self.protocol.seed}"]
        if self.protocol.fmt != PAPER_FORMAT:
            blob = json.dumps(asdict(self.protocol.fmt), sort_keys=True)
            parts.append("fmt" + hashlib.sha256(blob.encode()).hexdigest()[:8])
        return self.folder / "_".join([kind, *parts])

    def _config(self, kind: str, protocol: Protocol, **extra) -> dict:
        return {"experiment": kind, "model": self.model, "dtype": dtype_name(self.dtype, self.device),
                "protocol": protocol.config(),
                "tvlib": __version__, **extra}

    def main(self, task: str) -> pd.DataFrame:
        """Every prediction of the main experiment for one task (baseline, regular, dev sweep, hypothesis)."""
        data = load_task(task)
        config = self._config("main", self.protocol, task=task, data=data.fingerprint())
        return store.cached(self._place("main") / f"{data.name}.csv", config,
                            lambda: experiments.evaluate_task(self.lm, data, self.protocol))

    def main_all(self, tasks: list[str]) -> pd.DataFrame:
        """The main experiment over several tasks, one stored file each (an interrupted run resumes)."""
        return pd.concat([self.main(t) for t in _progress(tasks, "tasks")], ignore_index=True)

    def first_token(self) -> pd.DataFrame:
        """What the tokenizer puts first in every prompt (`prompts.first_token`), stored so a page can say it for
        any model without its tokenizer at hand."""
        config = self._config("first_token", self.protocol)
        return store.cached(self.folder / "tokenizer" / "first_token.csv", config,
                            lambda: pd.DataFrame([first_token(load_tokenizer(self.model), self.protocol.fmt)]))

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
        files = {name: self._place(sub) / f"{name}.csv" for name in configs}
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
        frames = []
        for a, b in _progress(list(pairs), "pairs"):
            config = self._config("conflicting", protocol, a=a, b=b, n=n,
                                  data=[load_task(a).fingerprint(), load_task(b).fingerprint()])
            try:
                frames.append(store.cached(
                    self._place("conflicting") / f"{a}__{b}.csv", config,
                    lambda: experiments.conflicting(self.lm, load_task(a), load_task(b), protocol, n)))
            except TooFewExamples as err:  # a tokenizer that cannot answer one of the pair (a character one)
                print(f"pair {a} -> {b} skipped: {err}", file=sys.stderr)
        if not frames:
            raise TvlibError(f"no pair of tasks is usable with {self.model}'s tokenizer")
        return pd.concat(frames, ignore_index=True)

    def projection(self, tasks: list[str], offsets=(-2, -1, 0, 1, 2),
                   top: int = defaults.PROJECTION_TOP) -> pd.DataFrame:
        """Top vocabulary tokens of the mean theta at each task's chosen layer and the layers around it."""
        layers = self.best_layers(tasks)
        frames = []
        for task in _progress(tasks, "projections"):
            last = self._n_layers(task) - 1
            wanted = sorted({min(max(layers[task] + o, 0), last) for o in offsets})
            config = self._config("projection", self.protocol, task=task, layers=wanted, top=top,
                                  data=load_task(task).fingerprint())
            frames.append(store.cached(
                self._place("projection") / f"{task}.csv", config,
                lambda: experiments.vocabulary_projection(self.lm, load_task(task), wanted, self.protocol, top)))
        frame = pd.concat(frames, ignore_index=True)
        frame["best_layer"] = frame["task"].map(layers)
        return frame

    # ----------------------------------------------------------------------- beyond the paper (tvlib.beyond)

    def demonstrations(self, tasks: list[str], counts: tuple[int, ...] = beyond.DEMONSTRATIONS) -> pd.DataFrame:
        """The main experiment of each task at each number of demonstrations k (L re-chosen for each k), with the
        column `demos`; k equal to the protocol's is the main experiment itself, reused. A k the task cannot fill
        (too few single-token examples) is skipped with a message."""
        frames = []
        for task in _progress(tasks, "tasks"):
            data = load_task(task)
            for k in counts:
                protocol = replace(self.protocol, demos=k)
                config = self._config("demonstrations", protocol, task=task, data=data.fingerprint())
                try:
                    frame = self.main(task) if k == self.protocol.demos else store.cached(
                        self._place("demonstrations") / f"{task}_k{k:02d}.csv.gz", config,
                        lambda: experiments.evaluate_task(self.lm, data, protocol))
                except TooFewExamples as err:
                    print(f"{task} with {k} demonstrations skipped: {err}", file=sys.stderr)
                    continue
                frames.append(frame.assign(demos=k))
        return pd.concat(frames, ignore_index=True)

    def averaged(self, tasks: list[str], sizes: tuple[int, ...] = beyond.AVERAGED) -> pd.DataFrame:
        """`beyond.averaged_theta` of each task at its chosen L: a mean theta over m dev contexts against the
        per-context one."""
        return self._at_best_layer("averaged", tasks, lambda task, layer: beyond.averaged_theta(
            self.lm, task, layer, self.protocol, sizes), sizes=sizes)

    def strength(self, tasks: list[str], alphas: tuple[float, ...] = beyond.ALPHAS) -> pd.DataFrame:
        """`beyond.strength` of each task at its chosen L: alpha x theta added against theta written in."""
        return self._at_best_layer("strength", tasks, lambda task, layer: beyond.strength(
            self.lm, task, layer, self.protocol, alphas), alphas=alphas)

    def formats(self, tasks: list[str], formats: dict | None = None) -> pd.DataFrame:
        """`beyond.format_transfer` of each task: theta from one prompt format into another's bare query."""
        formats = formats or beyond.FORMATS
        frames = []
        for task in _progress(tasks, "tasks"):
            data = load_task(task)
            config = self._config("formats", self.protocol, task=task, data=data.fingerprint(),
                                  formats={name: asdict(fmt) for name, fmt in formats.items()})
            frames.append(store.cached(self._place("formats") / f"{task}.csv.gz", config,
                                       lambda: beyond.format_transfer(self.lm, data, self.protocol, formats)))
        return pd.concat(frames, ignore_index=True)

    def _at_best_layer(self, kind: str, tasks: list[str], compute, **settings) -> pd.DataFrame:
        """An experiment run at each task's L chosen in the main experiment, stored one file a task."""
        layers = self.best_layers(tasks)
        frames = []
        for task in _progress(tasks, kind):
            data = load_task(task)
            config = self._config(kind, self.protocol, task=task, layer=layers[task], data=data.fingerprint(),
                                  **settings)
            frames.append(store.cached(self._place(kind) / f"{task}.csv", config,
                                       lambda: compute(data, layers[task])))
        return pd.concat(frames, ignore_index=True)

    def _n_layers(self, task: str) -> int:
        """Number of blocks, read from the stored dev sweep when there is one (no model load)."""
        main = self.main(task)
        return int(main.loc[main["split"] == "dev", "layer"].max()) + 1


def _progress(items: list, desc: str):
    return progress_bar(list(items), desc, enabled=None)

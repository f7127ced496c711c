"""Do task vectors cluster by task? t-SNE coordinates, within/across-task distances, and two clustering scores."""

from __future__ import annotations

import numpy as np
import pandas as pd


def cosine_distances(vectors: np.ndarray) -> np.ndarray:
    """1 - cosine similarity between every pair of rows."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    return 1.0 - unit @ unit.T


def distance_pairs(vectors: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Every unordered pair's cosine distance, marked within-task or across-task (the paper's histograms)."""
    dist = cosine_distances(vectors)
    i, j = np.triu_indices(len(labels), k=1)
    lab = np.asarray(labels)
    return pd.DataFrame({"kind": np.where(lab[i] == lab[j], "within task", "across tasks"), "distance": dist[i, j]})


def histogram(pairs: pd.DataFrame, bins: int = 40) -> pd.DataFrame:
    """The distance pairs as a tidy histogram (density per kind), small enough to store."""
    edges = np.linspace(0.0, float(pairs["distance"].max()) + 1e-9, bins + 1)
    rows = []
    for kind, frame in pairs.groupby("kind"):
        counts, _ = np.histogram(frame["distance"], edges)
        for left, right, count in zip(edges[:-1], edges[1:], counts):
            rows.append({"kind": kind, "left": left, "right": right, "count": int(count),
                         "density": count / len(frame) / (right - left)})
    return pd.DataFrame(rows)


def task_histograms(vectors: np.ndarray, labels: list[str], bins: int = 30, floor: float = 1e-4) -> pd.DataFrame:
    """Per task, its within-task distances against its distances to every other task's vectors (the paper's per-task
    histograms), on shared log-spaced bins from `floor` up: within-task distances sit orders of magnitude below
    across-task ones, and a linear axis would fold them into one bar. `share` is the fraction of pairs in a bin."""
    dist = cosine_distances(vectors)
    lab = np.asarray(labels)
    edges = np.geomspace(floor, max(float(dist.max()), floor * 10) * (1 + 1e-9), bins + 1)
    rows = []
    for task in sorted(set(labels)):
        mine = lab == task
        block = dist[np.ix_(mine, mine)]
        groups = {"within task": block[np.triu_indices(int(mine.sum()), k=1)],
                  "across tasks": dist[np.ix_(mine, ~mine)].ravel()}
        for kind, values in groups.items():
            counts, _ = np.histogram(np.clip(values, floor, None), edges)
            rows += [{"task": task, "kind": kind, "left": left, "right": right, "count": int(count),
                      "share": count / max(len(values), 1), "mean": float(values.mean())}
                     for left, right, count in zip(edges[:-1], edges[1:], counts)]
    return pd.DataFrame(rows)


def task_distances(vectors: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """The mean cosine distance between the vectors of every two tasks (the diagonal: within a task, self-pairs
    left out): the table the category statistic reads."""
    dist = cosine_distances(vectors)
    lab = np.asarray(labels)
    tasks = sorted(set(labels))
    out = pd.DataFrame(index=tasks, columns=tasks, dtype=float)
    for a in tasks:
        for b in tasks:
            block = dist[np.ix_(lab == a, lab == b)]
            out.loc[a, b] = block[~np.eye(len(block), dtype=bool)].mean() if a == b else block.mean()
    return out


def category_neighbours(means: pd.DataFrame, category: dict[str, str]) -> pd.DataFrame:
    """For each task, the other task whose vectors lie nearest (mean distance) and whether it shares the category:
    the paper's Figure 9 observation (tasks of one category lie close) as a count, with the count chance gives."""
    rows = []
    for task in means.index:
        others = means.loc[task].drop(task)
        nearest = others.idxmin()
        peers = [t for t in others.index if category[t] == category[task]]
        rows.append({"task": task, "category": category[task], "nearest other task": nearest,
                     "same category": category[nearest] == category[task],
                     "chance": len(peers) / len(others),
                     "mean distance, same category": others[peers].mean() if peers else np.nan,
                     "mean distance, other categories": others.drop(peers).mean()})
    return pd.DataFrame(rows)


def knn_votes(dist: np.ndarray, labels: list[str], k: int = 5) -> np.ndarray:
    """Each vector's k-NN majority label, itself left out (`dist` a square distance matrix, left unchanged); a tied
    vote goes to the label of the nearest among the tied."""
    dist = dist.copy()
    np.fill_diagonal(dist, np.inf)
    lab = np.asarray(labels)
    neighbours = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.asarray([pd.Series(lab[row]).value_counts().index[0] for row in neighbours])


def scores(vectors: np.ndarray, labels: list[str], k: int = 5) -> pd.DataFrame:
    """5-NN task accuracy (leave one out, cosine) and silhouette (cosine): one number each for 'they cluster'."""
    from sklearn.metrics import silhouette_score

    dist = cosine_distances(vectors)
    lab = np.asarray(labels)
    knn = float(np.mean(knn_votes(dist, labels, k) == lab))
    np.fill_diagonal(dist, 0.0)
    sil = float(silhouette_score(dist, lab, metric="precomputed"))
    chance = float(pd.Series(lab).value_counts(normalize=True).max())
    same = lab[:, None] == lab[None, :]
    off_diagonal = ~np.eye(len(lab), dtype=bool)
    within, across = float(dist[same & off_diagonal].mean()), float(dist[~same].mean())
    return pd.DataFrame({
        "metric": [f"{k}-NN task accuracy", "chance (largest task share)", "silhouette (cosine)",
                   "mean cosine distance within task", "mean cosine distance across tasks"],
        "value": [knn, chance, sil, within, across]})


def tsne(vectors: np.ndarray, seed: int = 41) -> np.ndarray:
    """2-D t-SNE of the vectors (random_state 41 as the paper), for the scatter plot."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(vectors) - 1) / 3)  # sklearn needs perplexity < n_samples
    return TSNE(n_components=2, random_state=seed, init="pca", perplexity=perplexity).fit_transform(vectors)

"""How well the frozen embedding separates the true classes without labels: k-means vs truth, and 2-D views.

k-means uses as many clusters as there are classes; NMI and ARI are sklearn's, purity is the fraction of jets
whose cluster's majority class is their own class. The 2-D views (PCA on every jet, t-SNE on a subsample, since
t-SNE is quadratic-ish and slow on two cores) are returned as coordinates for :mod:`jbot_edge.evaluate.plots`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jbot_edge.evaluate.scores import l2_normalize


def purity(true_labels: np.ndarray, cluster_labels: np.ndarray) -> float:
    """Σ over clusters of the count of its most common true class, divided by N."""
    true_labels = np.asarray(true_labels)
    cluster_labels = np.asarray(cluster_labels)
    total = 0
    for cluster in np.unique(cluster_labels):
        total += np.bincount(true_labels[cluster_labels == cluster]).max()
    return float(total / len(true_labels))


def _subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def cluster_metrics(embeddings: np.ndarray, labels: np.ndarray, normalize: bool = True, max_points: int = 20000,
                    n_init: int = 3, seed: int = 0) -> dict:
    """k-means (K = number of classes present) on the embedding vs the true labels → NMI, ARI, purity."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    keep = _subsample(len(embeddings), max_points, seed)
    x = np.asarray(embeddings, dtype=np.float64)[keep]
    y = np.asarray(labels)[keep]
    x = l2_normalize(x) if normalize else x
    classes = np.unique(y)
    predicted = KMeans(n_clusters=len(classes), n_init=n_init, random_state=seed).fit_predict(x)
    return {
        "n_jets": int(len(y)), "n_clusters": int(len(classes)), "normalize": normalize,
        "nmi": float(normalized_mutual_info_score(y, predicted)),
        "ari": float(adjusted_rand_score(y, predicted)),
        "purity": purity(y, predicted),
    }


@dataclass
class Projection:
    method: str
    coordinates: np.ndarray  # [M, 2]
    labels: np.ndarray  # [M]
    info: dict


def project_2d(embeddings: np.ndarray, labels: np.ndarray, method: str, max_points: int, normalize: bool = True,
               seed: int = 0, perplexity: float = 30.0) -> Projection:
    """2-D view of (a subsample of) the embedding by ``pca`` or ``tsne``."""
    from sklearn.decomposition import PCA

    keep = _subsample(len(embeddings), max_points, seed)
    x = np.asarray(embeddings, dtype=np.float64)[keep]
    x = l2_normalize(x) if normalize else x
    if method == "pca":
        pca = PCA(n_components=2, random_state=seed).fit(x)
        return Projection("pca", pca.transform(x), np.asarray(labels)[keep],
                          {"explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_]})
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(perplexity, max(2.0, (len(x) - 1) / 3.0)))  # sklearn needs perplexity < N
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        return Projection("tsne", coords, np.asarray(labels)[keep], {"perplexity": perplexity})
    raise ValueError(f"unknown projection {method!r}")

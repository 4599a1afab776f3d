"""The jBOT paper's scorers against plain numpy references on fixed embeddings: class-conditional and relative
Mahalanobis, and kNN with k following the bank size."""

from __future__ import annotations

import numpy as np
import pytest

from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate.scores import fit_scorer


def _embeddings(seed: int = 0):
    rng = np.random.default_rng(seed)
    # two background classes with different means, shared correlated covariance; queries from a third place
    root = rng.normal(size=(5, 5)) * 0.3 + np.eye(5)
    centres = np.array([[2.0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0]])
    labels = rng.integers(0, 2, 600)
    bank = centres[labels] + rng.normal(size=(600, 5)) @ root.T
    queries = rng.normal(size=(50, 5)) * 2
    return bank, labels, queries


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference_precision(centred):
    """Unshrunk reference: plain inverse of the (biased) covariance."""
    return np.linalg.inv(np.cov(centred, rowvar=False, bias=True))


def test_class_conditional_mahalanobis_matches_numpy():
    bank, labels, queries = _embeddings()
    b, q = _unit(bank), _unit(queries)
    means = np.stack([b[labels == c].mean(axis=0) for c in (0, 1)])
    precision = _reference_precision(b - means[labels])
    expected = np.min([np.einsum("ij,jk,ik->i", q - m, precision, q - m) for m in means], axis=0)
    scorer = fit_scorer("mahalanobis_cc", bank, {"shrinkage": 0.0, "min_eigenvalue_ratio": 1e-12}, labels)
    np.testing.assert_allclose(scorer.score(queries), expected, rtol=1e-8)
    assert scorer.info["class_counts"] == [int((labels == 0).sum()), int((labels == 1).sum())]
    # one class only: it is the ordinary Mahalanobis distance
    plain = fit_scorer("mahalanobis", bank, {"shrinkage": 0.0, "normalize": True})
    single = fit_scorer("mahalanobis_cc", bank, {"shrinkage": 0.0}, np.zeros(len(bank), dtype=int))
    np.testing.assert_allclose(single.score(queries), plain.score(queries), rtol=1e-8)


def test_relative_mahalanobis_matches_numpy():
    bank, labels, queries = _embeddings(1)
    b, q = _unit(bank), _unit(queries)
    means = np.stack([b[labels == c].mean(axis=0) for c in (0, 1)])
    precision = _reference_precision(b - means[labels])
    mean_0, precision_0 = b.mean(axis=0), _reference_precision(b - b.mean(axis=0))
    expected = (np.min([np.einsum("ij,jk,ik->i", q - m, precision, q - m) for m in means], axis=0)
                - np.einsum("ij,jk,ik->i", q - mean_0, precision_0, q - mean_0))
    scorer = fit_scorer("relative_mahalanobis", bank, {"shrinkage": 0.0, "min_eigenvalue_ratio": 1e-12}, labels)
    np.testing.assert_allclose(scorer.score(queries), expected, rtol=1e-7, atol=1e-9)
    with pytest.raises(JbotEdgeError, match="needs the class label of every bank jet"):
        fit_scorer("relative_mahalanobis", bank)


def test_knn_auto_k_follows_bank_size():
    bank, _, queries = _embeddings(2)
    b, q = _unit(bank), _unit(queries)
    k = int(round(np.sqrt(len(bank))))  # 24
    d = np.sqrt(((q[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    expected = np.sort(d, axis=1)[:, :k].mean(axis=1)
    scorer = fit_scorer("knn", bank, {"k": "auto"})
    assert scorer.info["k"] == k == 24
    np.testing.assert_allclose(scorer.score(queries), expected, rtol=1e-9)
    assert fit_scorer("knn", bank[:100], {"k": "auto"}).info["k"] == 10

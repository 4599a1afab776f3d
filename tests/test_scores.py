"""Scorers and the score head on hand-made embeddings whose right answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate.metrics import point_metrics
from jbot_edge.evaluate.score_head import ScoreHead, file_sha256
from jbot_edge.evaluate.scores import SCORERS, fit_scorer


def mahalanobis_auc_analytic(dim: int, delta: float) -> float:
    """AUC of the squared Mahalanobis distance for N(0, Σ) background vs N(Σ^½ δ e1, Σ) signal.

    Whitened, the background score is χ²_D and the signal score non-central χ²_D(δ²), so
    AUC = P(signal > background) = E_{t ~ χ²_D}[ncx2.sf(t; D, δ²)], a one-dimensional integral. (Φ(δ/√2) is the AUC
    of the best *linear* projection, which a direction-agnostic distance cannot reach.)
    """
    grid = np.linspace(0, stats.chi2.ppf(1 - 1e-12, dim), 200001)
    integrand = stats.chi2.pdf(grid, dim) * stats.ncx2.sf(grid, dim, delta**2)
    return float(np.trapezoid(integrand, grid))


def test_mahalanobis_auc_matches_analytic_value_with_correlated_background():
    rng = np.random.default_rng(1)
    dim, delta = 4, 2.0
    a = rng.normal(size=(dim, dim))
    cov = a @ a.T + 0.5 * np.eye(dim)  # strongly correlated: a Euclidean distance would get the AUC wrong
    root = np.linalg.cholesky(cov)
    mean = rng.normal(size=dim) * 3
    bank = mean + rng.normal(size=(20000, dim)) @ root.T
    background = mean + rng.normal(size=(20000, dim)) @ root.T
    shift = np.zeros(dim)
    shift[0] = delta
    signal = mean + (rng.normal(size=(20000, dim)) + shift) @ root.T
    scorer = fit_scorer("mahalanobis", bank)
    auc = point_metrics(scorer.score(background), scorer.score(signal))["auc"]
    expected = mahalanobis_auc_analytic(dim, delta)
    assert 0.75 < expected < 0.85
    assert auc == pytest.approx(expected, abs=0.01)
    # the same data scored by a plain Euclidean distance to the mean gives a clearly different AUC
    euclid = point_metrics(np.linalg.norm(background - mean, axis=1), np.linalg.norm(signal - mean, axis=1))["auc"]
    assert abs(euclid - expected) > 0.03


def test_knn_mean_distance_by_hand():
    bank = np.c_[np.arange(10.0), np.zeros(10)]  # points 0..9 on the x axis
    scorer = fit_scorer("knn", bank, {"k": 3, "normalize": False})
    queries = np.array([[0.0, 0.0], [4.5, 0.0], [20.0, 0.0], [4.5, 3.0]])
    scores = scorer.score(queries)
    assert scores[0] == pytest.approx((0 + 1 + 2) / 3)
    assert scores[1] == pytest.approx((0.5 + 0.5 + 1.5) / 3)
    assert scores[2] == pytest.approx((11 + 12 + 13) / 3)
    assert scores[3] == pytest.approx((2 * np.hypot(0.5, 3) + np.hypot(1.5, 3)) / 3)
    # farther from the bank → more anomalous
    assert scores[1] < scores[0] < scores[3] < scores[2]


def test_knn_normalized_uses_angles_only():
    bank = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 5.0]])
    scorer = fit_scorer("knn", bank, {"k": 2, "normalize": True})
    # after normalisation the bank is e1, e1, e2: a query along e1 at any length has neighbours e1, e1
    assert scorer.score(np.array([[7.0, 0.0]]))[0] == pytest.approx(0.0, abs=1e-7)
    assert scorer.score(np.array([[0.0, 1.0]]))[0] == pytest.approx((0 + np.sqrt(2)) / 2)


def test_knn_with_observables_normalises_the_network_block_only():
    """[network ‖ observables]: the network's columns are L2-normalised, the observables divided by √n_obs."""
    rng = np.random.default_rng(3)
    network, observables = rng.normal(size=(50, 4)) * 5.0, rng.normal(size=(50, 2))
    bank = np.c_[network, observables]
    queries = np.c_[rng.normal(size=(7, 4)) * 0.1, rng.normal(size=(7, 2))]
    scorer = fit_scorer("knn", bank, {"k": 3, "normalize": True}, network_dim=4)

    def by_hand(x):
        return np.c_[x[:, :4] / np.linalg.norm(x[:, :4], axis=1, keepdims=True), x[:, 4:] / np.sqrt(2)]

    d = np.linalg.norm(by_hand(queries)[:, None, :] - by_hand(bank)[None, :, :], axis=2)
    np.testing.assert_allclose(scorer.score(queries), np.sort(d, axis=1)[:, :3].mean(axis=1), rtol=1e-10)
    # the norm of the network block no longer changes anything (it did when the whole row was normalised)
    scaled = np.c_[queries[:, :4] * 30.0, queries[:, 4:]]
    np.testing.assert_allclose(scorer.score(scaled), scorer.score(queries), rtol=1e-10)
    whole_row = fit_scorer("knn", bank, {"k": 3, "normalize": True})
    assert not np.allclose(whole_row.score(scaled), whole_row.score(queries))
    # without observables (network_dim None or D) it is the plain L2 normalisation of the whole row
    np.testing.assert_array_equal(fit_scorer("knn", bank, {"k": 3}, network_dim=6).score(queries),
                                  whole_row.score(queries))


def test_oe_on_observables_reads_only_the_observables():
    rng = np.random.default_rng(4)
    bank = np.c_[rng.normal(size=(300, 3)), rng.normal(size=(300, 2))]
    outliers = np.c_[rng.normal(size=(300, 3)) + 5.0, rng.normal(size=(300, 2)) + 2.0]
    params = {"inputs": "observables", "classifier": "logistic"}
    scorer = fit_scorer("oe", bank, params, outliers=outliers, network_dim=3)
    alone = fit_scorer("oe", bank[:, 3:], {"classifier": "logistic"}, outliers=outliers[:, 3:])
    queries = rng.normal(size=(20, 5))
    np.testing.assert_allclose(scorer.score(queries), alone.score(queries[:, 3:]), rtol=1e-10)
    assert scorer.embedding_dim == 5
    with pytest.raises(JbotEdgeError, match="inputs=observables needs an embedding with jet-shape observables"):
        fit_scorer("oe", bank, params, outliers=outliers)
    # in knn_oe the oe part follows the same layout
    combo = fit_scorer("knn_oe", bank, {"oe": params, "knn": {"k": 5}}, outliers=outliers, network_dim=3)
    moved = queries.copy()
    moved[:, :3] = 0.0  # changes the knn part only
    assert combo._part("oe").score(moved).tolist() == combo._part("oe").score(queries).tolist()
    assert combo._part("knn").score(moved).tolist() != combo._part("knn").score(queries).tolist()


def test_cosine_log_sum_exp_by_hand():
    k, tau = 5, 0.1
    bank = np.tile([1.0, 0.0, 0.0], (k, 1))
    scorer = fit_scorer("cosine", bank, {"k": k, "tau": tau})
    same, orthogonal = scorer.score(np.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert same == pytest.approx(-1 - tau * np.log(k))
    assert orthogonal == pytest.approx(-tau * np.log(k))
    assert orthogonal > same


def test_gmm_matches_sklearn_density():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    bank = np.r_[rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) + 4]
    queries = rng.normal(size=(50, 3)) * 3
    for cov_type in ("full", "diag"):
        params = {"n_components": 2, "covariance_type": cov_type, "normalize": False, "reg_covar": 1e-4, "seed": 3}
        scorer = fit_scorer("gmm", bank, params)
        reference = GaussianMixture(2, covariance_type=cov_type, reg_covar=1e-4, random_state=3).fit(bank)
        np.testing.assert_allclose(scorer.score(queries), -reference.score_samples(queries), rtol=1e-10)


def test_kmeans_distance_to_nearest_centroid():
    rng = np.random.default_rng(0)
    bank = np.r_[rng.normal(size=(200, 2)) * 0.1, rng.normal(size=(200, 2)) * 0.1 + [5, 0]]
    scorer = fit_scorer("kmeans", bank, {"n_clusters": 2, "normalize": False})
    centroids = scorer.arrays["centroids"]
    queries = np.array([[0.0, 0.0], [5.0, 1.0], [2.5, 0.0]])
    expected = np.min(np.linalg.norm(queries[:, None] - centroids[None], axis=2), axis=1)
    np.testing.assert_allclose(scorer.score(queries), expected, atol=1e-9)
    assert scorer.score(np.array([[2.5, 0.0]]))[0] > 2.0


def test_singular_covariance_is_regularised_not_nan():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 2))
    # constant dimension, duplicated dimension and a linear combination: rank 2 in 5 dimensions
    bank = np.c_[base, np.full(50, 3.0), base[:, 0], base[:, 0] - 2 * base[:, 1]]
    for shrinkage in ("ledoit_wolf", "oas", 0.0):
        scorer = fit_scorer("mahalanobis", bank, {"shrinkage": shrinkage})
        scores = scorer.score(rng.normal(size=(20, 5)))
        assert np.isfinite(scores).all() and (scores >= 0).all()
    assert scorer.info["n_eigenvalues_floored"] >= 3  # unshrunk: three zero eigenvalues were floored
    # a bank with no spread at all still gives a finite score (identity precision)
    flat = fit_scorer("mahalanobis", np.ones((5, 3)), {"shrinkage": 0.0})
    assert flat.score(np.array([[1.0, 1.0, 3.0]]))[0] == pytest.approx(4.0)


def test_bank_smaller_than_k_is_a_clear_error():
    bank = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(JbotEdgeError, match=r"k=30 needs a background bank of at least 30 jets, got 10"):
        fit_scorer("knn", bank)
    with pytest.raises(JbotEdgeError, match="n_clusters=16"):
        fit_scorer("kmeans", bank)
    with pytest.raises(JbotEdgeError, match="unknown key 'kk'"):
        fit_scorer("knn", bank, {"kk": 3})
    with pytest.raises(JbotEdgeError, match="unknown scorer 'lof'"):
        fit_scorer("lof", bank)
    with pytest.raises(JbotEdgeError, match="NaN"):
        fit_scorer("mahalanobis", np.full((10, 4), np.nan))
    scorer = fit_scorer("mahalanobis", bank)
    with pytest.raises(JbotEdgeError, match="dimension 3"):
        scorer.score(np.zeros((2, 3)))


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_score_head_round_trip_is_bit_identical(tmp_path, name):
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(400, 6)).astype(np.float32)  # teachers give float32
    queries = rng.normal(size=(100, 6)).astype(np.float32) * 1.5
    params = {"k": 5} if name in ("knn", "cosine") else {}
    if name == "knn_oe":
        params = {"oe": {"inputs": "observables"}}
    # the last two columns play appended observables (the layout travels with the head)
    head = ScoreHead.fit(name, bank, background_labels=["q", "g"], teacher_sha256="abc",
                         bank_labels=rng.integers(0, 2, len(bank)), outliers=bank[::2] * 2.0 + 1.0,
                         network_dim=4, **params)
    before = head.score(queries)
    head.save(tmp_path)
    loaded = ScoreHead.load(tmp_path)
    after = loaded.score(queries)
    assert after.dtype == np.float64 and np.isfinite(after).all()
    assert np.array_equal(before, after)
    assert loaded.name == name and loaded.params == head.params
    meta = json.loads((tmp_path / "score_head.json").read_text())
    assert meta["bank_size"] == 400 and meta["background_labels"] == ["q", "g"]
    assert meta["fpga_friendly"] is (name in ("mahalanobis", "mahalanobis_cc", "relative_mahalanobis", "kmeans",
                                              "oe"))
    assert meta["fpga_note"]
    assert meta["teacher_sha256"] == "abc"
    assert meta["npz_sha256"] == file_sha256(tmp_path / "score_head.npz")


def test_score_head_load_errors(tmp_path):
    with pytest.raises(JbotEdgeError, match="has no score head"):
        ScoreHead.load(tmp_path)
    bank = np.random.default_rng(0).normal(size=(50, 3))
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights v1")
    ScoreHead.fit("mahalanobis", bank, teacher_sha256=file_sha256(teacher)).save(tmp_path)
    ScoreHead.load(tmp_path / "teacher.pt")  # a file inside the run also names the run
    teacher.write_bytes(b"weights v2")
    with pytest.raises(JbotEdgeError, match="different teacher.pt"):
        ScoreHead.load(tmp_path)
    assert ScoreHead.load(tmp_path, verify_teacher=False).name == "mahalanobis"
    # a torn pair (npz from another fit) is detected
    other = tmp_path / "other"
    ScoreHead.fit("kmeans", bank, n_clusters=2).save(other)
    (tmp_path / "score_head.npz").write_bytes((other / "score_head.npz").read_bytes())
    with pytest.raises(JbotEdgeError, match="does not match"):
        ScoreHead.load(tmp_path, verify_teacher=False)

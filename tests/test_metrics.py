"""ROC-derived metrics, their edge cases and the trigger view, checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate.metrics import (
    fpr_at_tpr,
    fpr_key,
    metrics_with_uncertainty,
    per_jet_fpr,
    point_metrics,
    roc_points,
    tpr_at_fpr,
    trigger_threshold,
    trigger_view,
)

# Ten background jets scored 0..9 and four signal jets: ROC (FPR, TPR) by hand, thresholds descending:
# 9.5 → (0, .25), 9 → (.1, .25), 8.5 → (.1, .5), 8..6 → (.2..4, .5), 5.5 → (.4, .75), 5..3 → (.5..7, .75),
# 2.5 → (.7, 1), ...
BACKGROUND = np.arange(10.0)
SIGNAL = np.array([9.5, 8.5, 5.5, 2.5])


def test_fpr_keys():
    assert [fpr_key(f) for f in (1e-1, 1e-2, 1e-3, 1e-4, 3e-3)] == ["1e-1", "1e-2", "1e-3", "1e-4", "3e-3"]


def test_tpr_at_fpr_interpolates_the_upper_envelope():
    fpr, tpr = roc_points(BACKGROUND, SIGNAL)
    assert tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(0.25)  # signal above every background jet
    assert tpr_at_fpr(fpr, tpr, 0.1) == pytest.approx(0.5)  # vertical segment: the best TPR at that FPR
    assert tpr_at_fpr(fpr, tpr, 0.05) == pytest.approx(0.375)  # between (0, .25) and (.1, .5)
    assert tpr_at_fpr(fpr, tpr, 0.45) == pytest.approx(0.75)
    assert tpr_at_fpr(fpr, tpr, 0.15) == pytest.approx(0.5)
    assert tpr_at_fpr(fpr, tpr, 1.0) == pytest.approx(1.0)


def test_fpr_at_tpr_takes_the_lowest_fpr():
    fpr, tpr = roc_points(BACKGROUND, SIGNAL)
    assert fpr_at_tpr(fpr, tpr, 0.5) == pytest.approx(0.1)
    assert fpr_at_tpr(fpr, tpr, 0.75) == pytest.approx(0.4)
    assert fpr_at_tpr(fpr, tpr, 0.3) == pytest.approx(0.02)  # (0, .25) → (.1, .5)


def test_point_metrics_flags_unresolvable_targets():
    m = point_metrics(BACKGROUND, SIGNAL, fpr_targets=(1e-1, 1e-2), sig_eff_targets=(0.3, 0.5))
    # AUC by hand: signals beat 10, 9, 6 and 3 background jets of 10 → (10 + 9 + 6 + 3) / 40
    assert m["auc"] == pytest.approx(28 / 40)
    assert m["tpr_at_fpr"] == pytest.approx({"1e-1": 0.5, "1e-2": 0.25 + 0.25 * 0.1})
    assert m["tpr_at_fpr_resolved"] == {"1e-1": True, "1e-2": False}  # 1e-2 < 1/N_bkg = 0.1
    # ε_B(ε_S=0.5) = 0.1 → 10; ε_B(0.3) = 0.02 < 1/N_bkg → reported as N_bkg = 10, a lower bound
    assert m["inv_bkg_eff_at_sig_eff"] == pytest.approx({"0.3": 10.0, "0.5": 10.0})
    assert m["inv_bkg_eff_lower_bound"] == {"0.3": True, "0.5": False}


def test_perfect_separation_stays_finite():
    m = point_metrics(np.zeros(100), np.ones(50))
    assert m["auc"] == 1.0
    assert all(v == 1.0 for v in m["tpr_at_fpr"].values())
    assert m["inv_bkg_eff_at_sig_eff"] == {"0.3": 100.0, "0.5": 100.0}
    assert all(m["inv_bkg_eff_lower_bound"].values())


def test_bootstrap_auc_uncertainty_matches_hanley_mcneil():
    rng = np.random.default_rng(0)
    n = 2000
    background, signal = rng.normal(size=n), rng.normal(size=n) + 1.0
    m = metrics_with_uncertainty(background, signal, method="bootstrap", n_resamples=100, seed=1)
    auc = m["auc"]
    assert auc == pytest.approx(stats.norm.cdf(1 / np.sqrt(2)), abs=0.02)
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    hanley = np.sqrt((auc * (1 - auc) + (n - 1) * (q1 - auc**2) + (n - 1) * (q2 - auc**2)) / n**2)
    assert m["uncertainty"]["auc"] == pytest.approx(hanley, rel=0.3)
    folds = metrics_with_uncertainty(background, signal, method="kfold", n_resamples=10, seed=1)
    assert folds["uncertainty"]["auc"] == pytest.approx(hanley, rel=0.5)  # std over folds / √k
    assert folds["auc"] == m["auc"]
    assert all(np.isfinite(v) for v in m["uncertainty"]["tpr_at_fpr"].values())


def test_metric_input_errors():
    with pytest.raises(JbotEdgeError, match="0 signal"):
        point_metrics(np.zeros(3), np.zeros(0))
    with pytest.raises(JbotEdgeError, match="NaN"):
        point_metrics(np.array([0.0, np.nan]), np.ones(3))
    with pytest.raises(JbotEdgeError, match="kfold with 10 folds"):
        metrics_with_uncertainty(np.arange(5.0), np.arange(50.0), method="kfold", n_resamples=10)


def test_per_jet_fpr_from_rate_budget():
    assert per_jet_fpr(3.0) == pytest.approx(3.0 / 28610.0)
    # two independent jets a crossing: 1 - (1 - f)^2 = R/B
    f = per_jet_fpr(286.1, 28.61, jets_per_crossing=2)
    assert 1 - (1 - f) ** 2 == pytest.approx(0.01)
    with pytest.raises(JbotEdgeError, match="rate budget"):
        per_jet_fpr(40000.0)


def test_trigger_threshold_and_efficiency_by_hand():
    background = np.arange(1000) / 1000.0
    # 286.1 kHz of 28.61 MHz is 1 %: 10 of 1000 background jets may pass → threshold 0.989 (jets .990...999 pass)
    row, = trigger_view(background, {"sig": np.array([0.5, 0.99, 0.995, 0.989])}, [286.1])
    assert row["per_jet_fpr"] == pytest.approx(0.01)
    assert row["threshold"] == pytest.approx(0.989)
    assert row["n_background_above"] == 10
    assert row["measured_rate_khz"] == pytest.approx(286.1)
    assert row["signal_efficiency"]["sig"] == pytest.approx(0.5)  # 0.989 itself is not above the threshold
    assert row["resolved"]
    # below 1/N_bkg no background jet may pass: the threshold is the highest background score, flagged
    row, = trigger_view(background, {"sig": np.array([1.0, 0.5])}, [1.0])
    assert row["threshold"] == pytest.approx(0.999) and row["n_background_above"] == 0
    assert not row["resolved"] and row["signal_efficiency"]["sig"] == 0.5


def test_trigger_threshold_with_ties_never_exceeds_the_budget():
    background = np.r_[np.zeros(90), np.ones(10)]
    threshold, n_above = trigger_threshold(background, 0.05)
    assert threshold == 1.0 and n_above == 0

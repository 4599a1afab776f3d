"""Signal-vs-background metrics of anomaly scores and the level-1 trigger view.

Conventions (every number here is finite, so reports never carry NaN/inf):

* **ROC** points come from every distinct threshold (``sklearn.metrics.roc_curve``, no point dropped), starting at
  (FPR, TPR) = (0, fraction of signal above every background jet).
* **TPR at FPR = f** is the linear interpolation of the ROC's upper envelope (at equal FPR the highest TPR). Between
  two thresholds that interpolation is exactly what a randomised threshold achieves, so it is the correct value,
  not an approximation. Below the smallest measurable FPR (``f < 1/N_bkg``) the value interpolates between
  (0, TPR at FPR 0) and (1/N_bkg, ·): it is reported but flagged ``resolved: false`` because no background jet
  constrains it.
* **1/ε_B at ε_S = s** uses the lowest FPR reaching TPR s (interpolated the same way). When that FPR is below
  1/N_bkg the value is reported as N_bkg (i.e. ε_B < 1/N_bkg) and flagged ``lower_bound: true``.
* **Uncertainties** are the standard deviation over resamples of the evaluation scores with the bank fixed:
  ``bootstrap`` (n resamples with replacement of signal and background separately) or ``kfold`` (k disjoint folds;
  the spread across folds divided by √k, the standard error of the full-sample value, as in jBOT's 10-fold errors).
* **Trigger view**: a budget of R kHz out of a background rate B (default 28.61 MHz of crossings) with n scored jets
  per crossing allows a per-jet false-positive rate f with 1 − (1 − f)^n = R / B. The threshold is the
  (⌊f·N_bkg⌋ + 1)-th highest background score, so exactly ⌊f·N_bkg⌋ background jets (fewer with ties) lie strictly
  above it: the measured rate never exceeds the budget. A signal jet passes if its score is strictly above the
  threshold. ``resolved`` is false when f·N_bkg < 1 (then the threshold is the highest background score).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from jbot_edge.errors import JbotEdgeError

DEFAULT_FPR_TARGETS = (1e-1, 1e-2, 1e-3, 1e-4)
DEFAULT_SIG_EFF_TARGETS = (0.3, 0.5)
LHC_CROSSING_RATE_MHZ = 28.61  # CMS: filled bunch crossings per second used for L1 rates (CICADA)


def fpr_key(value: float) -> str:
    """JSON key of an FPR target: 0.1 → "1e-1", 0.003 → "3e-3"."""
    mantissa, exponent = f"{value:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def eff_key(value: float) -> str:
    """JSON key of a signal-efficiency target: 0.3 → "0.3"."""
    return f"{value:g}"


def _check_scores(background: np.ndarray, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    background = np.asarray(background, dtype=np.float64).ravel()
    signal = np.asarray(signal, dtype=np.float64).ravel()
    if len(background) == 0 or len(signal) == 0:
        raise JbotEdgeError(f"metrics need background and signal scores, got {len(background)} background and "
                            f"{len(signal)} signal jets")
    if not (np.isfinite(background).all() and np.isfinite(signal).all()):
        raise JbotEdgeError("metrics: scores contain NaN/inf")
    return background, signal


def roc_points(background: np.ndarray, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, both non-decreasing, from (0, ·) to (1, 1)."""
    from sklearn.metrics import roc_curve

    background, signal = _check_scores(background, signal)
    y = np.r_[np.zeros(len(background)), np.ones(len(signal))]
    fpr, tpr, _ = roc_curve(y, np.r_[background, signal], drop_intermediate=False)
    return fpr, tpr


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Interpolated TPR on the ROC's upper envelope at FPR ``target``."""
    last_of_each_fpr = np.r_[np.diff(fpr) > 0, True]  # tpr is non-decreasing: the last is the highest
    return float(np.interp(target, fpr[last_of_each_fpr], tpr[last_of_each_fpr]))


def fpr_at_tpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Interpolated lowest FPR that reaches TPR ``target``."""
    first_of_each_tpr = np.r_[True, np.diff(tpr) > 0]
    return float(np.interp(target, tpr[first_of_each_tpr], fpr[first_of_each_tpr]))


def point_metrics(background: np.ndarray, signal: np.ndarray,
                  fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
                  sig_eff_targets: Sequence[float] = DEFAULT_SIG_EFF_TARGETS) -> dict:
    """AUC, TPR at each FPR target and 1/ε_B at each ε_S target, with the resolvability flags."""
    from sklearn.metrics import roc_auc_score

    background, signal = _check_scores(background, signal)
    n_bkg = len(background)
    fpr, tpr = roc_points(background, signal)
    y = np.r_[np.zeros(n_bkg), np.ones(len(signal))]
    inv_bkg_eff, lower_bound = {}, {}
    for s in sig_eff_targets:
        eps_b = fpr_at_tpr(fpr, tpr, s)
        lower_bound[eff_key(s)] = bool(eps_b < 1.0 / n_bkg)
        inv_bkg_eff[eff_key(s)] = 1.0 / max(eps_b, 1.0 / n_bkg)
    return {
        "auc": float(roc_auc_score(y, np.r_[background, signal])),
        "tpr_at_fpr": {fpr_key(f): tpr_at_fpr(fpr, tpr, f) for f in fpr_targets},
        "tpr_at_fpr_resolved": {fpr_key(f): bool(f * n_bkg >= 1.0) for f in fpr_targets},
        "inv_bkg_eff_at_sig_eff": inv_bkg_eff,
        "inv_bkg_eff_lower_bound": lower_bound,
        "n_background": n_bkg,
        "n_signal": int(len(signal)),
    }


def resample_indices(n: int, method: str, n_resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Index sets of ``n`` items: ``bootstrap`` resamples with replacement, ``kfold`` disjoint folds."""
    if method == "bootstrap":
        return [rng.integers(0, n, size=n) for _ in range(n_resamples)]
    folds = np.array_split(rng.permutation(n), n_resamples)
    return [np.sort(f) for f in folds]


def metrics_with_uncertainty(background: np.ndarray, signal: np.ndarray,
                             fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
                             sig_eff_targets: Sequence[float] = DEFAULT_SIG_EFF_TARGETS,
                             method: str = "bootstrap", n_resamples: int = 20, seed: int = 0) -> dict:
    """:func:`point_metrics` on the full sample plus an ``uncertainty`` block (see module docstring)."""
    if method not in ("bootstrap", "kfold"):
        raise JbotEdgeError(f"metrics.uncertainty must be 'bootstrap' or 'kfold', got {method!r}")
    background, signal = _check_scores(background, signal)
    result = point_metrics(background, signal, fpr_targets, sig_eff_targets)
    if n_resamples < 2:
        raise JbotEdgeError(f"metrics.n_resamples must be at least 2, got {n_resamples}")
    if method == "kfold" and min(len(background), len(signal)) < n_resamples:
        raise JbotEdgeError(f"metrics: kfold with {n_resamples} folds needs at least {n_resamples} background and "
                            f"signal jets, got {len(background)} and {len(signal)}")
    rng = np.random.default_rng(seed)
    samples = [point_metrics(background[b], signal[s], fpr_targets, sig_eff_targets)
               for b, s in zip(resample_indices(len(background), method, n_resamples, rng),
                               resample_indices(len(signal), method, n_resamples, rng))]
    scale = 1.0 / math.sqrt(n_resamples) if method == "kfold" else 1.0

    def spread(get) -> float:
        return float(np.std([get(m) for m in samples], ddof=1) * scale)

    result["uncertainty"] = {
        "method": method, "n_resamples": n_resamples,
        "auc": spread(lambda m: m["auc"]),
        "tpr_at_fpr": {k: spread(lambda m, k=k: m["tpr_at_fpr"][k]) for k in result["tpr_at_fpr"]},
        "inv_bkg_eff_at_sig_eff": {k: spread(lambda m, k=k: m["inv_bkg_eff_at_sig_eff"][k])
                                   for k in result["inv_bkg_eff_at_sig_eff"]},
    }
    return result


def per_jet_fpr(rate_budget_khz: float, background_rate_mhz: float = LHC_CROSSING_RATE_MHZ,
                jets_per_crossing: int = 1) -> float:
    """Per-jet false-positive rate f such that a crossing with n scored jets fires at the budgeted rate."""
    if background_rate_mhz <= 0 or jets_per_crossing < 1:
        raise JbotEdgeError("trigger: background_rate_mhz must be > 0 and jets_per_crossing >= 1")
    crossing_fraction = rate_budget_khz / (background_rate_mhz * 1e3)
    if not 0 < crossing_fraction < 1:
        raise JbotEdgeError(f"trigger: rate budget {rate_budget_khz} kHz must lie in (0, {background_rate_mhz * 1e3} "
                            "kHz), the background rate")
    # 1 - (1 - f)^n = R/B, written with log1p/expm1 so f stays accurate for tiny R/B.
    return float(-np.expm1(np.log1p(-crossing_fraction) / jets_per_crossing))


def trigger_threshold(background: np.ndarray, fpr: float) -> tuple[float, int]:
    """Threshold with exactly ⌊fpr·N⌋ background scores strictly above it (fewer with ties), and that count."""
    background = np.sort(np.asarray(background, dtype=np.float64))
    n_allowed = int(math.floor(fpr * len(background) + 1e-9))  # 1e-9: 0.01·1000 must give 10, not 9
    n_allowed = min(n_allowed, len(background) - 1)
    threshold = float(background[len(background) - 1 - n_allowed])
    return threshold, int((background > threshold).sum())


def trigger_view(background: np.ndarray, signals: Mapping[str, np.ndarray], rate_budgets_khz: Sequence[float],
                 background_rate_mhz: float = LHC_CROSSING_RATE_MHZ, jets_per_crossing: int = 1) -> list[dict]:
    """For each rate budget: per-jet FPR, score threshold and each signal's per-jet efficiency."""
    background = np.asarray(background, dtype=np.float64)
    if len(background) == 0:
        raise JbotEdgeError("trigger view needs background scores")
    rows = []
    for budget in rate_budgets_khz:
        f = per_jet_fpr(budget, background_rate_mhz, jets_per_crossing)
        threshold, n_above = trigger_threshold(background, f)
        measured_fraction = n_above / len(background)
        rows.append({
            "rate_budget_khz": float(budget),
            "background_rate_mhz": float(background_rate_mhz),
            "jets_per_crossing": int(jets_per_crossing),
            "per_jet_fpr": f,
            "threshold": threshold,
            "n_background": int(len(background)),
            "n_background_above": n_above,
            "measured_rate_khz": float(-np.expm1(jets_per_crossing * np.log1p(-measured_fraction))
                                       * background_rate_mhz * 1e3) if measured_fraction < 1 else
            float(background_rate_mhz * 1e3),
            "resolved": bool(f * len(background) >= 1.0),
            "signal_efficiency": {name: float((np.asarray(s, dtype=np.float64) > threshold).mean())
                                  for name, s in signals.items()},
        })
    return rows

"""Mass sculpting: how much an anomaly cut distorts the background jet-mass distribution.

A score correlated with the jet mass turns a smooth background into a peak after the cut, which a bump hunt would
mistake for a signal (the motivation for DisCo, arXiv 2001.05310 / 2007.01850). For each background efficiency
ε_B the cut keeps the ε_B most anomalous background jets, and we report the Jensen–Shannon divergence (base 2,
∈ [0, 1]) between the background mass histograms before (all jets) and after the cut::

    JSD(P ‖ Q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M),  M = ½ (P + Q)

on ``bins`` equal-width bins between the 0.5% and 99.5% background mass quantiles (outliers go to the edge bins).
A cut uncorrelated with mass still gives JSD > 0 from finite statistics, so each entry also carries
``jsd_random``: the mean JSD of random subsets of the same size (the floor to compare with).

Schema (one scorer)::

    {"feature": "jet_mass", "bins": 40, "n_background": N,
     "by_bkg_eff": {"0.1": {"jsd": .., "jsd_random": .., "n_pass": ..}, "0.01": {...}}}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_BKG_EFFS = (0.1, 0.01)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """JSD (base 2) between two histograms (normalised here); 0 for identical, 1 for disjoint supports."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("jensen_shannon needs two non-empty histograms of the same shape")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0))


def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0].astype(np.float64)


def mass_sculpting(background_scores: np.ndarray, background_mass: np.ndarray,
                   bkg_effs: Sequence[float] = DEFAULT_BKG_EFFS, bins: int = 40, n_random: int = 10,
                   seed: int = 0, feature: str = "jet_mass") -> dict:
    """JSD of the background mass before/after the score cut at each background efficiency (see module doc)."""
    scores = np.asarray(background_scores, dtype=np.float64)
    mass = np.asarray(background_mass, dtype=np.float64)
    if scores.shape != mass.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and masses {mass.shape} must be 1-D and aligned")
    lo, hi = np.quantile(mass, [0.005, 0.995])
    if not hi > lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    before = _histogram(mass, edges)
    order = np.argsort(-scores, kind="stable")
    rng = np.random.default_rng(seed)
    out = {}
    for eff in bkg_effs:
        n_pass = max(1, int(round(eff * len(scores))))
        after = _histogram(mass[order[:n_pass]], edges)
        floor = [jensen_shannon(before, _histogram(mass[rng.choice(len(mass), n_pass, replace=False)], edges))
                 for _ in range(n_random)]
        out[f"{eff:g}"] = {"jsd": jensen_shannon(before, after), "jsd_random": float(np.mean(floor)),
                           "n_pass": n_pass}
    return {"feature": feature, "bins": bins, "n_background": int(len(scores)), "by_bkg_eff": out}


def read_jet_feature(jet_file, index: np.ndarray, name: str, block: int = 65536) -> np.ndarray | None:
    """Per-jet ``name`` at sorted file ``index`` (streamed in blocks); None when the file does not store it."""
    if name not in jet_file.jet_features:
        return None
    index = np.asarray(index)
    out = np.empty(len(index), dtype=np.float64)
    for lo in range(0, len(jet_file), block):
        a, b = np.searchsorted(index, [lo, lo + block])
        if a == b:
            continue
        chunk = jet_file.read(slice(lo, min(lo + block, len(jet_file))), particle_features=[], jet_features=[name])
        out[a:b] = chunk.jets[name][index[a:b] - lo]
    return out

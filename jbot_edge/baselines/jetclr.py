"""JetCLR (Dillon et al., arXiv 2108.04253): the contrastive jet-representation baseline.

The trainer is :class:`jbot_edge.baselines.contrastive.ContrastiveMethod` with ``method: jetclr`` (NT-Xent with
τ = 0.1, set transformer with α·log pT attention bias and pT-weighted sum pooling, JetCLR's view recipe); this
module adds the **linear classifier test** (LCT): one linear layer + sigmoid trained with labels on the frozen
representation, reporting AUC and 1/ε_B at ε_S = 0.5 (the JetCLR paper's figures of merit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jbot_edge.baselines.contrastive import ContrastiveConfig, ContrastiveMethod

__all__ = ["ContrastiveConfig", "ContrastiveMethod", "linear_classifier_test"]


def linear_classifier_test(embeddings: np.ndarray, is_signal: np.ndarray, train_fraction: float = 0.5,
                           seed: int = 0, sig_eff: Sequence[float] = (0.5,)) -> dict:
    """Logistic regression (one linear layer + sigmoid) on standardised embeddings; metrics on held-out jets.

    Returns ``{auc, inv_bkg_eff_at_sig_eff {"0.5": ..}, n_train, n_test}`` on the test half (stratified split).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from jbot_edge.evaluate.metrics import point_metrics

    y = np.asarray(is_signal).astype(bool)
    if y.all() or not y.any():
        raise ValueError("linear classifier test needs both signal and background jets")
    rng = np.random.default_rng(seed)
    train = np.zeros(len(y), dtype=bool)
    for cls in (False, True):
        idx = rng.permutation(np.flatnonzero(y == cls))
        train[idx[: int(round(train_fraction * len(idx)))]] = True
    scaler = StandardScaler().fit(embeddings[train])
    clf = LogisticRegression(max_iter=2000).fit(scaler.transform(embeddings[train]), y[train])
    score = clf.decision_function(scaler.transform(embeddings[~train]))
    test_y = y[~train]
    m = point_metrics(score[~test_y], score[test_y], fpr_targets=(1e-1, 1e-2), sig_eff_targets=tuple(sig_eff))
    return {"auc": m["auc"], "inv_bkg_eff_at_sig_eff": m["inv_bkg_eff_at_sig_eff"],
            "inv_bkg_eff_lower_bound": m["inv_bkg_eff_lower_bound"], "n_train": int(train.sum()),
            "n_test": int((~train).sum())}

"""The JetCLR linear classifier test (LCT, Dillon et al. arXiv 2108.04253) as an ``evaluate`` section.

For each signal label: the frozen embeddings of the evaluation background and that signal are split (stratified,
``train_fraction`` for training), a logistic regression (one linear layer + sigmoid, on standardised embeddings)
is trained with the signal/background labels, and AUC and 1/ε_B at ε_S = 0.5 (JetCLR's figures of merit) are
measured on the held-out part. It works for any teacher: it only sees ``embed()``.

Schema (``evaluate.json["lct"]``)::

    {"train_fraction": 0.5, "max_jets_per_class": N,
     "signals": {SIGNAL: {"auc", "inv_bkg_eff_at_sig_eff" {"0.5": ..}, "inv_bkg_eff_lower_bound" {...},
                          "n_train", "n_test"}}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import Field

from jbot_edge.config import StrictModel


class LctSettings(StrictModel):
    enabled: bool = True
    train_fraction: float = Field(default=0.5, gt=0, lt=1, description="share of the jets the classifier sees")
    sig_eff_targets: list[float] = Field(default_factory=lambda: [0.5], description="ε_S for 1/ε_B (JetCLR: 0.5)")
    max_jets_per_class: int = Field(default=20000, ge=10, description="background / signal jets used (subsample)")


def linear_classifier_test(embeddings: np.ndarray, is_signal: np.ndarray, train_fraction: float = 0.5,
                           seed: int = 0, sig_eff: Sequence[float] = (0.5,), n_bootstrap: int = 0) -> dict:
    """Logistic regression (one linear layer + sigmoid) on standardised embeddings; metrics on held-out jets.

    Returns ``{auc, inv_bkg_eff_at_sig_eff {"0.5": ..}, inv_bkg_eff_lower_bound, n_train, n_test}`` on the test part
    (stratified split); with ``n_bootstrap`` > 0 also ``auc_std`` and ``inv_bkg_eff_std`` over bootstrap
    resamples of the test jets (the statistical error of the figures, not of the training).
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
    out = {"auc": m["auc"], "inv_bkg_eff_at_sig_eff": m["inv_bkg_eff_at_sig_eff"],
           "inv_bkg_eff_lower_bound": m["inv_bkg_eff_lower_bound"], "n_train": int(train.sum()),
           "n_test": int((~train).sum())}
    if n_bootstrap:
        bkg, sig = score[~test_y], score[test_y]
        draws = [point_metrics(rng.choice(bkg, len(bkg)), rng.choice(sig, len(sig)), fpr_targets=(1e-1,),
                               sig_eff_targets=tuple(sig_eff)) for _ in range(n_bootstrap)]
        out["auc_std"] = float(np.std([d["auc"] for d in draws]))
        out["inv_bkg_eff_std"] = {k: float(np.std([d["inv_bkg_eff_at_sig_eff"][k] for d in draws]))
                                  for k in m["inv_bkg_eff_at_sig_eff"]}
    return out


def lct_report(background: np.ndarray, signals: Mapping[str, np.ndarray], settings: LctSettings,
               seed: int = 0) -> dict:
    """The LCT of every signal's embeddings against the background embeddings (the ``lct`` section)."""
    rng = np.random.default_rng(seed)

    def cap(a: np.ndarray) -> np.ndarray:
        n = settings.max_jets_per_class
        return a if len(a) <= n else a[np.sort(rng.choice(len(a), size=n, replace=False))]

    bkg = cap(background)
    out = {}
    for name, emb in signals.items():
        sig = cap(emb)
        if len(sig) < 2 or len(bkg) < 2:
            continue  # a label too rare to split: nothing to measure
        x = np.concatenate([bkg, sig])
        y = np.concatenate([np.zeros(len(bkg), bool), np.ones(len(sig), bool)])
        out[name] = linear_classifier_test(x, y, settings.train_fraction, seed, settings.sig_eff_targets)
    return {"train_fraction": settings.train_fraction, "max_jets_per_class": settings.max_jets_per_class,
            "signals": out}

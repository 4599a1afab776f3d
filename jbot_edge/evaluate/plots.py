"""PNG figures of an evaluation (matplotlib, Agg backend: no display needed). Every number shown is also in
``evaluate.json``; the figures are for reading, the JSON for comparing.

Files written by :func:`write_all` (``SCORER`` = each evaluated scorer):

* ``roc_SCORER.png``: background rejection 1/ε_B vs signal efficiency ε_S, one curve per signal (log y)
* ``roc_all_scorers.png``: TPR vs FPR (log x) per signal, one panel per signal, one curve per scorer, plus dashed
  curves for the physics observables (``evaluate/observables.py``) and the untrained-encoder reference
* ``scores_SCORER.png``: score distributions per class (background and each signal), with trigger thresholds
* ``embedding_pca.png`` / ``embedding_tsne.png``: 2-D views of the frozen [CLS] coloured by class
* ``finetune.png``: test accuracy and AUC vs label fraction, fine-tuned vs from scratch
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def plot_rejection(path: Path, scorer: str, background: np.ndarray, signals: Mapping[str, np.ndarray]) -> Path:
    from jbot_edge.evaluate.metrics import roc_points

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for i, (name, sig) in enumerate(signals.items()):
        fpr, tpr = roc_points(background, sig)
        keep = fpr > 0  # 1/ε_B is unbounded where no background jet passes
        ax.plot(tpr[keep], 1.0 / fpr[keep], color=_COLORS[i % len(_COLORS)], label=f"{name} vs background")
    ax.plot([0, 1], [1, 1], ls=":", color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("signal efficiency ε_S")
    ax.set_ylabel("background rejection 1/ε_B")
    ax.set_title(f"anomaly score: {scorer}")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_roc_all(path: Path, background_by_scorer: Mapping[str, np.ndarray],
                 signals_by_scorer: Mapping[str, Mapping[str, np.ndarray]],
                 background_by_reference: Mapping[str, np.ndarray] | None = None,
                 signals_by_reference: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> Path:
    """Learned scorers as solid lines; references (physics observables, untrained encoder) dashed."""
    from jbot_edge.evaluate.metrics import roc_points

    plt = _pyplot()
    signal_names = list(next(iter(signals_by_scorer.values())))
    curves = [(scorer, bkg, signals_by_scorer[scorer], "-") for scorer, bkg in background_by_scorer.items()]
    curves += [(ref, bkg, (signals_by_reference or {})[ref], "--")
               for ref, bkg in (background_by_reference or {}).items()]
    fig, axes = plt.subplots(1, len(signal_names), figsize=(4.5 * len(signal_names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], signal_names):
        for i, (scorer, bkg, signals, style) in enumerate(curves):
            fpr, tpr = roc_points(bkg, signals[name])
            ax.plot(np.maximum(fpr, 1.0 / len(bkg) / 2), tpr, color=_COLORS[i % len(_COLORS)], ls=style,
                    label=scorer)
        x = np.logspace(-5, 0, 50)
        ax.plot(x, x, ls=":", color="k", lw=0.8, label="random")
        ax.set_xscale("log")
        ax.set_xlim(1e-4, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("background efficiency (FPR)")
        ax.set_ylabel(f"{name} efficiency (TPR)")
        ax.set_title(f"{name} vs background")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_score_distributions(path: Path, scorer: str, background: np.ndarray, signals: Mapping[str, np.ndarray],
                             thresholds: Mapping[str, float] | None = None) -> Path:
    """Per-class score histograms; ``thresholds`` maps a label (e.g. "3 kHz", with a trailing ``*`` when the rate
    is not resolved by the sample) to a trigger threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    everything = np.concatenate([background, *signals.values()])
    lo, hi = np.percentile(everything, [0.1, 99.9])
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
    ax.hist(np.clip(background, bins[0], bins[-1]), bins=bins, density=True, histtype="stepfilled", alpha=0.35,
            color="k", label="background")
    for i, (name, sig) in enumerate(signals.items()):
        ax.hist(np.clip(sig, bins[0], bins[-1]), bins=bins, density=True, histtype="step", lw=1.5,
                color=_COLORS[i % len(_COLORS)], label=name)
    # Budgets that land on the same threshold (e.g. all unresolved on a small sample) share one line.
    grouped: dict[float, list[str]] = {}
    for label, value in (thresholds or {}).items():
        grouped.setdefault(value, []).append(label)
    for j, (value, labels) in enumerate(sorted(grouped.items())):
        note = " (unresolved: max background)" if any(label.endswith("*") for label in labels) else ""
        ax.axvline(value, ls=("--", "-.", ":")[j % 3], lw=1.0, color="dimgray",
                   label=f"threshold at {', '.join(label.rstrip('*') for label in labels)}{note}")
    ax.set_yscale("log")
    ax.set_xlabel(f"{scorer} anomaly score (higher = more anomalous)")
    ax.set_title("score distributions (clipped to the 0.1-99.9 % range)", fontsize=9)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_embedding(path: Path, projection, class_names: list[str]) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, cls in enumerate(np.unique(projection.labels)):
        pts = projection.coordinates[projection.labels == cls]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, color=_COLORS[i % len(_COLORS)], label=class_names[cls])
    title = {"pca": "PCA", "tsne": "t-SNE"}[projection.method]
    if projection.method == "pca":
        ratios = projection.info["explained_variance_ratio"]
        ax.set_xlabel(f"PC 1 ({100 * ratios[0]:.0f} % of variance)")
        ax.set_ylabel(f"PC 2 ({100 * ratios[1]:.0f} % of variance)")
    else:
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    ax.set_title(f"frozen [CLS] embedding, {title}")
    ax.legend(markerscale=4)
    return _save(fig, path)


def plot_finetune(path: Path, finetune: dict) -> Path:
    plt = _pyplot()
    runs = finetune["runs"]
    fractions = [r["label_fraction"] for r in runs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, key, label in ((axes[0], "accuracy", "test accuracy"), (axes[1], "auc_macro_ovr", "test AUC (macro OvR)")):
        for arm, color, marker in (("finetune", "tab:blue", "o"), ("scratch", "tab:orange", "s")):
            ax.plot(fractions, [r[arm][key] for r in runs], marker=marker, color=color,
                    label="pre-trained, fine-tuned" if arm == "finetune" else "from scratch")
        ax.set_xscale("log")
        ax.set_xlabel("fraction of training labels used")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(f"fine-tuning vs from scratch ({', '.join(finetune['classes'])})")
    return _save(fig, path)

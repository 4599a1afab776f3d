"""Probes on the frozen [CLS]: how linearly (logistic regression) and locally (kNN classifier) the classes separate.

The probe data are the evaluation jets of every class, split once (stratified, seeded) into train and test halves.
Logistic regression sees standardised raw [CLS]; the kNN classifier sees L2-normalised [CLS] (cosine neighbours,
as jBOT's kNN scores). Accuracy is reported next to the majority-class rate so a reader can tell a probe from chance.
"""

from __future__ import annotations

import numpy as np

from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate.scores import l2_normalize


def stratified_split(labels: np.ndarray, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train/test indices with ``train_fraction`` of each class in train (at least one jet each side)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        if len(idx) < 2:
            raise JbotEdgeError(f"probes: class {int(cls)} has {len(idx)} evaluation jet(s); at least 2 are needed")
        n_train = min(max(1, int(round(train_fraction * len(idx)))), len(idx) - 1)
        train.append(idx[:n_train])
        test.append(idx[n_train:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _macro_auc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(classes) == 2:
        return float(roc_auc_score(y_true == classes[1], proba[:, 1]))
    return float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes))


def run_probes(embeddings: np.ndarray, labels: np.ndarray, train_fraction: float = 0.5, knn_k: int = 20,
               max_iter: int = 2000, seed: int = 0) -> dict:
    """Linear and kNN probe accuracy (and macro one-vs-rest AUC) on a held-out half of the jets."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    classes = np.unique(y)
    if len(classes) < 2:
        raise JbotEdgeError("probes need at least two classes among the evaluation jets")
    train, test = stratified_split(y, train_fraction, seed)
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter)).fit(x[train], y[train])
    k = min(knn_k, len(train))
    xn = l2_normalize(x)
    knn = KNeighborsClassifier(n_neighbors=k).fit(xn[train], y[train])
    majority = np.bincount(y[test]).max() / len(test)
    return {
        "n_train": int(len(train)), "n_test": int(len(test)), "n_classes": int(len(classes)),
        "majority_class_accuracy": float(majority),
        "linear": {"accuracy": float((linear.predict(x[test]) == y[test]).mean()),
                   "auc_macro_ovr": _macro_auc(y[test], linear.predict_proba(x[test]), classes)},
        "knn": {"k": int(k), "accuracy": float((knn.predict(xn[test]) == y[test]).mean()),
                "auc_macro_ovr": _macro_auc(y[test], knn.predict_proba(xn[test]), classes)},
    }

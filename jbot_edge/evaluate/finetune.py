"""Supervised fine-tuning of the pre-trained backbone vs the identical model trained from scratch.

The jBOT (and Kishimoto et al.) claim under test: starting from the self-supervised teacher helps most when labels
are scarce. Both arms use the same classifier, ``backbone → [CLS] → Linear(d, 2d) → GELU → Dropout → Linear(2d, d)
→ GELU → Dropout → Linear(d, classes)`` (dropout 0.2 as in the reference), the same optimiser (AdamW, cosine decay
after a short warm-up), the same steps and the same data; they differ only in the backbone's initial weights:

* ``finetune``: the teacher's weights, with layer-wise learning-rate decay: the head gets ``lr``, the last
  transformer block ``lr·decay``, ..., the token embedding / [CLS] / mask token ``lr·decay^(L+1)``
  (reference decay ~0.65-0.8), so the pre-trained early layers move least;
* ``scratch``: the same architecture freshly initialised (:meth:`Teacher.fresh_encoder
  <jbot_edge.pretrain.artifact.Teacher.fresh_encoder>`, any method of :mod:`jbot_edge.models.registry`), with
  ``scratch_layer_decay`` (default 1: every layer learns at ``lr``, the fair setting for random weights).

Encoders without ``blocks`` (the VAE) are one layer group below the head.

Each label fraction (1 %, 10 %, 100 % of the training split, stratified) trains for ``epochs`` passes over its
subset but at least ``min_steps`` optimiser steps, so that the 1 % arm is not starved of updates. Accuracy and
macro one-vs-rest AUC are measured on the same held-out test split for every run.

Binary fine-tuning (``finetune.signal_labels``: those labels vs ``data.background``, Kishimoto et al.'s event
classification with few labels) uses the same classifier with two classes. The fine-tuned classifier of the
largest label fraction is saved as ``EVAL_DIR/finetuned.pt`` (:func:`save_classifier`; schema below) and
reloaded with :func:`load_classifier`::

    {"format": "jbot-edge.finetuned", "version": 1, "method": <teacher method>, "model_config": {...},
     "input_spec": {...}, "class_names": [...], "dropout": p, "label_fraction": f, "test_metrics": {...},
     "state_dict": {...}}      # JetClassifier weights: encoder.* (the method's encoder) + head.*
"""

from __future__ import annotations

import math
import re
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import get_logger, progress_bar
from jbot_edge.models.classifier import JetClassifier

log = get_logger(__name__)


_BLOCK_PARAM = re.compile(r"^encoder\.blocks\.(\d+)\.")


def layer_id(param_name: str, n_layers: int) -> int:
    """0 for the input embedding and special tokens, i+1 for transformer block i, L+1 for the head."""
    match = _BLOCK_PARAM.match(param_name)
    if match:
        return int(match.group(1)) + 1
    if param_name.startswith("encoder."):
        return 0 if param_name.split(".")[1] in ("embed", "cls_token", "mask_token") else n_layers
    return n_layers + 1


def layer_decay_groups(model: JetClassifier, lr: float, decay: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups with lr · decay^(L+1-layer) (biases, norms and tokens without weight decay)."""
    n_layers = len(getattr(model.encoder, "blocks", ()))
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lid = layer_id(name, n_layers)
        no_decay = param.ndim < 2 or name.endswith("_token")
        key = (lid, no_decay)
        if key not in groups:
            scale = decay ** (n_layers + 1 - lid)
            groups[key] = {"params": [], "lr": lr * scale, "base_lr": lr * scale,
                           "weight_decay": 0.0 if no_decay else weight_decay, "layer": lid}
        groups[key]["params"].append(param)
    return list(groups.values())


@dataclass
class FinetuneData:
    x_train: np.ndarray
    mask_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    mask_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


def stratified_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``fraction`` of each class (at least one jet per class)."""
    rng = np.random.default_rng(seed)
    keep = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        keep.append(rng.choice(idx, size=max(1, int(round(fraction * len(idx)))), replace=False))
    return np.sort(np.concatenate(keep))


@torch.no_grad()
def _predict(model: nn.Module, x: np.ndarray, mask: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    model.eval()
    out = []
    for lo in range(0, len(x), batch_size):
        logits = model(torch.from_numpy(x[lo:lo + batch_size]), torch.from_numpy(mask[lo:lo + batch_size]))
        out.append(torch.softmax(logits.float(), dim=1).numpy())
    return np.concatenate(out).astype(np.float64)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    n_classes = proba.shape[1]
    accuracy = float((proba.argmax(axis=1) == y_true).mean())
    if n_classes == 2:
        auc = roc_auc_score(y_true, proba[:, 1])
    else:
        auc = roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=np.arange(n_classes))
    return {"accuracy": accuracy, "auc_macro_ovr": float(auc)}


def train_classifier(model: JetClassifier, data: FinetuneData, subset: np.ndarray, *, lr: float, layer_decay: float,
                     weight_decay: float, epochs: int, min_steps: int, batch_size: int, warmup_fraction: float,
                     seed: int, history_points: int = 8, progress=None, task=None) -> dict:
    """Train on ``data.x_train[subset]``; return final test metrics and the per-epoch test accuracy."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(layer_decay_groups(model, lr, layer_decay, weight_decay))
    n = len(subset)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = max(epochs * steps_per_epoch, min_steps)
    warmup = max(1, int(warmup_fraction * total_steps))
    x = torch.from_numpy(data.x_train[subset])
    m = torch.from_numpy(data.mask_train[subset])
    y = torch.from_numpy(data.y_train[subset]).long()
    loss_fn = nn.CrossEntropyLoss()
    # Test-set checkpoints for the learning curve: about ``history_points`` of them whatever the epoch count.
    total_epochs = math.ceil(total_steps / steps_per_epoch)
    eval_every = max(1, total_epochs // history_points)
    history = []
    step = epoch = 0
    while step < total_steps:
        model.train()
        order = torch.randperm(n, generator=generator)
        for lo in range(0, n, batch_size):
            if step >= total_steps:
                break
            factor = (step + 1) / warmup if step < warmup else \
                0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            idx = order[lo:lo + batch_size]
            loss = loss_fn(model(x[idx], m[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if progress is not None:
                progress.advance(task)
        epoch += 1
        if not math.isfinite(loss.item()):
            raise JbotEdgeError(f"fine-tuning diverged (loss {loss.item()}); lower finetune.lr (now {lr})")
        if epoch % eval_every and step < total_steps:
            continue
        proba = _predict(model, data.x_test, data.mask_test)
        history.append({"epoch": epoch, "step": step, **classification_metrics(data.y_test, proba)})
    return {"n_train": int(n), "steps": int(total_steps), "final_train_loss": float(loss.item()),
            **history[-1], "history": history}


def finetune_vs_scratch(teacher, data: FinetuneData, fractions: Sequence[float], *, lr: float, layer_decay: float,
                        scratch_layer_decay: float, weight_decay: float, epochs: int, min_steps: int,
                        batch_size: int, dropout: float, warmup_fraction: float, seed: int,
                        on_trained: Callable[[float, str, JetClassifier, dict], None] | None = None) -> dict:
    """For each label fraction: train the fine-tuned and the from-scratch classifier, report test metrics.

    ``on_trained(fraction, arm, model, metrics)`` is called after each training (e.g. to keep a model)."""
    n_classes = len(data.class_names)
    plans = []
    for fraction in fractions:
        subset = stratified_fraction(data.y_train, fraction, seed)
        steps = max(epochs * math.ceil(len(subset) / batch_size), min_steps)
        plans.append((fraction, subset, steps))
    rows = []
    with progress_bar() as progress:
        task = progress.add_task("fine-tune vs scratch", total=2 * sum(p[2] for p in plans))
        for fraction, subset, _ in plans:
            row = {"label_fraction": float(fraction)}
            for arm in ("finetune", "scratch"):
                torch.manual_seed(seed)  # same head initialisation and dropout stream in both arms
                if arm == "finetune":
                    encoder, decay = teacher.fine_tunable(), layer_decay
                else:
                    encoder, decay = teacher.fresh_encoder(), scratch_layer_decay
                model = JetClassifier(encoder, n_classes, dropout)
                row[arm] = train_classifier(model, data, subset, lr=lr, layer_decay=decay, weight_decay=weight_decay,
                                            epochs=epochs, min_steps=min_steps, batch_size=batch_size,
                                            warmup_fraction=warmup_fraction, seed=seed, progress=progress, task=task)
                if on_trained is not None:
                    on_trained(float(fraction), arm, model, row[arm])
            log.info("label fraction %g: fine-tune accuracy %.3f AUC %.3f | scratch accuracy %.3f AUC %.3f",
                     fraction, row["finetune"]["accuracy"], row["finetune"]["auc_macro_ovr"],
                     row["scratch"]["accuracy"], row["scratch"]["auc_macro_ovr"])
            rows.append(row)
    return {"classes": data.class_names, "n_train_total": int(len(data.y_train)), "n_test": int(len(data.y_test)),
            "layer_decay": layer_decay, "scratch_layer_decay": scratch_layer_decay, "lr": lr, "epochs": epochs,
            "min_steps": min_steps, "batch_size": batch_size, "runs": rows}


FINETUNED_FORMAT = "jbot-edge.finetuned"
FINETUNED_VERSION = 1
FINETUNED_FILE = "finetuned.pt"


def save_classifier(path: str | os.PathLike[str], model: JetClassifier, teacher, class_names: Sequence[str],
                    dropout: float, label_fraction: float, test_metrics: dict) -> Path:
    """Write a fine-tuned classifier atomically (loadable with ``torch.load(weights_only=True)``)."""
    from jbot_edge.atomic import atomic_path

    payload = {"format": FINETUNED_FORMAT, "version": FINETUNED_VERSION, "method": teacher.method,
               "model_config": dict(teacher.model_config), "input_spec": teacher.input_spec.model_dump(mode="json"),
               "class_names": list(class_names), "dropout": float(dropout), "label_fraction": float(label_fraction),
               "test_metrics": {k: v for k, v in test_metrics.items() if k in ("accuracy", "auc_macro_ovr")},
               "state_dict": {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_classifier(path: str | os.PathLike[str]) -> tuple[JetClassifier, Any, list[str]]:
    """(classifier in eval mode, its InputSpec, class names) from :func:`save_classifier`'s file."""
    from jbot_edge.data.preprocessing import InputSpec
    from jbot_edge.models.registry import build_teacher_encoder

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # missing or not a torch file: one line
        raise JbotEdgeError(f"fine-tuned classifier {path} cannot be read ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FINETUNED_FORMAT:
        raise JbotEdgeError(f"{path}: not a {FINETUNED_FORMAT} file")
    encoder = build_teacher_encoder(payload["method"], payload["model_config"])
    model = JetClassifier(encoder, len(payload["class_names"]), payload["dropout"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), InputSpec.model_validate(payload["input_spec"]), list(payload["class_names"])

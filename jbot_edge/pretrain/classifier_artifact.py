"""``RUN_DIR/classifier.pt``: a classifier head on top of the run's ``teacher.pt`` backbone (imported published
fine-tuned models; see :mod:`jbot_edge.pretrain.keras_import`).

Schema (``torch.load(weights_only=True)``; plain types and tensors)::

    {"format": "jbot-edge.classifier", "version": 1,
     "head": "jbot-mlp",                  # JetClassifier.head: d → 2d → d → classes, GELU; logits
     "classes": ["q", "g", ...],          # one name per output, in output order
     "state_dict": {...},                 # JetClassifier.head weights, float32
     "source": {...}}                     # where the weights came from (informational)

Usage::

    model, classes = load_classifier(run_dir)     # JetClassifier (eval mode) on the run's teacher backbone
    proba = torch.softmax(model(x, mask), dim=1)  # x, mask built with the teacher's input spec
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from jbot_edge.artifact_schemas import read_torch_artifact
from jbot_edge.atomic import atomic_path
from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.classifier import JetClassifier
from jbot_edge.pretrain.artifact import load_teacher

CLASSIFIER_FORMAT = "jbot-edge.classifier"
CLASSIFIER_VERSION = 1
CLASSIFIER_FILE = "classifier.pt"


def classifier_payload(model: JetClassifier, classes: list[str], source: Mapping[str, Any]) -> dict[str, Any]:
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.head.state_dict().items()}
    return {"format": CLASSIFIER_FORMAT, "version": CLASSIFIER_VERSION, "head": "jbot-mlp",
            "classes": list(classes), "state_dict": state, "source": dict(source)}


def save_classifier(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write a payload from :func:`classifier_payload` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return path


def load_classifier(run_dir: str | os.PathLike[str]) -> tuple[JetClassifier, list[str]]:
    """The run's teacher backbone with its classifier head (eval mode), and the class names in output order."""
    run_dir = Path(run_dir)
    path = run_dir / CLASSIFIER_FILE
    if not path.is_file():
        raise JbotEdgeError(f"{path} does not exist (import a fine-tuned model with `jbot-edge import --classifier`)")
    payload = read_torch_artifact(path, "a jbot-edge classifier.pt")
    if not isinstance(payload, dict) or payload.get("format") != CLASSIFIER_FORMAT:
        raise JbotEdgeError(f"{path}: not a {CLASSIFIER_FORMAT!r} file")
    if payload.get("version") != CLASSIFIER_VERSION:
        raise JbotEdgeError(f"{path}: classifier version {payload.get('version')} unsupported "
                            f"(expected {CLASSIFIER_VERSION})")
    classes = list(payload["classes"])
    model = JetClassifier(load_teacher(run_dir).encoder, len(classes))
    try:
        model.head.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise JbotEdgeError(f"{path}: head weights do not fit the teacher backbone ({exc})".splitlines()[0]) from exc
    return model.eval().requires_grad_(False), classes

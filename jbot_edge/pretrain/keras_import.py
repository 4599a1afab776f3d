"""``jbot-edge import --from jbot-keras``: a published jBOT Keras model → a normal jbot-edge run directory.

Writes, atomically (the directory appears complete or not at all)::

    RUN_DIR/teacher.pt      the backbone as a jbot-edge teacher (pretrain/artifact.py schema): model_config with
                            the published forward pass (padding_mask false, input_norm none, layer_norm_eps 1e-6,
                            head_dim = Keras key_dim), input spec = the JetNet 4-feature layout
                            (part_deta, part_dphi, part_pt_rel, mask) × n_particles, data preset "jetnet"
    RUN_DIR/classifier.pt   only with a classifier head (``*_mlp_*``): see pretrain/classifier_artifact.py
    RUN_DIR/summary.json    method, source files (+ sha256), architecture, parameter count, input spec, data
    RUN_DIR/config.yaml     the resolved :class:`ImportConfig`

so that ``evaluate``, ``qat``, ``sweep`` and ``report`` take it like a run of ``jbot-edge pretrain``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from jbot_edge.atomic import atomic_directory, write_json
from jbot_edge.config import StrictModel, save_config
from jbot_edge.data.preprocessing import JBOT_FEATURES, InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.keras_weights import keras_classifier, read_keras_backbone, read_keras_classifier_head
from jbot_edge.models.transformer import ModelConfig, model_config_dict
from jbot_edge.outputs import check_output_dir, mark_output
from jbot_edge.pretrain.artifact import TEACHER_FILE, save_teacher, teacher_payload
from jbot_edge.pretrain.classifier_artifact import CLASSIFIER_FILE, classifier_payload, save_classifier

#: Training classes encoded in the published file names (``qg_backbone_pretrain_32_4_2.weights.h5``, ...).
PUBLISHED_TRAIN_LABELS = {"qg": ["q", "g"], "tqg": ["t", "q", "g"], "all": ["q", "g", "w", "z", "t"]}
#: Output order of the published classifier heads (``load_jetnet`` in the authors' utils_data.py: one-hot over
#: q, g, w, z, t; the t-vs-(q+g) heads output [not top, top]).
PUBLISHED_CLASSES = {5: ["q", "g", "w", "z", "t"], 2: ["qg", "t"]}
_PUBLISHED_NAME = re.compile(r"^(?P<labels>qg|tqg|all)_")


class ImportConfig(StrictModel):
    """Settings of ``jbot-edge import`` (written as ``RUN_DIR/config.yaml``)."""

    source_format: Literal["jbot-keras"] = "jbot-keras"
    weights: str
    classifier: str | None = Field(default=None, description="classifier head file (*_mlp_*) of a fine-tuned model")
    classes: list[str] | None = Field(default=None, description="class name per classifier output; default: the "
                                                                "published order for 5 (q,g,w,z,t) or 2 (qg,t) outputs")
    train_labels: list[str] | None = Field(default=None, description=(
        "labels the model was trained on (qat's default background); default: from the published file name "
        "(qg_, tqg_, all_)"))
    n_particles: int = Field(default=30, ge=1, le=512, description="particle slots fed to the model (JetNet: 30)")
    model: ModelConfig | None = Field(default=None, description="inferred from the weights (informational)")


def published_train_labels(weights: Path) -> list[str] | None:
    match = _PUBLISHED_NAME.match(weights.name)
    return list(PUBLISHED_TRAIN_LABELS[match.group("labels")]) if match else None


def _class_names(cfg: ImportConfig, n_outputs: int, path: str) -> list[str]:
    if cfg.classes is None:
        if n_outputs not in PUBLISHED_CLASSES:
            raise JbotEdgeError(f"{path}: classifier has {n_outputs} outputs; name them with --classes a,b,... "
                                "(the published heads have 5 or 2)")
        return list(PUBLISHED_CLASSES[n_outputs])
    if len(cfg.classes) != n_outputs or len(set(cfg.classes)) != n_outputs:
        raise JbotEdgeError(f"--classes {','.join(cfg.classes)}: expected {n_outputs} distinct names, one per "
                            f"output of {path}")
    return list(cfg.classes)


def _source(path: Path) -> dict[str, Any]:
    return {"file": str(path.resolve()), "name": path.name, "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def import_keras_run(cfg: ImportConfig, out_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """Import the weights named in ``cfg`` into ``out_dir`` (new or empty; ``force`` replaces it as a whole);
    returns the summary (also written to ``out_dir/summary.json``)."""
    out_dir = check_output_dir(out_dir, "import", inputs=[cfg.weights, cfg.classifier], force=force)
    # An earlier import is replaced only with --force too: evaluate and qat write their outputs into the run.
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise JbotEdgeError(f"--out {out_dir}: already exists and is not an empty directory; choose a new run "
                            "directory or pass --force to replace it")
    weights = Path(cfg.weights)
    backbone = read_keras_backbone(weights)
    if backbone.in_features != len(JBOT_FEATURES):
        raise JbotEdgeError(f"{weights}: the token embedding takes {backbone.in_features} features per particle, "
                            f"expected {len(JBOT_FEATURES)} (the JetNet layout {', '.join(JBOT_FEATURES)})")
    train_labels = cfg.train_labels or published_train_labels(weights)
    cfg = cfg.model_copy(update={"model": backbone.config, "train_labels": train_labels})
    spec = InputSpec(features=list(JBOT_FEATURES), n_particles=cfg.n_particles)
    source = {"format": cfg.source_format, "weights": _source(weights)}

    classifier = classes = None
    if cfg.classifier is not None:
        head = read_keras_classifier_head(cfg.classifier, backbone.config.embed_dim)
        classes = _class_names(cfg, int(head["6.bias"].shape[0]), cfg.classifier)
        classifier = keras_classifier(backbone, head)
        cfg = cfg.model_copy(update={"classes": classes})
        source["classifier"] = _source(Path(cfg.classifier))

    encoder = backbone.encoder()
    data = {"preset": "jetnet", "file": None, "train_labels": train_labels}
    payload = teacher_payload(encoder, model_config_dict(backbone.config, backbone.in_features), spec, data=data,
                              training={"imported_from": source})
    summary = {
        "method": "jbot",
        "imported_from": source,
        "architecture": {"d_model": backbone.config.embed_dim, "heads": backbone.config.num_heads,
                         "key_dim": backbone.config.head_dim, "layers": backbone.config.num_layers,
                         "ffn_ratio": backbone.config.ffn_ratio},
        "parameters": {"backbone": sum(v.numel() for k, v in backbone.state_dict.items() if k != "mask_token")},
        "input_spec": spec.model_dump(mode="json"),
        "data": data,
        "classes": classes,
        "artifacts": {"teacher": TEACHER_FILE, "config": "config.yaml",
                      **({"classifier": CLASSIFIER_FILE} if classifier is not None else {})},
    }
    with atomic_directory(out_dir) as tmp:
        save_teacher(tmp / TEACHER_FILE, payload)
        if classifier is not None:
            save_classifier(tmp / CLASSIFIER_FILE, classifier_payload(classifier, classes, source))
        write_json(tmp / "summary.json", summary)
        save_config(cfg, tmp / "config.yaml")
        mark_output(tmp, "import")
    return summary

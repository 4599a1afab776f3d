"""Import every published jBOT Keras file of a folder and compare with the authors' Keras model.

For each ``*_backbone_*.weights.h5`` (and its ``*_mlp_*`` head where one exists, same prefix/suffix): import with
h5py only (``jbot_edge.pretrain.keras_import``), then — when TensorFlow is importable (``jbot-edge[keras]``) —
rebuild the model in Keras (``jbot_edge.models.keras_reference``), load the same file and report the largest
absolute difference of [CLS], particle outputs and class probabilities on the jets given. Prints one JSON object.

    python benchmarks/keras_published.py --models PATH/TO/jbot/models --data JETS.h5 [--n 512]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

_NAME = re.compile(r"^(?P<prefix>\w+?)_backbone_(?P<kind>[a-z]+)_(?P<size>\d+_\d+_\d+)(?P<suffix>_\w+)?\.weights\.h5$")


def _inputs(data: Path, n: int) -> np.ndarray:
    from jbot_edge.data.preprocessing import InputSpec, build_inputs
    from jbot_edge.data.reader import JetFile

    with JetFile(data) as jets:
        index = np.linspace(0, jets.n_jets - 1, min(n, jets.n_jets)).astype(int)
        x, _ = build_inputs(jets.read(index), InputSpec())
    return x


def _head_for(backbone: Path) -> Path | None:
    match = _NAME.match(backbone.name)
    if match is None:
        return None
    head = backbone.with_name(f"{match['prefix']}_mlp_{match['kind']}_{match['size']}{match['suffix'] or ''}"
                              ".weights.h5")
    return head if head.is_file() else None


def _check(backbone: Path, x: np.ndarray, work: Path, with_keras: bool) -> dict:
    from jbot_edge.pretrain.artifact import load_teacher
    from jbot_edge.pretrain.classifier_artifact import load_classifier
    from jbot_edge.pretrain.keras_import import ImportConfig, import_keras_run

    head = _head_for(backbone)
    run = work / backbone.name
    started = time.perf_counter()
    summary = import_keras_run(ImportConfig(weights=str(backbone), classifier=None if head is None else str(head)),
                               run)
    row = {"file": backbone.name, "classifier": None if head is None else head.name,
           "architecture": summary["architecture"], "parameters": summary["parameters"]["backbone"],
           "train_labels": summary["data"]["train_labels"], "import_s": round(time.perf_counter() - started, 3)}
    xt, mask = torch.from_numpy(x), torch.from_numpy(x[..., 3] > 0)
    with torch.no_grad():
        cls, particles = (t.numpy() for t in load_teacher(run).encoder(xt, mask))
        proba = None
        if head is not None:
            model, _ = load_classifier(run)
            proba = torch.softmax(model(xt, mask), dim=1).numpy()
    if not with_keras:
        return row
    from jbot_edge.models.keras_reference import keras_backbone, keras_classifier_head

    arch = summary["architecture"]
    keras_model = keras_backbone(arch["d_model"], arch["heads"], arch["layers"], n_particles=x.shape[1])
    keras_model.load_weights(backbone)
    keras_cls, keras_particles = (t.numpy() for t in keras_model(x, training=False))
    row["max_abs_diff"] = {"cls": float(np.abs(cls - keras_cls).max()),
                           "particles": float(np.abs(particles - keras_particles).max())}
    if head is not None:
        mlp = keras_classifier_head(arch["d_model"], proba.shape[1])
        mlp.load_weights(head)
        row["max_abs_diff"]["proba"] = float(np.abs(proba - mlp(keras_cls, training=False).numpy()).max())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="folder with the published *.weights.h5 files")
    parser.add_argument("--data", type=Path, required=True, help="canonical jet file (jetnet preset or converted)")
    parser.add_argument("--n", type=int, default=512, help="jets compared per model")
    args = parser.parse_args()
    try:
        import tensorflow  # noqa: F401

        with_keras = True
    except ImportError:
        with_keras = False
    x = _inputs(args.data, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [_check(path, x, Path(tmp), with_keras) for path in sorted(args.models.glob("*_backbone_*.weights.h5"))]
    worst = {key: max(r["max_abs_diff"].get(key, 0.0) for r in rows) for key in ("cls", "particles", "proba")} \
        if with_keras and rows else None
    print(json.dumps({"settings": {"models": str(args.models), "data": str(args.data), "n_jets": len(x),
                                   "keras": with_keras}, "worst_max_abs_diff": worst, "models": rows}, indent=2))


if __name__ == "__main__":
    main()

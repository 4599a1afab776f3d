"""Optional cross-check against Keras itself (``pip install 'jbot-edge[keras]'``): the authors' model rebuilt in
Keras (:mod:`jbot_edge.models.keras_reference`) loads the published file, or writes weights of other sizes itself;
the h5py-only import must give the same outputs on generated jets (≤ 1e-5, float32).

Skipped cleanly when TensorFlow is not importable (the core install and CI are TensorFlow-free).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from keras_layout import REFERENCE_WEIGHTS

pytest.importorskip("tensorflow", reason="TensorFlow not installed (optional: pip install 'jbot-edge[keras]')")
ATOL = 1e-5


@pytest.fixture(scope="module")
def generated_inputs(jetnet_file) -> np.ndarray:
    from jbot_edge.data.preprocessing import InputSpec, build_inputs
    from jbot_edge.data.reader import JetFile

    with JetFile(jetnet_file) as jets:
        x, _ = build_inputs(jets.read(np.arange(0, jets.n_jets, 6)), InputSpec())
    return x


def _randomise(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])


def _import_and_compare(model, weights, x, run, classifier=None) -> np.ndarray:
    """Import ``weights`` (h5py only) and compare both outputs with the Keras model; returns Keras' [CLS]."""
    from jbot_edge.pretrain.artifact import load_teacher
    from jbot_edge.pretrain.keras_import import ImportConfig, import_keras_run

    import_keras_run(ImportConfig(weights=str(weights), classifier=None if classifier is None else str(classifier)),
                     run)
    keras_cls, keras_particles = (t.numpy() for t in model(x, training=False))
    with torch.no_grad():
        cls, particles = load_teacher(run).encoder(torch.from_numpy(x), torch.from_numpy(x[..., 3] > 0))
    assert np.abs(cls.numpy() - keras_cls).max() <= ATOL
    assert np.abs(particles.numpy() - keras_particles).max() <= ATOL
    return keras_cls


@pytest.mark.skipif(not REFERENCE_WEIGHTS.is_file(), reason="shared reference folder absent")
def test_published_backbone_matches_keras(generated_inputs, tmp_path):
    from jbot_edge.models.keras_reference import keras_backbone

    model = keras_backbone(32, 4, 2)
    model.load_weights(REFERENCE_WEIGHTS)
    _import_and_compare(model, REFERENCE_WEIGHTS, generated_inputs, tmp_path / "run")


@pytest.mark.parametrize("d_model,n_heads,n_layers", [(64, 6, 4), (24, 3, 3)])
def test_keras_written_weights_and_classifier_match(d_model, n_heads, n_layers, generated_inputs, tmp_path):
    from jbot_edge.models.keras_reference import keras_backbone, keras_classifier_head
    from jbot_edge.pretrain.classifier_artifact import load_classifier

    backbone, mlp = keras_backbone(d_model, n_heads, n_layers), keras_classifier_head(d_model, 5)
    _randomise(backbone, 0)
    _randomise(mlp, 1)
    weights = tmp_path / f"all_backbone_ft_{d_model}_{n_heads}_{n_layers}.weights.h5"
    head = tmp_path / f"all_mlp_ft_{d_model}_{n_heads}_{n_layers}.weights.h5"
    backbone.save_weights(weights)
    mlp.save_weights(head)
    cls = _import_and_compare(backbone, weights, generated_inputs, tmp_path / "run", classifier=head)

    model, classes = load_classifier(tmp_path / "run")
    assert classes == ["q", "g", "w", "z", "t"]
    with torch.no_grad():
        x = torch.from_numpy(generated_inputs)
        proba = torch.softmax(model(x, x[..., 3] > 0), dim=1).numpy()
    assert np.abs(proba - mlp(cls, training=False).numpy()).max() <= ATOL

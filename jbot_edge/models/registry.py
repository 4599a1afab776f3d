"""Teacher method name → encoder builder: the one place that rebuilds any teacher's encoder from ``teacher.pt``.

Every pre-training method (jBOT and the baselines) stores ``method`` and ``model_config`` in ``teacher.pt``;
:func:`build_teacher_encoder` turns them back into the ``nn.Module``. The encoder contract, which ``evaluate``
(embedding, scorers, probes, clustering, fine-tuning, trigger view, sculpting), ``qat`` and ``synth`` rely on:

* ``forward(x [B, P, F], mask [B, P] bool) -> (embedding [B, D], tokens [B, P, d])`` — ``d`` may be 0 (no
  per-particle tokens: the VAE and the MLP set encoder);
* ``embed_dim`` — ``D``;
* the module is the fine-tunable backbone: fine-tuning puts a classifier head on ``embedding`` and trains the whole
  module; parameters under ``blocks.<i>.`` get layer-wise learning-rate decay, the rest count as the input layer
  (``embed``, special tokens) or, for encoders without ``blocks``, as one layer group;
* optionally ``anomaly_scores(x, mask) -> {name: [B]}`` — the method's own per-jet scores (higher = more
  anomalous), listed in :data:`NATIVE_SCORES` (the VAE's input-space ``recon`` and latent-space ``kl``).

The model classes live in this package (:mod:`.transformer`, :mod:`.set_encoder`, :mod:`.vae`), so loading a
teacher never imports the training code of a method (``jbot_edge.baselines`` sits on top of the chain).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from jbot_edge.errors import JbotEdgeError


def _jbot(model_config: Mapping[str, Any]) -> nn.Module:
    from jbot_edge.models.transformer import build_encoder

    return build_encoder(model_config)


def _set_encoder(model_config: Mapping[str, Any]) -> nn.Module:
    from jbot_edge.models.set_encoder import build_set_encoder

    return build_set_encoder(model_config)


def _vae(model_config: Mapping[str, Any]) -> nn.Module:
    from jbot_edge.models.vae import build_vae

    return build_vae(model_config)


#: method → builder of its encoder from the ``model_config`` stored in ``teacher.pt``.
ENCODER_BUILDERS: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "jbot": _jbot, "jetclr": _set_encoder, "simclr": _set_encoder, "vicreg": _set_encoder, "supcon": _set_encoder,
    "vae": _vae, "oe-vae": _vae,
}
#: method → names of the per-jet scores its encoder computes itself (``anomaly_scores``).
NATIVE_SCORES: dict[str, tuple[str, ...]] = {"vae": ("recon", "kl"), "oe-vae": ("recon", "kl")}
TEACHER_METHODS = tuple(ENCODER_BUILDERS)


def build_teacher_encoder(method: str, model_config: Mapping[str, Any]) -> nn.Module:
    """A freshly initialised encoder of ``method`` (load the weights with ``load_state_dict``)."""
    if method not in ENCODER_BUILDERS:
        raise JbotEdgeError(f"teacher method {method!r} is unknown (expected one of {', '.join(TEACHER_METHODS)})")
    return ENCODER_BUILDERS[method](model_config)


def native_score_names(method: str) -> tuple[str, ...]:
    """The method's own anomaly scores (empty for methods scored in embedding space only)."""
    return NATIVE_SCORES.get(method, ())

"""Test helpers for the published jBOT Keras layout: write weights files in that layout (h5py), and an independent
NumPy forward pass with the Keras semantics (einsum kernels, 1/sqrt(key_dim) scaling, post-LN eps 1e-6, erf GELU).

The forward pass works on the Keras-shaped kernels directly, so it shares nothing with the importer's reshapes.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from scipy.special import erf

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_KERAS = REPO_ROOT.parent / "shared" / "reference" / "jbot-keras"
REFERENCE_WEIGHTS = SHARED_KERAS / "qg_backbone_pretrain_32_4_2.weights.h5"
REFERENCE_OUTPUTS = SHARED_KERAS / "jbot_keras_32_4_2_reference.h5"


def block_name(i: int) -> str:
    return "transformer_block" if i == 0 else f"transformer_block_{i}"


def random_backbone(d: int, heads: int, key_dim: int, layers: int, ffn: int, in_features: int = 4,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Keras variable name (``layers/<layer>/vars/<i>``) → random float32 value, in the published layout."""
    rng = np.random.default_rng(seed)

    def r(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.normal(0, scale, shape)).astype(np.float32)

    w = {"layers/dense/vars/0": r(in_features, d), "layers/dense/vars/1": r(d),
         "layers/add_cls_token/vars/0": r(1, 1, d)}
    for i in range(layers):
        b = f"layers/{block_name(i)}"
        for name in ("query_dense", "key_dense", "value_dense"):
            w[f"{b}/mha/{name}/vars/0"] = r(d, heads, key_dim)
            w[f"{b}/mha/{name}/vars/1"] = r(heads, key_dim)
        w[f"{b}/mha/output_dense/vars/0"] = r(heads, key_dim, d)
        w[f"{b}/mha/output_dense/vars/1"] = r(d)
        for ln in ("ln1", "ln2"):
            w[f"{b}/{ln}/vars/0"] = 1 + r(d, scale=0.1)
            w[f"{b}/{ln}/vars/1"] = r(d, scale=0.1)
        w[f"{b}/ffn/layers/dense/vars/0"] = r(d, ffn)
        w[f"{b}/ffn/layers/dense/vars/1"] = r(ffn)
        w[f"{b}/ffn/layers/dense_1/vars/0"] = r(ffn, d)
        w[f"{b}/ffn/layers/dense_1/vars/1"] = r(d)
    return w


def random_classifier_head(d: int, n_classes: int, seed: int = 1) -> dict[str, np.ndarray]:
    """The authors' ``build_mlp(d, n_classes)`` variables: Dense(2d) → Dense(d) → Dense(C)."""
    rng = np.random.default_rng(seed)
    w = {}
    for layer, (n_in, n_out) in {"dense": (d, 2 * d), "dense_1": (2 * d, d), "dense_2": (d, n_classes)}.items():
        w[f"layers/{layer}/vars/0"] = rng.normal(0, 0.3, (n_in, n_out)).astype(np.float32)
        w[f"layers/{layer}/vars/1"] = rng.normal(0, 0.1, (n_out,)).astype(np.float32)
    return w


def read_variables(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def write_variables(path: Path, variables: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as h5:
        for name, value in variables.items():
            h5.create_dataset(name, data=value)
    return path


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-6) * gamma + beta


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def keras_forward(w: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The published forward pass in float64: ``x [N, P, F]`` → ([CLS] [N, d], particles [N, P, d])."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    h = x.astype(np.float64) @ w["layers/dense/vars/0"] + w["layers/dense/vars/1"]
    cls = np.broadcast_to(w["layers/add_cls_token/vars/0"], (len(h), 1, h.shape[-1]))
    h = np.concatenate([cls, h], axis=1)
    i = 0
    while f"layers/{block_name(i)}/ln1/vars/0" in w:
        b = f"layers/{block_name(i)}"
        q, k, v = (np.einsum("bnd,dhk->bnhk", h, w[f"{b}/mha/{n}_dense/vars/0"]) + w[f"{b}/mha/{n}_dense/vars/1"]
                   for n in ("query", "key", "value"))
        scores = np.einsum("bqhk,bphk->bhqp", q / np.sqrt(q.shape[-1]), k)
        attn = np.exp(scores - scores.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        o = np.einsum("bhqp,bphk->bqhk", attn, v)
        o = np.einsum("bqhk,hkd->bqd", o, w[f"{b}/mha/output_dense/vars/0"]) + w[f"{b}/mha/output_dense/vars/1"]
        h = _layer_norm(h + o, w[f"{b}/ln1/vars/0"], w[f"{b}/ln1/vars/1"])
        f = _gelu(h @ w[f"{b}/ffn/layers/dense/vars/0"] + w[f"{b}/ffn/layers/dense/vars/1"])
        f = f @ w[f"{b}/ffn/layers/dense_1/vars/0"] + w[f"{b}/ffn/layers/dense_1/vars/1"]
        h = _layer_norm(h + f, w[f"{b}/ln2/vars/0"], w[f"{b}/ln2/vars/1"])
        i += 1
    return h[:, 0], h[:, 1:]


def keras_classifier_proba(head: dict[str, np.ndarray], cls: np.ndarray) -> np.ndarray:
    h = {k: v.astype(np.float64) for k, v in head.items()}
    z = _gelu(cls @ h["layers/dense/vars/0"] + h["layers/dense/vars/1"])
    z = _gelu(z @ h["layers/dense_1/vars/0"] + h["layers/dense_1/vars/1"])
    z = z @ h["layers/dense_2/vars/0"] + h["layers/dense_2/vars/1"]
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def jetnet_like_inputs(n: int, p: int = 30, seed: int = 0) -> np.ndarray:
    """Random jets in the JetNet layout (η_rel, φ_rel, pT_rel, mask), pT-ordered, zero-padded."""
    rng = np.random.default_rng(seed)
    n_real = rng.integers(3, p + 1, n)
    mask = np.arange(p)[None] < n_real[:, None]
    pt = -np.sort(-rng.lognormal(-4, 1.2, (n, p)), axis=1) * mask
    pt /= pt.sum(1, keepdims=True)
    x = np.stack([rng.normal(0, 0.15, (n, p)) * mask, rng.normal(0, 0.15, (n, p)) * mask, pt, mask], -1)
    return x.astype(np.float32)

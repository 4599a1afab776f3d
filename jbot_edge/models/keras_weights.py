"""Published jBOT Keras weights (Keras 3 ``*.weights.h5``) → jbot-edge modules, with h5py only (no TensorFlow).

The jBOT authors (github.com/hftsoi/jbot, ``models/``) publish backbones (``*_backbone_*``) and fine-tuned
classifier heads (``*_mlp_*``) saved with Keras 3 ``save_weights``. A backbone file holds::

    layers/dense/vars/{0,1}                   token embedding kernel [F, d], bias [d]
    layers/add_cls_token/vars/0               the [CLS] token [1, 1, d]
    layers/transformer_block{,_1,_2,...}/     one group per block, in order:
        mha/{query,key,value}_dense/vars/0    [d, heads, key_dim]    vars/1 [heads, key_dim]
        mha/output_dense/vars/0               [heads, key_dim, d]    vars/1 [d]
        ln1/vars/{0,1}, ln2/vars/{0,1}        LayerNorm gamma, beta [d]
        ffn/layers/dense/vars/{0,1}           [d, m], [m]            (GELU)
        ffn/layers/dense_1/vars/{0,1}         [m, d], [d]

Everything is read from the shapes: ``d`` (embedding), ``heads`` and ``key_dim`` (the 3-D attention kernels name
both, so nothing is ambiguous — ``heads · key_dim`` need not be ``d``: the published 64/6/4 models use
``key_dim = 64 // 6 = 10``), ``m = ffn_ratio · d``, and the number of blocks. The forward pass those weights
belong to (no attention mask, raw inputs, post-LN with epsilon 1e-6, exact GELU, [CLS] at position 0) is the
jbot-edge :class:`~jbot_edge.models.transformer.JetEncoder` with ``padding_mask=false``, ``input_norm=none``,
``layer_norm_eps=1e-6`` and ``head_dim=key_dim`` (:data:`KERAS_FORWARD`).

A classifier head file (``build_mlp`` in the authors' ``utils_model.py``) holds ``layers/dense`` [d, 2d],
``layers/dense_1`` [2d, d], ``layers/dense_2`` [d, C] (GELU, GELU, softmax), the head of
:class:`~jbot_edge.models.classifier.JetClassifier`.

Every file is checked completely: a missing or misshapen dataset, a gap in the block sequence, or weights that
belong to no part of the layout are refused with one line that names the dataset, what was expected and what was
found — a file of another architecture must not import silently as something else.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.classifier import JetClassifier
from jbot_edge.models.transformer import JetEncoder, ModelConfig

#: The settings of the published forward pass that are not in the weights (see the module docstring).
KERAS_FORWARD = {"padding_mask": False, "input_norm": "none", "layer_norm_eps": 1e-6, "dropout": 0.0}
_BLOCK = re.compile(r"^transformer_block(?:_(\d+))?$")
_ATTENTION = ("query_dense", "key_dense", "value_dense")


@dataclass(frozen=True)
class KerasBackbone:
    """A published backbone: the matching architecture and its weights as a ``JetEncoder`` state dict."""

    config: ModelConfig
    in_features: int
    state_dict: dict[str, torch.Tensor]

    def encoder(self) -> JetEncoder:
        encoder = JetEncoder(self.in_features, self.config)
        encoder.load_state_dict(self.state_dict, strict=True)
        return encoder.eval()


class _WeightsFile:
    """Reads named Keras variables and checks their shapes; remembers which datasets were used."""

    def __init__(self, path: Path, h5: h5py.File):
        self.path = path
        self.h5 = h5
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.h5

    def var(self, layer: str, index: int, shape: tuple[int, ...]) -> np.ndarray:
        """``layers/<layer>/vars/<index>``, which must have ``shape``; float32."""
        name = f"layers/{layer}/vars/{index}"
        if name not in self.h5 or not isinstance(self.h5[name], h5py.Dataset):
            raise JbotEdgeError(f"{self.path}: weight '{name}' missing (expected shape {list(shape)}); "
                                "the file is incomplete or not of the published jBOT layout")
        dataset = self.h5[name]
        if tuple(dataset.shape) != tuple(shape):
            raise JbotEdgeError(f"{self.path}: weight '{name}' has shape {list(dataset.shape)}, expected "
                                f"{list(shape)} (another architecture than {self._layout()})")
        try:
            value = np.asarray(dataset[()], dtype=np.float32)
        except (OSError, TypeError, ValueError) as exc:
            raise JbotEdgeError(f"{self.path}: weight '{name}' cannot be read as float32 "
                                f"({type(exc).__name__}; truncated or corrupt?)") from exc
        if not np.isfinite(value).all():
            raise JbotEdgeError(f"{self.path}: weight '{name}' holds NaN or infinite values")
        self.used.add(name)
        return value

    def shape(self, layer: str, index: int, ndim: int) -> tuple[int, ...]:
        """Shape of a variable whose sizes are still unknown (it is read and checked later with :meth:`var`)."""
        name = f"layers/{layer}/vars/{index}"
        if name not in self.h5 or not isinstance(self.h5[name], h5py.Dataset):
            raise JbotEdgeError(f"{self.path}: weight '{name}' missing; the file is incomplete or not of the "
                                f"published jBOT layout ({self._layout()})")
        shape = tuple(int(s) for s in self.h5[name].shape)
        if len(shape) != ndim:
            raise JbotEdgeError(f"{self.path}: weight '{name}' has shape {list(shape)}, expected {ndim} dimensions "
                                f"(another architecture than {self._layout()})")
        return shape

    def unused(self) -> list[str]:
        names: list[str] = []
        self.h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        return sorted(set(names) - self.used)

    def top_layers(self) -> list[str]:
        layers = self.h5.get("layers")
        return sorted(layers.keys()) if isinstance(layers, h5py.Group) else []

    def _layout(self) -> str:
        return "the jBOT backbone: layers/dense, layers/add_cls_token, layers/transformer_block…"


@contextmanager
def _open_weights(path: str | os.PathLike[str]) -> Iterator[_WeightsFile]:
    """Open a Keras 3 ``.weights.h5`` file, refusing Keras 2 full-model files and ``.keras`` archives by name."""
    path = Path(path)
    if not path.is_file():
        raise JbotEdgeError(f"weights file {path} does not exist")
    if zipfile.is_zipfile(path):
        raise JbotEdgeError(f"{path}: a zip archive (a Keras '.keras' model?), expected a Keras 3 '.weights.h5' "
                            "HDF5 file (extract model.weights.h5 from the archive)")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(")[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise JbotEdgeError(f"{path}: not a readable HDF5 file (truncated or corrupt? h5py: {reason}); expected a "
                            "Keras 3 '.weights.h5' file") from exc
    with h5:
        if "model_weights" in h5 or "keras_version" in h5.attrs or "model_config" in h5.attrs:
            version = h5.attrs.get("keras_version", "unknown")
            version = version.decode() if isinstance(version, bytes) else version
            raise JbotEdgeError(f"{path}: a Keras 2 full-model '.h5' file (model_weights/, keras_version "
                                f"{version}), expected a Keras 3 '.weights.h5' file (layers/...); load it in Keras "
                                "and re-save with model.save_weights('NAME.weights.h5')")
        if not isinstance(h5.get("layers"), h5py.Group):
            raise JbotEdgeError(f"{path}: no 'layers' group (found top-level keys {sorted(h5.keys())}), expected a "
                                "Keras 3 '.weights.h5' file")
        yield _WeightsFile(path, h5)


def _block_names(weights: _WeightsFile) -> list[str]:
    """``transformer_block``, ``transformer_block_1``, ... — contiguous, or an error naming the first gap."""
    indices = sorted(int(m.group(1) or 0) for m in map(_BLOCK.match, weights.top_layers()) if m)
    if not indices:
        raise JbotEdgeError(f"{weights.path}: no transformer block (expected layers/transformer_block, "
                            f"layers/transformer_block_1, ...; found layers {weights.top_layers()})")
    for expected, found in enumerate(indices):
        if found != expected:
            name = "transformer_block" if expected == 0 else f"transformer_block_{expected}"
            raise JbotEdgeError(f"{weights.path}: block 'layers/{name}' missing (the file has blocks "
                                f"{indices}; expected 0..{indices[-1]} without gaps)")
    return ["transformer_block" if i == 0 else f"transformer_block_{i}" for i in indices]


def _check_is_backbone(weights: _WeightsFile) -> None:
    layers = weights.top_layers()
    if "add_cls_token" not in layers and not any(map(_BLOCK.match, layers)):
        hint = (" — it looks like a classifier head (*_mlp_*): import it with its backbone, --classifier"
                if layers and all(name.startswith(("dense", "dropout", "input_layer")) for name in layers) else "")
        raise JbotEdgeError(f"{weights.path}: not a jBOT backbone (expected layers add_cls_token, dense, "
                            f"transformer_block...; found {layers}){hint}")


def _check_all_used(weights: _WeightsFile) -> None:
    extra = weights.unused()
    if extra:
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        raise JbotEdgeError(f"{weights.path}: weights {extra[:3]}{more} are not part of the jBOT layout "
                            "(another architecture?)")


def _block_state(weights: _WeightsFile, block: str, d: int, heads: int, key_dim: int, hidden: int,
                 prefix: str) -> dict[str, np.ndarray]:
    """One Keras transformer block → the state of a :class:`~jbot_edge.models.transformer.PostLNBlock`.

    Keras' einsum kernels are ``[d, heads, key_dim]`` (q, k, v) and ``[heads, key_dim, d]`` (output); the fused
    ``qkv`` Linear wants ``[3 · heads · key_dim, d]`` with rows ordered (q|k|v, head, channel) — the order its
    forward pass splits them in.
    """
    inner = heads * key_dim
    kernels = [weights.var(f"{block}/mha/{n}", 0, (d, heads, key_dim)).reshape(d, inner).T for n in _ATTENTION]
    biases = [weights.var(f"{block}/mha/{n}", 1, (heads, key_dim)).reshape(inner) for n in _ATTENTION]
    state = {
        "qkv.weight": np.concatenate(kernels, axis=0),
        "qkv.bias": np.concatenate(biases),
        "attn_out.weight": weights.var(f"{block}/mha/output_dense", 0, (heads, key_dim, d)).reshape(inner, d).T,
        "attn_out.bias": weights.var(f"{block}/mha/output_dense", 1, (d,)),
        "ffn.0.weight": weights.var(f"{block}/ffn/layers/dense", 0, (d, hidden)).T,
        "ffn.0.bias": weights.var(f"{block}/ffn/layers/dense", 1, (hidden,)),
        "ffn.2.weight": weights.var(f"{block}/ffn/layers/dense_1", 0, (hidden, d)).T,
        "ffn.2.bias": weights.var(f"{block}/ffn/layers/dense_1", 1, (d,)),
    }
    for keras_name, torch_name in (("ln1", "norm1"), ("ln2", "norm2")):
        state[f"{torch_name}.weight"] = weights.var(f"{block}/{keras_name}", 0, (d,))
        state[f"{torch_name}.bias"] = weights.var(f"{block}/{keras_name}", 1, (d,))
    return {f"{prefix}.{k}": v for k, v in state.items()}


def read_keras_backbone(path: str | os.PathLike[str], proj_dim: int = 16) -> KerasBackbone:
    """Read a published jBOT backbone and infer its architecture from the shapes.

    ``proj_dim`` only fills the (unused) projection-head size of the config: the files hold no projection head.
    """
    with _open_weights(path) as weights:
        _check_is_backbone(weights)
        in_features, d = weights.shape("dense", 0, ndim=2)
        blocks = _block_names(weights)
        _, heads, key_dim = weights.shape(f"{blocks[0]}/mha/query_dense", 0, ndim=3)
        hidden = weights.shape(f"{blocks[0]}/ffn/layers/dense", 0, ndim=2)[1]
        if hidden % d:
            raise JbotEdgeError(f"{weights.path}: FFN width {hidden} is not a multiple of d_model {d} "
                                "(another architecture than the jBOT FFN(k·d))")
        state = {
            "embed.weight": weights.var("dense", 0, (in_features, d)).T,
            "embed.bias": weights.var("dense", 1, (d,)),
            "cls_token": weights.var("add_cls_token", 0, (1, 1, d)),
            # Not in the file (the iBOT mask token only exists while training); zero keeps the import deterministic.
            "mask_token": np.zeros((1, 1, d), dtype=np.float32),
        }
        for i, block in enumerate(blocks):
            state.update(_block_state(weights, block, d, heads, key_dim, hidden, prefix=f"blocks.{i}"))
        _check_all_used(weights)
    config = ModelConfig(embed_dim=d, num_heads=heads, num_layers=len(blocks), ffn_ratio=hidden // d,
                         head_dim=key_dim, proj_dim=proj_dim, **KERAS_FORWARD)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}
    return KerasBackbone(config=config, in_features=in_features, state_dict=tensors)


def read_keras_classifier_head(path: str | os.PathLike[str], embed_dim: int) -> dict[str, torch.Tensor]:
    """Read a published classifier head (``*_mlp_*``: Dense(2d, GELU) → Dense(d, GELU) → Dense(C, softmax)) as the
    state dict of :attr:`JetClassifier.head`; the number of classes C comes from the last kernel."""
    d = embed_dim
    with _open_weights(path) as weights:
        layers = weights.top_layers()
        if "add_cls_token" in layers or any(map(_BLOCK.match, layers)):
            raise JbotEdgeError(f"{weights.path}: a backbone file, expected a classifier head (*_mlp_*: layers "
                                "dense, dense_1, dense_2)")
        first_in = weights.shape("dense", 0, ndim=2)[0]
        if first_in != d:
            raise JbotEdgeError(f"{weights.path}: classifier head takes {first_in} inputs, the backbone's d_model "
                                f"is {d} (head and backbone of different models?)")
        n_classes = weights.shape("dense_2", 0, ndim=2)[1]
        kernels = {0: ("dense", d, 2 * d), 3: ("dense_1", 2 * d, d), 6: ("dense_2", d, n_classes)}
        state: dict[str, np.ndarray] = {}
        for index, (layer, n_in, n_out) in kernels.items():
            state[f"{index}.weight"] = weights.var(layer, 0, (n_in, n_out)).T
            state[f"{index}.bias"] = weights.var(layer, 1, (n_out,))
        _check_all_used(weights)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def keras_classifier(backbone: KerasBackbone, head_state: dict[str, torch.Tensor]) -> JetClassifier:
    """The fine-tuned backbone with its published head (eval mode; ``softmax(model(x, mask))`` = Keras output)."""
    n_classes = int(head_state["6.bias"].shape[0])
    model = JetClassifier(backbone.encoder(), n_classes)
    model.head.load_state_dict(head_state, strict=True)
    return model.eval()

"""Brevitas student → QONNX graph, and batched QONNX execution (the second leg of the emulation harness).

Export uses ``brevitas.export.export_qonnx`` with the TorchScript exporter (``dynamo=False``: the dynamo exporter
emits a different op set that QONNX and hls4ml do not ingest). The graph is then prepared for hls4ml the way its
QONNX frontend expects: ``cleanup_model`` (shape inference, constant folding, unique names), channels-last
conversion (a no-op for our Linear-only students, kept so a future convolutional student is handled), ``Gemm`` →
``MatMul`` + ``Add`` and another cleanup. The file written is ``model.qonnx.onnx``.

Execution runs ``qonnx.core.onnx_exec.execute_onnx`` node by node on a copy of the graph whose batch dimension is
the chunk size and whose float tensors are **float64**: every fixed-point intermediate is then an exactly
represented number (float32's 24-bit mantissa is too short for e.g. a 26-bit accumulator plus a finer-grained
bias), so QONNX execution is an exact reference, not an approximation of one.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jbot_edge.atomic import atomic_path
from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.students import network_only

QONNX_FILENAME = "model.qonnx.onnx"


def prepare_for_hls4ml(model_wrapper):
    """cleanup → channels-last → Gemm→MatMul → cleanup (the preparation hls4ml's QONNX frontend documents)."""
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    model_wrapper = cleanup_model(model_wrapper)
    model_wrapper = model_wrapper.transform(ConvertToChannelsLastAndClean())
    model_wrapper = model_wrapper.transform(GemmToMatMul())
    return cleanup_model(model_wrapper)


def export_student(model: nn.Module, input_spec: L1InputSpec, path: str | os.PathLike[str]):
    """Export ``model`` to a QONNX file at ``path`` (atomically) and return the prepared ``ModelWrapper``."""
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper

    path = Path(path)
    model.eval()
    example = torch.zeros(1, input_spec.n_particles, input_spec.n_features)
    with atomic_path(path) as tmp:
        raw = tmp.with_name(tmp.name + ".raw.onnx")
        try:
            with network_only(model.float()) as network:  # a jet term is built beside the network, not in it
                export_qonnx(network, args=example, export_path=str(raw), dynamo=False)
            prepared = prepare_for_hls4ml(ModelWrapper(str(raw)))
        finally:
            raw.unlink(missing_ok=True)
        prepared.save(str(tmp))
    return prepared


def load_qonnx(path: str | os.PathLike[str]):
    from qonnx.core.modelwrapper import ModelWrapper

    path = Path(path)
    if not path.is_file():
        raise JbotEdgeError(f"QONNX graph {path} does not exist")
    try:
        return ModelWrapper(str(path))
    except Exception as exc:
        raise JbotEdgeError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc


def _as_float64(model_wrapper, batch_size: int):
    """Copy of the graph with batch dimension ``batch_size`` and every float tensor/initializer in float64."""
    from onnx import TensorProto, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    wrapped = ModelWrapper(copy.deepcopy(model_wrapper.model))
    wrapped = wrapped.transform(ChangeBatchSize(batch_size))
    graph = wrapped.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    # Constant nodes (e.g. reshape targets are int64, but scalar float constants may appear) follow the same rule.
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64)))
    return wrapped.transform(InferShapes())


class QonnxExecutor:
    """Runs a QONNX graph in float64 on batches of model inputs ``[N, P, F]`` → ``[N]`` outputs."""

    def __init__(self, model_wrapper, batch_size: int = 1024):
        self.model_wrapper = model_wrapper
        self.batch_size = int(batch_size)
        self._compiled: dict[int, object] = {}

    def _graph_for(self, n: int):
        if n not in self._compiled:
            self._compiled[n] = _as_float64(self.model_wrapper, n)
        return self._compiled[n]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from qonnx.core.onnx_exec import execute_onnx

        x = np.asarray(x, dtype=np.float64)
        out = np.empty(len(x), dtype=np.float64)
        for lo in range(0, len(x), self.batch_size):
            chunk = x[lo:lo + self.batch_size]
            graph = self._graph_for(len(chunk))
            in_name = graph.graph.input[0].name
            out_name = graph.graph.output[0].name
            result = execute_onnx(graph, {in_name: chunk})[out_name]
            out[lo:lo + len(chunk)] = np.asarray(result, dtype=np.float64).reshape(len(chunk))
        return out


def output_scale_from_graph(model_wrapper) -> float:
    """Scale of the Quant node producing the graph output (one output LSB), read from the graph itself."""
    out_name = model_wrapper.graph.output[0].name
    node = model_wrapper.find_producer(out_name)
    if node is None or node.op_type not in ("Quant", "IntQuant"):
        raise JbotEdgeError("QONNX graph output is not produced by a Quant node; cannot define an output LSB")
    scale = model_wrapper.get_initializer(node.input[1])
    if scale is None or np.size(scale) != 1:
        raise JbotEdgeError("QONNX output Quant node has no constant per-tensor scale")
    return float(np.asarray(scale).reshape(()))


def input_quant_from_graph(model_wrapper) -> dict[str, float | int | bool]:
    """Bit width, scale and signedness of the Quant node that consumes the graph input."""
    in_name = model_wrapper.graph.input[0].name
    consumers = model_wrapper.find_consumers(in_name) or []
    quants = [n for n in consumers if n.op_type in ("Quant", "IntQuant")]
    if len(quants) != 1 or len(consumers) != 1:
        raise JbotEdgeError("QONNX graph input must feed exactly one Quant node (the input quantizer)")
    node = quants[0]
    from qonnx.util.basic import get_by_name

    scale = float(np.asarray(model_wrapper.get_initializer(node.input[1])).reshape(()))
    bits = int(np.asarray(model_wrapper.get_initializer(node.input[3])).reshape(()))
    signed = bool(get_by_name(node.attribute, "signed").i)
    mode = get_by_name(node.attribute, "rounding_mode")
    rounding = mode.s.decode() if mode is not None else "ROUND"
    return {"bits": bits, "scale": scale, "signed": signed, "frac_bits": int(round(-np.log2(scale))),
            "rounding_mode": rounding}


def to_codes(values: np.ndarray, lsb: float) -> np.ndarray:
    """Float outputs → integers in units of ``lsb``; refuses values that are not exact multiples."""
    scaled = np.asarray(values, dtype=np.float64) / lsb
    codes = np.rint(scaled)
    if not np.array_equal(codes, scaled):
        worst = float(np.max(np.abs(codes - scaled)))
        raise JbotEdgeError(f"outputs are not multiples of the output LSB {lsb!r} (off by up to {worst} LSB)")
    return codes.astype(np.int64)

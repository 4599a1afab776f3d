"""Every workaround we apply to hls4ml, in one place, through hls4ml's own extension points.

Verified against **hls4ml 1.3.0** (pinned in pyproject.toml). Each fix has a test in ``tests/test_hls4ml_fixes.py``
that checks the upstream behaviour it works around still exists, so an hls4ml upgrade that changes it fails loudly
instead of silently mis-compiling a student. Call :func:`apply_fixes` before converting (idempotent).

Fix 1 — ``ReduceMean`` over particles (ONNX handler ``ReduceMean``).
    hls4ml 1.3.0 has no ONNX handler for ``ReduceMean``, which is what ``torch.mean(dim=1)`` of a Deep Sets student
    exports to. A mean over the particle axis of a ``[B, P, H]`` tensor is exactly hls4ml's channels-last
    ``GlobalAveragePooling1D`` (``n_in = P``, ``n_filt = H``), so the handler maps it there. Only that form is
    accepted (axes ``[1]``, ``keepdims=0``, rank-3 input); anything else raises with the reason. (The
    1×1-convolution + ``AdaptiveAvgPool1d`` alternative converts and compiles but averages over the wrong axis after
    QONNX's channels-last conversion — silently wrong — so we do not take that route.)

Fix 2 — constant ``axes`` input of ``ReduceMean`` (optimizer pass ``jbot_reduce_axes_constant``, flow
    ``parse_qonnx``). From opset 18, ``axes`` is an input tensor; it becomes an hls4ml ``Constant`` feeding the
    pooling layer. Like hls4ml's own ``reshape_constant`` for Reshape, the pass removes it (already used by Fix 1).

Fix 3 — ``MatMul`` with a constant on a multi-dimensional input (replaces ``matmul_const_to_dense`` in
    ``parse_qonnx`` with ``jbot_matmul_const_to_dense``). hls4ml's pass sets ``n_in = prod(input shape)`` and
    ``n_out = prod(output shape)`` (P·F and P·H instead of F and H for a per-particle layer on ``[P, F]``), keeps a
    zero bias of shape ``[P, H]`` so the following bias ``Add`` (as ``ApplyAlpha``) cannot be fused correctly, and the
    later ``replace_multidimensional_dense_with_conv`` pass rebuilds the layer as a convolution **without** the
    weight and bias quantizers (the float weights are then cast to the default precision). Our pass builds, for a
    rank-2 input ``[P, F]``, a channels-last pointwise ``Conv1D`` (``n_chan = F``, ``n_filt = H``, width ``P``) that
    keeps the weight quantizer, and fuses a following constant bias ``ApplyAlpha`` (scale 1, identical rows) into it
    with its bias quantizer. For a rank-1 input it defers to hls4ml's own pass unchanged.

Fix 4 — ``GlobalPooling1D`` accumulator and result precision (no pass: :func:`pooling_precisions`).
    hls4ml's ``infer_precision_types`` handles ``Pooling1D/2D`` but not ``GlobalPooling1D``, whose ``accum_t`` then
    falls back to the model default precision and overflows or truncates the mean. ``convert.py`` sets both from the
    pooled tensor's fixed-point type: integer bits ≥ input integer bits + log2 N + 1, fractional bits ≥ input
    fractional bits + log2 N (the sum of N values needs log2 N more integer bits; the division by N = 2^k needs k
    more fractional bits to stay exact).
"""

from __future__ import annotations

import math

import numpy as np

HLS4ML_VERSION = "1.3.0"
_applied = False


# -- Fix 1: ReduceMean → GlobalAveragePooling1D ------------------------------------------------------------------
def parse_reduce_mean_over_particles(node, input_names, input_shapes, graph):
    """ONNX ``ReduceMean`` over axis 1 of ``[B, P, H]`` → channels-last ``GlobalAveragePooling1D``."""
    from hls4ml.converters.onnx_to_hls import get_onnx_attribute

    shape = list(input_shapes[0])
    if len(shape) != 3:
        raise RuntimeError(f"{node.name}: ReduceMean is supported only on [batch, particles, features] inputs, "
                           f"got shape {shape}")
    axes = get_onnx_attribute(node, "axes")
    if axes is None and len(node.input) > 1:
        axes = _initializer_value(graph, node.input[1])
    axes = [int(a) % 3 for a in np.atleast_1d(axes if axes is not None else [])]
    keepdims = get_onnx_attribute(node, "keepdims", 1)
    if axes != [1] or keepdims:
        raise RuntimeError(f"{node.name}: only a mean over the particle axis (axes=[1], keepdims=0) maps to "
                           f"GlobalAveragePooling1D; got axes={axes}, keepdims={keepdims}")
    return {
        "name": node.name,
        "class_name": "GlobalAveragePooling1D",
        "data_format": "channels_last",
        "inputs": list(input_names),
        "outputs": list(node.output),
        "n_in": int(shape[1]),
        "n_filt": int(shape[2]),
    }


def _initializer_value(graph, name: str):
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


# -- optimizer passes (classes are created lazily: importing hls4ml is slow) --------------------------------------
def _make_passes():
    from hls4ml.model.layers import (
        ApplyAlpha,
        Constant,
        Conv1D,
        GlobalPooling1D,
    )
    from hls4ml.model.optimizer import OptimizerPass
    from hls4ml.model.optimizer.passes.matmul_const_to_dense import MatmulConstToDense

    class ReduceAxesConstant(OptimizerPass):
        """Fix 2: drop the constant ``axes`` input of a pooling layer made from ReduceMean."""

        def match(self, node):
            return (isinstance(node, GlobalPooling1D) and len(node.inputs) > 1
                    and isinstance(node.get_input_node(node.inputs[1]), Constant))

        def transform(self, model, node):
            axes_node = node.get_input_node(node.inputs[1])
            del node.inputs[1:]
            model.remove_node(axes_node)
            return True

    class MatmulConstToDenseOrPointwise(OptimizerPass):
        """Fix 3: MatMul with a constant → Dense (rank-1 input, hls4ml's pass) or pointwise Conv1D (rank 2)."""

        def __init__(self):
            self._upstream = MatmulConstToDense()

        def match(self, node):
            return self._upstream.match(node)

        def transform(self, model, node):
            in_shape = list(node.get_input_variable(node.inputs[0]).shape)
            if len(in_shape) == 1:
                return self._upstream.transform(model, node)
            if len(in_shape) != 2:
                raise RuntimeError(f"{node.name}: MatMul on a rank-{len(in_shape)} input is not supported")
            const_node = node.get_input_node(node.inputs[1])
            weight = np.asarray(const_node.get_attr("value"))
            if weight.ndim != 2 or weight.shape[0] != in_shape[-1]:
                raise RuntimeError(f"{node.name}: weight shape {weight.shape} does not match input {in_shape}")
            width, n_chan = in_shape
            n_filt = int(weight.shape[1])
            bias, bias_quantizer, bias_node = np.zeros(n_filt), None, None
            consumers = _consumers(model, node)
            if len(consumers) == 1 and isinstance(consumers[0], ApplyAlpha):
                candidate = consumers[0]
                scale = np.asarray(candidate.get_attr("scale_data"))
                rows = np.broadcast_to(np.asarray(candidate.get_attr("bias_data")), (width, n_filt))
                if np.all(scale == 1) and candidate.get_attr("scale_quantizer") is None and np.all(rows == rows[0]):
                    bias, bias_quantizer, bias_node = rows[0].copy(), candidate.get_attr("bias_quantizer"), candidate
            config = model.config.get_layer_config(node)
            name = f"PointwiseConv_{node.name}"
            model.config.set_name_config(name, config)
            model.config.parse_name_config(name, config)
            attributes = {
                "data_format": "channels_last",
                "in_width": width, "out_width": width, "n_chan": n_chan, "n_filt": n_filt,
                "filt_width": 1, "stride_width": 1, "pad_left": 0, "pad_right": 0,
                "weight_data": weight.reshape(1, n_chan, n_filt),
                "weight_quantizer": const_node.get_attr("quantizer"),
                "bias_data": bias,
                "bias_quantizer": bias_quantizer,
            }
            conv = model.make_node(Conv1D, name, attributes, [node.inputs[0]], list(node.outputs))
            model.remove_node(const_node)
            del node.inputs[1]
            model.replace_node(node, conv)
            if bias_node is not None:
                # The bias now lives in the convolution; removing the ApplyAlpha rewires its consumers to it.
                model.remove_node(bias_node)
            return True

    return {"jbot_reduce_axes_constant": ReduceAxesConstant,
            "jbot_matmul_const_to_dense": MatmulConstToDenseOrPointwise}


def _consumers(model, node) -> list:
    out = node.outputs[0]
    return [layer for layer in model.graph.values() if out in layer.inputs]


def apply_fixes() -> None:
    """Register our handler and passes with hls4ml (idempotent). Raises if hls4ml is not the pinned version."""
    global _applied
    if _applied:
        return
    import hls4ml
    from hls4ml.converters.onnx_to_hls import (
        get_supported_onnx_layers,
        register_onnx_layer_handler,
    )
    from hls4ml.model.flow.flow import get_flow
    from hls4ml.model.optimizer import register_pass

    if hls4ml.__version__ != HLS4ML_VERSION:
        from jbot_edge.errors import JbotEdgeError

        raise JbotEdgeError(f"hls4ml {hls4ml.__version__} is installed; jbot-edge's hls4ml fixes are verified "
                            f"against {HLS4ML_VERSION} only (pip install hls4ml=={HLS4ML_VERSION})")
    if "ReduceMean" not in get_supported_onnx_layers():
        register_onnx_layer_handler("ReduceMean", parse_reduce_mean_over_particles)
    for name, cls in _make_passes().items():
        register_pass(name, cls)
    flow = get_flow("parse_qonnx")
    optimizers = flow.optimizers
    # Order matters: the optimizer loop restarts from the first pass after every change, so our MatMul pass must
    # stand where hls4ml's stood (after merge_to_apply_alpha has turned the bias Add into an ApplyAlpha).
    index = optimizers.index("matmul_const_to_dense")
    optimizers[index] = "jbot_matmul_const_to_dense"
    optimizers.insert(optimizers.index("quant_constant_parameters"), "jbot_reduce_axes_constant")
    _applied = True


def pooling_precisions(in_width: int, in_integer: int, signed: bool, n: int) -> dict[str, str]:
    """Fix 4: exact accumulator/result types for the mean of ``n`` values of ``ap_[u]fixed<in_width, in_integer>``.

    Integer bits grow by ``ceil(log2 n) + 1`` (the +1 keeps a sign bit when the input type is unsigned), fractional
    bits by ``ceil(log2 n)`` (the division by n = 2^k shifts k bits right; n must be a power of two to be exact).
    """
    grow = int(math.ceil(math.log2(n))) if n > 1 else 0
    in_frac = in_width - in_integer
    integer = in_integer + grow + 1
    frac = in_frac + grow
    accum = f"fixed<{integer + frac},{integer}>"
    return {"accum": accum, "result": accum}

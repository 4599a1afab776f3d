"""Replay a student's QONNX graph on da4ml's symbolic fixed-point arrays → one combinational computation.

da4ml 0.6 has no QONNX or Brevitas frontend, but it traces numpy-style code on ``FixedVariableArray`` values: every
value carries its exact range and LSB, constant matrix products become multiplier-free adder graphs (its CMVM
solver) and ``quantize`` is a hardware rounding/overflow step. The exported graph (``export.export_student``,
after hls4ml preparation) is a chain of a few op types, each of which maps onto one exact da4ml operation:

======================  ==============================================================================================
QONNX / ONNX node       da4ml
======================  ==============================================================================================
``Quant`` on constants  evaluated in float64 with QONNX's own ``quant`` (weights, biases): the integer weights × scale
``Quant`` on a tensor   ``quantize(k=signed, i=bits-k-f, f=-log2(scale), SAT, TRN)``: floor rounding, saturation —
                        exactly QONNX's ``clip(floor(x / scale), min, max) * scale`` for a power-of-two scale
``MatMul`` (constant W) ``x @ W`` (constant-matrix × vector, per particle for a Deep Sets φ)
``Add`` (constant b)    ``x + b``
``Relu``                ``relu()``
``ReduceMean``/``Sum``  ``np.mean``/``np.sum`` over the particle axis (mean = sum × 2^-log2 P: a shift)
``Flatten``/``Reshape`` reshape of the per-jet array
======================  ==============================================================================================

Only floor rounding exists in both worlds: QONNX's ``ROUND`` (Brevitas ``round_half_even``) has no da4ml
counterpart, so such graphs are refused, as are non-power-of-two scales, non-zero zero points, ``narrow`` activation
ranges and any other op. The batch dimension is dropped: da4ml traces one jet, whose inputs are the ``P × F`` codes
in particle-major order (``index = p * F + f``, the order of ``codes.reshape(N, P * F)``).

Inputs are declared with each feature's own code type (``L1InputSpec``: an unsigned 12-bit pT code is
``ufixed<12, 12 - input_frac_bits>``), not the wider shared tensor type, so the RTL input ports are as narrow as the
codes; the graph's input ``Quant`` node is then an identity that da4ml drops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.errors import JbotEdgeError

#: QONNX rounding modes da4ml reproduces (``TRN`` = floor in two's complement).
_ROUNDING = {"FLOOR": "TRN"}


@dataclass
class TracedStudent:
    """The traced computation and what is needed to talk to it in integer codes."""

    comb: Any  # da4ml.types.CombLogic
    output_scale: float  # value of one output code (the graph's output Quant scale)
    output_bits: int
    output_signed: bool
    ops: dict[str, int]  # QONNX op type → count, for the description
    precisions: dict[str, str]  # activation Quant node → its fixed-point type, "fixed<W,I>" / "ufixed<W,I>"


def _power_of_two_exponent(scale: float, where: str) -> int:
    mantissa, exponent = math.frexp(float(scale))
    if scale <= 0 or mantissa != 0.5:
        raise JbotEdgeError(f"{where}: scale {scale!r} is not a power of two; fixed-point RTL cannot reproduce it")
    return exponent - 1


def _scalar(value: Any, what: str, where: str) -> float:
    array = np.asarray(value, dtype=np.float64)
    if array.size != 1:
        raise JbotEdgeError(f"{where}: {what} must be per-tensor (one value), got shape {array.shape}")
    return float(array.reshape(()))


def _attributes(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _symbolic_quant(x, node, scale, zero_point, bits, where: str):
    attrs = _attributes(node)
    mode = attrs.get("rounding_mode", b"ROUND")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode.upper() not in _ROUNDING:
        raise JbotEdgeError(
            f"{where}: rounding mode {mode} (Brevitas round_half_even) has no da4ml equivalent, so the RTL could not "
            "be bit exact; retrain the student with rounding: floor")
    if _scalar(zero_point, "zero point", where) != 0.0:
        raise JbotEdgeError(f"{where}: non-zero zero point; only symmetric fixed-point quantizers map onto RTL")
    signed = int(attrs.get("signed", 1))
    if int(attrs.get("narrow", 0)) and signed:
        raise JbotEdgeError(f"{where}: narrow-range signed activation quantizer is not supported by the RTL backend")
    width = _scalar(bits, "bit width", where)
    if width != int(width) or width < 1:
        raise JbotEdgeError(f"{where}: bit width {width} is not a positive integer")
    frac = -_power_of_two_exponent(_scalar(scale, "scale", where), where)
    out = x.quantize(k=signed, i=int(width) - signed - frac, f=frac, overflow_mode="SAT",
                     round_mode=_ROUNDING[mode.upper()])
    return out, f"{'fixed' if signed else 'ufixed'}<{int(width)},{int(width) - frac}>"


def _axes(node, inputs: list[Any], ndim_with_batch: int, where: str) -> tuple[int, ...]:
    attrs = _attributes(node)
    axes = attrs.get("axes")
    if axes is None and len(inputs) > 1 and inputs[1] is not None:
        axes = [int(a) for a in np.asarray(inputs[1]).reshape(-1)]
    if axes is None:
        raise JbotEdgeError(f"{where}: reduction over all axes (including the batch) is not supported")
    axes = [int(a) + ndim_with_batch if int(a) < 0 else int(a) for a in axes]
    if 0 in axes:
        raise JbotEdgeError(f"{where}: reduction over the batch axis is not supported")
    if int(attrs.get("keepdims", 1)):
        raise JbotEdgeError(f"{where}: keepdims=1 reductions are not supported")
    return tuple(a - 1 for a in axes)


def _exact_float32(matrix: np.ndarray, where: str) -> np.ndarray:
    # da4ml's CMVM solver takes a float32 kernel: quantized weights (≤ 16-bit integers × 2^k) are exact in it.
    if not np.array_equal(matrix.astype(np.float32).astype(np.float64), matrix):
        raise JbotEdgeError(f"{where}: constant matrix is not exactly representable in float32 (weights wider "
                            "than 24 bits?)")
    return matrix


def input_kif(spec: L1InputSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per input element (shape ``[P, F]``) da4ml's ``(k, i, f)``: sign bit, integer bits without sign, fraction
    bits of each feature's code type scaled by ``2**-input_frac_bits``."""
    signed = np.array([int(q.signed) for q in spec.features])
    code_bits = np.array(spec.code_bits())  # model-visible codes (a normalised pT is narrower than its raw code)
    integer = code_bits - np.array([int(q.signed) for q in spec.features]) - spec.input_frac_bits
    frac = np.full(spec.n_features, spec.input_frac_bits)
    shape = (spec.n_particles, spec.n_features)
    return tuple(np.broadcast_to(v, shape).copy() for v in (signed, integer, frac))  # type: ignore[return-value]


def trace_qonnx(graph, spec: L1InputSpec, hard_dc: int = 2) -> TracedStudent:
    """Trace a QONNX ``ModelWrapper`` (single input ``[1, P, F]``, single output ``[1, 1]``) into da4ml.

    ``hard_dc`` is da4ml's delay constraint for each constant-matrix block (adder levels above the minimum it may
    spend to share adders): smaller is faster and larger.
    """
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace
    from qonnx.custom_op.general.quant import quant as qonnx_quant

    if len(graph.graph.input) != 1 or len(graph.graph.output) != 1:
        raise JbotEdgeError("QONNX graph must have exactly one input and one output for the RTL backend")
    in_name, out_name = graph.graph.input[0].name, graph.graph.output[0].name
    in_shape = list(graph.get_tensor_shape(in_name))
    if in_shape[1:] != [spec.n_particles, spec.n_features]:
        raise JbotEdgeError(f"QONNX graph input has shape {in_shape}, the quantizer spec expects "
                            f"[N, {spec.n_particles}, {spec.n_features}]")
    # HWConfig(adder_size=1, carry_size=-1, no cutoff): cost in LUTs ≈ adder bits, latency in adder levels;
    # pipelining is decided later for the board clock.
    k, i, f = input_kif(spec)
    inputs = FixedVariableArray.from_kif(k, i, f, HWConfig(1, -1, -1), solver_options={"hard_dc": int(hard_dc)})
    values: dict[str, Any] = {in_name: inputs}
    ops: dict[str, int] = {}
    precisions: dict[str, str] = {}
    output_quant: dict[str, Any] = {}

    def value(name: str) -> Any:
        if not name:
            return None
        if name in values:
            return values[name]
        init = graph.get_initializer(name)
        if init is None:
            raise JbotEdgeError(f"QONNX graph: tensor {name!r} is neither computed nor an initializer")
        return np.asarray(init, dtype=np.float64)

    for index, node in enumerate(graph.graph.node):
        where = f"QONNX node {node.name or index} ({node.op_type})"
        ins = [value(n) for n in node.input]
        symbolic = [isinstance(v, FixedVariableArray) for v in ins]
        op = node.op_type
        ops[op] = ops.get(op, 0) + 1
        if not any(symbolic):
            out = _constant(node, ins, qonnx_quant, where)
        elif op == "Quant":
            out, precisions[node.name or f"node{index}"] = _symbolic_quant(ins[0], node, *ins[1:4], where=where)
            if node.output[0] == out_name:
                attrs = _attributes(node)
                output_quant = {"scale": _scalar(ins[1], "scale", where), "bits": int(_scalar(ins[3], "bits", where)),
                                "signed": bool(attrs.get("signed", 1))}
        elif op == "MatMul":
            if symbolic[1]:
                raise JbotEdgeError(f"{where}: only products with a constant weight matrix are supported")
            out = ins[0] @ _exact_float32(ins[1], where)
        elif op in ("Add", "Sub"):
            if all(symbolic) or symbolic[0]:
                out = ins[0] + ins[1] if op == "Add" else ins[0] - ins[1]
            else:
                out = ins[1] + ins[0] if op == "Add" else -ins[1] + ins[0]
        elif op == "Relu":
            out = ins[0].relu()
        elif op in ("ReduceMean", "ReduceSum"):
            axes = _axes(node, ins, ins[0].ndim + 1, where)
            count = int(np.prod([ins[0].shape[a] for a in axes]))
            if op == "ReduceMean" and count & (count - 1):
                raise JbotEdgeError(f"{where}: mean over {count} elements is not a power-of-two shift; not exact")
            out = np.mean(ins[0], axis=axes) if op == "ReduceMean" else np.sum(ins[0], axis=axes)
        elif op == "Flatten":
            if _attributes(node).get("axis", 1) != 1:
                raise JbotEdgeError(f"{where}: only Flatten(axis=1) is supported")
            out = ins[0].reshape(-1)
        elif op == "Reshape":
            target = [int(s) for s in np.asarray(ins[1]).reshape(-1)]
            if 0 in target[1:]:
                raise JbotEdgeError(f"{where}: Reshape with a copied (0) dimension is not supported")
            out = ins[0].reshape(*target[1:])  # target[0] is the batch dimension
        else:
            raise JbotEdgeError(f"{where}: op {op} is not supported by the RTL backend (supported: Quant, MatMul, "
                                "Add, Sub, Relu, ReduceMean, ReduceSum, Flatten, Reshape)")
        for name in node.output[:1]:
            values[name] = out

    result = values.get(out_name)
    if not isinstance(result, FixedVariableArray) or result.size != 1:
        raise JbotEdgeError("QONNX graph output is not a single traced score")
    if not output_quant:
        raise JbotEdgeError("QONNX graph output is not produced by a Quant node; cannot define an output LSB")
    comb = comb_trace(inputs, result, keep_dead_inputs=True)
    return TracedStudent(comb=comb, output_scale=output_quant["scale"], output_bits=output_quant["bits"],
                         output_signed=output_quant["signed"], ops=ops, precisions=precisions)


def _constant(node, ins: list[Any], qonnx_quant, where: str) -> np.ndarray:
    """Constant folding for nodes whose inputs are all initializers (weight and bias quantizers)."""
    op = node.op_type
    if op == "Quant":
        attrs = _attributes(node)
        mode = attrs.get("rounding_mode", b"ROUND")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        return np.asarray(qonnx_quant(ins[0], ins[1], ins[2], ins[3], signed=int(attrs.get("signed", 1)),
                                      narrow=int(attrs.get("narrow", 0)), rounding_mode=mode), dtype=np.float64)
    if op in ("Identity",):
        return ins[0]
    raise JbotEdgeError(f"{where}: constant {op} node is not supported by the RTL backend")

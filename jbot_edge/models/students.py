"""Quantization-aware level-1 students (Brevitas): Deep Sets and a flat MLP, fixed-point everywhere.

Every quantizer has a **power-of-two, per-tensor scale** (fixed-point radix point), so each tensor is an
``ap_fixed``/``ap_ufixed`` type and the firmware (hls4ml, da4ml) reproduces the network bit for bit:

* input:       ``QuantIdentity``, signed, constant scale ``2**-input_frac_bits`` and width from the
               :class:`~jbot_edge.data.l1quant.L1InputSpec` (identity on valid codes; it only pins the input type
               into the exported graph, where hls4ml reads it);
* weights:     narrow signed ``weight_bits``, scale ``2**ceil(log2 max|w|) / 2**(bits-1)`` (Brevitas fixed point);
* biases:      signed ``bias_bits``, own power-of-two scale from ``max|b|`` (no dependence on the input scale, so a
               layer after pooling needs no re-quantization);
* activations: ``QuantReLU`` unsigned ``act_bits``, learned power-of-two scale, **rounding explicit**:
               ``floor`` (default; hls4ml ``AP_TRN`` and da4ml reproduce it) or ``round_half_even``
               (hls4ml ``AP_RND_CONV``; torch.round), saturating;
* output:      ``QuantIdentity`` signed ``output_bits``, constant range ``±2**ceil(log2 output_range)`` (a learned
               range initialised from an untrained network saturates), same rounding: the score is
               ``output_code * output_lsb`` with ``output_lsb = 2**ceil(log2 output_range) / 2**(output_bits-1)``.

Accumulators are never quantized in the model: the firmware must use exact (full-width) accumulators, whose
widths :func:`accumulator_bits` derives; a configuration whose exact accumulators would exceed
``max_accumulator_bits`` is refused.

Architectures (input ``x`` [B, P, F] float, exactly representable codes × 2**-input_frac_bits; output [B, 1]):

* ``deepsets``: φ = shared per-particle ``QuantLinear → QuantReLU`` stack applied on the last axis (a MatMul on a
  [B, P, F] tensor), pooling over particles (``mean``: exact in fixed point for P a power of two — sum then a
  power-of-two shift; ``sum``), ρ = ``QuantLinear → QuantReLU`` stack, ``QuantLinear`` → one score. Padded slots are
  all-zero inputs and are processed like any particle (as in the CMS Phase-2 L1 Deep Sets tagger).
* ``mlp``: the pT-ordered particles flattened to P·F inputs (AXOL1TL style), ``QuantLinear → QuantReLU`` stack,
  ``QuantLinear`` → one score.

Checkpoint ``student.pt`` (``torch.load(weights_only=True)`` loads it; plain containers only)::

    {"format": "jbot-edge.student", "version": 1,
     "state_dict": {...},                       # Brevitas module state (float weights + quantizer scales)
     "student_config": {...},                   # StudentConfig.model_dump()
     "input_spec": {...},                       # L1InputSpec.model_dump()
     "extra": {...}}                            # JSON-like dict from the caller (qat: target transform, teacher...)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from jbot_edge.atomic import atomic_path
from jbot_edge.config import StrictModel
from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.jet_term import JetTermConfig, input_columns, jet_term_ratio

CHECKPOINT_FORMAT = "jbot-edge.student"
CHECKPOINT_VERSION = 1
DEFAULT_COLLECT_STATS_STEPS = 30


class StudentConfig(StrictModel):
    """Architecture and fixed-point widths of a level-1 student."""

    kind: Literal["deepsets", "mlp"] = "deepsets"
    phi_widths: list[int] = Field(default_factory=lambda: [32, 32], description="deepsets: per-particle layers")
    rho_widths: list[int] = Field(default_factory=lambda: [32], description="deepsets: layers after pooling")
    mlp_widths: list[int] = Field(default_factory=lambda: [64, 32, 16], description="mlp: hidden layers")
    pooling: Literal["mean", "sum"] = "mean"
    weight_bits: int = Field(default=6, ge=2, le=16)
    bias_bits: int = Field(default=16, ge=2, le=24)
    act_bits: int = Field(default=8, ge=2, le=16)
    output_bits: int = Field(default=16, ge=2, le=24)
    max_accumulator_bits: int = Field(default=48, ge=8, le=52,
                                      description="refuse models whose exact accumulators would be wider")
    output_range: float = Field(default=8.0, gt=0, description="the score saturates at ±output_threshold, the "
                                "next power of two ≥ output_range; train on a target scaled to fit (e.g. a log)")
    rounding: Literal["floor", "round_half_even"] = "floor"
    scaling: str = Field(default="power_of_two", description="only power_of_two is firmware-exact")
    collect_stats_steps: int | None = Field(default=None, ge=1, description="training steps that initialise "
                                            "activation scales (null: 30 here; qat sizes it to the run)")
    jet_term: JetTermConfig | None = Field(default=None, description="a fixed-point jet-level term added to the "
                                           "network's score, computed beside it (jbot_edge.models.jet_term); null: "
                                           "the score is the network's output")

    @property
    def output_lsb(self) -> float:
        """Value of one output code (the output quantizer's constant scale)."""
        return self.output_threshold / 2 ** (self.output_bits - 1)

    @property
    def output_threshold(self) -> float:
        """Power-of-two saturation value of the score; output LSB = output_threshold / 2**(output_bits - 1)."""
        return 2.0 ** math.ceil(math.log2(self.output_range))

    @field_validator("scaling")
    @classmethod
    def _power_of_two_only(cls, value: str) -> str:
        if value != "power_of_two":
            raise ValueError(f"scaling {value!r} would need non-power-of-two scales, which fixed-point firmware "
                             "cannot reproduce exactly; only 'power_of_two' is supported")
        return value

    @field_validator("phi_widths", "rho_widths", "mlp_widths")
    @classmethod
    def _positive_widths(cls, value: list[int]) -> list[int]:
        if any(w < 1 for w in value):
            raise ValueError(f"layer widths must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _kind_needs_layers(self) -> StudentConfig:
        if self.kind == "deepsets" and not self.phi_widths:
            raise ValueError("deepsets needs at least one per-particle layer (phi_widths)")
        return self


# -- quantizers ---------------------------------------------------------------------------------------------------
def _quantizers(cfg: StudentConfig, spec: L1InputSpec) -> dict[str, Any]:
    """Brevitas quantizer classes for this configuration (power-of-two scales everywhere)."""
    from brevitas.core.scaling import ScalingImplType
    from brevitas.inject.enum import FloatToIntImplType
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8BiasPerTensorFixedPointInternalScaling,
        Int8WeightPerTensorFixedPoint,
        Uint8ActPerTensorFixedPoint,
    )

    float_to_int = FloatToIntImplType.FLOOR if cfg.rounding == "floor" else FloatToIntImplType.ROUND

    class InputQuant(Int8ActPerTensorFixedPoint):
        # Constant threshold 2**(I-1): scale = threshold / 2**(W-1) = 2**-input_frac_bits exactly.
        scaling_impl_type = ScalingImplType.CONST
        scaling_const = 2.0 ** (spec.input_integer_bits - 1)
        max_val = scaling_const  # the injector demands an init range; unused with CONST scaling
        min_val = -scaling_const
        bit_width = spec.input_width
        float_to_int_impl_type = float_to_int

    class WeightQuant(Int8WeightPerTensorFixedPoint):
        bit_width = cfg.weight_bits

    class BiasQuant(Int8BiasPerTensorFixedPointInternalScaling):
        bit_width = cfg.bias_bits

    class ActQuant(Uint8ActPerTensorFixedPoint):
        bit_width = cfg.act_bits
        float_to_int_impl_type = float_to_int
        collect_stats_steps = cfg.collect_stats_steps or DEFAULT_COLLECT_STATS_STEPS

    class OutputQuant(Int8ActPerTensorFixedPoint):
        # Constant range, not learned: statistics of an untrained network's near-zero output would pin the scale
        # far too small and the trained score would saturate.
        scaling_impl_type = ScalingImplType.CONST
        scaling_const = cfg.output_threshold
        max_val = scaling_const
        min_val = -scaling_const
        bit_width = cfg.output_bits
        float_to_int_impl_type = float_to_int

    return {"input": InputQuant, "weight": WeightQuant, "bias": BiasQuant, "act": ActQuant, "output": OutputQuant}


def _quant_linear(n_in: int, n_out: int, q: dict[str, Any]) -> nn.Module:
    from brevitas.nn import QuantLinear

    return QuantLinear(n_in, n_out, bias=True, weight_quant=q["weight"], bias_quant=q["bias"])


def _quant_relu(q: dict[str, Any]) -> nn.Module:
    from brevitas.nn import QuantReLU

    return QuantReLU(act_quant=q["act"])


class JetTerm(nn.Module):
    """The jet-level term as a module of the student (jbot_edge.models.jet_term): quantised model inputs → the term.

    Evaluation (``eval()``, every score, every report) looks the term up in the table of the current knot values, so
    it is exactly what the firmware adds; training with ``jet_term.trainable`` evaluates the piecewise-linear
    function itself, so the knot values (``values``, a parameter) learn with the network."""

    def __init__(self, cfg: StudentConfig, spec: L1InputSpec):
        super().__init__()
        input_columns(spec.feature_names)  # refuse a spec without its inputs at build time
        term = cfg.jet_term
        if term is None or not term.fitted:
            raise JbotEdgeError("student.jet_term has no table yet: qat fits it before building the student")
        self.term, self.feature_names = term, spec.feature_names
        self.input_scale, self.lsb = spec.input_scale, cfg.output_lsb
        self.values = nn.Parameter(torch.tensor(term.values), requires_grad=term.trainable)
        self.register_buffer("knots", torch.tensor(term.knots, dtype=torch.float64), persistent=False)

    def current(self) -> JetTermConfig:
        """The term's configuration with the current knot values and their table."""
        return self.term.with_values(self.values.detach().cpu().double().numpy(), self.lsb)

    def forward(self, quantised: torch.Tensor) -> torch.Tensor:
        codes = torch.round(quantised.detach().double() / self.input_scale).to(torch.int64).cpu().numpy()
        s = jet_term_ratio(self.term, self.feature_names, codes)
        if self.training and self.values.requires_grad:
            last = self.term.table_min + len(self.term.table) - 1
            s = torch.from_numpy(np.clip(s, self.term.table_min, last)).to(self.knots)
            index = (torch.searchsorted(self.knots, s, right=True) - 1).clamp(0, len(self.knots) - 2)
            k0, k1 = self.knots[index], self.knots[index + 1]
            v0, v1 = self.values[index].double(), self.values[index + 1].double()
            value = v0 + (v1 - v0) * (s - k0) / (k1 - k0)  # linear beyond the outer knots, as the table
        else:
            value = torch.from_numpy(self.current().codes_from_ratio(s) * self.lsb)
        return value.to(quantised.dtype).to(quantised.device).reshape(-1, 1)


class _Student(nn.Module):
    """``forward(x)`` = the network's score (what QONNX, hls4ml and da4ml build) + the jet term when configured (built
    beside the network; :func:`network_only` detaches it)."""

    jet_term: JetTerm | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quantised = self.input_quant(x)
        score = self.output_quant(self.head(self.body_from_quantised(quantised)))
        return score if self.jet_term is None else score + self.jet_term(quantised)

    def body_from_quantised(self, quantised: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def freeze_jet_term(model: nn.Module, cfg: StudentConfig) -> StudentConfig:
    """``cfg`` with the jet term's trained knot values and table (what student.pt stores and the firmware builds);
    ``cfg`` itself without a jet term."""
    if getattr(model, "jet_term", None) is None:
        return cfg
    term = model.jet_term.current()
    model.jet_term.term = term
    frozen = cfg.model_copy(update={"jet_term": term})
    model.student_config = frozen  # type: ignore[attr-defined]
    return frozen


@contextmanager
def network_only(model: nn.Module) -> Iterator[nn.Module]:
    """The student with its jet term detached, e.g. to export the network to QONNX (the term is built beside it);
    module names are unchanged, so the exported graph's layer names do not depend on the term."""
    term = getattr(model, "jet_term", None)
    if term is not None:
        model.jet_term = None
    try:
        yield model
    finally:
        if term is not None:
            model.jet_term = term


class DeepSetsStudent(_Student):
    """φ per particle → pooling over particles → ρ → score."""

    def __init__(self, cfg: StudentConfig, spec: L1InputSpec):
        super().__init__()
        from brevitas.nn import QuantIdentity

        q = _quantizers(cfg, spec)
        self.pooling = cfg.pooling
        self.input_quant = QuantIdentity(act_quant=q["input"])
        layers: list[nn.Module] = []
        n_in = spec.n_features
        for width in cfg.phi_widths:
            layers += [_quant_linear(n_in, width, q), _quant_relu(q)]
            n_in = width
        self.phi = nn.Sequential(*layers)
        layers = []
        for width in cfg.rho_widths:
            layers += [_quant_linear(n_in, width, q), _quant_relu(q)]
            n_in = width
        self.rho = nn.Sequential(*layers)
        self.head = _quant_linear(n_in, 1, q)
        self.output_quant = QuantIdentity(act_quant=q["output"])
        self.jet_term = JetTerm(cfg, spec) if cfg.jet_term is not None else None

    def body_from_quantised(self, quantised: torch.Tensor) -> torch.Tensor:
        h = self.phi(quantised)
        # Mean over a power-of-two particle count is a sum plus a shift: exact in fixed point (hls4ml average pool).
        h = h.mean(dim=1) if self.pooling == "mean" else h.sum(dim=1)
        return self.rho(h)


class MLPStudent(_Student):
    """Flattened pT-ordered particles → QuantLinear/QuantReLU stack → score."""

    def __init__(self, cfg: StudentConfig, spec: L1InputSpec):
        super().__init__()
        from brevitas.nn import QuantIdentity

        q = _quantizers(cfg, spec)
        self.input_quant = QuantIdentity(act_quant=q["input"])
        layers: list[nn.Module] = []
        n_in = spec.n_particles * spec.n_features
        for width in cfg.mlp_widths:
            layers += [_quant_linear(n_in, width, q), _quant_relu(q)]
            n_in = width
        self.body = nn.Sequential(*layers)
        self.head = _quant_linear(n_in, 1, q)
        self.output_quant = QuantIdentity(act_quant=q["output"])
        self.jet_term = JetTerm(cfg, spec) if cfg.jet_term is not None else None

    def body_from_quantised(self, quantised: torch.Tensor) -> torch.Tensor:
        return self.body(quantised.flatten(1))


# -- construction and checks --------------------------------------------------------------------------------------
def check_compatible(cfg: StudentConfig, spec: L1InputSpec) -> None:
    """Refuse configurations that cannot be reproduced exactly in fixed-point firmware."""
    if cfg.kind == "deepsets" and cfg.pooling == "mean" and spec.n_particles & (spec.n_particles - 1):
        raise JbotEdgeError(f"student pooling 'mean' over n_particles={spec.n_particles} is not a power-of-two "
                            "shift and cannot be exact in fixed point; use 16/32 particles or pooling: sum")
    widest = max(accumulator_bits(cfg, spec).values())
    if widest > cfg.max_accumulator_bits:
        raise JbotEdgeError(f"student needs {widest}-bit exact accumulators, above max_accumulator_bits="
                            f"{cfg.max_accumulator_bits}; reduce bit widths or layer sizes")


def build_student(cfg: StudentConfig, input_spec: L1InputSpec) -> nn.Module:
    """A freshly initialised Brevitas student for ``cfg`` reading ``input_spec`` inputs."""
    check_compatible(cfg, input_spec)
    model = DeepSetsStudent(cfg, input_spec) if cfg.kind == "deepsets" else MLPStudent(cfg, input_spec)
    model.student_config = cfg  # type: ignore[attr-defined]
    model.input_spec = input_spec  # type: ignore[attr-defined]
    return model


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from brevitas.nn import QuantLinear

    return [(name, m) for name, m in model.named_modules() if isinstance(m, QuantLinear)]


def _layer_plan(cfg: StudentConfig, spec: L1InputSpec) -> list[dict[str, Any]]:
    """Per linear layer: fan-in, fan-out, how often it is applied per jet, input width in bits."""
    pool_bits = int(math.ceil(math.log2(spec.n_particles))) if spec.n_particles > 1 else 0
    plan: list[dict[str, Any]] = []
    if cfg.kind == "deepsets":
        n_in, in_bits = spec.n_features, spec.input_width
        for width in cfg.phi_widths:
            plan.append({"n_in": n_in, "n_out": width, "repeat": spec.n_particles, "in_bits": in_bits})
            n_in, in_bits = width, cfg.act_bits
        # Exact pooled value: the sum needs log2 P more integer bits; the mean as many more fractional bits.
        in_bits = cfg.act_bits + pool_bits
        for width in [*cfg.rho_widths, 1]:
            plan.append({"n_in": n_in, "n_out": width, "repeat": 1, "in_bits": in_bits})
            n_in, in_bits = width, cfg.act_bits
    else:
        n_in, in_bits = spec.n_particles * spec.n_features, spec.input_width
        for width in [*cfg.mlp_widths, 1]:
            plan.append({"n_in": n_in, "n_out": width, "repeat": 1, "in_bits": in_bits})
            n_in, in_bits = width, cfg.act_bits
    return plan


def accumulator_bits(cfg: StudentConfig, spec: L1InputSpec) -> dict[str, int]:
    """Worst-case exact accumulator width per linear layer (input bits + weight bits + log2 fan-in + 1 for bias)."""
    out = {}
    for i, layer in enumerate(_layer_plan(cfg, spec)):
        grow = int(math.ceil(math.log2(layer["n_in"]))) if layer["n_in"] > 1 else 0
        out[f"linear{i}"] = layer["in_bits"] + cfg.weight_bits + grow + 1
    return out


def parameter_count(model: nn.Module) -> int:
    """Weights + biases of the linear layers (quantizer scales are not counted as parameters)."""
    return int(sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for _, m in linear_layers(model)))


def total_weight_bits(model: nn.Module, cfg: StudentConfig) -> int:
    """Storage of all weights and biases at their quantized widths."""
    return int(sum(m.weight.numel() * cfg.weight_bits + (m.bias.numel() * cfg.bias_bits if m.bias is not None else 0)
                   for _, m in linear_layers(model)))


def bops(cfg: StudentConfig, spec: L1InputSpec) -> int:
    """Bit operations per inference (Baskin et al.; as used for hls4ml/AXOL1TL): for each linear layer
    ``repeat · n_in · n_out · (b_a·b_w + b_a + b_w + log2 n_in)``; per-particle layers count once per particle."""
    total = 0.0
    for layer in _layer_plan(cfg, spec):
        n_in, n_out = layer["n_in"], layer["n_out"]
        ba, bw = layer["in_bits"], cfg.weight_bits
        total += layer["repeat"] * n_in * n_out * (ba * bw + ba + bw + math.log2(max(n_in, 1)))
    return int(round(total))


def _is_power_of_two(value: float) -> bool:
    mantissa, _ = math.frexp(float(value))
    return value > 0 and mantissa == 0.5


def quantizer_scales(model: nn.Module) -> dict[str, float]:
    """Scale of every weight, bias and activation quantizer (eval mode; for checks and reports)."""
    from brevitas.nn import QuantIdentity, QuantReLU

    scales: dict[str, float] = {}
    with torch.no_grad():
        for name, m in linear_layers(model):
            scales[f"{name}.weight"] = float(m.quant_weight().scale)
            if m.bias is not None and m.bias_quant.is_quant_enabled:
                scales[f"{name}.bias"] = float(m.bias_quant(m.bias).scale)
        for name, m in model.named_modules():
            if isinstance(m, (QuantIdentity, QuantReLU)):
                scale = m.act_quant.scale()
                if scale is not None:
                    scales[f"{name}.act"] = float(scale)
    return scales


def check_power_of_two_scales(model: nn.Module, where: str = "student") -> None:
    """Raise a one-line error naming the first quantizer whose scale is not a power of two."""
    was_training = model.training
    model.eval()
    try:
        for name, scale in quantizer_scales(model).items():
            if not _is_power_of_two(scale):
                raise JbotEdgeError(f"{where}: quantizer {name} has scale {scale!r}, not a power of two; fixed-point "
                                    "firmware cannot reproduce it exactly")
    finally:
        model.train(was_training)


def output_lsb(model: nn.Module) -> float:
    """Value of one output code: the score is ``integer * output_lsb``."""
    with torch.no_grad():
        return float(model.output_quant.act_quant.scale())


def summary(model: nn.Module) -> dict[str, Any]:
    """Size figures for reports: parameters, weight bits, BOPs, accumulator widths, output LSB."""
    cfg: StudentConfig = model.student_config  # type: ignore[attr-defined]
    spec: L1InputSpec = model.input_spec  # type: ignore[attr-defined]
    return {
        "kind": cfg.kind,
        "parameters": parameter_count(model),
        "total_weight_bits": total_weight_bits(model, cfg),
        "bops": bops(cfg, spec),
        "accumulator_bits": accumulator_bits(cfg, spec),
        "output_bits": cfg.output_bits,
        "output_lsb": output_lsb(model),
        "rounding": cfg.rounding,
        "input_fixed_type": spec.input_fixed_type(),
        # the jet term beside the network (models/jet_term.py): its table's size, or None
        "jet_term": None if cfg.jet_term is None or not cfg.jet_term.fitted else {
            "kind": cfg.jet_term.kind, "table_entries": len(cfg.jet_term.table), "table_min": cfg.jet_term.table_min},
    }


def score_codes(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Integer output codes (int64 [N]) of the student on model inputs ``x`` [N, P, F] (eval, no grad, float64:
    every fixed-point intermediate is exact well beyond float32's 24-bit mantissa)."""
    model.eval()
    with torch.no_grad():
        y = model.double()(x.double()).reshape(-1)
        model.float()
        lsb = output_lsb(model)
    codes = torch.round(y / lsb)
    return codes.to(torch.int64).numpy()


# -- save / load --------------------------------------------------------------------------------------------------
def _plain(extra: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(extra, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise JbotEdgeError(f"student extra metadata must be JSON-like (plain dict/list/str/number): {exc}") from exc


def save_student(path: str | os.PathLike[str], model: nn.Module, cfg: StudentConfig, input_spec: L1InputSpec,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write ``student.pt`` atomically (``path`` may be a directory, then ``path/student.pt``)."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".pt":
        path = path / "student.pt"
    check_power_of_two_scales(model, where=str(path))
    cfg = freeze_jet_term(model, cfg)  # the table of the knot values the model holds, never a stale one
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "student_config": cfg.model_dump(mode="json"),
        "input_spec": input_spec.model_dump(mode="json"),
        "extra": _plain(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def resolve_student_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "student.pt"
    if not path.is_file():
        raise JbotEdgeError(f"student checkpoint {path} does not exist (expected STUDENT_DIR/student.pt from qat)")
    return path


def load_student(path: str | os.PathLike[str]) -> tuple[nn.Module, StudentConfig, L1InputSpec, dict[str, Any]]:
    """Load ``STUDENT_DIR`` or ``student.pt`` → ``(model in eval mode, config, input spec, extra)``."""
    from jbot_edge.artifact_schemas import StudentFile, artifact_errors, validate_artifact

    path = resolve_student_path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise JbotEdgeError(f"{path}: not a readable student checkpoint ({type(exc).__name__})") from exc
    if isinstance(payload, dict) and not payload.get("input_spec"):  # students from before the L1 quantizer
        raise JbotEdgeError(f"{path}: student checkpoint has no quantizer spec (key 'input_spec')")
    validate_artifact(StudentFile, payload, path)
    cfg = validate_artifact(StudentConfig, payload["student_config"], f"{path} (student_config)")
    spec = validate_artifact(L1InputSpec, payload["input_spec"], f"{path} (input_spec)")
    with artifact_errors(path, "student_config/state_dict"):
        model = build_student(cfg, spec)
        _load_state(model, payload["state_dict"], path)
    model.eval()
    check_power_of_two_scales(model, where=str(path))
    cfg = freeze_jet_term(model, cfg)
    return model, cfg, spec, dict(payload.get("extra") or {})


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    from brevitas import config as brevitas_config

    # Brevitas quantizers initialised from runtime statistics only create their scale parameter after the first
    # training steps; a freshly built model lacks it, so strict loading would refuse a trained checkpoint.
    brevitas_config.IGNORE_MISSING_KEYS = True
    try:
        result = model.load_state_dict(state, strict=False)
    finally:
        brevitas_config.IGNORE_MISSING_KEYS = False
    if result.unexpected_keys:
        raise JbotEdgeError(f"{path}: state_dict does not match the architecture (unexpected "
                            f"{result.unexpected_keys[:3]})")
    missing = [k for k in result.missing_keys if not _is_optional_quant_key(k)]
    if missing:
        raise JbotEdgeError(f"{path}: state_dict does not match the architecture (missing {missing[:3]})")


def _is_optional_quant_key(key: str) -> bool:
    return "act_quant" in key or "tensor_quant" in key

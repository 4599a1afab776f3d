"""Trigger-precision inputs: the ONE definition of how a jet becomes the integers a level-1 student reads.

Used unchanged by ``qat`` (training inputs), ``synth`` (input precision of the firmware) and ``emulate`` (the
codes fed to every leg of the comparison). It is stored inside every student checkpoint.

Quantization, per particle feature ``f`` with LSB ``lsb_f`` (a physical unit: 0.25 GeV, π/720 rad) and ``bits_f``:

1. ``code = rint(value / lsb_f)`` — nearest code, **ties to even** (``numpy.rint``; computed in float64, so a value
   that is exactly half an LSB above a code, e.g. pT = 0.125 GeV, rounds to the even neighbour 0). This mirrors the
   rounding of a trigger primitive to its LSB; it happens once, in software, before any emulation leg.
2. out-of-range codes are **saturated** to ``[-2^(bits-1), 2^(bits-1) - 1]`` (signed) or ``[0, 2^bits - 1]``
   (unsigned) — or wrapped two's-complement style with ``overflow: wrap`` (what a plain bit slice does in RTL).
3. padded particle slots are code 0 for every feature (so an empty slot is a zero vector, as in the CMS Phase-2
   L1 Deep Sets tagger; the student processes it like any particle and learns its constant contribution).

Optional **per-jet pT normalisation** (``pt_normalisation``, off by default), integer arithmetic on the pT codes of
the ``n_particles`` slots so that a fixed-point block ahead of the network computes it bit for bit (what the
teacher's ``part_pt_rel`` is, without a divider)::

    S    = Σ pT codes                      (≤ 16 × 4095 < 2^16: an adder tree)
    k    = position of the leading one of S (a priority encoder), S = 2^k (1 + φ), φ ∈ [0, 1)
    a    = floor(S · 2^m / 2^k) - 2^m      (the m bits after the leading one: a ROM address)
    r    = ROM[a] = round(2^L / (1 + (a + 1/2) / 2^m))              (2^m entries of L + 1 bits)
    code = min(floor(pT · r / 2^(k + L - bits)), 2^bits - 1)       (one multiply and a shift per particle)

so ``code ≈ 2^bits · pT / S`` (relative error ≤ 2^-(m+1) from the ROM address). With normalisation the pT feature's
model-visible code range is ``[0, 2^bits - 1]`` (its own ``bits`` still saturates the raw code first).

Optional **mass-moment column** (a feature with ``derived: {kind: mass_moment}``, off by default): a model input
computed from the other codes, not read from the file, so that the jet's mass — which the student's per-particle
network cannot form from (pT, Δη, Δφ) at a few bits — reaches it as one sum-poolable number per particle::

    z    = the pT codes normalised as above (2^8 · pT / ΣpT, same ROM arithmetic, the raw pT codes as input)
    r²   = Δη code² + Δφ code²                                       (two squares and an add per particle)
    code = min(floor(z · r² / 2^shift), 2^bits - 1)                 (one multiply and a shift per particle)

Summed over the particles, ``Σ code ≈ 2^(8 - shift) · Σ z r² / LSB²``, and ``Σ_i z_i r_i²`` is the small-angle
``m² / pT²`` of the leading particles about the jet axis (exact up to the pT-weighted centroid's offset from it).
With ``shift`` 8 (default) and 12 bits, the 99.99th percentile of the l1 background's codes is ≈ 750, far below
the 4095 saturation.

The model never sees physical units. All features share one power-of-two scale (one per-tensor quantizer)::

    model_input = code * 2**-input_frac_bits          (exact in float32: every code has < 24 bits)

so the input tensor is the fixed-point type ``ap_fixed<W, W - input_frac_bits>`` with ``W = input_width`` (signed;
one extra bit when an unsigned feature shares the tensor with signed ones). hls4ml reads exactly this type from the
exported graph's input ``Quant`` node; :meth:`L1InputSpec.input_fixed_type` states it for humans and checks.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from jbot_edge.config import StrictModel
from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError

_LSB_EXPRESSION = re.compile(r"^\s*(?:(?P<num>[0-9.eE+-]+)\s*\*\s*)?pi\s*/\s*(?P<den>[0-9.eE+-]+)\s*$")


def parse_lsb(value: Any) -> float:
    """An LSB as a positive float; also accepts ``"pi/720"`` or ``"2*pi/1440"`` (YAML-friendly)."""
    if isinstance(value, str):
        match = _LSB_EXPRESSION.match(value)
        if match:
            num = float(match.group("num") or 1.0)
            return num * math.pi / float(match.group("den"))
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"LSB {value!r} must be a number or 'pi/N'") from None
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"LSB must be a positive finite number, got {value}")
    return value


class PtNormalisation(StrictModel):
    """Per-jet pT normalisation in integer arithmetic (see the module docstring)."""

    feature: str = Field(default="part_pt", description="the pT feature whose codes are normalised")
    bits: int = Field(default=8, ge=2, le=16, description="output code bits: code = 2^bits · pT / ΣpT")
    mantissa_bits: int = Field(default=5, ge=1, le=10, description="ROM address bits (2^m reciprocal entries)")
    reciprocal_bits: int = Field(default=10, ge=2, le=20, description="L: the ROM holds round(2^L / mantissa)")

    def reciprocal_rom(self) -> np.ndarray:
        """``ROM[a] = round(2^L / (1 + (a + 1/2) / 2^m))`` for the 2^m addresses (int64)."""
        m = self.mantissa_bits
        return np.rint(2.0 ** self.reciprocal_bits / (1.0 + (np.arange(1 << m) + 0.5) / (1 << m))).astype(np.int64)

    def apply(self, pt_codes: np.ndarray) -> np.ndarray:
        """Integer pT codes ``[..., P]`` (padding 0) → normalised codes ``[..., P]`` in ``[0, 2^bits - 1]``."""
        pt = np.asarray(pt_codes, dtype=np.int64)
        total = pt.sum(axis=-1, keepdims=True)
        _, exponent = np.frexp(np.maximum(total, 1).astype(np.float64))  # exact: total < 2^53
        k = exponent.astype(np.int64) - 1
        m = self.mantissa_bits
        address = np.right_shift(np.left_shift(np.maximum(total, 1), m), k) - (1 << m)
        product = pt * self.reciprocal_rom()[address]
        shift = k + self.reciprocal_bits - self.bits
        scaled = np.where(shift >= 0, np.right_shift(product, np.maximum(shift, 0)),
                          np.left_shift(product, np.maximum(-shift, 0)))
        return np.where(total > 0, np.minimum(scaled, (1 << self.bits) - 1), 0)


#: The stored features a mass-moment column is computed from (pT first: it must be unsigned).
MASS_MOMENT_INPUTS = ("part_pt", "part_deta", "part_dphi")


class MassMoment(StrictModel):
    """A derived column: each particle's share of the jet's m²/pT², in integer arithmetic (module docstring)."""

    kind: Literal["mass_moment"] = "mass_moment"
    shift: int = Field(default=8, ge=0, le=24, description="code = min(floor(z · r² / 2^shift), 2^bits - 1)")
    normalisation: PtNormalisation | None = Field(
        default_factory=PtNormalisation,
        description="how z = 2^bits · pT / ΣpT is formed from the pT codes; null: z = the raw pT code (no ΣpT on "
                    "the path, so the per-jet division is left to the network)")

    def apply(self, pt: np.ndarray, deta: np.ndarray, dphi: np.ndarray, max_code: int) -> np.ndarray:
        """Integer codes ``[..., P]`` of pT (raw, padding 0), Δη and Δφ → the column's codes ``[..., P]``."""
        z = self.normalisation.apply(pt) if self.normalisation is not None else np.asarray(pt, dtype=np.int64)
        deta, dphi = np.asarray(deta, dtype=np.int64), np.asarray(dphi, dtype=np.int64)
        product = z * (deta * deta + dphi * dphi)
        return np.minimum(np.right_shift(product, self.shift), max_code)


class FeatureQuantizer(StrictModel):
    """How one particle feature becomes an integer code."""

    name: str = Field(description="particle feature in the canonical jet file, e.g. part_pt; for a derived "
                                  "column, its name in reports")
    lsb: float = Field(description="physical value of one code (GeV, rad, ...); accepts 'pi/720'")
    bits: int = Field(ge=2, le=18, description="code width in bits, sign bit included when signed")
    signed: bool = True
    derived: MassMoment | None = Field(default=None, description="computed from the other codes instead of read "
                                       "from the file (its lsb is then the physical value it stands for, "
                                       "documentation only)")

    @field_validator("lsb", mode="before")
    @classmethod
    def _parse_lsb(cls, value: Any) -> float:
        return parse_lsb(value)

    @property
    def min_code(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1


def default_features() -> list[FeatureQuantizer]:
    # pT: 0.25 GeV LSB (CMS Phase-2 L1 particle candidates), 12 bits → saturates at 1023.75 GeV.
    # Δη, Δφ: π/720 LSB (the L1 η/φ LSB), 9 bits signed → ±1.11 rad, wide enough for R ≤ 0.8 jets.
    return [
        FeatureQuantizer(name="part_pt", lsb=0.25, bits=12, signed=False),
        FeatureQuantizer(name="part_deta", lsb=math.pi / 720, bits=9, signed=True),
        FeatureQuantizer(name="part_dphi", lsb=math.pi / 720, bits=9, signed=True),
    ]


class L1InputSpec(StrictModel):
    """Leading constituents at trigger precision: feature quantizers + the model's input scale."""

    n_particles: int = Field(default=16, ge=1, le=256)
    features: list[FeatureQuantizer] = Field(default_factory=default_features)
    input_frac_bits: int = Field(default=6, ge=0, le=16,
                                 description="model input = code * 2**-input_frac_bits (one per-tensor scale)")
    overflow: Literal["saturate", "wrap"] = "saturate"
    pt_normalisation: PtNormalisation | None = Field(default=None, description="per-jet pT / ΣpT in integer "
                                                     "arithmetic (null: absolute pT codes)")

    @field_validator("features")
    @classmethod
    def _unique_features(cls, value: list[FeatureQuantizer]) -> list[FeatureQuantizer]:
        names = [f.name for f in value]
        if not names:
            raise ValueError("at least one quantized feature is needed")
        if len(set(names)) != len(names):
            raise ValueError(f"quantized features must be unique, got {names}")
        return value

    @model_validator(mode="after")
    def _normalised_feature_exists(self) -> L1InputSpec:
        norm = self.pt_normalisation
        if norm is not None:
            feature = next((f for f in self.features if f.name == norm.feature and f.derived is None), None)
            if feature is None or feature.signed:
                raise ValueError(f"pt_normalisation.feature {norm.feature!r} must be one of the unsigned stored "
                                 f"features {[f.name for f in self.features if not f.signed and f.derived is None]}")
        return self

    @model_validator(mode="after")
    def _derived_columns_computable(self) -> L1InputSpec:
        derived = [f for f in self.features if f.derived is not None]
        if not derived:
            return self
        stored = {f.name: f for f in self.features if f.derived is None}
        for f in derived:
            if f.signed:
                raise ValueError(f"derived feature {f.name!r} (mass_moment) is unsigned: set signed: false")
        needed = [n for n in MASS_MOMENT_INPUTS if n not in stored]
        if needed:
            raise ValueError(f"derived feature {derived[0].name!r} (mass_moment) needs the stored features "
                             f"{list(MASS_MOMENT_INPUTS)}; missing {needed}")
        if stored[MASS_MOMENT_INPUTS[0]].signed:
            raise ValueError(f"derived feature {derived[0].name!r} (mass_moment) needs an unsigned "
                             f"{MASS_MOMENT_INPUTS[0]}")
        return self

    @model_validator(mode="after")
    def _fits_float32(self) -> L1InputSpec:
        if self.input_width > 24:
            raise ValueError(f"input width {self.input_width} bits exceeds the 24 bits float32 represents exactly")
        if self.input_frac_bits >= self.input_width:
            raise ValueError(f"input_frac_bits={self.input_frac_bits} must be below the input width "
                             f"{self.input_width} (at least the sign bit is an integer bit)")
        return self

    # -- derived fixed-point description -------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def stored_feature_names(self) -> list[str]:
        """The features read from the jet file (the others are derived from them)."""
        return [f.name for f in self.features if f.derived is None]

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def input_signed(self) -> bool:
        return True  # the tensor quantizer is signed (simplest common type; costs one bit for pT-only specs)

    @property
    def input_width(self) -> int:
        """Bits of the shared signed input tensor type: an unsigned b-bit code needs b + 1 signed bits."""
        return max(f.bits if f.signed else f.bits + 1 for f in self.features)

    @property
    def input_integer_bits(self) -> int:
        """Integer bits of ``ap_fixed<W, I>`` (sign included, hls4ml/Vivado convention)."""
        return self.input_width - self.input_frac_bits

    @property
    def input_scale(self) -> float:
        return 2.0 ** -self.input_frac_bits

    def input_fixed_type(self) -> str:
        return f"fixed<{self.input_width},{self.input_integer_bits}>"

    def code_bits(self) -> list[int]:
        """Bits of each feature's model-visible code (sign included): the normalised pT has its own width."""
        norm = self.pt_normalisation
        return [norm.bits if norm is not None and f.name == norm.feature else f.bits for f in self.features]

    def code_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature ``(min_code, max_code)`` arrays of the model-visible codes, int64 [F]."""
        norm = self.pt_normalisation
        high = [(1 << norm.bits) - 1 if norm is not None and f.name == norm.feature else f.max_code
                for f in self.features]
        return (np.array([f.min_code for f in self.features], dtype=np.int64), np.array(high, dtype=np.int64))

    # -- quantization --------------------------------------------------------------------------------------------
    def check_file(self, jet_file) -> None:  # jbot_edge.data.reader.JetFile (avoids an import cycle)
        """Refuse files that cannot provide these inputs, naming what is missing."""
        jet_file.require_particle_features(self.stored_feature_names, option="L1 input spec")
        if jet_file.n_particles < self.n_particles:
            raise JbotEdgeError(f"{jet_file.path}: holds {jet_file.n_particles} particles per jet, the L1 input spec "
                                f"needs n_particles={self.n_particles}")

    def quantize_values(self, values: np.ndarray) -> np.ndarray:
        """Physical values ``[..., F_stored]`` of the stored features (their order in this spec) → int32 raw codes,
        rounded and saturated (or wrapped) to each feature's own ``bits``; no normalisation, no derived columns."""
        stored = [f for f in self.features if f.derived is None]
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1] != len(stored):
            raise JbotEdgeError(f"L1 input spec stores {len(stored)} features, values have {values.shape[-1]}")
        if not np.isfinite(values).all():
            raise JbotEdgeError("L1 input quantizer: inputs hold NaN/inf; expected finite values")
        lsb = np.array([f.lsb for f in stored], dtype=np.float64)
        codes = np.rint(values / lsb)
        # The feature's own range: a normalised pT's narrower model-visible range applies after normalisation.
        lo = np.array([f.min_code for f in stored], dtype=np.float64)
        hi = np.array([f.max_code for f in stored], dtype=np.float64)
        if self.overflow == "saturate":
            codes = np.clip(codes, lo, hi)
        else:
            # Two's-complement wrap to `bits` (unsigned: modulo 2^bits), as a bit slice of a wider word does.
            span = np.left_shift(1, np.array([f.bits for f in stored], dtype=np.int64)).astype(np.float64)
            codes = np.mod(codes - lo, span) + lo
        return codes.astype(np.int32)

    def quantize(self, batch: JetBatch) -> np.ndarray:
        """A JetBatch → int32 codes ``[N, n_particles, F]``; padded slots are 0."""
        if batch.n_particles < self.n_particles:
            raise JbotEdgeError(f"batch has {batch.n_particles} particles per jet, the L1 input spec needs "
                                f"{self.n_particles}")
        stored = self.stored_feature_names
        missing = [n for n in stored if n not in batch.particles]
        if missing:
            raise JbotEdgeError(f"L1 input spec needs particle feature(s) {missing}, the batch has "
                                f"{sorted(batch.particles)}")
        p = self.n_particles
        raw = self.quantize_values(np.stack([batch.particles[n][:, :p] for n in stored], axis=-1))
        raw[~batch.mask[:, :p]] = 0
        return self.codes_from_raw(raw)

    def codes_from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Raw codes ``[N, P, F_stored]`` (padding 0) → the model-visible codes ``[N, P, F]``: derived columns
        computed from the raw codes, then the pT normalisation, both in integer arithmetic."""
        raw = np.asarray(raw, dtype=np.int64)
        stored = self.stored_feature_names
        codes = np.zeros((*raw.shape[:-1], self.n_features), dtype=np.int64)
        for j, feature in enumerate(self.features):
            if feature.derived is None:
                codes[..., j] = raw[..., stored.index(feature.name)]
            else:
                pt, deta, dphi = (raw[..., stored.index(n)] for n in MASS_MOMENT_INPUTS)
                codes[..., j] = feature.derived.apply(pt, deta, dphi, feature.max_code)
        if self.pt_normalisation is not None:
            column = self.feature_names.index(self.pt_normalisation.feature)
            codes[..., column] = self.pt_normalisation.apply(codes[..., column])
        return codes.astype(np.int32)

    def check_codes(self, codes: np.ndarray) -> np.ndarray:
        """Validate externally supplied codes (shape, integrality, per-feature range); return them as int32."""
        codes = np.asarray(codes)
        if codes.ndim != 3 or codes.shape[1:] != (self.n_particles, self.n_features):
            raise JbotEdgeError(f"codes have shape {codes.shape}, expected (N, {self.n_particles}, {self.n_features})")
        if not np.issubdtype(codes.dtype, np.integer):
            if not np.array_equal(codes, np.rint(codes)):
                raise JbotEdgeError("codes must be integers")
        lo, hi = self.code_bounds()
        if codes.size and ((codes < lo).any() or (codes > hi).any()):
            raise JbotEdgeError(f"codes outside the per-feature ranges {lo.tolist()}..{hi.tolist()}")
        return codes.astype(np.int32)

    def to_model_input(self, codes: np.ndarray) -> np.ndarray:
        """int codes → float32 model input ``codes * 2**-input_frac_bits`` (exact)."""
        return (np.asarray(codes, dtype=np.float64) * self.input_scale).astype(np.float32)

    def model_input(self, batch: JetBatch) -> np.ndarray:
        """A JetBatch → float32 ``[N, P, F]`` exactly representable model input."""
        return self.to_model_input(self.quantize(batch))

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Codes → physical values (float64), e.g. to print a mismatching jet in physical units (a derived column:
        code × its documented lsb)."""
        lsb = np.array([f.lsb for f in self.features], dtype=np.float64)
        return np.asarray(codes, dtype=np.float64) * lsb

    def input_block_note(self) -> str | None:
        """What the integer block ahead of the network computes (pT normalisation, derived columns), for reports
        whose figures cover the network only; None when the codes go to the network as quantised."""
        parts = []
        if self.pt_normalisation is not None:
            parts.append(f"{self.pt_normalisation.feature} / ΣpT (adder tree, leading-one detector, "
                         f"{1 << self.pt_normalisation.mantissa_bits}-entry reciprocal ROM, one multiply per particle)")
        for f in self.features:
            if f.derived is not None and f.derived.normalisation is not None:
                parts.append(f"{f.name} = z·(Δη² + Δφ²) >> {f.derived.shift} (z = pT/ΣpT by a "
                             f"{1 << f.derived.normalisation.mantissa_bits}-entry reciprocal ROM; two squares and two "
                             "multiplies per particle)")
            elif f.derived is not None:
                parts.append(f"{f.name} = pT·(Δη² + Δφ²) >> {f.derived.shift} (two squares and one multiply per "
                             "particle)")
        if not parts:
            return None
        return ("integer input block ahead of the network, defined on the codes in data/l1quant.py and fed to every "
                f"emulation leg: {'; '.join(parts)}. Its latency and resources are NOT in this report's figures, "
                "which describe the network")

    def describe(self) -> dict[str, Any]:
        """JSON-ready description, including the derived fixed-point input type."""
        return {
            **self.model_dump(mode="json"),
            "input_width": self.input_width,
            "input_integer_bits": self.input_integer_bits,
            "input_fixed_type": self.input_fixed_type(),
            "rounding": "nearest, ties to even (numpy.rint of value / lsb)",
            "padding_code": 0,
        }

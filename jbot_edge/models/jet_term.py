"""A fixed-point jet-level term added to a level-1 student's score: ``score = network(x) + term(codes)``.

Why: the l1 teacher's trigger tail (its top 10 kHz of background) is mostly "the highest m/pT" (0.92 of its
10 kHz set, measured in issue 13), which a 16-wide, 6-bit per-particle network cannot form from (pT, Δη, Δφ). Fed
to the network as a per-particle column (``data/l1quant.py`` ``MassMoment``) the mass works but sits *ahead* of the
network (≥ 4 more pipeline stages). Here it is computed *beside* the network from the same input codes, in
parallel, and joins the score with one adder: the network then learns the rest of the teacher's score.

The term, in integer arithmetic on the model-visible codes of ``part_pt``, ``part_deta``, ``part_dphi`` (the
``n_particles`` slots; padding is 0 and contributes nothing)::

    A    = Σ pT_M · ((|Δη| >> b)² + (|Δφ| >> b)²)   pT_M: the pT code cut to its M leading bits
                                              (``pt_mantissa_bits``: a leading-one detector, an M-bit multiply and
                                              a shift, not a 12-bit multiply); b = ``angle_shift`` drops low angle
                                              bits (two small squares); an adder tree over the particles
    B    = Σ pT                               (an adder tree)
    L(x) = (k << F) + LUT[f]                  log2 of x ≥ 1 with F fractional bits: k = position of the leading
                                              one of x (priority encoder), f = the F bits after it, LUT[f] =
                                              rint(2^F · log2(1 + (f + 1/2) / 2^F)) (2^F entries); x = 0 reads as 1
    s    = L(max(A, 1)) - L(max(B, 1))        ≈ 2^F · log2(A / B) = 2^F · log2(m² / pT²) + const (small angles)
    term = TABLE[clip(s - table_min, 0, len(TABLE) - 1)]      a ROM of output-LSB codes

so the term is on the network's output grid and the student's score stays ``integer × output_lsb``. The table
tabulates a piecewise-linear function of ``s`` (``knots`` at quantiles of the training background's ``s``, linear
beyond the outer knots) from the smallest training ``s`` to ``extrapolate`` codes past the largest, each entry
``floor(f(s) / output_lsb)``. qat starts its ``values`` from a weighted least-squares fit of the distillation targets
(the loss's tail weights) and, with ``trainable`` (default), trains them together with the network by the same loss
(the training forward uses f itself, so the values get gradients; every evaluation uses the table), so the split
between term and network is learnt, not fixed. Why a table and not a coefficient: the teacher's score rises steeply
and non-linearly with m/pT in the tail (and again at the smallest masses); a linear term fitted on the bulk put the
student's 10 kHz set elsewhere (overlap 0.02-0.48 measured, against 0.87 for log2(A/B) alone). The network then
learns what is left. When not to use it: for a teacher that ignores the mass the term is noise on the student's
top. A toy teacher scoring Σ pT, distilled by a barely trained network (88 steps, tests/test_qat_fidelity.py), kept
a TPR ratio of 0.14 (trained table) / 0.18 (fixed table) at FPR 1e-2 with the term against 0.99 without it; set
``student.jet_term: null`` for such a teacher (the qat report's goals show the loss). The same
numpy function (:func:`jet_term_codes`) serves training, ``score_codes``, every emulation leg and the Verilog
check (``firmware/rtl/jet_term.py``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from jbot_edge.config import StrictModel
from jbot_edge.errors import JbotEdgeError

#: The model-visible features the term reads (pT must be unsigned).
JET_TERM_INPUTS = ("part_pt", "part_deta", "part_dphi")


class JetTermConfig(StrictModel):
    """The jet-level term of a student (module docstring); ``table``/``table_min`` null until qat fits them."""

    kind: Literal["log2_mass_ratio"] = "log2_mass_ratio"
    frac_bits: int = Field(default=4, ge=0, le=8, description="F: fractional bits of the log2 (2^F-entry LUT)")
    pt_mantissa_bits: int = Field(default=4, ge=1, le=24, description="M: significant bits of the pT code kept "
                                  "for the multiply (the rest truncated: ≤ 2^(1-M) relative error)")
    angle_shift: int = Field(default=3, ge=0, le=6, description="b: Δη, Δφ magnitude bits dropped before squaring")
    knot_quantiles: list[float] = Field(
        default_factory=lambda: [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0],
        description="knots of the piecewise-linear fit, as quantiles of the training background's s")
    min_jets_per_knot: int = Field(default=10, ge=1, description="knot quantiles are moved inwards until at least "
                                   "this many training jets lie beyond the outermost ones: a knot on a handful of "
                                   "jets fits noise, and the extrapolation beyond it would carry it")
    extrapolate: int = Field(default=64, ge=0, le=1024, description="table entries past the largest training s "
                             "(2^-F units: 64 = 4 octaves of A/B); beyond them the term is flat")
    trainable: bool = Field(default=True, description="train the knot values with the network (false: keep the "
                            "least-squares fit)")
    knots: list[float] | None = Field(default=None, description="s of the knots (null: qat fits)")
    values: list[float] | None = Field(default=None, description="the term at the knots, in score units")
    table_min: int | None = Field(default=None, description="s of the table's first entry (null: qat fits)")
    table: list[int] | None = Field(default=None, description="the term in output-LSB codes for s = table_min, "
                                    "table_min + 1, ... (null: qat fits it)")

    @model_validator(mode="after")
    def _table_complete(self) -> JetTermConfig:
        fields = (self.knots, self.values, self.table, self.table_min)
        if any(f is None for f in fields) and any(f is not None for f in fields):
            raise ValueError("jet_term: set knots, values, table and table_min together, or none (qat fits them)")
        if self.table is not None and not self.table:
            raise ValueError("jet_term.table is empty")
        if self.knots is not None and (len(self.knots) < 2 or len(self.knots) != len(self.values)
                                       or self.knots != sorted(set(self.knots))):
            raise ValueError("jet_term: knots must be >= 2 increasing values, one per entry of values")
        quantiles = self.knot_quantiles
        if len(quantiles) < 2 or any(not 0 <= q <= 1 for q in quantiles) or quantiles != sorted(set(quantiles)):
            raise ValueError(f"jet_term.knot_quantiles {quantiles}: at least two increasing values in [0, 1]")
        return self

    @property
    def fitted(self) -> bool:
        return self.table is not None

    def log2_lut(self) -> np.ndarray:
        """``LUT[f] = rint(2^F · log2(1 + (f + 1/2) / 2^F))`` for the 2^F mantissa addresses (int64)."""
        size = 1 << self.frac_bits
        return np.rint(size * np.log2(1.0 + (np.arange(size) + 0.5) / size)).astype(np.int64)

    def log2_fixed(self, x: np.ndarray) -> np.ndarray:
        """``L(x)`` (module docstring) of integers ``x`` (values < 1 read as 1), int64, in 2^-F units."""
        x = np.maximum(np.asarray(x, dtype=np.int64), 1)
        _, exponent = np.frexp(x.astype(np.float64))  # exact: x < 2^53
        k = exponent.astype(np.int64) - 1
        f_bits = self.frac_bits
        aligned = np.where(k >= f_bits, np.right_shift(x, np.maximum(k - f_bits, 0)),
                           np.left_shift(x, np.maximum(f_bits - k, 0)))
        return np.left_shift(k, f_bits) + self.log2_lut()[aligned - (1 << f_bits)]

    def pt_mantissa(self, pt: np.ndarray) -> np.ndarray:
        """``pT_M``: each pT code with all but its ``M`` leading bits cleared (0 stays 0)."""
        pt = np.asarray(pt, dtype=np.int64)
        _, exponent = np.frexp(np.maximum(pt, 1).astype(np.float64))
        drop = np.maximum(exponent.astype(np.int64) - self.pt_mantissa_bits, 0)
        return np.left_shift(np.right_shift(pt, drop), drop)

    def log2_ratio(self, pt: np.ndarray, deta: np.ndarray, dphi: np.ndarray) -> np.ndarray:
        """``s`` (int64 [N]) from the codes ``[N, P]`` of pT, Δη and Δφ."""
        pt, deta, dphi = (np.asarray(a, dtype=np.int64) for a in (pt, deta, dphi))
        eta, phi = (np.right_shift(np.abs(a), self.angle_shift) for a in (deta, dphi))
        moment = (self.pt_mantissa(pt) * (eta * eta + phi * phi)).sum(axis=-1)
        return self.log2_fixed(moment) - self.log2_fixed(pt.sum(axis=-1))

    def tabulate(self, values: np.ndarray, output_lsb: float) -> list[int]:
        """The table of the piecewise-linear function through ``(knots, values)``: ``floor(f(s) / output_lsb)`` for
        s = table_min ... table_min + len(table) - 1."""
        grid = np.arange(self.table_min, self.table_min + len(self.table))
        return np.floor(piecewise_linear(grid, np.asarray(self.knots), np.asarray(values, dtype=np.float64))
                        / output_lsb).astype(np.int64).tolist()

    def with_values(self, values: np.ndarray, output_lsb: float) -> JetTermConfig:
        """A copy with new knot values and the table that goes with them."""
        values = [float(v) for v in np.asarray(values, dtype=np.float64)]
        return self.model_copy(update={"values": values, "table": self.tabulate(np.asarray(values), output_lsb)})

    def codes_from_ratio(self, s: np.ndarray) -> np.ndarray:
        """The term in output-LSB units (int64) from ``s``: a table lookup, clamped at both ends."""
        if self.table is None or self.table_min is None:
            raise JbotEdgeError("student.jet_term has no table yet: qat fits it (or set table and table_min)")
        address = np.clip(np.asarray(s, dtype=np.int64) - self.table_min, 0, len(self.table) - 1)
        return np.asarray(self.table, dtype=np.int64)[address]


def input_columns(feature_names: list[str]) -> list[int]:
    """Positions of the term's inputs among the model's features (a one-line error naming what is missing)."""
    missing = [n for n in JET_TERM_INPUTS if n not in feature_names]
    if missing:
        raise JbotEdgeError(f"student.jet_term needs the input features {list(JET_TERM_INPUTS)}; the input spec "
                            f"lacks {missing}")
    return [feature_names.index(n) for n in JET_TERM_INPUTS]


def jet_term_ratio(cfg: JetTermConfig, feature_names: list[str], codes: np.ndarray) -> np.ndarray:
    """``s`` (int64 [N]) of model-visible codes ``[N, P, F]``."""
    codes = np.asarray(codes, dtype=np.int64)
    pt, deta, dphi = (codes[..., j] for j in input_columns(feature_names))
    return cfg.log2_ratio(pt, deta, dphi)


def jet_term_codes(cfg: JetTermConfig, feature_names: list[str], codes: np.ndarray) -> np.ndarray:
    """The term (int64 [N], output-LSB units) of model-visible codes ``[N, P, F]``: what the firmware adds."""
    return cfg.codes_from_ratio(jet_term_ratio(cfg, feature_names, codes))


def piecewise_linear(s: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The function through ``(knots, values)`` at ``s``, continued linearly beyond the outer knots."""
    s = np.asarray(s, dtype=np.float64)
    out = np.interp(s, knots, values)
    if len(knots) >= 2:
        low_slope = (values[1] - values[0]) / (knots[1] - knots[0])
        high_slope = (values[-1] - values[-2]) / (knots[-1] - knots[-2])
        out = np.where(s < knots[0], values[0] + low_slope * (s - knots[0]), out)
        out = np.where(s > knots[-1], values[-1] + high_slope * (s - knots[-1]), out)
    return out


def fit_jet_term(cfg: JetTermConfig, s: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                 output_lsb: float) -> JetTermConfig:
    """The table (module docstring) fitted to ``targets`` of training jets with ratios ``s`` and loss weights
    ``weights``; returned as a copy of ``cfg`` with knots, values and the table set (kept if already set)."""
    if cfg.fitted:
        return cfg
    s = np.asarray(s, dtype=np.int64)
    y, w = np.asarray(targets, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if len(s) < 2 or w.sum() <= 0:
        raise JbotEdgeError("jet term: need at least two weighted training jets to fit its table")
    edge = min(cfg.min_jets_per_knot / len(s), 0.5)
    knots = np.unique(np.quantile(s, np.clip(cfg.knot_quantiles, edge, 1 - edge)).astype(np.float64))
    if len(knots) < 2:
        knots = np.array([s.min(), s.min() + 1.0])
    # Hat basis: column j is the piecewise-linear function that is 1 at knot j and 0 at the others.
    basis = np.stack([np.interp(s, knots, np.eye(len(knots))[j]) for j in range(len(knots))], axis=1)
    sqrt_w = np.sqrt(w)[:, None]
    # A vanishing curvature penalty only makes the solution unique should a segment hold no jet; it must not flatten
    # the steep far tail, which is what the term is for.
    curvature = np.diff(np.eye(len(knots)), n=2, axis=0) * np.sqrt(1e-9 * w.sum())
    design = np.vstack([basis * sqrt_w, curvature])
    rhs = np.concatenate([y * sqrt_w[:, 0], np.zeros(len(curvature))])
    values = np.linalg.lstsq(design, rhs, rcond=None)[0]
    table_min, table_max = int(s.min()), int(s.max()) + cfg.extrapolate
    shape = cfg.model_copy(update={"knots": knots.tolist(), "values": values.tolist(), "table_min": table_min,
                                   "table": [0] * (table_max - table_min + 1)})
    return shape.with_values(values, output_lsb)

"""The fuzz set: corner-case jets built from the quantizer spec, always emulated in addition to the data.

Every entry is a jet of integer codes ``[P, F]`` with a name saying why it is there:

* ``empty``: all slots padded (code 0 everywhere);
* ``single_<feature>_<min|max>``: one leading particle with that feature at its most negative / largest code;
* ``full_<min|max>`` and ``full_mixed_<k>``: every slot filled with saturated codes (full multiplicity) — the
  widest accumulator values the network can see;
* ``lsb_<k>``: codes of ±1, the smallest non-zero inputs;
* ``multiplicity_<n>``: the leading n slots filled with random in-range codes, the rest padding;
* ``random_<k>``: uniformly random codes over each feature's full range.

:func:`fuzz_raw_inputs` adds model inputs that are *not* codes, fed raw to every leg that reads real-valued inputs
(Brevitas, QONNX, the C simulation: each quantises them itself, with the input quantizer's rounding and saturation)
— so the firmware's own input rounding and overflow are tested, not numpy's:

* ``at_max_<f>`` / ``at_min_<f>``: feature f exactly at the input type's largest / smallest value in every slot;
* ``beyond_max_<f>_<k>`` / ``beyond_min_<f>_<k>``: half an LSB, one LSB and far beyond each boundary;
* ``ties_<k>``: every input half an LSB above a grid point (a rounding tie), random codes;
* ``offgrid_<k>``: random values a fraction of an LSB off the grid.

Rounding ties *inside* the network (at each layer's quantizer) are hit by the code entries above and by the data:
every accumulator is a multiple of the product of LSBs, so a layer whose output LSB is coarser sees exact halves
whenever the dropped bits are 100...0 — the full-range and random entries cover those patterns.
"""

from __future__ import annotations

import numpy as np

from jbot_edge.data.l1quant import L1InputSpec


def fuzz_codes(spec: L1InputSpec, n_random: int = 64, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``(codes int32 [M, P, F], names [M])`` for the spec; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    p, f = spec.n_particles, spec.n_features
    lo, hi = spec.code_bounds()
    lsb = np.array([q.lsb for q in spec.features], dtype=np.float64)
    jets: list[np.ndarray] = []
    names: list[str] = []

    def add(codes: np.ndarray, name: str) -> None:
        jets.append(np.asarray(codes, dtype=np.int64).reshape(p, f))
        names.append(name)

    def random_codes(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(lo, hi + 1, size=(*shape, f))

    add(np.zeros((p, f)), "empty")
    for j, q in enumerate(spec.features):
        for label, code in (("min", lo[j]), ("max", hi[j])):
            jet = np.zeros((p, f))
            jet[0, j] = code
            add(jet, f"single_{q.name}_{label}")
    add(np.broadcast_to(lo, (p, f)), "full_min")
    add(np.broadcast_to(hi, (p, f)), "full_max")
    for k in range(4):
        # Every slot at one of the two extremes of each feature: sign patterns that maximise |accumulator|.
        add(np.where(rng.random((p, f)) < 0.5, lo, hi), f"full_mixed_{k}")
    for k, sign in enumerate((1, -1)):
        add(np.clip(np.full((p, f), sign), lo, hi), f"lsb_{k}")
    for n in sorted({1, 2, max(1, p // 2), max(1, p - 1), p}):
        jet = np.zeros((p, f), dtype=np.int64)
        jet[:n] = random_codes((n,))
        add(jet, f"multiplicity_{n}")
    for k in range(n_random):
        add(random_codes((p,)), f"random_{k}")
    codes = np.stack(jets).astype(np.int32)
    return spec.check_codes(codes), names


def fuzz_raw_inputs(spec: L1InputSpec, n_random: int = 8, seed: int = 1) -> tuple[np.ndarray, list[str]]:
    """``(x float64 [M, P, F], names [M])``: model inputs at, beyond and between the input type's grid points (see
    the module docstring), to be fed raw to the legs; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    p, f = spec.n_particles, spec.n_features
    step = spec.input_scale
    top = (2 ** (spec.input_width - 1) - 1) * step
    bottom = -(2 ** (spec.input_width - 1)) * step
    lo, hi = spec.code_bounds()
    jets: list[np.ndarray] = []
    names: list[str] = []

    def add(x: np.ndarray, name: str) -> None:
        jets.append(np.asarray(x, dtype=np.float64).reshape(p, f))
        names.append(name)

    for j, q in enumerate(spec.features):
        for label, edge, sign in (("max", top, 1.0), ("min", bottom, -1.0)):
            jet = np.zeros((p, f))
            jet[:, j] = edge
            add(jet, f"at_{label}_{q.name}")
            for k, beyond in enumerate((0.5 * step, step, 1000.0 * step)):
                jet = np.zeros((p, f))
                jet[:, j] = edge + sign * beyond
                add(jet, f"beyond_{label}_{q.name}_{k}")
    for k in range(4):
        codes = rng.integers(lo, hi, size=(p, f)).astype(np.float64)
        add((codes + 0.5) * step, f"ties_{k}")
    for k in range(n_random):
        codes = rng.integers(lo, hi + 1, size=(p, f)).astype(np.float64)
        # Fractions of 1/64 LSB: off the grid, yet exact in float32 (what the Brevitas leg computes in).
        add((codes + rng.integers(-63, 64, size=(p, f)) / 64.0) * step, f"offgrid_{k}")
    return np.stack(jets), names

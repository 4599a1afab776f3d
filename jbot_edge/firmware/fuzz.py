"""The fuzz set: corner-case jets built from the quantizer spec, always emulated in addition to the data.

Every entry is a jet of integer codes ``[P, F]`` with a name saying why it is there:

* ``empty``: all slots padded (code 0 everywhere);
* ``single_<feature>_<min|max>``: one leading particle with that feature at its most negative / largest code;
* ``full_<min|max>`` and ``full_mixed_<k>``: every slot filled with saturated codes (full multiplicity) — the
  widest accumulator values the network can see;
* ``beyond_saturation``: physical values far outside the range, passed through the spec's quantizer (saturate or
  wrap, whichever the spec says) — exercises the overflow rule end to end;
* ``ties_<k>``: physical values exactly half an LSB above a code, through the spec's rounding (ties to even);
* ``lsb_<k>``: codes of ±1, the smallest non-zero inputs;
* ``multiplicity_<n>``: the leading n slots filled with random in-range codes, the rest padding;
* ``random_<k>``: uniformly random codes over each feature's full range.
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
    beyond = np.where(rng.random((p, f)) < 0.5, -1.0, 1.0) * (np.abs(hi) + np.abs(lo) + 5)[None, :] * lsb * 4
    add(spec.quantize_values(beyond), "beyond_saturation")
    for k in range(4):
        base = random_codes((p,)).astype(np.float64)
        add(spec.quantize_values((np.clip(base, lo, hi - 1) + 0.5) * lsb), f"ties_{k}")
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

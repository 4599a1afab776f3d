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

Rounding ties *inside* the network are constructed per student by :func:`layer_rounding_codes` (the emulate
command adds them to the fuzz set, :func:`jbot_edge.firmware.emulate.fuzz_set`). At each layer the exact
pre-activation is an integer number of accumulator units ``2^-d`` output LSBs, ``d`` = the bits the layer's output
quantizer drops. What a "tie" is depends on the rounding:

* ``floor`` (hls4ml ``AP_TRN``, the default and the only mode the RTL backend accepts) has no tie; its edges are the
  grid itself. ``round_<layer>_on_grid`` drops bits 00…0 (exactly a code), ``round_<layer>_below_grid`` 11…1 (one
  unit below the next code: the largest value that must still round down) — an off-by-one, a truncation toward
  zero on negative values, or a rounding firmware differs from floor there — and ``round_<layer>_half`` 10…0 (half an
  LSB: where round-half-up / -even would go up and floor must not);
* ``round_half_even`` (hls4ml ``AP_RND_CONV``): ``half`` is the tie proper, split into ``half_even`` and ``half_odd``
  by the parity of the code below it (the two ways the tie resolves).

Each pattern is met at every layer, for each sign the layer keeps (``pos``; also ``neg`` for the signed output),
inside the unclamped range. The jets are found by search, not sampled blindly: random candidate jets (multiplicity
and magnitude varied) are run through the student's exact integer model
(:meth:`~jbot_edge.firmware.fast_emulate.FastEmulator.pre_activations`) and the first one that puts the pattern on
some neuron of that layer is kept. They are integer codes, fed to every leg (the RTL included). The coverage lists
what cannot be met, with the reason: a layer whose input-dependent sum has no bits below its output LSB (``d = 0``)
never rounds; a pattern that the fixed low bits of every neuron's bias rule out (round-half-even keeps the bias's
bits below the weights' step) is unreachable by any input; anything else not met within the search budget says so.
"""

from __future__ import annotations

from typing import Any

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


#: Where the exact pre-activation of a layer sits relative to its output grid, in its dropped bits ``d``:
#: ``on_grid`` 00…0 (exactly a code), ``half`` 10…0 (the rounding tie), ``below_grid`` 11…1 (one accumulator unit
#: below the next code: the largest value floor must still round down).
ROUNDING_PATTERNS = {"on_grid": lambda d: 0, "half": lambda d: 1 << (d - 1), "below_grid": lambda d: (1 << d) - 1}


def layer_rounding_codes(emulator: Any, n_candidates: int = 2048, max_batches: int = 32,
                         seed: int = 2) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Jets that put an exact rounding tie / grid boundary at the output quantizer of *each* layer (see the module
    docstring). ``emulator`` is the student's :class:`~jbot_edge.firmware.fast_emulate.FastEmulator` (exact integer
    pre-activations). Returns ``(codes int32 [M, P, F], names [M], coverage)`` where names are
    ``round_<layer>_<pattern>_<pos|neg>`` and coverage ``{"found": [names], "missing": {target: reason}}``.

    Candidate jets (random multiplicity, codes over the full range shrunk by a random power of two so that every
    activation level occurs) are drawn in batches; for each target the first jet whose pre-activation of some
    neuron (of some particle, in a per-particle layer) has exactly that bit pattern inside the layer's unclamped
    range is kept. A target no input can reach (the neurons' fixed bias bits below the weights' step rule the
    pattern out, :func:`_reachable`) is listed as unreachable and not searched. Deterministic for a given seed."""
    spec = emulator.spec
    rng = np.random.default_rng(seed)
    rows_per_jet = [spec.n_particles] * len(emulator.per_particle) + [1] * len(emulator.per_jet)
    targets, missing = [], {}
    for index, layer in enumerate(emulator.layers):
        if layer.dropped_bits == 0:
            missing[f"round_{layer.name}"] = ("the input-dependent sum has no bits below the output LSB (only the "
                                              "bias may, the same constant on every jet): no tie to construct")
            continue
        # A ReLU layer clamps negative values to 0 (no rounding to test there); a signed layer rounds both signs.
        for sign in ("pos", "neg") if layer.lo < 0 else ("pos",):
            for pattern in ROUNDING_PATTERNS:
                # Round-half-even resolves a tie by the parity of the code below it: both parities are targets.
                parities = ("_even", "_odd") if pattern == "half" and layer.rounding != "floor" else ("",)
                for target in [(index, layer, pattern + parity, sign) for parity in parities]:
                    if _reachable(layer, pattern):
                        targets.append(target)
                    else:
                        missing[_target_name(target)] = ("unreachable: on every neuron the bias's fixed low bits "
                                                         "keep the pre-activation off this pattern")
    found: dict[str, np.ndarray] = {}
    for _ in range(max_batches):
        pending = [t for t in targets if _target_name(t) not in found]
        if not pending:
            break
        candidates = _rounding_candidates(spec, rng, n_candidates)
        pres = emulator.pre_activations(candidates)
        for index, layer, pattern, sign in pending:
            scaled = pres[index] * float(1 << layer.dropped_bits)  # exact: an integer in accumulator units
            residue = np.mod(scaled, 1 << layer.dropped_bits)
            code = np.floor(pres[index])
            kind, _, parity = pattern.partition("_") if pattern.startswith("half") else (pattern, "", "")
            hit = (residue == ROUNDING_PATTERNS[kind](layer.dropped_bits)) & (code >= layer.lo) & (code < layer.hi)
            if parity:
                hit &= np.mod(code, 2) == (parity == "odd")
            hit &= (pres[index] > 0) if sign == "pos" else (pres[index] < 0)
            rows = np.flatnonzero(hit.any(axis=1))
            if rows.size:
                found[_target_name((index, layer, pattern, sign))] = candidates[rows[0] // rows_per_jet[index]]
    names = [_target_name(t) for t in targets if _target_name(t) in found]
    for t in targets:
        if _target_name(t) not in found:
            missing[_target_name(t)] = f"not met in {max_batches * n_candidates} candidate jets"
    codes = np.stack([found[name] for name in names]) if names else np.zeros((0, spec.n_particles, spec.n_features))
    return spec.check_codes(codes.astype(np.int32)), names, {"found": names, "missing": missing}


def _reachable(layer: Any, pattern: str) -> bool:
    """Whether some neuron's pre-activation can carry ``pattern`` in its dropped bits at all: in accumulator units
    it is ``bias_j + Σ_i w_ij·h_i``, so its residue modulo ``2^d`` only moves in steps of ``gcd_i(w_ij, 2^d)``."""
    d = layer.dropped_bits
    modulus = 1 << d
    weight = np.rint(layer.weight.double().numpy() * modulus).astype(np.int64)  # [n_in, n_out], exact integers
    bias = np.rint(layer.bias.double().numpy() * modulus).astype(np.int64)
    step = np.gcd.reduce(np.vstack([weight, np.full((1, weight.shape[1]), modulus)]), axis=0)
    want = ROUNDING_PATTERNS[pattern](d)
    return bool(np.any(np.mod(want - bias, step) == 0))


def _target_name(target: tuple) -> str:
    _, layer, pattern, sign = target
    return f"round_{layer.name}_{pattern}_{sign}"


def _rounding_candidates(spec: L1InputSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """Random jets: multiplicity 1..P, codes over the full range divided by 2^k (k = 0..8) per jet."""
    p, f = spec.n_particles, spec.n_features
    lo, hi = spec.code_bounds()
    codes = rng.integers(lo, hi + 1, size=(n, p, f)) >> rng.integers(0, 9, size=(n, 1, 1))
    codes[np.arange(p)[None, :] >= rng.integers(1, p + 1, size=(n, 1))] = 0
    return codes

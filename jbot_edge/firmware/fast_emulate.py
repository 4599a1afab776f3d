"""A vectorised, bit-exact integer emulation of a quantized student, fast enough for rate studies on 10^8 jets.

The other legs of :mod:`jbot_edge.firmware.emulate` run the network as a graph (Brevitas, QONNX) or as firmware
(C simulation, Verilator). This leg reads the student's fixed-point parameters once from ``student.pt`` (integer
weights and biases, power-of-two scales, activation widths, rounding) and runs each layer as one dense GEMM on
integer codes followed by the activation quantizer, in the narrowest *exact* floating-point type:

* a layer ``y = Q((x_int @ w_int) · s_in·s_w + b_int · s_b)`` is computed in units ``V`` of its finest needed bit,
  so every partial sum of the GEMM is an integer multiple of ``V``. A float type with a ``m``-bit mantissa adds such
  numbers exactly while their magnitude stays below ``2^m · V``, in whatever order the BLAS sums them. The bound
  ``max|x_int| · max_j Σ_i |w_int[i, j]| + |b|`` is computed per layer from the actual integers and decides:
  float32 (``m = 24``, the fast path) or float64 (``m = 53``); a layer beyond that is refused.
* with ``floor`` rounding (hls4ml ``AP_TRN``) the bias is truncated to the GEMM's unit beforehand:
  ``floor((n + f) / 2^j) = floor(n / 2^j)`` for an integer ``n``, ``0 <= f < 1`` and ``j >= 0``, so the bias's
  fractional bits below the output LSB never change a code and cost no mantissa bits. ``round_half_even`` keeps
  them (ties depend on them) and uses ``torch.round`` (ties to even, like Brevitas).
* ReLU + unsigned quantizer is ``clamp(Q(pre), 0, 2^b - 1)``; the output quantizer clamps to its signed range, so
  the returned value is the score in units of the output LSB — the integers every other leg is compared in.
* Deep Sets mean pooling over ``P = 2^k`` particles is the integer sum with the scale divided by ``P`` (exact).
* the bias enters the GEMM as one more weight column against a row of ones in the activations (``[W | b] @ [h; 1]``):
  one more integer multiple of ``V`` in the same sum, already counted in the bound, so folding it in stays exact
  and saves the separate bias pass.

Speed (CPU): activations are transposed (``[width + 1, rows]``, rows = jets × particles, particle-major) so that the
long axis is the GEMM's N dimension and the pooling sum runs over a middle axis (vectorised over jets); each thread
reuses one set of buffers (no allocation per chunk) and chunks are sized so a chunk's activations stay near L2
cache. ``torch.compile`` of the chunk forward (fusing floor, clamp and the pooling sum) was measured 17–23 % faster
single-threaded but costs 25–106 s of compilation per process on this 2-core CI machine, so it is not used.

:func:`score_file` streams a canonical jet file through the L1 input quantizer and this emulator in fixed-size
batches (memory bounded by the batch, not the file) — the tool for 10^8-jet background rates.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.errors import JbotEdgeError

#: Integers below 2**MANTISSA_BITS[dtype] are exact in that float type (implicit bit included).
MANTISSA_BITS = {torch.float32: 24, torch.float64: 53}
#: Jets per CPU work item with one thread: large enough that the ~20 Python-level ops of a chunk are a small share,
#: small enough that its activations (Deep Sets: [16 + 1, 16·1024] float32, 1.1 MiB) stay near L2 cache. Measured
#: single-thread (benchmarks/emulate_fast.py --chunks): Deep Sets flat from 512 to 2048, MLP best at 1024–2048.
CPU_CHUNK_JETS = 1024
#: ... with several threads: every torch op releases and re-takes the GIL, and with two threads each hand-over waits
#: for the other thread's wake-up, so fewer, larger chunks win (2 threads, Deep Sets: 512 → 1.3–1.6, 1024 → 1.6–2.5,
#: 2048 → 2.2–3.8, 4096 → 2.8–3.4 M jets/s on this shared 2-core machine; MLP best at 4096).
CPU_CHUNK_JETS_THREADED = 4096


@dataclass(frozen=True)
class QuantLayer:
    """One linear layer + its output quantizer, in exact float form: ``clamp(Q(x @ weight + bias), lo, hi)``."""

    weight: torch.Tensor  # [n_in, n_out], w_int · s_in·s_w / s_out (power-of-two multiples of integers)
    bias: torch.Tensor  # [n_out], in output-code units
    lo: int
    hi: int
    rounding: str  # "floor" | "round_half_even"
    name: str = ""
    #: Bits of the exact pre-activation below the output LSB (0: the quantizer never rounds at this layer).
    dropped_bits: int = 0

    def augmented(self, dtype: torch.dtype) -> torch.Tensor:
        """``[W^T | b]`` [n_out, n_in + 1]: the bias as the weight of a row of ones (a widening cast stays exact)."""
        return torch.cat([self.weight.T, self.bias[:, None]], dim=1).to(dtype).contiguous()

    def apply(self, augmented: torch.Tensor, h: torch.Tensor, out: torch.Tensor,
              trace: list[torch.Tensor] | None = None) -> None:
        """``h`` [n_in + 1, rows] (last row ones) → output codes in ``out`` [n_out, rows]; with ``trace``, the exact
        pre-activation (output-code units, before rounding and clamping) is appended to it."""
        torch.mm(augmented, h, out=out)
        if trace is not None:
            trace.append(out.clone())
        (out.floor_() if self.rounding == "floor" else out.round_()).clamp_(self.lo, self.hi)


class Workspace:
    """Activation buffers ``[width + 1, rows]`` whose last row is ones (the augmented GEMMs' bias input), made once
    per (tag, rows) and reused by every chunk of that size: one workspace per thread and call, so a chunk allocates
    nothing and the per-chunk Python work is a handful of ops. Holds at most two sizes per tag (full chunk + tail)."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype
        self._buffers: dict[tuple[str, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def take(self, tag: str, width: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(buffer [width + 1, rows] with its ones row, its first ``width`` rows as a contiguous view)."""
        key = (tag, width, rows)
        if key not in self._buffers:
            buffer = torch.empty(width + 1, rows, dtype=self.dtype, device=self.device)
            buffer[width].fill_(1)
            self._buffers[key] = buffer, buffer[:width]
        return self._buffers[key]


def _pow2_exponent(value: float, what: str) -> int:
    mantissa, exponent = math.frexp(float(value))
    if mantissa != 0.5:
        raise JbotEdgeError(f"fast emulator: {what} scale {value!r} is not a power of two")
    return exponent - 1


def _quant_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def make_layer(w_int: np.ndarray, in_scale: float, w_scale: float, b_int: np.ndarray, b_scale: float,
               out_scale: float, out_range: tuple[int, int], in_max: int, rounding: str,
               name: str) -> tuple[QuantLayer, int]:
    """An exact :class:`QuantLayer` for integer weights ``w_int`` [n_out, n_in] and biases; returns it with the
    largest absolute output code (the next layer's ``in_max``)."""
    e_gemm = _pow2_exponent(in_scale, f"{name} input") + _pow2_exponent(w_scale, f"{name} weight")
    e_bias = _pow2_exponent(b_scale, f"{name} bias")
    e_out = _pow2_exponent(out_scale, f"{name} output")
    w_int = np.asarray(w_int, dtype=np.int64)
    b_int = np.asarray(b_int, dtype=np.int64)
    e_unit = min(e_gemm, e_out)  # V = 2^e_unit: the finest bit that can change an output code under floor
    if rounding == "floor":
        # floor(b · 2^(e_bias - e_unit)): exact truncation of the bits below V (see the module docstring).
        bias_units = b_int << (e_bias - e_unit) if e_bias >= e_unit else b_int >> (e_unit - e_bias)
    else:
        e_unit = min(e_unit, e_bias)
        bias_units = b_int << (e_bias - e_unit)
    gemm_units = np.abs(w_int).sum(axis=1) << (e_gemm - e_unit)
    bound = int(in_max) * int(gemm_units.max(initial=0)) + int(np.abs(bias_units).max(initial=0))
    dtype = next((t for t, m in MANTISSA_BITS.items() if bound < 2 ** m), None)
    if dtype is None:
        raise JbotEdgeError(f"fast emulator: layer {name} needs {bound.bit_length()} exact bits, more than float64")
    to_out = 2.0 ** (e_unit - e_out)
    weight = torch.tensor(w_int.T * 2.0 ** (e_gemm - e_out), dtype=dtype).contiguous()
    bias = torch.tensor(bias_units * to_out, dtype=dtype)
    layer = QuantLayer(weight, bias, int(out_range[0]), int(out_range[1]), rounding, name, e_out - e_unit)
    return layer, max(abs(out_range[0]), abs(out_range[1]))


class FastEmulator:
    """Integer emulation of a Deep Sets or MLP student: ``score_codes(codes [N, P, F]) -> int64 [N]`` in output
    LSB units, bit-identical to Brevitas / QONNX / C simulation / Verilator."""

    def __init__(self, spec: L1InputSpec, kind: str, per_particle: list[QuantLayer], pool_shift: int | None,
                 per_jet: list[QuantLayer], input_range: tuple[int, int], output_lsb: float,
                 jet_term: Any = None):
        self.spec = spec
        self.jet_term = jet_term  # JetTermConfig or None: added to the network's codes (models/jet_term.py)
        self.kind = kind
        self.per_particle = per_particle
        self.pool_shift = pool_shift  # None: no pooling (MLP); else the power-of-two divisor's exponent (mean)
        self.per_jet = per_jet
        self.input_range = input_range
        self.output_lsb = output_lsb
        self._augmented: dict[torch.device, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    @classmethod
    def from_student(cls, path: str | os.PathLike[str]) -> FastEmulator:
        """Read ``STUDENT_DIR`` / ``student.pt`` (e.g. ``FW_DIR/student.pt``)."""
        from jbot_edge.models.students import load_student

        model, cfg, spec, _ = load_student(path)
        return cls.from_model(model, cfg, spec)

    @classmethod
    def from_model(cls, model: torch.nn.Module, cfg: Any, spec: L1InputSpec) -> FastEmulator:
        """Extract integers and scales from a Brevitas student (eval mode)."""
        model.eval()
        with torch.no_grad():
            in_scale = float(model.input_quant.act_quant.scale())
            if in_scale != spec.input_scale:
                raise JbotEdgeError(f"fast emulator: input quantizer scale {in_scale} != spec {spec.input_scale}")
            in_range = _act_range(model.input_quant)
            scale, in_max = in_scale, max(abs(in_range[0]), spec.code_bounds()[1].max())
            if cfg.kind == "deepsets":
                phi, scale, in_max = _stack(model.phi, scale, in_max, cfg.rounding, "phi")
                pool_shift = int(math.log2(spec.n_particles)) if cfg.pooling == "mean" else 0
                scale, in_max = scale / 2 ** pool_shift, in_max * spec.n_particles
                rho, scale, in_max = _stack(model.rho, scale, in_max, cfg.rounding, "rho")
            else:
                phi, pool_shift = [], None
                rho, scale, in_max = _stack(model.body, scale, in_max, cfg.rounding, "mlp")
            out_scale = float(model.output_quant.act_quant.scale())
            head, _ = _linear(model.head, scale, in_max, out_scale, _act_range(model.output_quant),
                              cfg.rounding, "head")
        return cls(spec, cfg.kind, phi, pool_shift, [*rho, head], in_range, out_scale, cfg.jet_term)

    @property
    def dtype(self) -> torch.dtype:
        """float32 when every layer fits its mantissa, else float64 (one type for the whole network)."""
        layers = [*self.per_particle, *self.per_jet]
        return torch.float64 if any(layer.weight.dtype == torch.float64 for layer in layers) else torch.float32

    def _weights(self, device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The augmented weights ``[W^T | b]`` of the per-particle and per-jet layers on ``device`` (made once)."""
        if device not in self._augmented:
            self._augmented[device] = ([layer.augmented(self.dtype).to(device) for layer in self.per_particle],
                                       [layer.augmented(self.dtype).to(device) for layer in self.per_jet])
        return self._augmented[device]

    def score_codes(self, codes: np.ndarray | torch.Tensor, device: str | torch.device | None = None,
                    threads: int | None = None, chunk: int | None = None) -> np.ndarray:
        """Scores (int64 [N], output LSB units) of integer codes ``[N, P, F]``: the network's (see
        :meth:`network_codes` for ``device``, ``threads``, ``chunk``) plus the student's jet term, if any."""
        scores = self.network_codes(codes, device, threads, chunk)
        if self.jet_term is None:
            return scores
        from jbot_edge.models.jet_term import jet_term_codes

        codes = codes.cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
        codes = np.clip(codes, *self.input_range)  # what the network reads, as the input quantizer saturates
        return scores + jet_term_codes(self.jet_term, self.spec.feature_names, codes)

    def network_codes(self, codes: np.ndarray | torch.Tensor, device: str | torch.device | None = None,
                      threads: int | None = None, chunk: int | None = None) -> np.ndarray:
        """The network's scores (int64 [N], output LSB units) of integer codes ``[N, P, F]``.

        On CPU the batch is cut into ``chunk``-jet pieces (default :data:`CPU_CHUNK_JETS`, or
        :data:`CPU_CHUNK_JETS_THREADED` with several threads), scored by ``threads`` Python threads (torch releases
        the GIL; default: torch's thread count) with one intra-op thread each. On
        another ``device`` (``cuda``) the whole batch is one GEMM per layer."""
        device = torch.device(device or "cpu")
        if device.type != "cpu":
            codes = torch.as_tensor(codes).to(device)
            return self._forward(codes, Workspace(device, self.dtype)).to(torch.int64).cpu().numpy()
        codes = torch.as_tensor(np.asarray(codes))
        out = torch.empty(len(codes), dtype=torch.int64)
        threads = threads or torch.get_num_threads()
        chunk = chunk or (CPU_CHUNK_JETS if threads <= 1 else CPU_CHUNK_JETS_THREADED)
        pieces = [(lo, min(lo + chunk, len(codes))) for lo in range(0, len(codes), chunk)]
        local = threading.local()

        def run(piece: tuple[int, int]) -> None:
            if not hasattr(local, "workspace"):
                local.workspace = Workspace(device, self.dtype)
            out[piece[0]:piece[1]] = self._forward(codes[piece[0]:piece[1]], local.workspace)

        if threads <= 1 or len(pieces) <= 1:
            for piece in pieces:
                run(piece)
            return out.numpy()
        from concurrent.futures import ThreadPoolExecutor

        before = torch.get_num_threads()
        torch.set_num_threads(1)  # parallel over chunks, not inside the small GEMMs
        try:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, pieces))
        finally:
            torch.set_num_threads(before)
        return out.numpy()

    @property
    def layers(self) -> list[QuantLayer]:
        """Every quantized layer in order (per-particle, then per-jet, the output head last)."""
        return [*self.per_particle, *self.per_jet]

    def pre_activations(self, codes: np.ndarray) -> list[np.ndarray]:
        """The exact pre-activation of every layer (output-code units, float64 ``[rows, n_out]``) on codes
        ``[N, P, F]``: rows are jets, or ``jet * P + particle`` for the per-particle layers of a Deep Sets."""
        codes = torch.as_tensor(np.asarray(codes))
        n, p = codes.shape[:2]
        trace: list[torch.Tensor] = []
        self._forward(codes, Workspace(codes.device, self.dtype), trace)
        per_particle = len(self.per_particle)  # traced particle-major ([w, P·n]): back to jet-major rows
        return [(pre.view(-1, p, n).permute(2, 1, 0).reshape(n * p, -1) if i < per_particle else pre.T)
                .to(torch.float64).numpy() for i, pre in enumerate(trace)]

    def _forward(self, codes: torch.Tensor, workspace: Workspace,
                 trace: list[torch.Tensor] | None = None) -> torch.Tensor:
        """int codes [n, P, F] → scores [n] (integer-valued floats; no tensor here requires grad, so no autograd).
        Activations are transposed ([width + 1, rows], last row ones): the long row axis is the GEMM's N dimension,
        which BLAS handles far better than a [rows, 32] × [32, 32] product; Deep Sets rows are particle-major
        (P blocks of n jets), so pooling sums P contiguous [width, n] blocks instead of a length-P inner axis.
        With ``trace``, each layer's pre-activation [n_out, rows] is appended (see :meth:`pre_activations`)."""
        n, p, f = codes.shape
        if self.pool_shift is None:  # MLP: one row per (particle, feature), as the flattened [n, P·F] input
            h, body = workspace.take("input", p * f, n)
            body.view(p, f, n).copy_(codes.permute(1, 2, 0))
        else:
            h, body = workspace.take("input", f, p * n)
            body.view(f, p, n).copy_(codes.permute(2, 1, 0))
        body.clamp_(*self.input_range)
        per_particle_w, per_jet_w = self._weights(codes.device)
        for i, (layer, weight) in enumerate(zip(self.per_particle, per_particle_w)):
            out, body = workspace.take(f"phi{i}", weight.shape[0], p * n)
            layer.apply(weight, h, body, trace)
            h = out
        if self.pool_shift is not None:
            pooled, pooled_body = workspace.take("pool", body.shape[0], n)
            torch.sum(body.view(-1, p, n), dim=1, out=pooled_body)  # integer codes: the sum is exact
            h = pooled
        for i, (layer, weight) in enumerate(zip(self.per_jet, per_jet_w)):
            out, body = workspace.take(f"rho{i}", weight.shape[0], n)
            layer.apply(weight, h, body, trace)
            h = out
        return body[0]

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        return self.score_codes(codes)


def _act_range(module: torch.nn.Module) -> tuple[int, int]:
    quant = module.act_quant
    return _quant_range(int(quant.bit_width()), bool(quant.is_signed), bool(quant.is_narrow_range))


def _linear(linear: torch.nn.Module, in_scale: float, in_max: int, out_scale: float, out_range: tuple[int, int],
            rounding: str, name: str) -> tuple[QuantLayer, int]:
    weight = linear.quant_weight()
    bias = linear.bias_quant(linear.bias)
    w_int = torch.round(weight.value / weight.scale).to(torch.int64).numpy()
    b_int = torch.round(bias.value / bias.scale).to(torch.int64).numpy()
    return make_layer(w_int, in_scale, float(weight.scale), b_int, float(bias.scale), out_scale, out_range, in_max,
                      rounding, name)


def _stack(sequential: torch.nn.Module, scale: float, in_max: int, rounding: str,
           name: str) -> tuple[list[QuantLayer], float, int]:
    """``QuantLinear → QuantReLU`` pairs → layers, with the scale and largest code of the last activation."""
    modules = list(sequential)
    layers = []
    for i in range(0, len(modules), 2):
        linear, relu = modules[i], modules[i + 1]
        out_scale = float(relu.act_quant.scale())
        layer, in_max = _linear(linear, scale, in_max, out_scale, _act_range(relu), rounding, f"{name}.{i}")
        layers.append(layer)
        scale = out_scale
    return layers, scale, in_max


# -- streaming ------------------------------------------------------------------------------------------------------
def iter_file_codes(path: str | os.PathLike[str], spec: L1InputSpec, batch_size: int = 65536,
                    stop: int | None = None) -> Iterator[np.ndarray]:
    """L1 codes of a canonical jet file in batches of ``batch_size`` jets (memory: one batch)."""
    from jbot_edge.data.reader import JetFile

    with JetFile(path) as jets:
        spec.check_file(jets)
        for batch in jets.iter_batches(batch_size, particle_features=spec.stored_feature_names, jet_features=[],
                                       stop=stop):
            yield spec.quantize(batch)


def score_file(emulator: FastEmulator, path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
               batch_size: int = 65536, stop: int | None = None) -> dict[str, Any]:
    """Score every jet of ``path`` (or the first ``stop``) in bounded memory; with ``out``, write the int64 scores
    to the HDF5 dataset ``scores_lsb`` (attrs: output_lsb, source). Returns counts, timing and a histogram-free
    summary (min/max code, number of jets) and the time spent scoring vs reading + L1-quantising."""
    import time

    import h5py

    from jbot_edge.atomic import atomic_path

    start = time.perf_counter()
    n, lo, hi, score_s = 0, None, None, 0.0
    with atomic_path(Path(out)) if out is not None else contextlib.nullcontext(None) as tmp:
        h5 = h5py.File(tmp, "w") if tmp is not None else None
        try:
            ds = None
            if h5 is not None:
                ds = h5.create_dataset("scores_lsb", shape=(0,), maxshape=(None,), dtype="int64",
                                       chunks=(min(batch_size, 1 << 16),))
                h5.attrs["output_lsb"] = emulator.output_lsb
                h5.attrs["source"] = str(path)
            for codes in iter_file_codes(path, emulator.spec, batch_size, stop):
                tick = time.perf_counter()
                scores = emulator.score_codes(codes)
                score_s += time.perf_counter() - tick
                if ds is not None:
                    ds.resize((n + len(scores),))
                    ds[n:] = scores
                n += len(scores)
                lo = int(scores.min()) if lo is None else min(lo, int(scores.min()))
                hi = int(scores.max()) if hi is None else max(hi, int(scores.max()))
        finally:
            if h5 is not None:
                h5.close()
    wall = time.perf_counter() - start
    return {"n": n, "min_lsb": lo, "max_lsb": hi, "wall_s": wall, "score_s": score_s,
            "jets_per_s": n / wall if wall else None, "scoring_jets_per_s": n / score_s if score_s else None}


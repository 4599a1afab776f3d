"""The bit-exact emulation harness: Brevitas student vs QONNX execution vs hls4ml C simulation.

All legs read the same integer codes (from :class:`~jbot_edge.data.l1quant.L1InputSpec`); each leg's scores are
turned into integers in units of the output LSB (the student's output quantizer scale, read from the QONNX graph and
checked against the student) and compared exactly.

Firmware directory (written by ``jbot-edge synth``; this module only reads it)::

    FW_DIR/firmware.json      {"schema": "jbot-edge.firmware/1", "project_name", "hls_dir", "library" (relative
                               path of the compiled C simulation), "n_inputs", "n_outputs", "output_lsb",
                               "hls": HlsConfig, "layer_precisions", "student_summary"}
    FW_DIR/student.pt         copy of the student checkpoint
    FW_DIR/model.qonnx.onnx   the exported, hls4ml-prepared QONNX graph
    FW_DIR/quantizer_spec.json L1InputSpec.describe()
    FW_DIR/hls/               the hls4ml project (C simulation library under hls/firmware/)
    FW_DIR/rtl/               the da4ml Verilog (jbot_edge.firmware.rtl), when synth built it

``emulate.json`` (schema ``jbot-edge.emulate/1``)::

    {"schema", "firmware", "data", "n" (data jets), "n_fuzz", "output_lsb", "legs": [...], "csim_source":
     "compiled library from synth" | "reconverted from model.qonnx.onnx",
     "datasets": {"data": RESULT, "fuzz": RESULT}, "exact": bool (every comparison of every dataset exact),
     "throughput_jets_per_s": {leg: float}}
    RESULT = {"n": int, "comparisons": {"brevitas_vs_qonnx": {"exact": int, "mismatched": int,
              "max_abs_diff_lsb": int}, "brevitas_vs_csim": ..., "qonnx_vs_csim": ...},
              "first_mismatches": [{"index", "name", "codes" [[P][F]], "physical" [[P][F]], "scores_lsb": {leg: int}}]}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import get_logger

log = get_logger(__name__)

FIRMWARE_SCHEMA = "jbot-edge.firmware/1"
EMULATE_SCHEMA = "jbot-edge.emulate/1"
LEGS = ("brevitas", "qonnx", "csim")
#: Optional leg (``emulate --fast``): the vectorised integer emulator, for rate studies on 10^8 jets.
FAST_LEG = "fast"
MAX_REPORTED_MISMATCHES = 10


@dataclass
class Firmware:
    """Everything needed to score codes with each leg."""

    directory: Path
    spec: L1InputSpec
    output_lsb: float
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]]
    csim_source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    legs: tuple[str, ...] = LEGS

    def score_lsb(self, leg: str, codes: np.ndarray) -> np.ndarray:
        """Integer scores (int64 [N], output LSB units) of one leg on codes [N, P, F]."""
        from jbot_edge.firmware.export import to_codes

        if leg == FAST_LEG:  # scores integer codes directly (jbot_edge.firmware.fast_emulate)
            return self.scorers[leg](codes)
        x = self.spec.to_model_input(codes)
        if leg == "brevitas":
            return self.scorers[leg](x)
        return to_codes(self.scorers[leg](x), self.output_lsb)


def read_firmware_metadata(fw_dir: Path) -> dict[str, Any]:
    path = fw_dir / "firmware.json"
    if not path.is_file():
        raise JbotEdgeError(f"{fw_dir} is not a firmware directory from `jbot-edge synth` (no firmware.json)")
    meta = json.loads(path.read_text())
    if meta.get("schema") != FIRMWARE_SCHEMA:
        raise JbotEdgeError(f"{path}: schema {meta.get('schema')!r} is not {FIRMWARE_SCHEMA!r}")
    return meta


def load_firmware(fw_dir: str | Path, qonnx_batch: int = 1024, fast: bool = False) -> Firmware:
    """Load the legs listed in ``FW_DIR/firmware.json`` (brevitas, qonnx, and csim and/or rtl). The RTL leg is the
    Verilator simulation of ``FW_DIR/rtl`` (built once, cached there); next to an HLS project it is skipped with a
    warning when verilator is not installed, for ``synth --backend rtl`` it is required.
    With ``fast`` the vectorised integer emulator (:mod:`jbot_edge.firmware.fast_emulate`) is a leg too.
    The C simulation library written by synth is loaded as is; if it is
    missing it is rebuilt from the saved QONNX graph (deterministic: same graph, same config) into a scratch
    directory, and ``csim_source`` says so."""
    import torch

    from jbot_edge.firmware.export import (
        QonnxExecutor,
        load_qonnx,
        output_scale_from_graph,
    )
    from jbot_edge.models.students import load_student, output_lsb, score_codes

    fw_dir = Path(fw_dir)
    if not fw_dir.is_dir():
        raise JbotEdgeError(f"firmware directory {fw_dir} does not exist")
    meta = read_firmware_metadata(fw_dir)
    model, student_cfg, spec, _ = load_student(fw_dir / "student.pt")
    graph = load_qonnx(fw_dir / "model.qonnx.onnx")
    lsb = output_scale_from_graph(graph)
    if lsb != output_lsb(model):
        raise JbotEdgeError(f"{fw_dir}: output LSB of model.qonnx.onnx ({lsb}) differs from student.pt's "
                            f"({output_lsb(model)}); the firmware directory is inconsistent")

    def brevitas(x: np.ndarray) -> np.ndarray:
        return score_codes(model, torch.from_numpy(np.asarray(x, dtype=np.float32)))

    legs = list(meta.get("legs", LEGS))
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]] = {"brevitas": brevitas,
                                                              "qonnx": QonnxExecutor(graph, qonnx_batch)}
    source = "no C simulation (RTL backend)"
    if "csim" in legs:
        scorers["csim"], source = _load_csim(fw_dir, meta, graph, spec)
    if "rtl" in legs:
        rtl = _load_rtl_scorer(fw_dir / meta["rtl_dir"], required=meta.get("backend") == "rtl")
        if rtl is None:
            legs.remove("rtl")
        else:
            scorers["rtl"] = rtl
    if fast:
        from jbot_edge.firmware.fast_emulate import FastEmulator

        scorers[FAST_LEG] = FastEmulator.from_model(model, student_cfg, spec)
        legs.append(FAST_LEG)
    return Firmware(fw_dir, spec, lsb, scorers, source, meta, legs=tuple(legs))


def _load_rtl_scorer(rtl_dir: Path, required: bool):
    """The Verilator simulation of the RTL as a scorer of model inputs; None (with a warning) when Verilator is not
    installed and the RTL is only an estimate next to an HLS project."""
    from jbot_edge.firmware.rtl import RtlSimulator, find_verilator

    if find_verilator() is None and not required:
        log.warning("%s holds RTL but verilator is not on PATH: the RTL leg is skipped "
                    "(apt-get install -y verilator)", rtl_dir.parent)
        return None
    simulator = RtlSimulator(rtl_dir)
    log.info("building/loading the Verilator simulation of %s", rtl_dir)
    simulator.build()
    return simulator.predict_scores


def _load_csim(fw_dir: Path, meta: dict[str, Any], graph, spec: L1InputSpec):
    from jbot_edge.firmware.convert import CSim, HlsConfig, build_csim_library, compile_csim, convert

    library = fw_dir / meta["library"]
    n_inputs = spec.n_particles * spec.n_features
    weights_dir = (fw_dir / meta["hls_dir"] / "firmware" / "weights").resolve()
    if library.is_file() and meta.get("weights_dir") == str(weights_dir):
        csim = CSim(library, meta["project_name"], n_inputs, meta.get("n_outputs", 1))
        source = "compiled library from synth"
    elif (fw_dir / meta["hls_dir"] / "build_lib.sh").is_file():
        # The directory was moved: the library's baked-in weights path is stale. Recompile the saved project
        # (no reconversion) so that it reads the weights from where they are now.
        log.warning("%s was moved since synth: recompiling its C simulation in place", fw_dir)
        library = build_csim_library(fw_dir / meta["hls_dir"], meta["project_name"])
        csim = CSim(library, meta["project_name"], n_inputs, meta.get("n_outputs", 1))
        source = "recompiled the saved hls4ml project (firmware directory was moved)"
    else:
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="jbot-edge-csim-"))
        log.warning("%s is missing: reconverting model.qonnx.onnx into %s", library, scratch)
        hls_cfg = HlsConfig.model_validate(meta["hls"])
        hls_model = convert(graph, spec, hls_cfg, scratch / "hls")
        csim = CSim(compile_csim(hls_model), hls_cfg.project_name, n_inputs)
        source = f"reconverted from model.qonnx.onnx into {scratch}"
    return csim, source


def compare(firmware: Firmware, codes: np.ndarray, names: list[str] | None = None,
            legs: tuple[str, ...] | None = None, timings: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """Score ``codes`` with every leg and compare each pair exactly; returns a RESULT (see module docstring)."""
    legs = firmware.legs if legs is None else legs
    codes = firmware.spec.check_codes(codes)
    scores: dict[str, np.ndarray] = {}
    for leg in legs:
        start = time.perf_counter()
        scores[leg] = firmware.score_lsb(leg, codes)
        if timings is not None:
            timings.setdefault(leg, []).extend([time.perf_counter() - start, len(codes)])
    comparisons: dict[str, Any] = {}
    any_mismatch = np.zeros(len(codes), dtype=bool)
    for i, a in enumerate(legs):
        for b in legs[i + 1:]:
            diff = np.abs(scores[a] - scores[b])
            mismatch = diff != 0
            any_mismatch |= mismatch
            comparisons[f"{a}_vs_{b}"] = {"exact": int((~mismatch).sum()), "mismatched": int(mismatch.sum()),
                                          "max_abs_diff_lsb": int(diff.max()) if len(diff) else 0}
    first = []
    for index in np.flatnonzero(any_mismatch)[:MAX_REPORTED_MISMATCHES]:
        first.append({
            "index": int(index),
            "name": names[index] if names else None,
            "codes": codes[index].tolist(),
            "physical": np.round(firmware.spec.dequantize(codes[index]), 6).tolist(),
            "scores_lsb": {leg: int(scores[leg][index]) for leg in legs},
        })
    return {"n": len(codes), "comparisons": comparisons, "first_mismatches": first}


def all_exact(result: dict[str, Any]) -> bool:
    return all(c["mismatched"] == 0 for c in result["comparisons"].values())


def throughput(timings: dict[str, list[float]]) -> dict[str, float]:
    """jets/s per leg from ``compare``'s ``timings`` (alternating seconds, jets)."""
    out = {}
    for leg, values in timings.items():
        seconds, jets = sum(values[0::2]), sum(values[1::2])
        out[leg] = round(jets / seconds, 1) if seconds > 0 else None
    return out

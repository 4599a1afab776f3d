"""Build the student's Verilog with da4ml, pipelined for the board clock, and describe it in ``rtl.json``.

RTL directory (``build_rtl``'s ``out_dir``; relocatable: every path inside is relative)::

    rtl.json                  the description below (schema ``jbot-edge.rtl/1``)
    model.qonnx.onnx          the QONNX graph that was traced (only when build_rtl exported it itself)
    src/<top>.v               pipelined top module: clk, model_inp, model_out (da4ml's packed port layout)
    src/<top>_stage<k>.v      one combinational module per pipeline stage
    src/<top>_wrapper.v       uniform-width wrapper (every element in a W-bit slot) used by the simulation
    src/static/*.v            da4ml's shift-adder / negation / mux primitives
    src/<top>.xdc, .sdc       clock constraint for the target period
    build_vivado_prj.tcl      da4ml's Vivado project script (out-of-context synthesis + place & route)
    model/pipeline.json       da4ml's pipeline (stages of adder graphs), for da4ml's own tools
    sim/                      Verilator build cache (RtlSimulator), yosys/ (estimate_with_yosys)

``rtl.json``::

    {"schema": "jbot-edge.rtl/1", "top": "jbot_student", "wrapper": "jbot_student_wrapper",
     "board": "vu13p", "part": "xcvu13p-flga2577-2-e", "clock_ns": 4.167,
     "pipeline": {"stages": 10, "latency_cycles": 10, "ii": 1, "latency_ns": 41.67,
                  "latency_cutoff_adders": 3, "adder_levels_per_ns": 0.75, "combinational_adder_levels": 26,
                  "registers": "input and output registered; a jet presented at clock edge n leaves at edge n+10"},
     "da4ml": {"version": "0.6.0", "hard_dc": 2, "lut_estimate": 28897.5, "ff_estimate": 9876,
               "multipliers": 0, "ops": {"Quant": 13, "MatMul": 4, ...}},
     "input": {"n": 48, "order": "particle-major: element p*F + f is feature f of particle p",
               "features": [{"name": "part_pt", "code_bits": 12, "signed": false, "port_bits": 12}, ...],
               "slot_bits": 13, "slot_frac_bits": 6, "code_shift": 0,
               "wrapper_port": "model_inp[n*slot_bits-1:0]: element j in bits [j*slot_bits, (j+1)*slot_bits), "
                               "two's complement, value = code * 2**code_shift"},
     "output": {"slot_bits": 16, "signed": true, "frac_bits": 10, "code_shift": 0, "output_lsb": 0.0009765625,
                "output_bits": 16, "meaning": "score = code * output_lsb; code = port value * 2**code_shift"},
     "rounding": "floor", "precisions": {QONNX Quant node: "fixed<W,I>" | "ufixed<W,I>"},
     "traced_graph": "model.qonnx.onnx" | null (the caller's graph, e.g. synth's),
     "student": {...students.summary()}, "config": RtlConfig, "files": [...]}

Pipelining: da4ml measures delay in adder levels (its ``latency``); each stage may hold ``latency_cutoff`` levels,
``floor(clock_ns × adder_levels_per_ns)``. The default is 0.75 levels per ns (3 levels at 240 MHz), not da4ml's own
one per ns (cutoff 5 at its 5 ns default clock): with one per ns the demo's 6-bit Deep Sets student was built in
7 stages of which two missed 4.167 ns on the yosys netlist with the sourced per-level delays of
:mod:`jbot_edge.firmware.rtl.timing` (4.35 and 5.04 ns, fmax 198 MHz); with 0.75 it has 10 stages, 41.7 ns, deepest
stage 3.51 ns (fmax 285 MHz), inside the 50 ns budget. It remains a heuristic — only vendor place and route proves
timing closure — which is why it is a setting, recorded in rtl.json, and checked on the netlist by ``timing``.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from jbot_edge.config import StrictModel
from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import get_logger

log = get_logger(__name__)

RTL_SCHEMA = "jbot-edge.rtl/1"
RTL_DESCRIPTION = "rtl.json"
TRACED_GRAPH = "model.qonnx.onnx"
#: Bits the simulation binder moves per element (int32 buffers).
_BINDER_BITS = 32


class RtlConfig(StrictModel):
    """Settings of the RTL backend (``synth --backend rtl``)."""

    top: str = Field(default="jbot_student", pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="top module name")
    adder_levels_per_ns: float = Field(default=0.75, gt=0, le=10,
                                       description="adder levels one pipeline stage may chain per ns of clock period")
    latency_cutoff: int | None = Field(default=None, ge=1,
                                       description="adder levels per stage; overrides adder_levels_per_ns")
    hard_dc: int = Field(default=2, ge=-1, le=16,
                         description="da4ml delay constraint per constant-matrix block (-1: unconstrained)")

    def cutoff(self, clock_ns: float) -> int:
        if self.latency_cutoff is not None:
            return self.latency_cutoff
        return max(1, math.floor(clock_ns * self.adder_levels_per_ns + 1e-9))


@dataclass
class RtlDesign:
    """A built RTL directory and its description (``rtl.json``)."""

    directory: Path
    description: dict[str, Any]

    @property
    def top(self) -> str:
        return self.description["top"]

    @property
    def wrapper(self) -> str:
        return self.description["wrapper"]

    @property
    def stages(self) -> int:
        return int(self.description["pipeline"]["stages"])

    @property
    def latency_cycles(self) -> int:
        return int(self.description["pipeline"]["latency_cycles"])

    @property
    def clock_ns(self) -> float:
        return float(self.description["clock_ns"])

    @property
    def output_lsb(self) -> float:
        return float(self.description["output"]["output_lsb"])

    def latency_ns(self, clock_ns: float | None = None) -> float:
        return round(self.latency_cycles * (self.clock_ns if clock_ns is None else clock_ns), 3)

    # -- integer codes <-> the int32 element buffers of da4ml's wrapper / interpreter --------------------------
    def encode_inputs(self, codes: np.ndarray) -> np.ndarray:
        """codes ``[N, P, F]`` → int32 ``[N, P*F]`` element values of the wrapper's input slots."""
        layout = self.description["input"]
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 3 or codes.shape[1] * codes.shape[2] != layout["n"]:
            raise JbotEdgeError(f"codes have shape {codes.shape}, the RTL design reads {layout['n']} inputs per jet")
        # The ports are exactly as wide as each feature's code: a wider value would be silently truncated.
        for j, feature in enumerate(layout["features"]):
            bits, signed = int(feature["code_bits"]), bool(feature["signed"])
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            column = codes[..., j]
            if column.size and (column.min() < lo or column.max() > hi):
                raise JbotEdgeError(f"input codes of {feature['name']} outside {lo}..{hi}, the RTL port's range")
        flat = codes.reshape(len(codes), -1) << int(layout["code_shift"])
        return np.ascontiguousarray(flat.astype(np.int32))

    def decode_outputs(self, raw: np.ndarray) -> np.ndarray:
        """Raw output slots (int32, low ``slot_bits`` significant) → int64 output codes (two's complement)."""
        layout = self.description["output"]
        bits = int(layout["slot_bits"])
        value = np.asarray(raw, dtype=np.int64) & ((1 << bits) - 1)
        if layout["signed"]:
            value = np.where(value >= (1 << (bits - 1)), value - (1 << bits), value)
        return _shift_exact(value, int(layout["code_shift"]))

    def interpret_codes(self, codes: np.ndarray, n_threads: int = 1) -> np.ndarray:
        """Output codes (int64 [N]) from da4ml's C++ interpreter of the traced computation (no Verilator)."""
        from da4ml.types import CombLogic

        comb = CombLogic.load(self.directory / "model" / "comb.json")
        frac = int(self.description["input"]["code_frac_bits"])
        x = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1) * 2.0 ** -frac
        y = np.asarray(comb.predict(x, n_threads=n_threads), dtype=np.float64).reshape(len(codes))
        scaled = y / self.output_lsb
        codes_out = np.rint(scaled)
        if not np.array_equal(codes_out, scaled):
            raise JbotEdgeError("da4ml interpreter produced a score that is not a multiple of the output LSB")
        return codes_out.astype(np.int64)

    def estimate(self):
        """da4ml's figures as a synth-report :class:`~jbot_edge.firmware.reports.Estimate`."""
        from jbot_edge.firmware.reports import Estimate

        d = self.description["da4ml"]
        resources = {"LUT": float(round(d["lut_estimate"])), "FF": float(d["ff_estimate"])}
        pipe = self.description["pipeline"]
        per_ns = "" if pipe["adder_levels_per_ns"] is None else f", {pipe['adder_levels_per_ns']:g} per ns"
        notes = [(f"latency = {self.stages} pipeline stages of the generated RTL (<= {pipe['latency_cutoff_adders']} "
                  f"adder levels each{per_ns}: a timing heuristic, only vendor place and route proves the clock), "
                  "II = 1 (fully pipelined)"),
                 "LUT = da4ml's adder-bit cost model, FF = pipeline register bits"]
        if d["multipliers"] == 0:
            resources["DSP"] = 0.0
            notes.append("DSP = 0: every constant multiplication is a shift-and-add adder graph")
        return Estimate(tool="da4ml", design=self.design_label(), latency_cycles=self.latency_cycles, ii=1,
                        resources=resources, notes=notes)

    def design_label(self) -> str:
        """The design the RTL figures describe."""
        return (f"da4ml RTL, fully parallel (II 1), {self.stages} pipeline stages at {self.clock_ns:g} ns "
                f"({self.description['part']})")


def _shift_exact(value: np.ndarray, shift: int) -> np.ndarray:
    if shift >= 0:
        return value << shift
    if np.any(value & ((1 << -shift) - 1)):
        raise JbotEdgeError("RTL output has bits below the output LSB; the design does not match the student")
    return value >> -shift


def load_rtl(rtl_dir: str | os.PathLike[str]) -> RtlDesign:
    """An RTL directory written by :func:`build_rtl`."""
    import json

    rtl_dir = Path(rtl_dir)
    path = rtl_dir / RTL_DESCRIPTION
    if not path.is_file():
        raise JbotEdgeError(f"{rtl_dir} is not an RTL directory from `jbot-edge synth --backend rtl` "
                            f"(no {RTL_DESCRIPTION})")
    description = json.loads(path.read_text())
    if description.get("schema") != RTL_SCHEMA:
        raise JbotEdgeError(f"{path}: schema {description.get('schema')!r} is not {RTL_SCHEMA!r}")
    return RtlDesign(rtl_dir, description)


def _resolve_student(student):
    """(model, spec, student_config) from a STUDENT_DIR / student.pt path or a built Brevitas student."""
    from jbot_edge.models.students import load_student

    if isinstance(student, (str, os.PathLike)):
        model, cfg, spec, _ = load_student(student)
        return model, spec, cfg
    cfg = getattr(student, "student_config", None)
    spec = getattr(student, "input_spec", None)
    if cfg is None or spec is None:
        raise JbotEdgeError("build_rtl needs a student from build_student/load_student (it carries its config and "
                            "input spec) or a STUDENT_DIR")
    return student, spec, cfg


def _io_layout(comb, spec, output_scale: float, output_bits: int, output_signed: bool) -> tuple[dict, dict]:
    from da4ml.codegen.rtl.rtl_model import get_io_kifs

    (k_in, i_in, f_in), (k_out, i_out, f_out) = get_io_kifs(comb)
    slot_in_frac = int(np.max(f_in))
    slot_in_bits = int(np.max(k_in) + np.max(i_in) + np.max(f_in))
    slot_out_frac = int(np.max(f_out))
    slot_out_bits = int(np.max(k_out) + np.max(i_out) + np.max(f_out))
    if slot_in_frac < spec.input_frac_bits:
        raise JbotEdgeError(f"RTL input keeps {slot_in_frac} fraction bits, fewer than the codes' "
                            f"{spec.input_frac_bits}: the design would drop input bits")
    if max(slot_in_bits, slot_out_bits) > _BINDER_BITS:
        raise JbotEdgeError(f"RTL input/output slots are {slot_in_bits}/{slot_out_bits} bits; the simulation "
                            f"moves at most {_BINDER_BITS} bits per element")
    out_frac_student = -int(math.log2(output_scale))
    features = []
    for j, (q, code_bits) in enumerate(zip(spec.features, spec.code_bits())):
        port_bits = int(k_in[j] + i_in[j] + f_in[j])  # first particle: all particles share the feature's type
        features.append({"name": q.name, "code_bits": code_bits, "signed": q.signed, "lsb": q.lsb,
                         "port_bits": port_bits})
    inputs = {
        "n": spec.n_particles * spec.n_features,
        "n_particles": spec.n_particles,
        "n_features": spec.n_features,
        "order": "particle-major: element p*F + f is feature f of particle p (codes.reshape(N, P*F))",
        "features": features,
        "code_frac_bits": spec.input_frac_bits,
        "slot_bits": slot_in_bits,
        "slot_frac_bits": slot_in_frac,
        "code_shift": slot_in_frac - spec.input_frac_bits,
        "wrapper_port": f"<wrapper>.model_inp[{slot_in_bits * spec.n_particles * spec.n_features - 1}:0]: element j in "
                        f"bits [j*{slot_in_bits}, (j+1)*{slot_in_bits}), two's complement, = code * 2**code_shift",
        "top_port": "<top>.model_inp: the elements' own widths (port_bits) packed back to back, element 0 lowest",
    }
    outputs = {
        "slot_bits": slot_out_bits,
        "signed": bool(np.max(k_out)),
        "frac_bits": slot_out_frac,
        "code_shift": out_frac_student - slot_out_frac,
        "output_lsb": output_scale,
        "output_bits": output_bits,
        "output_signed": output_signed,
        "meaning": "score = code * output_lsb; code = (two's complement port value) * 2**code_shift",
    }
    return inputs, outputs


def _patch_for_old_verilator(src_dir: Path) -> None:
    """Verilator < 5.008 stops on the unknown lint code WIDTHTRUNC (Debian bookworm ships 5.006). ``WIDTH`` is the
    older name of the same warning group; the pragma is a comment to every other tool."""
    for path in (src_dir / "static").glob("*.v"):
        text = path.read_text()
        patched = text.replace("lint_off WIDTHTRUNC", "lint_off WIDTH").replace("lint_on WIDTHTRUNC", "lint_on WIDTH")
        if patched != text:
            path.write_text(patched)


def build_rtl(student, out_dir: str | os.PathLike[str], board: str = "vu13p", clock_ns: float | None = None,
              config: RtlConfig | None = None, graph=None) -> RtlDesign:
    """Trace ``student`` (STUDENT_DIR, student.pt or a Brevitas student) through da4ml and write the pipelined
    Verilog and ``rtl.json`` into ``out_dir`` (atomically: a failed build leaves nothing behind).

    ``graph`` is the student's QONNX ``ModelWrapper`` when the caller already exported it (synth does); otherwise it
    is exported here and saved as ``out_dir/model.qonnx.onnx``. ``clock_ns`` defaults to the board's clock.
    """
    from jbot_edge.atomic import atomic_directory, write_json
    from jbot_edge.firmware.boards import load_board
    from jbot_edge.firmware.export import export_student
    from jbot_edge.firmware.rtl.tools import require_da4ml
    from jbot_edge.firmware.rtl.trace import trace_qonnx
    from jbot_edge.models.students import check_power_of_two_scales, summary

    da4ml_version = require_da4ml()
    config = config or RtlConfig()
    board_cfg = load_board(board)
    clock_ns = float(board_cfg.clock_ns if clock_ns is None else clock_ns)
    if not (math.isfinite(clock_ns) and clock_ns > 0):
        raise JbotEdgeError(f"clock period must be a positive number of ns, got {clock_ns!r}")
    model, spec, student_cfg = _resolve_student(student)
    if student_cfg.rounding != "floor":
        raise JbotEdgeError(f"student rounding is {student_cfg.rounding!r}: da4ml has no round-half-even, so the RTL "
                            "could not be bit exact; retrain the student with rounding: floor")
    check_power_of_two_scales(model)
    cutoff = config.cutoff(clock_ns)

    from da4ml.codegen import VerilogModel
    from da4ml.trace import to_pipeline

    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        traced_graph = None
        if graph is None:
            log.info("exporting the student to QONNX")
            graph = export_student(model, spec, tmp / TRACED_GRAPH)
            traced_graph = TRACED_GRAPH
        log.info("tracing the QONNX graph through da4ml (hard_dc=%d)", config.hard_dc)
        traced = trace_qonnx(graph, spec, hard_dc=config.hard_dc)
        comb = traced.comb
        pipeline = to_pipeline(comb, cutoff, verbose=False)
        stages = len(pipeline.solutions)
        log.info("pipelined into %d stages of <= %d adder levels for a %.3f ns clock", stages, cutoff, clock_ns)
        verilog = VerilogModel(pipeline, config.top, tmp, part_name=board_cfg.part, clock_period=clock_ns)
        verilog.write()
        comb.save(tmp / "model" / "comb.json")
        _patch_for_old_verilator(tmp / "src")
        inputs, outputs = _io_layout(comb, spec, traced.output_scale, traced.output_bits, traced.output_signed)
        description = {
            "schema": RTL_SCHEMA,
            "top": config.top,
            "wrapper": f"{config.top}_wrapper",
            "board": board_cfg.name,
            "part": board_cfg.part,
            "clock_ns": clock_ns,
            "pipeline": {
                "stages": stages,
                "latency_cycles": stages,
                "ii": 1,
                "latency_ns": round(stages * clock_ns, 3),
                "latency_cutoff_adders": cutoff,
                "adder_levels_per_ns": config.adder_levels_per_ns if config.latency_cutoff is None else None,
                "combinational_adder_levels": float(comb.latency[1]),
                "registers": f"input and output registered; a jet presented at clock edge n leaves at edge n+{stages}",
            },
            "da4ml": {
                "version": da4ml_version,
                "hard_dc": config.hard_dc,
                "lut_estimate": round(float(pipeline.cost), 1),
                "ff_estimate": int(pipeline.reg_bits),
                "multipliers": sum(1 for op in comb.ops if op.opcode == 7),
                "ops": traced.ops,
            },
            "input": inputs,
            "output": outputs,
            "rounding": "floor",
            "precisions": traced.precisions,
            "traced_graph": traced_graph,
            "student": summary(model),
            "config": config.model_dump(mode="json"),
            "files": sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()) + [RTL_DESCRIPTION],
        }
        write_json(tmp / RTL_DESCRIPTION, description)
    return RtlDesign(out_dir, description)


def clean_simulation_cache(rtl_dir: str | os.PathLike[str]) -> None:
    """Remove the Verilator build cache (``sim/build-*``, ``sim/lib*.so``) of an RTL directory."""
    sim = Path(rtl_dir) / "sim"
    for path in list(sim.glob("lib*.so")) + list(sim.glob(".build-*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

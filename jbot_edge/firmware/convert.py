"""QONNX graph → hls4ml project (with our fixes), and the compiled C simulation as a batched scorer.

Precisions are never hand-tuned: the input layer's type is read from the graph's input ``Quant`` node (and checked
against the student's :class:`~jbot_edge.data.l1quant.L1InputSpec`), every ``Quant`` node becomes its own
``ap_[u]fixed`` type through hls4ml's QONNX passes, accumulators are inferred by hls4ml, and the particle-pooling
accumulator (which hls4ml does not infer, see :mod:`jbot_edge.firmware.hls4ml_fixes`, Fix 4) is derived from the
pooled tensor's type. The model default precision is deliberately *not* a usable type for any layer: if some layer
ever falls back to it, the emulation harness shows it.

The C simulation is hls4ml's own compiled bridge library (``hls/firmware/<project>-<stamp>.so``); :class:`CSim`
loads it with ctypes directly, so ``emulate`` re-uses the library written by ``synth`` without reconverting.
"""

from __future__ import annotations

import ctypes
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from jbot_edge.config import StrictModel
from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.boards import PART_NAME
from jbot_edge.firmware.rtl.input_block import write_input_block
from jbot_edge.firmware.rtl.jet_term import write_jet_term
from jbot_edge.logs import get_logger

log = get_logger(__name__)

PROJECT_NAME = "jbot_student"
HLS_SUBDIR = "hls"
#: hls4ml pastes the project name into C++ identifiers, file names, ``build_lib.sh`` (``PROJECT=name``, run by bash)
#: and Tcl scripts; only a C identifier is safe in all of them.
C_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class HlsConfig(StrictModel):
    """How the QONNX graph becomes an HLS project."""

    backend: Literal["Vitis", "Vivado"] = "Vitis"
    io_type: Literal["io_parallel"] = "io_parallel"
    strategy: Literal["latency", "resource"] = "latency"
    reuse_factor: int = Field(default=1, ge=1, le=4096)
    clock_ns: float = Field(default=5.0, gt=0, le=1000)
    part: str = Field(default="xcvu13p-flga2577-2-e", pattern=PART_NAME)
    project_name: str = Field(default=PROJECT_NAME, pattern=C_IDENTIFIER)

    @property
    def fully_parallel(self) -> bool:
        """Latency strategy at reuse factor 1: every multiplication has its own hardware, II = 1."""
        return self.strategy == "latency" and self.reuse_factor == 1


def hls_schedule_estimate(hls_model, strategy: str):
    """The II hls4ml itself scheduled: io_parallel pipelines each layer at II = its reuse factor (hls4ml may move a
    requested factor to the nearest valid one), so the network's II is at least the largest one. A lower bound
    read from the converted model, labelled ``estimate:hls4ml-schedule``; C synthesis gives the exact figure."""
    from jbot_edge.firmware.reports import Estimate

    factors = {layer.name: int(layer.get_attr("reuse_factor")) for layer in hls_model.get_layers()
               if layer.get_attr("reuse_factor") is not None}
    ii = max(factors.values(), default=1)
    listed = ", ".join(f"{name} {rf}" for name, rf in factors.items() if rf > 1) or "all 1"
    return Estimate(tool="hls4ml-schedule", ii=ii, notes=[
        f"II >= {ii}: the largest reuse factor hls4ml scheduled ({strategy} strategy; layers with reuse > 1: "
        f"{listed}); latency and resources need C synthesis"])


def _quant_type_of(model_wrapper, node) -> tuple[int, int, bool]:
    """``(width, integer bits, signed)`` of a power-of-two ``Quant`` node (integer bits include the sign)."""
    from qonnx.util.basic import get_by_name

    scale = np.asarray(model_wrapper.get_initializer(node.input[1]), dtype=np.float64).reshape(-1)
    bits = int(np.asarray(model_wrapper.get_initializer(node.input[3])).reshape(()))
    if scale.size == 0 or not np.all(scale == scale[0]):
        raise JbotEdgeError(f"QONNX node {node.name}: per-channel scales are not supported (per-tensor only)")
    mantissa, exponent = math.frexp(float(scale[0]))
    if mantissa != 0.5:
        raise JbotEdgeError(f"QONNX node {node.name}: scale {scale[0]!r} is not a power of two; fixed-point firmware "
                            "cannot reproduce it exactly")
    signed = bool(get_by_name(node.attribute, "signed").i)
    # value = code * 2**(exponent-1): with `bits` code bits the type is ap_fixed<bits, bits + exponent - 1>.
    return bits, bits + exponent - 1, signed


def _type_string(width: int, integer: int, signed: bool) -> str:
    return f"{'fixed' if signed else 'ufixed'}<{width},{integer}>"


def check_supported(model_wrapper) -> None:
    """Refuse graphs with ops our hls4ml path does not handle exactly, naming the op and the alternative."""
    for node in model_wrapper.graph.node:
        if node.op_type == "ReduceSum":
            raise JbotEdgeError("student pooling 'sum' (ONNX ReduceSum) has no exact hls4ml mapping in jbot-edge yet; "
                                "train the student with pooling: mean (n_particles a power of two)")


def build_hls_config(model_wrapper, spec: L1InputSpec, cfg: HlsConfig) -> dict[str, Any]:
    """hls4ml configuration (granularity 'name') with input and pooling precisions derived from the graph."""
    import hls4ml

    from jbot_edge.firmware.export import input_quant_from_graph
    from jbot_edge.firmware.hls4ml_fixes import apply_fixes, pooling_precisions

    apply_fixes()
    check_supported(model_wrapper)
    hls_config = hls4ml.utils.config_from_onnx_model(
        model_wrapper, granularity="name", backend=cfg.backend, default_precision="fixed<16,6>",
        default_reuse_factor=cfg.reuse_factor)
    hls_config["Model"]["Strategy"] = "Latency" if cfg.strategy == "latency" else "Resource"
    layers = hls_config["LayerName"]

    # Input: the type of the graph's input quantizer, cross-checked against the student's spec.
    quant = input_quant_from_graph(model_wrapper)
    in_type = _type_string(quant["bits"], quant["bits"] - quant["frac_bits"], bool(quant["signed"]))
    if (quant["bits"], quant["frac_bits"]) != (spec.input_width, spec.input_frac_bits) or not quant["signed"]:
        raise JbotEdgeError(f"QONNX input quantizer is {in_type} but the student's input spec says "
                            f"{spec.input_fixed_type()}; the graph does not belong to this student")
    # The C simulation converts each double it is given to this type: with the Quant node's rounding and saturation
    # it quantises raw (off-grid, out-of-range) inputs exactly as Brevitas and QONNX do. In hardware the modes are
    # inert (the port carries bits).
    rounding = {"FLOOR": "TRN", "ROUND": "RND_CONV"}.get(quant["rounding_mode"])
    if rounding is None:
        raise JbotEdgeError(f"QONNX input quantizer rounds with {quant['rounding_mode']}: no exact ap_fixed mode")
    hls_in_type = f"{in_type[:-1]},{rounding},SAT>"
    input_name = model_wrapper.graph.input[0].name
    for name in (input_name, "global_in"):
        if name in layers:
            layers[name].setdefault("Precision", {})["result"] = hls_in_type

    # Pooling: exact accumulator from the pooled tensor's own Quant type (Fix 4).
    for node in model_wrapper.graph.node:
        if node.op_type != "ReduceMean":
            continue
        producer = model_wrapper.find_producer(node.input[0])
        if producer is None or producer.op_type != "Quant":
            raise JbotEdgeError(f"QONNX node {node.name}: the pooled tensor must come from a Quant node")
        width, integer, signed = _quant_type_of(model_wrapper, producer)
        n = int(model_wrapper.get_tensor_shape(node.input[0])[1])
        if n & (n - 1):
            raise JbotEdgeError(f"QONNX node {node.name}: mean over {n} particles is not a power-of-two shift")
        layers.setdefault(node.name, {})["Precision"] = pooling_precisions(width, integer, signed, n)
    return hls_config


def convert(model_wrapper, spec: L1InputSpec, cfg: HlsConfig, output_dir: str | os.PathLike[str]):
    """Convert and write the HLS project to ``output_dir``; returns the (not yet compiled) hls4ml model."""
    import contextlib
    import io

    import hls4ml

    hls_config = build_hls_config(model_wrapper, spec, cfg)
    # hls4ml prints its topology to stdout; keep stdout machine-readable and log a summary instead.
    with contextlib.redirect_stdout(io.StringIO()):
        hls_model = hls4ml.converters.convert_from_onnx_model(
            model_wrapper, output_dir=str(output_dir), project_name=cfg.project_name, backend=cfg.backend,
            io_type=cfg.io_type, hls_config=hls_config, part=cfg.part, clock_period=cfg.clock_ns)
    log.info("hls4ml model: %d layers, backend %s, %s strategy, reuse factor %d",
             len(list(hls_model.get_layers())), cfg.backend, cfg.strategy, cfg.reuse_factor)
    return hls_model


def compile_csim(hls_model, weights_dir: Path | None = None) -> Path:
    """Write the project and compile hls4ml's C simulation library; returns the path of the shared library.

    hls4ml's C simulation reads its weights at run time from an absolute ``WEIGHTS_DIR`` baked in at compile time
    (``build_lib.sh`` uses the project's own location). ``synth`` compiles inside a temporary directory that is
    renamed into place only when complete, so it passes the *final* weights directory here: the library then works
    from the finished firmware directory without a second compile.
    """
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        hls_model.write()
    project_dir = Path(hls_model.config.get_output_dir())
    return build_csim_library(project_dir, hls_model.config.get_project_name(), weights_dir)


#: ``build_lib.sh`` takes the weights directory from this variable when set (see :func:`_env_weights_line`).
WEIGHTS_ENV = "JBOT_EDGE_WEIGHTS_DIR"
#: Characters a weights directory cannot hold: the path becomes a C string literal (``-D WEIGHTS_DIR="..."``).
_C_STRING_UNSAFE = set('"\\\n\r')


def _env_weights_line(project_dir: Path) -> None:
    """Make hls4ml's ``build_lib.sh`` read ``WEIGHTS_DIR`` from the environment (default: its own location).

    The path then never becomes part of the script's text, so quotes, ``$(...)`` or backticks in it are inert data
    for bash (a variable's value is not re-parsed), and the saved project still builds stand-alone.
    """
    import re

    script_path = project_dir / "build_lib.sh"
    script = script_path.read_text()
    line = f'WEIGHTS_DIR="\\"${{{WEIGHTS_ENV}:-${{BASEDIR}}/firmware/weights}}\\""'
    script, count = re.subn(r"^WEIGHTS_DIR=.*$", lambda _: line, script, flags=re.MULTILINE)
    if count != 1:
        raise JbotEdgeError(f"{script_path} has no WEIGHTS_DIR line (not an hls4ml 1.3 project?)")
    script_path.write_text(script)


def build_csim_library(project_dir: Path, project_name: str, weights_dir: Path | None = None) -> Path:
    """Run the project's ``build_lib.sh`` (hls4ml's), optionally with ``WEIGHTS_DIR`` pointing elsewhere.

    Nothing user-supplied is pasted into a command: the script runs as ``bash build_lib.sh`` from an argument list,
    the weights directory travels in the environment, and the project name was checked to be a C identifier.
    """
    import re
    import subprocess

    if not re.match(C_IDENTIFIER, project_name):
        raise JbotEdgeError(f"project name {project_name[:100]!r} is not a C identifier")
    env = dict(os.environ)
    _env_weights_line(project_dir)
    if weights_dir is not None:
        if _C_STRING_UNSAFE & set(str(weights_dir)):
            raise JbotEdgeError(f"firmware path {str(weights_dir)[:200]!r} holds a quote, backslash or newline, "
                                "which the C simulation cannot take as its weights directory; choose another --out")
        env[WEIGHTS_ENV] = str(weights_dir)
    else:
        env.pop(WEIGHTS_ENV, None)
    result = subprocess.run(["bash", "build_lib.sh"], cwd=project_dir, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        first = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip()[:300])
        raise JbotEdgeError(f"compiling the hls4ml C simulation in {project_dir} failed: {first[:300]}")
    return find_csim_library(project_dir, project_name)


def find_csim_library(project_dir: Path, project_name: str) -> Path:
    """The newest compiled ``<project>-<stamp>.so`` in an hls4ml project directory."""
    candidates = sorted((project_dir / "firmware").glob(f"{project_name}-*.so"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise JbotEdgeError(f"{project_dir}: no compiled C simulation library firmware/{project_name}-*.so")
    return candidates[-1]


def layer_precisions(hls_model) -> dict[str, dict[str, str]]:
    """Every layer's types as strings (for reports and the README)."""
    return {layer.name: {k: str(v.precision) for k, v in layer.types.items()} for layer in hls_model.get_layers()}


class CSim:
    """hls4ml's compiled C simulation called through ctypes in double precision.

    ``x`` is the model input ``[N, P, F]`` (exact fixed-point values); the bridge converts each double to the input
    ``ap_fixed`` type (exact, since the values are representable) and the output ``ap_fixed`` back to double (exact).
    """

    def __init__(self, library: str | os.PathLike[str], project_name: str, n_inputs: int, n_outputs: int = 1):
        self.library = Path(library)
        if not self.library.is_file():
            raise JbotEdgeError(f"C simulation library {self.library} does not exist")
        self._lib = ctypes.CDLL(str(self.library))
        try:
            self._fn = getattr(self._lib, f"{project_name}_double")
        except AttributeError:
            raise JbotEdgeError(f"{self.library}: no function {project_name}_double (not an hls4ml bridge?)") from None
        self._fn.restype = None
        self._fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.n_inputs = int(n_inputs)
        self.n_outputs = int(n_outputs)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1 if len(x) else self.n_inputs))
        if x.shape[1] != self.n_inputs:
            raise JbotEdgeError(f"C simulation expects {self.n_inputs} inputs per jet, got {x.shape[1]}")
        y = np.zeros((len(x), self.n_outputs), dtype=np.float64)
        fn = self._fn
        x_ptr, y_ptr = x.ctypes.data, y.ctypes.data
        x_step, y_step = 8 * self.n_inputs, 8 * self.n_outputs
        # One C call per jet with raw pointers: the per-call overhead is ~1 µs, far below the simulated network.
        for i in range(len(x)):
            fn(x_ptr + i * x_step, y_ptr + i * y_step)
        return y[:, 0] if self.n_outputs == 1 else y


# -- the synth pipeline -------------------------------------------------------------------------------------------
class RtlSettings(StrictModel):
    """The vendor-free RTL leg (:mod:`jbot_edge.firmware.rtl`) of ``synth``."""

    estimate: Literal["auto", "always", "never"] = Field(
        default="auto", description="hls4ml backend: also build the da4ml RTL for latency/resource estimates when no "
        "vendor report exists (auto: when da4ml is installed)")
    yosys: Literal["auto", "always", "never"] = Field(
        default="never", description="size the RTL with Yosys synth_xilinx (minutes to tens of minutes for large "
        "students; auto: when yosys is on PATH)")
    adder_levels_per_ns: float = Field(default=0.75, gt=0, le=10, description=(
        "adder levels one pipeline stage may chain per ns of clock (0.75: the level the netlist timing of the demo "
        "student fits 240 MHz with; see jbot_edge/firmware/rtl/design.py)"))
    timing: Literal["auto", "always", "never"] | None = Field(
        default=None, description="measure every pipeline stage's deepest path on the yosys netlist "
        "(jbot_edge.firmware.rtl.timing; a stage slower than the clock makes the verdict 'exceeds'). None: auto "
        "(when yosys is on PATH) for --backend rtl, never for the hls4ml backend's RTL estimate")


class SynthConfig(StrictModel):
    """Resolved settings of ``jbot-edge synth`` (written as FW_DIR/config.yaml)."""

    board: str = "vu13p"
    backend: Literal["hls4ml", "rtl"] = Field(
        default="hls4ml", description="hls4ml: HLS project + C simulation (+ vendor synthesis when on PATH); "
        "rtl: vendor-free pipelined Verilog through da4ml (Verilator simulation, da4ml/Yosys estimates)")
    hls: HlsConfig = Field(default_factory=HlsConfig)
    vendor_synthesis: Literal["auto", "always", "never"] = "auto"
    logic_synthesis: bool = False
    rtl: RtlSettings = Field(default_factory=lambda: RtlSettings())


README_TEMPLATE = """# {name}: level-1 firmware for a jbot-edge student

Made by `jbot-edge synth` from `{student}` for board **{board}** (`{part}`), clock {clock_ns} ns,
hls4ml {hls4ml_version} backend **{backend}**, `{io_type}`, strategy {strategy}, reuse factor {reuse}.

| file | what |
|---|---|
| `hls/` | the hls4ml HLS project (top function `{project}` in `hls/firmware/{project}.cpp`) |
| `model.qonnx.onnx` | the QONNX graph the project was converted from |
| `student.pt` | the Brevitas student (copy) |
| `quantizer_spec.json` | the trigger-precision input spec: input type `{input_type}` |
| `synth_report.json` | latency, II, resources, budget verdict (with the source of every figure) |
| `firmware.json` | metadata `jbot-edge emulate` reads |

Input: {n_particles} particles × {n_features} features ({features}) as `{input_type}`, i.e. integer codes ×
2^-{frac_bits}. Output: one score as `{output_type}`; score = integer × {output_lsb!r}.

## Check it is bit exact

    jbot-edge emulate --firmware {fw_dir} --data JETS.h5 --n 10000

## Build it with AMD tools

    source /path/to/Vitis/settings64.sh        # or Vivado 2020.1 for the Vivado backend
    cd hls
    vitis-run --mode hls --tcl build_prj.tcl    # Vitis backend (hls4ml's build script); Vivado: vivado_hls -f build_prj.tcl
    vivado -mode batch -source vivado_synth.tcl # optional logic synthesis → vivado_synth.rpt

(`hls4ml.converters.link_existing_project` cannot re-open projects converted from ONNX in hls4ml 1.3.0: its
`hls4ml_config.yml` embeds the QONNX model object.)

`jbot-edge synth ... ` runs C synthesis itself when `vitis-run`/`vivado_hls` is on PATH and folds the reports into
`synth_report.json`.

## Layer precisions

{precisions}
"""


def _point_project_at(project_dir: Path, final_dir: Path) -> None:
    """hls4ml records its absolute OutputDir in hls4ml_config.yml; we build in a temporary directory that is renamed
    into place, so point it at the final location (``hls4ml.converters.link_existing_project`` reads it)."""
    import json
    import re

    config = project_dir / "hls4ml_config.yml"
    # A JSON string is a valid double-quoted YAML scalar: colons, '#' or quotes in the path stay part of it.
    text, count = re.subn(r"^OutputDir: .*$", lambda _: f"OutputDir: {json.dumps(str(final_dir))}", config.read_text(),
                          flags=re.MULTILINE)
    if count == 1:
        config.write_text(text)


def build_firmware(student_dir: Path, cfg: SynthConfig, out_dir: Path) -> dict[str, Any]:
    """Export, convert, compile and describe a student into ``out_dir`` (atomically); returns the synth report."""
    import shutil

    import hls4ml

    from jbot_edge.atomic import atomic_directory, write_json, write_text
    from jbot_edge.config import save_config
    from jbot_edge.firmware.boards import load_board
    from jbot_edge.firmware.emulate import FIRMWARE_SCHEMA
    from jbot_edge.firmware.export import (
        QONNX_FILENAME,
        export_student,
        output_scale_from_graph,
    )
    from jbot_edge.firmware.reports import build_synth_report, write_synth_report
    from jbot_edge.firmware.vendor import find_vendor_tools, run_vendor_build
    from jbot_edge.models.students import load_student, resolve_student_path, summary

    board = load_board(cfg.board)
    student_path = resolve_student_path(student_dir)
    model, student_cfg, spec, _ = load_student(student_path)
    tools = find_vendor_tools()
    hls_tool_present = bool(tools.get("vitis-run") if cfg.hls.backend == "Vitis" else tools.get("vivado_hls"))
    if cfg.vendor_synthesis == "always" and not hls_tool_present:
        raise JbotEdgeError(f"vendor_synthesis=always but the {cfg.hls.backend} HLS tool is not on PATH")
    run_vendor = cfg.vendor_synthesis == "always" or (cfg.vendor_synthesis == "auto" and hls_tool_present)

    if cfg.backend == "rtl":
        return _build_rtl_firmware(student_path, model, student_cfg, spec, cfg, board, out_dir)
    with atomic_directory(out_dir, owner="synth") as tmp:
        log.info("exporting %s to QONNX", student_path)
        graph = export_student(model, spec, tmp / QONNX_FILENAME)
        shutil.copy2(student_path, tmp / "student.pt")
        write_json(tmp / "quantizer_spec.json", spec.describe())
        log.info("converting to an hls4ml %s project", cfg.hls.backend)
        hls_model = convert(graph, spec, cfg.hls, tmp / HLS_SUBDIR)
        log.info("compiling the C simulation")
        library = compile_csim(hls_model, weights_dir=(out_dir / HLS_SUBDIR / "firmware" / "weights").resolve())
        precisions = layer_precisions(hls_model)
        vendor = None
        notes, input_block = write_input_block(spec, tmp / INPUT_BLOCK_SUBDIR, cfg.hls.clock_ns)
        term_notes, jet_term = write_jet_term(spec, student_cfg.jet_term, tmp / JET_TERM_SUBDIR, cfg.hls.clock_ns)
        notes += term_notes
        if run_vendor:
            log.info("running vendor C synthesis%s", " and logic synthesis" if cfg.logic_synthesis else "")
            vendor = run_vendor_build(hls_model, synth=True, vsynth=cfg.logic_synthesis)
        elif hls_tool_present:
            notes.append("vendor synthesis skipped (vendor_synthesis=never)")
        estimates, unknown_reasons = [], None
        rtl_built = _wants_rtl_estimate(cfg.rtl.estimate, vendor is not None)
        if rtl_built:
            rtl_figures = _build_rtl(model, graph, tmp, board, cfg)
            if cfg.hls.fully_parallel:
                estimates = rtl_figures
                notes.append("latency/resources estimated from the vendor-free da4ml RTL in rtl/ (fully parallel, "
                             "II=1), which computes the same function as this Latency-strategy, reuse-factor-1 design")
            else:
                notes.append("the da4ml RTL in rtl/ is fully parallel (II 1): it stays an emulation leg, but its "
                             "latency and resources describe another design and are not used here")
        if vendor is None and not cfg.hls.fully_parallel:
            estimates = [hls_schedule_estimate(hls_model, cfg.hls.strategy)]
            unknown_reasons = {
                "latency": f"{cfg.hls.strategy} strategy / reuse factor {cfg.hls.reuse_factor}: hls4ml time-shares "
                           "the multipliers and only C synthesis schedules them (no vendor tool ran)",
                "resources": "only C synthesis knows what sharing the multipliers saves (no vendor tool ran); the "
                             "fully parallel da4ml figures describe another design"}
        report = build_synth_report(board, cfg.hls.clock_ns, cfg.hls.backend, cfg.hls.strategy.capitalize(),
                                    cfg.hls.reuse_factor, precisions, vendor=vendor, io_type=cfg.hls.io_type,
                                    vendor_tools=tools, notes=notes, estimates=estimates,
                                    unknown_reasons=unknown_reasons, input_block=input_block, jet_term=jet_term)
        write_synth_report(tmp / "synth_report.json", report)
        lsb = output_scale_from_graph(graph)
        output_type = list(precisions.values())[-1].get("result_t", "unknown")
        meta = {
            "schema": FIRMWARE_SCHEMA,
            "backend": "hls4ml",
            "legs": ["brevitas", "qonnx", "csim", *(["rtl"] if rtl_built else [])],
            "rtl_dir": RTL_SUBDIR if rtl_built else None,
            "project_name": cfg.hls.project_name,
            "hls_dir": HLS_SUBDIR,
            "library": str(library.relative_to(tmp)),
            "weights_dir": str((out_dir / HLS_SUBDIR / "firmware" / "weights").resolve()),
            "n_inputs": spec.n_particles * spec.n_features,
            "n_outputs": 1,
            "output_lsb": lsb,
            "output_type": output_type,
            "hls": cfg.hls.model_dump(mode="json"),
            "hls4ml_version": hls4ml.__version__,
            "layer_precisions": precisions,
            "student_summary": summary(model),
            "student_config": student_cfg.model_dump(mode="json"),
        }
        write_json(tmp / "firmware.json", meta)
        _point_project_at(tmp / HLS_SUBDIR, (out_dir / HLS_SUBDIR).resolve())
        save_config(cfg, tmp / "config.yaml")
        table = "\n".join(f"- `{name}`: " + ", ".join(f"{k} `{v}`" for k, v in types.items())
                          for name, types in precisions.items())
        write_text(tmp / "README.md", README_TEMPLATE.format(
            name=out_dir.name, student=student_path, board=board.name, part=board.part, clock_ns=cfg.hls.clock_ns,
            hls4ml_version=hls4ml.__version__, backend=cfg.hls.backend, io_type=cfg.hls.io_type,
            strategy=cfg.hls.strategy, reuse=cfg.hls.reuse_factor, project=cfg.hls.project_name,
            input_type=spec.input_fixed_type(), n_particles=spec.n_particles, n_features=spec.n_features,
            features=", ".join(spec.feature_names), frac_bits=spec.input_frac_bits, output_type=output_type,
            output_lsb=lsb, fw_dir=out_dir, precisions=table))
    return report


RTL_SUBDIR = "rtl"
INPUT_BLOCK_SUBDIR = "input_block"  # Verilog (+ Yosys estimate) of the integer block ahead of the network
JET_TERM_SUBDIR = "jet_term"  # Verilog (+ Yosys estimate) of the student's jet term beside the network


def _wants_rtl_estimate(mode: str, have_vendor_report: bool) -> bool:
    if mode == "never" or (mode == "auto" and have_vendor_report):
        return False
    from jbot_edge.firmware.rtl.tools import da4ml_version

    if da4ml_version() is None:
        if mode == "always":
            raise JbotEdgeError("rtl.estimate=always needs da4ml: pip install 'jbot-edge[rtl]'")
        return False
    return True


def _build_rtl(model, graph, tmp: Path, board, cfg: SynthConfig) -> list:
    """Build the da4ml RTL of the student into ``tmp/rtl`` and return its estimates for the synth report (with
    the netlist timing of its stages as ``rtl.timing`` says)."""
    from jbot_edge.firmware.rtl import RtlConfig, build_rtl, rtl_estimates
    from jbot_edge.firmware.rtl.tools import find_yosys

    log.info("building the vendor-free RTL (da4ml) in %s/", RTL_SUBDIR)
    build_rtl(model, tmp / RTL_SUBDIR, board=board.name, clock_ns=cfg.hls.clock_ns,
              config=RtlConfig(adder_levels_per_ns=cfg.rtl.adder_levels_per_ns), graph=graph)
    timing_mode = cfg.rtl.timing or ("auto" if cfg.backend == "rtl" else "never")
    for key, mode in (("yosys", cfg.rtl.yosys), ("timing", timing_mode)):
        if mode == "always" and find_yosys() is None:
            raise JbotEdgeError(f"rtl.{key}=always but yosys is not on PATH: apt-get install -y yosys")
    modes = {"always": True, "never": False, "auto": None}
    return rtl_estimates(tmp / RTL_SUBDIR, yosys=modes[cfg.rtl.yosys], timing=modes[timing_mode])


def _build_rtl_firmware(student_path: Path, model, student_cfg, spec: L1InputSpec, cfg: SynthConfig, board,
                        out_dir: Path) -> dict[str, Any]:
    """``synth --backend rtl``: QONNX + da4ml Verilog + estimates, no HLS project (emulate compares Brevitas, QONNX
    and the Verilator simulation)."""
    import shutil

    from jbot_edge.atomic import atomic_directory, write_json
    from jbot_edge.config import save_config
    from jbot_edge.firmware.emulate import FIRMWARE_SCHEMA
    from jbot_edge.firmware.export import QONNX_FILENAME, export_student, output_scale_from_graph
    from jbot_edge.firmware.reports import build_synth_report, write_synth_report
    from jbot_edge.firmware.rtl import load_rtl
    from jbot_edge.firmware.rtl.tools import require_da4ml
    from jbot_edge.firmware.vendor import find_vendor_tools
    from jbot_edge.models.students import summary

    require_da4ml()
    with atomic_directory(out_dir, owner="synth") as tmp:
        log.info("exporting %s to QONNX", student_path)
        graph = export_student(model, spec, tmp / QONNX_FILENAME)
        shutil.copy2(student_path, tmp / "student.pt")
        write_json(tmp / "quantizer_spec.json", spec.describe())
        estimates = _build_rtl(model, graph, tmp, board, cfg)
        block_notes, input_block = write_input_block(spec, tmp / INPUT_BLOCK_SUBDIR, cfg.hls.clock_ns)
        term_notes, jet_term = write_jet_term(spec, student_cfg.jet_term, tmp / JET_TERM_SUBDIR, cfg.hls.clock_ns)
        design = load_rtl(tmp / RTL_SUBDIR)
        precisions = {node: {"result_t": kind} for node, kind in design.description.get("precisions", {}).items()}
        report = build_synth_report(board, cfg.hls.clock_ns, "rtl", "da4ml", 1, precisions, estimates=estimates,
                                    vendor_tools=find_vendor_tools(),
                                    notes=["vendor-free RTL through da4ml: Verilog in rtl/src, pipelined for the "
                                           "clock; latency = stages × clock period", *block_notes, *term_notes],
                                    input_block=input_block, jet_term=jet_term)
        write_synth_report(tmp / "synth_report.json", report)
        write_json(tmp / "firmware.json", {
            "schema": FIRMWARE_SCHEMA, "backend": "rtl", "legs": ["brevitas", "qonnx", "rtl"],
            "rtl_dir": RTL_SUBDIR, "n_inputs": spec.n_particles * spec.n_features, "n_outputs": 1,
            "output_lsb": output_scale_from_graph(graph), "layer_precisions": precisions,
            "student_summary": summary(model), "student_config": student_cfg.model_dump(mode="json"),
        })
        save_config(cfg, tmp / "config.yaml")
    return report

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

    {"schema", "firmware", "data", "n" (data jets), "n_fuzz", "output_lsb",
     "legs": [...] (= legs_run), "legs_run": [...], "legs_skipped": [{"leg", "reason"}],
     "csim_source": "compiled library from synth" | "reconverted from model.qonnx.onnx" | ...,
     "datasets": {"data": RESULT, "fuzz": RESULT, "fuzz_raw": RESULT + {"legs", "legs_not_applicable"}},
     "exact": bool, "reasons": [why not exact],
     "counts": {"data": "2000/2000", "fuzz": "81/81", "fuzz_raw": "40/40"},
     "fuzz_rounding": {"found": [names of the fuzz jets that put a rounding tie / grid boundary at one layer],
                       "missing": {target: reason}},
     "throughput_jets_per_s": {leg: float}}
    RESULT = {"n": int, "all_legs_equal": int (jets on which every leg agrees),
              "comparisons": {"brevitas_vs_qonnx": {"exact": int, "mismatched": int,
              "max_abs_diff_lsb": int}, "brevitas_vs_csim": ..., "qonnx_vs_csim": ...},
              "first_mismatches": [{"index", "name", "codes" [[P][F]], "physical" [[P][F]] (fuzz_raw: "model_input"),
                                    "scores_lsb": {leg: int}}]}

A student with a jet term (``student.jet_term``, jbot_edge/models/jet_term.py) scores network + term: the Brevitas
leg and the fast emulator compute both; the RTL leg simulates the network's Verilog and the term's
(``FW_DIR/jet_term/l1_jet_term.v``) with Verilator; QONNX and the C simulation build the network only, and the
harness adds the term's numpy definition to them (``LegType.whole_score``).

``exact`` cannot pass vacuously (:func:`emulation_verdict`): it needs n > 0 data and fuzz jets, at least one hardware
leg (``csim`` or ``rtl``) besides another leg, every pair of run legs equal on every jet, and no required leg skipped
(the RTL leg of ``synth --backend rtl``; every leg under ``JBOT_EDGE_REQUIRE_RTL_TOOLS=1``, which CI sets).

Legs are registered with :func:`register_leg` (name, loader, whether it models the hardware); ``firmware.json``'s
``legs`` names the ones a firmware directory has.
"""

from __future__ import annotations

import json
import os
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


#: Legs that model the firmware itself (as opposed to the software references brevitas / qonnx): an emulation
#: verdict needs at least one of them.
HARDWARE_LEGS = ("csim", "rtl")
#: Set (to 1) by CI: a leg whose tool is missing (e.g. verilator for ``rtl``) is a failure, not a skip.
REQUIRE_RTL_TOOLS_ENV = "JBOT_EDGE_REQUIRE_RTL_TOOLS"

Scorer = Callable[[np.ndarray], np.ndarray]


class LegUnavailable(Exception):
    """Raised by a leg loader when the leg cannot run here (a tool is missing); the message is the reason."""


@dataclass
class LegContext:
    """What a leg loader may read: the firmware directory, its metadata, the student and the QONNX graph."""

    directory: Path
    meta: dict[str, Any]
    spec: L1InputSpec
    model: Any
    graph: Any
    qonnx_batch: int
    notes: dict[str, str] = field(default_factory=dict)
    student_config: Any = None


@dataclass(frozen=True)
class LegType:
    """One registered leg: ``load(context) -> scorer of model inputs`` (float scores, or int64 output codes when
    ``returns_codes``)."""

    name: str
    hardware: bool
    load: Callable[[LegContext], Scorer]
    returns_codes: bool = False
    reads_codes: bool = False  # its inputs are integer codes on ports (RTL): raw model inputs do not apply
    # The leg's scores already hold the student's jet term (models/jet_term.py); otherwise the harness adds the
    # term, built beside the network in firmware, to the network's scores.
    whole_score: bool = False


_LEG_TYPES: dict[str, LegType] = {}


def register_leg(name: str, load: Callable[[LegContext], Scorer], hardware: bool = False,
                 returns_codes: bool = False, reads_codes: bool = False, whole_score: bool = False) -> None:
    """Add a leg ``firmware.json``'s ``legs`` may name (e.g. a fast integer emulator)."""
    _LEG_TYPES[name] = LegType(name, hardware, load, returns_codes, reads_codes, whole_score)


def leg_type(name: str) -> LegType:
    if name not in _LEG_TYPES:
        raise JbotEdgeError(f"firmware.json names an unknown emulation leg {name!r} (known: {sorted(_LEG_TYPES)})")
    return _LEG_TYPES[name]


@dataclass
class Firmware:
    """Everything needed to score codes with each leg; ``skipped`` says which listed legs could not run and why."""

    directory: Path
    spec: L1InputSpec
    output_lsb: float
    scorers: dict[str, Scorer]
    csim_source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    legs: tuple[str, ...] = LEGS
    skipped: dict[str, str] = field(default_factory=dict)
    #: model inputs → the student's jet term (int64 output-LSB units), for legs that compute the network only;
    #: None when the student has no jet term
    jet_term: Callable[[np.ndarray], np.ndarray] | None = None

    def score_lsb(self, leg: str, codes: np.ndarray) -> np.ndarray:
        """Integer scores (int64 [N], output LSB units) of one leg on codes [N, P, F]."""
        return self.score_raw(leg, self.spec.to_model_input(codes))

    def score_raw(self, leg: str, x: np.ndarray) -> np.ndarray:
        """Integer scores of one leg on model inputs ``x`` [N, P, F], which the leg quantises itself (raw inputs
        need not be on the input grid nor in its range)."""
        from jbot_edge.firmware.export import to_codes

        kind = leg_type(leg)
        scores = self.scorers[leg](x)
        scores = np.asarray(scores, dtype=np.int64) if kind.returns_codes else to_codes(scores, self.output_lsb)
        if self.jet_term is not None and not kind.whole_score:
            scores = scores + self.jet_term(x)
        return scores


def read_firmware_metadata(fw_dir: Path) -> dict[str, Any]:
    path = fw_dir / "firmware.json"
    if not path.is_file():
        raise JbotEdgeError(f"{fw_dir} is not a firmware directory from `jbot-edge synth` (no firmware.json)")
    from jbot_edge.artifact_schemas import FirmwareFile, validate_artifact

    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise JbotEdgeError(f"{path} is not valid JSON (damaged?); re-run jbot-edge synth") from exc
    validate_artifact(FirmwareFile, meta, path)
    return meta


def tools_required() -> bool:
    """True under CI (``JBOT_EDGE_REQUIRE_RTL_TOOLS=1``): a leg skipped for a missing tool fails the verdict."""
    return os.environ.get(REQUIRE_RTL_TOOLS_ENV) == "1"


def load_firmware(fw_dir: str | os.PathLike[str], qonnx_batch: int = 1024, fast: bool = False) -> Firmware:
    """Load the legs listed in ``FW_DIR/firmware.json`` (brevitas, qonnx, and csim and/or rtl). A leg that cannot run
    here (the RTL leg without verilator) is skipped with its reason in ``Firmware.skipped`` — the emulation verdict
    then says so, and under CI (:func:`tools_required`) or for ``synth --backend rtl`` it is a failure.
    With ``fast`` the vectorised integer emulator (:mod:`jbot_edge.firmware.fast_emulate`) is one more leg.
    The C simulation library written by synth is loaded as is; if it is
    missing it is rebuilt from the saved QONNX graph (deterministic: same graph, same config) into a scratch
    directory, and ``csim_source`` says so."""
    from jbot_edge.firmware.export import load_qonnx, output_scale_from_graph
    from jbot_edge.models.students import load_student, output_lsb

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
    context = LegContext(fw_dir, meta, spec, model, graph, qonnx_batch, student_config=student_cfg)
    scorers: dict[str, Scorer] = {}
    skipped: dict[str, str] = {}
    for name in [*meta.get("legs", LEGS), *([FAST_LEG] if fast else [])]:
        try:
            scorers[name] = leg_type(name).load(context)
        except LegUnavailable as exc:
            log.warning("%s: the %s leg is skipped: %s", fw_dir, name, exc)
            skipped[name] = str(exc)
    source = context.notes.get("csim_source", "no C simulation (RTL backend)")
    return Firmware(fw_dir, spec, lsb, scorers, source, meta, legs=tuple(scorers), skipped=skipped,
                    jet_term=_jet_term_scorer(model, student_cfg, spec))


def _jet_term_scorer(model: Any, student_cfg: Any, spec: L1InputSpec) -> Callable[[np.ndarray], np.ndarray] | None:
    """Model inputs → the jet term in output-LSB units, on the codes the student's own input quantizer makes of
    them (raw inputs included), or None without a jet term."""
    if student_cfg.jet_term is None:
        return None
    import torch

    from jbot_edge.models.jet_term import jet_term_codes

    def jet_term(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            quantised = model.input_quant(torch.from_numpy(np.asarray(x, dtype=np.float32))).double()
        codes = torch.round(quantised / spec.input_scale).to(torch.int64).numpy()
        return jet_term_codes(student_cfg.jet_term, spec.feature_names, codes)

    return jet_term


def _load_brevitas(context: LegContext) -> Scorer:
    import torch

    from jbot_edge.models.students import score_codes

    def brevitas(x: np.ndarray) -> np.ndarray:
        return score_codes(context.model, torch.from_numpy(np.asarray(x, dtype=np.float32)))

    return brevitas


def _load_qonnx(context: LegContext) -> Scorer:
    from jbot_edge.firmware.export import QonnxExecutor

    return QonnxExecutor(context.graph, context.qonnx_batch)


def _load_rtl(context: LegContext) -> Scorer:
    """The Verilator simulation of the RTL (built once, cached in the RTL directory)."""
    from jbot_edge.firmware.rtl import RtlSimulator, find_verilator

    rtl_dir = context.directory / context.meta["rtl_dir"]
    if find_verilator() is None:
        raise LegUnavailable("verilator is not on PATH (apt-get install -y verilator)")
    simulator = RtlSimulator(rtl_dir)
    log.info("building/loading the Verilator simulation of %s", rtl_dir)
    simulator.build()
    if context.student_config is None or context.student_config.jet_term is None:
        return simulator.predict_scores
    term = _jet_term_simulator(context)
    scale, lsb = context.spec.input_scale, simulator.design.output_lsb

    def network_and_term(x: np.ndarray) -> np.ndarray:
        codes = np.rint(np.asarray(x, dtype=np.float64) / scale).astype(np.int64)
        return simulator.predict_scores(x) + term(codes) * lsb  # integers × a power of two: exact in float64

    return network_and_term


def _jet_term_simulator(context: LegContext) -> Callable[[np.ndarray], np.ndarray]:
    """The Verilator simulation of the jet term's Verilog that synth wrote (FW_DIR/jet_term/), built in a scratch
    directory: the RTL leg then scores network + term from the firmware's own Verilog."""
    import tempfile

    from jbot_edge.firmware.convert import JET_TERM_SUBDIR
    from jbot_edge.firmware.rtl.jet_term import TOP, JetTermSimulator

    path = context.directory / JET_TERM_SUBDIR / f"{TOP}.v"
    if not path.is_file():
        raise LegUnavailable(f"{path} is missing: the student has a jet term, and the RTL leg simulates its Verilog "
                             "(re-run synth)")
    scratch = Path(tempfile.mkdtemp(prefix="jbot-edge-jet-term-"))
    log.info("building the Verilator simulation of %s in %s", path, scratch)
    return JetTermSimulator(context.spec, context.student_config.jet_term, scratch, verilog=path.read_text())


def _load_csim(context: LegContext) -> Scorer:
    from jbot_edge.firmware.convert import CSim, HlsConfig, build_csim_library, compile_csim, convert

    fw_dir, meta, spec = context.directory, context.meta, context.spec
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
        hls_model = convert(context.graph, spec, hls_cfg, scratch / "hls")
        csim = CSim(compile_csim(hls_model), hls_cfg.project_name, n_inputs)
        source = f"reconverted from model.qonnx.onnx into {scratch}"
    context.notes["csim_source"] = source
    return csim


@dataclass(frozen=True)
class FastLeg:
    """The fast leg as a scorer of model inputs (on the input grid); ``emulator`` scores integer codes directly."""

    emulator: Any
    input_scale: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.emulator(np.rint(np.asarray(x, dtype=np.float64) / self.input_scale).astype(np.int64))


def _load_fast(context: LegContext) -> Scorer:
    """The vectorised integer emulator: exact integer arithmetic from student.pt's fixed-point parameters."""
    from jbot_edge.firmware.fast_emulate import FastEmulator

    emulator = FastEmulator.from_model(context.model, context.student_config, context.spec)
    return FastLeg(emulator, context.spec.input_scale)


register_leg("brevitas", _load_brevitas, returns_codes=True, whole_score=True)
register_leg("qonnx", _load_qonnx)
register_leg("csim", _load_csim, hardware=True)
register_leg("rtl", _load_rtl, hardware=True, reads_codes=True, whole_score=True)  # the term's Verilog too
register_leg(FAST_LEG, _load_fast, returns_codes=True, reads_codes=True, whole_score=True)


def fuzz_set(firmware: Firmware) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """The fuzz codes of the input spec (:func:`~jbot_edge.firmware.fuzz.fuzz_codes`) plus this student's jets that
    put a rounding tie / grid boundary at each layer (:func:`~jbot_edge.firmware.fuzz.layer_rounding_codes`);
    returns ``(codes, names, coverage)``, coverage saying which per-layer targets were met and why others were not."""
    from jbot_edge.firmware.fast_emulate import FastEmulator
    from jbot_edge.firmware.fuzz import fuzz_codes, layer_rounding_codes

    codes, names = fuzz_codes(firmware.spec)
    try:
        emulator = (firmware.scorers[FAST_LEG].emulator if FAST_LEG in firmware.scorers
                    else FastEmulator.from_student(firmware.directory / "student.pt"))
    except JbotEdgeError as exc:
        return codes, names, {"found": [], "missing": {"every layer": f"no integer model of this student: {exc}"}}
    rounding, rounding_names, coverage = layer_rounding_codes(emulator)
    return np.concatenate([codes, rounding]), names + rounding_names, coverage


def emulation_verdict(firmware: Firmware, data: dict[str, Any], fuzz: dict[str, Any],
                      fuzz_raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"exact", "legs_run", "legs_skipped", "reasons", "counts"}``: exact only when jets were emulated (data and
    fuzz), at least one hardware leg and one other leg ran, every comparison of every run leg is exact, and no leg
    was skipped that had to run (the RTL leg of ``synth --backend rtl``, or any leg under CI)."""
    reasons = []
    legs = list(firmware.legs)
    if data["n"] == 0 or fuzz["n"] == 0:
        reasons.append(f"nothing to compare: {data['n']} data jets, {fuzz['n']} fuzz jets")
    if not any(leg_type(leg).hardware for leg in legs):
        reasons.append(f"no hardware leg ran (need one of {', '.join(HARDWARE_LEGS)}; ran {', '.join(legs)})")
    if len(legs) < 2:
        reasons.append(f"only {len(legs)} leg ran: nothing to compare it with")
    required = tools_required() or firmware.metadata.get("backend") == "rtl"
    for leg, why in firmware.skipped.items():
        if required:
            reasons.append(f"required leg {leg} was skipped: {why}"
                           + (f" ({REQUIRE_RTL_TOOLS_ENV}=1)" if tools_required() else " (synth --backend rtl)"))
    datasets = [("data", data), ("fuzz", fuzz)] + ([("fuzz_raw", fuzz_raw)] if fuzz_raw is not None else [])
    for name, result in datasets:
        if not all_exact(result):
            bad = {pair: c["mismatched"] for pair, c in result["comparisons"].items() if c["mismatched"]}
            reasons.append(f"{name}: mismatches {bad}")
    return {
        "exact": not reasons,
        "legs_run": legs,
        "legs_skipped": [{"leg": leg, "reason": why} for leg, why in firmware.skipped.items()],
        "reasons": reasons,
        "counts": {name: f"{r['all_legs_equal']}/{r['n']}" for name, r in datasets},
    }


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

    def describe(index: int) -> dict[str, Any]:
        return {"codes": codes[index].tolist(),
                "physical": np.round(firmware.spec.dequantize(codes[index]), 6).tolist()}

    return _pairwise(scores, legs, len(codes), names, describe)


def compare_raw(firmware: Firmware, x: np.ndarray, names: list[str] | None = None) -> dict[str, Any]:
    """Feed raw model inputs ``x`` [N, P, F] to every leg that reads real-valued inputs (each quantises them with
    its own input rounding and saturation) and compare exactly; a RESULT plus ``legs`` and ``legs_not_applicable``
    (legs whose ports carry integer codes, e.g. the RTL)."""
    x = np.asarray(x, dtype=np.float64)
    legs = tuple(leg for leg in firmware.legs if not leg_type(leg).reads_codes)
    scores = {leg: firmware.score_raw(leg, x) for leg in legs}
    result = _pairwise(scores, legs, len(x), names, lambda index: {"model_input": x[index].tolist()})
    result["legs"] = list(legs)
    result["legs_not_applicable"] = [{"leg": leg, "reason": "reads integer codes on its ports, not raw inputs"}
                                     for leg in firmware.legs if leg_type(leg).reads_codes]
    return result


def _pairwise(scores: dict[str, np.ndarray], legs: tuple[str, ...], n: int, names: list[str] | None,
              describe: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    comparisons: dict[str, Any] = {}
    any_mismatch = np.zeros(n, dtype=bool)
    for i, a in enumerate(legs):
        for b in legs[i + 1:]:
            diff = np.abs(scores[a] - scores[b])
            mismatch = diff != 0
            any_mismatch |= mismatch
            comparisons[f"{a}_vs_{b}"] = {"exact": int((~mismatch).sum()), "mismatched": int(mismatch.sum()),
                                          "max_abs_diff_lsb": int(diff.max()) if len(diff) else 0}
    first = []
    for index in np.flatnonzero(any_mismatch)[:MAX_REPORTED_MISMATCHES]:
        first.append({"index": int(index), "name": names[index] if names else None, **describe(int(index)),
                      "scores_lsb": {leg: int(scores[leg][index]) for leg in legs}})
    return {"n": n, "all_legs_equal": int((~any_mismatch).sum()), "comparisons": comparisons,
            "first_mismatches": first}


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-batch RESULTs of consecutive batches, re-indexing mismatches to positions in the whole sample."""
    merged: dict[str, Any] = {"n": 0, "all_legs_equal": 0, "comparisons": {}, "first_mismatches": []}
    for result in results:
        offset = merged["n"]
        merged["n"] += result["n"]
        merged["all_legs_equal"] += result["all_legs_equal"]
        for pair, c in result["comparisons"].items():
            m = merged["comparisons"].setdefault(pair, {"exact": 0, "mismatched": 0, "max_abs_diff_lsb": 0})
            m["exact"] += c["exact"]
            m["mismatched"] += c["mismatched"]
            m["max_abs_diff_lsb"] = max(m["max_abs_diff_lsb"], c["max_abs_diff_lsb"])
        for entry in result["first_mismatches"]:
            if len(merged["first_mismatches"]) < MAX_REPORTED_MISMATCHES:
                merged["first_mismatches"].append({**entry, "index": entry["index"] + offset})
    return merged


def all_exact(result: dict[str, Any]) -> bool:
    """Every pairwise comparison of one RESULT exact (vacuously true without comparisons: see
    :func:`emulation_verdict` for the verdict that cannot pass vacuously)."""
    return all(c["mismatched"] == 0 for c in result["comparisons"].values())


def throughput(timings: dict[str, list[float]]) -> dict[str, float]:
    """jets/s per leg from ``compare``'s ``timings`` (alternating seconds, jets)."""
    out = {}
    for leg, values in timings.items():
        seconds, jets = sum(values[0::2]), sum(values[1::2])
        out[leg] = round(jets / seconds, 1) if seconds > 0 else None
    return out

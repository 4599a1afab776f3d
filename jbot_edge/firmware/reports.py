"""Vendor synthesis reports and ``synth_report.json``: what the firmware costs and whether it fits the budget.

Reading vendor reports
----------------------
:func:`parse_vendor_reports` reads an hls4ml Vivado/Vitis project with hls4ml's own reader
(:func:`hls4ml.report.parse_vivado_report`): the C-synthesis report
``<name>_prj/solution1/syn/report/<name>_csynth.xml`` and, after logic synthesis, Vivado's utilisation report
``vivado_synth.rpt``. Figures are normalised to the units of :data:`~jbot_edge.firmware.boards.RESOURCE_UNITS`
(BRAM in 36 Kb tiles: C synthesis counts BRAM_18K, so it is halved; Vivado's "Block RAM Tile" already is).

``synth_report.json`` (schema ``jbot-edge.synth_report/1``)
-----------------------------------------------------------
Written by every ``jbot-edge synth`` next to the firmware; every number carries where it came from. ``source`` is one
of ``"vendor:csynth"`` (Vivado/Vitis HLS C synthesis), ``"vendor:vsynth"`` (Vivado logic synthesis),
``"estimate:<tool>"`` (a vendor-free estimate, e.g. ``estimate:da4ml``, ``estimate:yosys``) or ``"unknown"``
(then ``value`` is null). NaN never appears; a figure nobody measured is null::

    {
      "schema": "jbot-edge.synth_report/1",
      "board": "vu13p", "part": "xcvu13p-flga2577-2-e", "family": "virtexuplus",
      "clock_ns": 4.167, "clock_mhz": 239.98,
      "backend": "Vitis",                 # flow that produced the design: hls4ml backend name, or "rtl"
      "io_type": "io_parallel", "strategy": "Latency", "reuse_factor": 1,
      "layer_precisions": {LAYER: {TYPE_NAME: "fixed<16,6,RND_CONV,SAT,0>", ...}, ...},
      "latency_cycles": {"value": 9, "best": 9, "worst": 9, "source": "vendor:csynth"},   # value = worst case
      "latency_ns": {"value": 37.503, "source": "vendor:csynth"},                        # cycles x clock_ns
      "ii": {"value": 1, "source": "vendor:csynth"},                                     # worst-case interval
      "timing": {"target_clock_ns": 4.167, "estimated_clock_ns": 3.61, "source": "vendor:csynth"},
      "resources": {"LUT": {"value": 20731, "percent_of_board": 1.1997, "source": "vendor:vsynth"},
                    "FF": {...}, "DSP": {...}, "BRAM": {...}, "URAM": {...}},
      "resource_units": {"LUT": "CLB LUTs", ..., "BRAM": "36 Kb block RAM tiles (BRAM_18K / 2)", ...},
      "budget": {
        "latency_ns_max": 50.0, "ii_required": 1, "lut_fraction_max": 0.02,
        "resource_fraction_max": {"LUT": 0.02},
        "verdict": "fits" | "exceeds" | "unknown",
        "reasons": ["..."],           # the checks that decided the verdict (all checks when it fits)
        "checks": [{"check": "latency_ns", "status": "ok" | "exceeds" | "unknown", "value": 37.503,
                    "limit": 50.0, "source": "vendor:csynth", "message": "..."}, ...]
      },
      "vendor_tools": {"vitis-run": {"path": ..., "version": "2023.2"} | null, "v++": ..., "vitis_hls": ...,
                       "vivado_hls": ..., "vivado": ...},
      "vendor_reports": null | <parse_vendor_reports() result>,
      "estimates": [<Estimate as dict>, ...],
      "notes": ["no Vivado/Vitis on PATH: ...", ...]
    }

Precedence when several sources know a figure: resources come from Vivado logic synthesis, then C synthesis, then
the estimates in the order given; latency and II from C synthesis, then the estimates in order.

The verdict is ``"exceeds"`` when any check fails (latency > budget, II > required, a resource above its cap or above
100% of the device, C synthesis missing the target clock, network + integer input block above the latency budget:
``input_block_latency_ns``, present when the input spec has such a block; its figure is a lower bound, so that
check is ``"exceeds"`` or ``"unknown"``, never ``"ok"``; a student's jet term beside the network:
``score_latency_ns``, the network's cycles or the term's stages, whichever is more, plus one adder stage, and
``score_LUT_fraction``, the network's LUTs plus the term's; ``input_block_LUT_fraction``, the network's plus an
input block's), else ``"unknown"`` when any figure a check needs is
unknown, else ``"fits"``. Clock periods are given to the picosecond, so comparisons allow 0.1%: 12 cycles at
4.167 ns (240 MHz) count as 50 ns.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pydantic

from jbot_edge.atomic import write_json
from jbot_edge.config import StrictModel
from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.boards import RESOURCE_KINDS, RESOURCE_UNITS, Board, ResourceKind
from jbot_edge.firmware.vendor import canonical_backend, find_vendor_tools, missing_tools_note

SCHEMA = "jbot-edge.synth_report/1"
SOURCE_CSYNTH = "vendor:csynth"
SOURCE_VSYNTH = "vendor:vsynth"
UNKNOWN = "unknown"

#: Relative tolerance of budget comparisons (clock periods are rounded to the picosecond).
_TOLERANCE = 1e-3


class Estimate(StrictModel):
    """A vendor-free estimate handed to :func:`build_synth_report` (the hook for the RTL / da4ml / yosys flow).

    ``tool`` names the estimator (it becomes ``source = "estimate:<tool>"``); any figure may be left out.
    """

    tool: str = pydantic.Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    design: str | None = pydantic.Field(None, description="the design these figures describe when it is not the "
                                        "report's own (e.g. 'da4ml RTL, fully parallel'); None: the report's design")
    latency_cycles: int | None = pydantic.Field(None, ge=0)
    ii: int | None = pydantic.Field(None, ge=1)
    estimated_clock_ns: float | None = pydantic.Field(None, gt=0, description="shortest clock period the design "
                                                      "meets (e.g. from its netlist's deepest stage)")
    timing: dict[str, Any] | None = pydantic.Field(None, description="how estimated_clock_ns was measured")
    resources: dict[ResourceKind, float] = pydantic.Field(default_factory=dict)
    notes: list[str] = pydantic.Field(default_factory=list)

    @pydantic.field_validator("resources")
    @classmethod
    def _finite_non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, amount in value.items():
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"{kind} must be a finite count >= 0, got {amount}")
        return value

    @property
    def source(self) -> str:
        return f"estimate:{self.tool}"


# --------------------------------------------------------------------------------------------------------------
# Vendor reports


def _number(text: Any) -> int | float | None:
    """'123' → 123, '0.5' → 0.5, '1,024' → 1024; 'undef', '-', '', None, NaN → None."""
    if text is None:
        return None
    try:
        value = float(str(text).replace(",", "").strip())
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


def _project_settings(project_dir: Path) -> dict[str, str]:
    """``set NAME "VALUE"`` lines of hls4ml's project.tcl (project_name, part, clock_period, ...)."""
    settings = {}
    for line in (project_dir / "project.tcl").read_text().splitlines():
        match = re.match(r'\s*set\s+(\w+)\s+"?([^"]*)"?\s*$', line)
        if match:
            settings[match.group(1)] = match.group(2).strip()
    return settings


def _csynth_figures(raw: Mapping[str, str], report_file: str) -> dict[str, Any]:
    resources = {kind: _number(raw.get(kind)) for kind in ("LUT", "FF", "DSP", "URAM")}
    available = {kind: _number(raw.get(f"Available{kind}")) for kind in ("LUT", "FF", "DSP", "URAM")}
    bram18, bram18_available = _number(raw.get("BRAM_18K")), _number(raw.get("AvailableBRAM_18K"))
    resources["BRAM"] = None if bram18 is None else _number(bram18 / 2)
    available["BRAM"] = None if bram18_available is None else _number(bram18_available / 2)
    return {
        "report": report_file,
        "target_clock_ns": _number(raw.get("TargetClockPeriod")),
        "estimated_clock_ns": _number(raw.get("EstimatedClockPeriod")),
        "latency_cycles_best": _number(raw.get("BestLatency")),
        "latency_cycles_worst": _number(raw.get("WorstLatency")),
        "ii_min": _number(raw.get("IntervalMin")),
        "ii_max": _number(raw.get("IntervalMax")),
        "resources": {kind: resources[kind] for kind in RESOURCE_KINDS},
        "available": {kind: available[kind] for kind in RESOURCE_KINDS},
    }


def _vsynth_figures(raw: Mapping[str, str], report_file: str) -> dict[str, Any]:
    # hls4ml files Vivado's "Block RAM Tile" row (36 Kb tiles) under the key BRAM_18K and "DSPs" under DSP48E.
    return {
        "report": report_file,
        "resources": {
            "LUT": _number(raw.get("LUT")),
            "FF": _number(raw.get("FF")),
            "DSP": _number(raw.get("DSP48E")),
            "BRAM": _number(raw.get("BRAM_18K")),
            "URAM": _number(raw.get("URAM")),
        },
    }


def parse_vendor_reports(project_dir: str | Path, backend: str) -> dict[str, Any]:
    """Latency, II, clock and resources from a Vivado/Vitis hls4ml project's reports, via hls4ml's reader.

    Returns ``{"backend", "project_dir", "project_name", "part", "csynth": {...} | None, "vsynth": {...} | None}``
    where ``csynth`` holds ``target_clock_ns``, ``estimated_clock_ns``, ``latency_cycles_best/worst``,
    ``ii_min/max``, ``resources`` and the tool's ``available`` totals, and ``vsynth`` holds post-synthesis
    ``resources`` (units: :data:`~jbot_edge.firmware.boards.RESOURCE_UNITS`). A report that does not exist yet is
    ``None``; a project that is not an hls4ml Vivado/Vitis project, or a report that cannot be read, is an error.
    """
    import hls4ml.report

    backend = canonical_backend(backend)
    project_dir = Path(project_dir)
    if not (project_dir / "project.tcl").is_file():
        raise JbotEdgeError(f"{project_dir} is not an hls4ml {backend} project: it has no project.tcl")
    settings = _project_settings(project_dir)
    name = settings.get("project_name")
    if not name:
        raise JbotEdgeError(f"{project_dir / 'project.tcl'} does not set project_name")
    parsed: dict[str, Any] = {
        "backend": backend,
        "project_dir": str(project_dir),
        "project_name": name,
        "part": settings.get("part"),
        "csynth": None,
        "vsynth": None,
    }
    solution_dir = project_dir / f"{name}_prj"
    if not any((solution_dir / app).is_file() for app in ("vivado_hls.app", "hls.app")):
        return parsed  # never built: hls4ml's reader would fail looking for a solution

    csynth_file = f"{name}_prj/solution1/syn/report/{name}_csynth.xml"
    # hls4ml's reader prints "... not found." for every report it misses; keep the CLI's output ours.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            raw = hls4ml.report.parse_vivado_report(str(project_dir)) or {}
        except (ET.ParseError, AttributeError, IndexError, ValueError) as exc:
            raise JbotEdgeError(
                f"cannot read the vendor reports in {project_dir} ({csynth_file} or vivado_synth.rpt): {exc}"
            ) from exc
    if "CSynthesisReport" in raw:
        parsed["csynth"] = _csynth_figures(raw["CSynthesisReport"], csynth_file)
    if raw.get("VivadoSynthReport"):
        parsed["vsynth"] = _vsynth_figures(raw["VivadoSynthReport"], "vivado_synth.rpt")
    return parsed


# --------------------------------------------------------------------------------------------------------------
# synth_report.json


def _figure(value: int | float | None, source: str | None) -> dict[str, Any]:
    return {"value": value, "source": source if value is not None and source else UNKNOWN}


def _label(figure: dict[str, Any], design: str, estimates: Sequence[Estimate], reason: str) -> dict[str, Any]:
    """Name the basis and the design of a figure: ``basis`` (= ``source``), ``design`` (the report's own design, or
    the one an estimate measured), and ``reason`` when it is unknown."""
    source = figure["source"]
    figure["basis"] = source
    estimate = next((e for e in estimates if e.source == source), None)
    figure["design"] = (estimate.design if estimate and estimate.design else design) if source != UNKNOWN else design
    if source == UNKNOWN:
        figure["reason"] = reason
    return figure


def design_label(backend: str, strategy: str, reuse_factor: int, clock_ns: float, io_type: str) -> str:
    """One line naming a design: backend, strategy, reuse factor, clock (and I/O type)."""
    return (f"{backend}, {strategy} strategy, reuse factor {reuse_factor}, {io_type}, clock {clock_ns:g} ns "
            f"({1000.0 / clock_ns:.4g} MHz)")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _pick_performance(csynth: Mapping[str, Any] | None, estimates: Sequence[Estimate]) -> dict[str, Any]:
    if csynth and csynth.get("latency_cycles_worst") is not None:
        cycles = {"value": csynth["latency_cycles_worst"], "best": csynth.get("latency_cycles_best"),
                  "worst": csynth["latency_cycles_worst"], "source": SOURCE_CSYNTH}
    else:
        estimate = next((e for e in estimates if e.latency_cycles is not None), None)
        cycles = (
            {"value": estimate.latency_cycles, "best": estimate.latency_cycles, "worst": estimate.latency_cycles,
             "source": estimate.source}
            if estimate else {"value": None, "best": None, "worst": None, "source": UNKNOWN}
        )
    if csynth and csynth.get("ii_max") is not None:
        ii = _figure(csynth["ii_max"], SOURCE_CSYNTH)
    else:
        estimate = next((e for e in estimates if e.ii is not None), None)
        ii = _figure(estimate.ii, estimate.source) if estimate else _figure(None, None)
    return {"latency_cycles": cycles, "ii": ii}


def _pick_timing(csynth: Mapping[str, Any] | None, estimates: Sequence[Estimate], clock_ns: float) -> dict[str, Any]:
    """Target and achievable clock: C synthesis' estimate, else the first estimate that measured one."""
    if csynth and csynth.get("estimated_clock_ns") is not None:
        return {"target_clock_ns": csynth.get("target_clock_ns"), "estimated_clock_ns": csynth["estimated_clock_ns"],
                "source": SOURCE_CSYNTH}
    estimate = next((e for e in estimates if e.estimated_clock_ns is not None), None)
    if estimate is None:
        return {"target_clock_ns": csynth.get("target_clock_ns") if csynth else None, "estimated_clock_ns": None,
                "source": UNKNOWN}
    period = round(float(estimate.estimated_clock_ns), 3)
    return {"target_clock_ns": float(clock_ns), "estimated_clock_ns": period,
            "fmax_mhz": round(1000.0 / period, 1), "source": estimate.source, **(estimate.timing or {})}


def _pick_resources(vendor: Mapping[str, Any] | None, estimates: Sequence[Estimate],
                    board: Board) -> dict[str, dict[str, Any]]:
    candidates: list[tuple[str, Mapping[str, Any]]] = []
    if vendor and vendor.get("vsynth"):
        candidates.append((SOURCE_VSYNTH, vendor["vsynth"]["resources"]))
    if vendor and vendor.get("csynth"):
        candidates.append((SOURCE_CSYNTH, vendor["csynth"]["resources"]))
    candidates.extend((e.source, e.resources) for e in estimates)
    resources = {}
    for kind in RESOURCE_KINDS:
        source, value = next(((s, r[kind]) for s, r in candidates if r.get(kind) is not None), (UNKNOWN, None))
        total = board.resources.total(kind)
        percent = None if value is None or total == 0 else round(100.0 * value / total, 4)
        resources[kind] = {"value": value, "percent_of_board": percent, "source": source}
    return resources


def _check(name: str, status: str, value: Any, limit: Any, source: str, message: str) -> dict[str, Any]:
    return {"check": name, "status": status, "value": value, "limit": limit, "source": source, "message": message}


def _exceeds(value: float, limit: float) -> bool:
    return value > limit * (1.0 + _TOLERANCE)


def _input_block_check(block: Mapping[str, Any], latency_ns: Mapping[str, Any], clock_ns: float,
                       limit: float) -> dict[str, Any]:
    """Network + input block against the latency budget. The block's path is a lower bound (DSP delays are not
    modelled), so this check can show that the sum exceeds the budget, never that it fits."""
    stages = block.get("min_stages")
    if stages is None or latency_ns["value"] is None:
        return _check("input_block_latency_ns", UNKNOWN, None, limit, UNKNOWN,
                      "input block ahead of the network: its latency is not estimated, so network + block is unknown")
    total = latency_ns["value"] + stages * clock_ns
    over = _exceeds(total, limit)
    return _check("input_block_latency_ns", "exceeds" if over else UNKNOWN, round(total, 3), limit, block["source"],
                  f"network {latency_ns['value']:g} ns + input block >= {stages} stage(s) x {clock_ns:g} ns = "
                  f">= {total:g} ns ({block['source']}, a lower bound) {'>' if over else 'vs'} budget {limit:g} ns")


def _jet_term_checks(term: Mapping[str, Any], latency_cycles: Mapping[str, Any],
                     resources: Mapping[str, Mapping[str, Any]], board: Board, clock_ns: float
                     ) -> list[dict[str, Any]]:
    """The score = network + jet term (computed in parallel from the same codes, joined by one adder stage):
    its latency and its LUTs against the budget."""
    limit = board.budget.latency_ns_max
    cycles, stages = latency_cycles.get("value"), term.get("stages")
    if cycles is None or stages is None:
        latency = _check("score_latency_ns", UNKNOWN, None, limit, UNKNOWN,
                         "network + jet term: the network's cycles or the term's stages are unknown")
    else:
        total = round((max(cycles, stages) + 1) * clock_ns, 3)
        over = _exceeds(total, limit)
        latency = _check("score_latency_ns", "exceeds" if over else "ok", total, limit,
                         f"{latency_cycles['source']} + {term['source']}",
                         f"score = network ({cycles} cycles) in parallel with the jet term ({stages} stage(s), "
                         f"{term['source']}) + 1 adder stage = {total:g} ns {'>' if over else '<='} budget {limit:g} ns")
    return [latency, *_added_lut_check("score_LUT_fraction", "jet term", term, resources, board)]


def _added_lut_check(name: str, what: str, block: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]],
                     board: Board) -> list[dict[str, Any]]:
    """The network's LUTs plus a block's built beside or ahead of it (``block["resources"]["LUT"]``) against the
    board's LUT cap; no check without a cap."""
    cap = board.budget.resource_fraction_max.get("LUT")
    if cap is None:
        return []
    network_lut = resources.get("LUT", {}).get("value")
    block_lut = (block.get("resources") or {}).get("LUT")
    if network_lut is None or block_lut is None:
        return [_check(name, UNKNOWN, None, cap, UNKNOWN, f"network + {what}: a LUT figure is unknown")]
    fraction = (network_lut + block_lut) / board.resources.LUT
    over = _exceeds(fraction, cap)
    return [_check(name, "exceeds" if over else "ok", round(fraction, 6), cap,
                   f"{resources['LUT']['source']} + {block['source']}",
                   f"LUT network {network_lut:g} + {what} {block_lut:g} = {100 * fraction:.3g}% of {board.name} "
                   f"{'>' if over else '<='} cap {100 * cap:g}%")]


def evaluate_budget(board: Board, latency_ns: Mapping[str, Any], latency_cycles: Mapping[str, Any],
                    ii: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]],
                    timing: Mapping[str, Any], clock_ns: float,
                    input_block: Mapping[str, Any] | None = None,
                    jet_term: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The level-1 verdict of one design on one board; see the module docstring for the rules."""
    budget = board.budget
    checks = []
    if input_block is not None:
        checks.append(_input_block_check(input_block, latency_ns, clock_ns, budget.latency_ns_max))
        checks += _added_lut_check("input_block_LUT_fraction", "input block", input_block, resources, board)
    if jet_term is not None:
        checks += _jet_term_checks(jet_term, latency_cycles, resources, board, clock_ns)

    if latency_ns["value"] is None:
        checks.append(_check("latency_ns", UNKNOWN, None, budget.latency_ns_max, UNKNOWN,
                             f"latency unknown (budget {budget.latency_ns_max:g} ns)"))
    else:
        over = _exceeds(latency_ns["value"], budget.latency_ns_max)
        checks.append(_check(
            "latency_ns", "exceeds" if over else "ok", latency_ns["value"], budget.latency_ns_max,
            latency_ns["source"],
            f"latency {latency_ns['value']:g} ns ({latency_cycles['value']} cycles x {clock_ns:g} ns, "
            f"{latency_ns['source']}) {'>' if over else '<='} budget {budget.latency_ns_max:g} ns"))

    if ii["value"] is None:
        checks.append(_check("ii", UNKNOWN, None, budget.ii_required, UNKNOWN,
                             f"initiation interval unknown (required {budget.ii_required})"))
    else:
        over = ii["value"] > budget.ii_required
        checks.append(_check(
            "ii", "exceeds" if over else "ok", ii["value"], budget.ii_required, ii["source"],
            f"II {ii['value']} ({ii['source']}) {'>' if over else '<='} required {budget.ii_required}"))

    for kind in RESOURCE_KINDS:
        figure = resources[kind]
        cap = budget.resource_fraction_max.get(kind)
        percent = figure["percent_of_board"]
        if percent is None:
            if cap is not None:
                checks.append(_check(f"{kind}_fraction", UNKNOWN, None, cap, UNKNOWN,
                                     f"{kind} unknown (cap {100 * cap:g}% of {board.name})"))
            continue
        if cap is not None:
            over = _exceeds(percent / 100.0, cap)
            checks.append(_check(
                f"{kind}_fraction", "exceeds" if over else "ok", percent / 100.0, cap, figure["source"],
                f"{kind} {figure['value']:g} = {percent:.3g}% of {board.name} ({figure['source']}) "
                f"{'>' if over else '<='} cap {100 * cap:g}%"))
        elif percent > 100.0:
            checks.append(_check(
                f"{kind}_fraction", "exceeds", percent / 100.0, 1.0, figure["source"],
                f"{kind} {figure['value']:g} = {percent:.3g}% of {board.name} ({figure['source']}): "
                f"does not fit the device"))

    estimated, target = timing.get("estimated_clock_ns"), timing.get("target_clock_ns")
    if estimated is not None and target is not None:
        over = _exceeds(estimated, target)
        checks.append(_check(
            "clock_ns", "exceeds" if over else "ok", estimated, target, timing["source"],
            f"estimated clock period {estimated:g} ns ({timing['source']}) "
            f"{'misses' if over else 'meets'} target {target:g} ns"))

    statuses = {c["status"] for c in checks}
    verdict = "exceeds" if "exceeds" in statuses else UNKNOWN if UNKNOWN in statuses else "fits"
    deciding = checks if verdict == "fits" else [c for c in checks if c["status"] == verdict]
    basis = verdict_basis(verdict, deciding)
    return {
        "latency_ns_max": budget.latency_ns_max,
        "ii_required": budget.ii_required,
        "lut_fraction_max": budget.resource_fraction_max.get("LUT"),
        "resource_fraction_max": dict(budget.resource_fraction_max),
        "verdict": verdict,
        "verdict_basis": basis,
        "verdict_text": verdict if basis == UNKNOWN else f"{verdict} ({basis})",
        "reasons": [c["message"] for c in deciding],
        "checks": checks,
    }


def verdict_basis(verdict: str, deciding: Sequence[Mapping[str, Any]]) -> str:
    """``"vendor"`` when every figure that decided the verdict came from a vendor tool, ``"estimate"`` when any came
    from a vendor-free estimate, ``"unknown"`` for an unknown verdict."""
    if verdict == UNKNOWN or not deciding:
        return UNKNOWN
    vendor = all(str(c["source"]).startswith("vendor:") for c in deciding)
    return "vendor" if vendor else "estimate"


def _as_estimates(estimates: Iterable[Estimate | Mapping[str, Any]] | None) -> list[Estimate]:
    out = []
    for item in estimates or ():
        if isinstance(item, Estimate):
            out.append(item)
            continue
        try:
            out.append(Estimate.model_validate(dict(item)))
        except pydantic.ValidationError as exc:
            raise ValueError(f"invalid estimate {item!r}: {exc}") from exc
    return out


def _vendor_notes(vendor: Mapping[str, Any] | None, vendor_tools: Mapping[str, Any], board: Board,
                  clock_ns: float, estimates: Sequence[Estimate]) -> list[str]:
    notes = []
    if vendor is None:
        missing = missing_tools_note(vendor_tools)
        if missing and estimates:
            sources = ", ".join(e.source for e in estimates)
            notes.append(f"no Vivado/Vitis on PATH: every figure is a vendor-free estimate ({sources})")
        elif missing:
            notes.append(missing)
        else:
            present = ", ".join(t for t, found in vendor_tools.items() if found)
            notes.append(f"vendor tools on PATH ({present}) but no vendor synthesis was run for this report")
        return notes
    if vendor.get("csynth") is None:
        notes.append(f"no C-synthesis report in {vendor.get('project_dir')}: vendor latency and resources unknown")
    if vendor.get("vsynth") is None and vendor.get("csynth") is not None:
        notes.append("resources are C-synthesis estimates; Vivado logic synthesis (vsynth) usually reports fewer "
                     "LUTs and is what the budget should finally be judged on")
    if vendor.get("part") and vendor["part"] != board.part:
        notes.append(f"the project targets {vendor['part']}, not {board.name}'s {board.part}: "
                     f"percentages are of {board.name}")
    target = (vendor.get("csynth") or {}).get("target_clock_ns")
    if target is not None and abs(target - clock_ns) > _TOLERANCE * clock_ns + 1e-6:
        notes.append(f"C synthesis ran at {target:g} ns, not the {clock_ns:g} ns of this report: "
                     f"latency_ns uses {clock_ns:g} ns")
    return notes


def build_synth_report(
    board: Board,
    clock_ns: float,
    backend: str,
    strategy: str,
    reuse_factor: int,
    per_layer_precisions: Mapping[str, Any],
    vendor: Mapping[str, Any] | None = None,
    estimates: Iterable[Estimate | Mapping[str, Any]] | None = None,
    io_type: str = "io_parallel",
    vendor_tools: Mapping[str, Any] | None = None,
    notes: Iterable[str] = (),
    unknown_reasons: Mapping[str, str] | None = None,
    input_block: Mapping[str, Any] | None = None,
    jet_term: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble ``synth_report.json`` (schema in the module docstring).

    ``vendor`` is :func:`parse_vendor_reports`'s result (or None when no vendor tool ran); ``estimates`` are
    vendor-free figures (:class:`Estimate` or equivalent mappings), most trusted first. ``vendor_tools`` defaults
    to :func:`~jbot_edge.firmware.vendor.find_vendor_tools` now. ``notes`` are added to the report's notes.
    ``unknown_reasons`` says why a figure is unknown (keys: a figure name, ``"latency"`` for latency and II,
    ``"resources"`` for every resource). ``input_block``: the integer block ahead of the network that the figures
    leave out (:func:`~jbot_edge.firmware.rtl.input_block.write_input_block`), judged by its own budget check;
    ``jet_term``: the student's jet term beside the network (:func:`~jbot_edge.firmware.rtl.jet_term.write_jet_term`),
    judged with the network by ``score_latency_ns`` and ``score_LUT_fraction``.
    """
    if not (isinstance(clock_ns, (int, float)) and math.isfinite(clock_ns) and clock_ns > 0):
        raise JbotEdgeError(f"--clock-ns must be a positive number of nanoseconds, got {clock_ns!r}")
    if not isinstance(reuse_factor, int) or reuse_factor < 1:
        raise JbotEdgeError(f"reuse factor must be an integer >= 1, got {reuse_factor!r}")
    estimate_list = _as_estimates(estimates)
    tools = dict(find_vendor_tools() if vendor_tools is None else vendor_tools)
    csynth = vendor.get("csynth") if vendor else None

    performance = _pick_performance(csynth, estimate_list)
    cycles = performance["latency_cycles"]
    latency_ns = _figure(_round(cycles["value"] * clock_ns if cycles["value"] is not None else None, 3),
                         cycles["source"])
    timing = _pick_timing(csynth, estimate_list, clock_ns)
    resources = _pick_resources(vendor, estimate_list, board)
    design = design_label(backend, strategy, reuse_factor, clock_ns, io_type)
    reasons = dict(unknown_reasons or {})
    default_reason = ("no vendor report and no vendor-free estimate describes this design" if vendor is None
                      else "the vendor reports do not give it")
    for name, figure in (("latency_cycles", cycles), ("latency_ns", latency_ns), ("ii", performance["ii"])):
        _label(figure, design, estimate_list, reasons.get(name, reasons.get("latency", default_reason)))
    for kind, figure in resources.items():
        _label(figure, design, estimate_list, reasons.get(kind, reasons.get("resources", default_reason)))

    report_notes = _vendor_notes(vendor, tools, board, clock_ns, estimate_list)
    if vendor is None and not estimate_list:
        report_notes.append("no estimate was given either: latency, II and resources are unknown")
    report_notes += [f"{e.tool}: {note}" for e in estimate_list for note in e.notes]
    report_notes += list(notes)

    report = {
        "schema": SCHEMA,
        "board": board.name,
        "part": board.part,
        "family": board.family,
        "clock_ns": float(clock_ns),
        "clock_mhz": round(1000.0 / clock_ns, 3),
        "backend": backend,
        "design": {"label": design, "backend": backend, "strategy": strategy, "reuse_factor": reuse_factor,
                   "clock_ns": float(clock_ns), "io_type": io_type},
        "io_type": io_type,
        "strategy": strategy,
        "reuse_factor": reuse_factor,
        "layer_precisions": {str(k): v for k, v in per_layer_precisions.items()},
        "latency_cycles": cycles,
        "latency_ns": latency_ns,
        "ii": performance["ii"],
        "timing": timing,
        "resources": resources,
        "resource_units": dict(RESOURCE_UNITS),
        "budget": evaluate_budget(board, latency_ns, cycles, performance["ii"], resources, timing, clock_ns,
                                  input_block, jet_term),
        "vendor_tools": tools,
        "vendor_reports": dict(vendor) if vendor else None,
        "estimates": [e.model_dump(mode="json") for e in estimate_list],
        "notes": report_notes,
    }
    _check_finite(report)
    return report


def _check_finite(value: Any, where: str = "synth_report") -> None:
    """A NaN or infinity in the report is a bug upstream: fail loudly rather than write an unreadable figure."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}; synth_report.json never holds NaN or infinity")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_finite(item, f"{where}[{index}]")


def write_synth_report(path: str | Path, report: Mapping[str, Any]) -> Path:
    """Write ``synth_report.json`` atomically (strict JSON: NaN/infinity are refused)."""
    if report.get("schema") != SCHEMA:
        raise ValueError(f"not a synth report (schema {report.get('schema')!r}, expected {SCHEMA!r})")
    _check_finite(report)
    return write_json(path, report)


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A few human lines for the CLI: latency, II, LUT share and the verdict with its reasons."""
    lat, ii, lut = report["latency_ns"], report["ii"], report["resources"]["LUT"]
    budget = report["budget"]

    def show(figure: Mapping[str, Any], unit: str = "") -> str:
        return "unknown" if figure["value"] is None else f"{figure['value']:g}{unit} ({figure['source']})"

    lines = [
        f"{report['board']} ({report['part']}) at {report['clock_mhz']:g} MHz, backend {report['backend']}",
        f"latency {show(lat, ' ns')}, II {show(ii)}, LUT {show(lut)}"
        + ("" if lut["percent_of_board"] is None else f" = {lut['percent_of_board']:.3g}% of the board"),
        f"budget verdict: {budget.get('verdict_text', budget['verdict'])}",
    ]
    lines += [f"  - {reason}" for reason in budget["reasons"]]
    lines += [f"note: {note}" for note in report["notes"]]
    return lines

"""Timing from the netlist, vendor-free: the deepest LUT/carry path of every pipeline stage of the generated RTL.

da4ml writes one combinational module per pipeline stage (``src/<top>_stage<k>.v``); the top module only adds the
registers between them. Each stage module is mapped onto UltraScale+ primitives with Yosys
(``synth_xilinx -family xcup -flatten -noiopad``, the same mapping :mod:`~jbot_edge.firmware.rtl.yosys` counts
resources on), written as a JSON netlist, and its register-to-register path is measured here: the arrival time of
every net is propagated through the mapped cells in topological order with the per-level delays of
:class:`DelayModel`, from the stage's input ports (driven by the previous stage's registers) to its output ports
(the next registers). Mapping one stage at a time keeps each Yosys run small (the whole flattened design took
minutes on the demo student) and gives the per-stage figures directly.

Delay model (UltraScale+, -2 speed grade; :data:`ULTRASCALE_PLUS_M2`)::

    LUT1..LUT6        0.42 ns per level = 0.12 ns LUT (input pin to O) + 0.30 ns route to it
    INV               0 ns (Vivado absorbs an inverter into the LUT or carry input it feeds)
    CARRY4/CARRY8     0.23 ns entering the chain at S/DI (fed by the LUT packed in the same slice, no route;
                      from anything else add the route) to CO/O, then 0.04 ns per further 8 bits along the
                      dedicated carry line (CI -> CO plus the short net to the next CARRY8; CARRY4: half of it)
    MUXF7/F8/F9       0.10 ns (dedicated slice wiring after the LUTs)
    register          0.09 ns clock-to-Q + 0.05 ns setup + 0.10 ns clock skew/uncertainty margin per stage

Sources. No AMD data sheet figure is used: the DS923 (Virtex UltraScale+ switching characteristics) sections we
could read give clock-buffer, DSP48 and I/O-delay figures, not per-LUT delays. The figures are set against two
public sets of Vivado timing-report values for UltraScale+:

* FloPoCo's ``VirtexUltrascalePlus`` target (xcvu3p -2; ``code/HWTargets/include/flopoco/Targets/
  VirtexUltrascalePlus.hpp``, constants "copypasted from Vivado timing reports"): LUT6 0.148 ns, LUT5 0.035 ns,
  typical local routing 0.180 ns, CARRY8 S -> CO[7] 0.115 ns and CI -> O 0.116 ns, CARRY8 CI -> CO 0.015 ns plus
  0.026 ns COUT -> CIN between CLBs, LUT -> carry net 0.011 ns, FF 0.150 ns;
* Vivado 2021.2 ``report_timing`` of xczu3eg -1 (a slower grade) designs before placement (net delays estimated),
  published in ``gussmith23/lakeroad-evaluation`` under ``runs/2022-07-06-1704-full/vivado-eval/
  xilinx-ultrascale-plus-vivado-eval/vivado-synth-opt-place-route/``: in ``lpm.futil-ultrascale-timing-opt.v``
  ``Prop_LUT*`` 0.040-0.122 ns, nets 0.16-0.29 ns, ``Prop_CARRY8_DI[2]_O[4]`` 0.189 ns,
  ``Prop_CARRY8_DI[2]_CO[7]`` 0.148 ns, ``Prop_CARRY8_CI_CO[7]`` 0.030 ns + 0.007 ns net, ``Prop_FDRE_C_Q``
  0.093 ns, ``Setup_FDRE_C_D`` 0.027 ns, clock uncertainty 0.035 ns; ``Prop_LUT6_I0_O`` 0.179 ns in
  ``invoke-memory.futil-ultrascale-timing-synth.v``.

A LUT level (0.42 ns) is thus above FloPoCo's LUT6 + local route (0.33 ns) and inside the -1 report's LUT + net
(0.20-0.47 ns); the carry entry (0.23 ns) is above 0.115-0.189 ns and the hop (0.04 ns) matches 0.037-0.041 ns;
clock-to-Q, setup and margin are rounded up from 0.093 / 0.027 / 0.035 ns. The MUXF delay has no public figure we
found: it is an estimate. For comparison Yosys' own cell library (``techlibs/xilinx/cells_sim.v``, ``specify``
blocks citing Project X-Ray's Artix-7 database) gives 0.127-0.642 ns per LUT6 pin on that older, slower family.
This is a model: only vendor place and route proves timing closure, which is why the report labels the result
``estimate:yosys-sta`` and records the model and its sources.

Results are cached in ``<rtl_dir>/timing/summary.json``, keyed by a hash of the stage sources, the delay model and
the Yosys version: one Yosys run per design.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jbot_edge.atomic import atomic_path, write_json
from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.rtl.design import load_rtl
from jbot_edge.firmware.rtl.tools import require_yosys
from jbot_edge.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class DelayModel:
    """Per-level delays in ns (see the module docstring for the figures and their source)."""

    name: str = "ultrascale+ -2 estimate"
    #: Where the figures come from (the module docstring has the values read from each); in every timing report.
    sources: str = ("set against Vivado timing-report values published in FloPoCo's VirtexUltrascalePlus target "
                    "(xcvu3p -2, code/HWTargets/include/flopoco/Targets/VirtexUltrascalePlus.hpp) and in "
                    "gussmith23/lakeroad-evaluation (Vivado 2021.2 report_timing, xczu3eg -1, "
                    "runs/2022-07-06-1704-full/vivado-eval/xilinx-ultrascale-plus-vivado-eval/); not from an AMD "
                    "data sheet; MUXF delay an estimate")
    lut_ns: float = 0.12
    route_ns: float = 0.30
    carry_entry_ns: float = 0.23
    carry_hop_ns_per_8_bits: float = 0.04
    mux_ns: float = 0.10
    clock_to_q_ns: float = 0.09
    setup_ns: float = 0.05
    clock_margin_ns: float = 0.10

    @property
    def register_overhead_ns(self) -> float:
        return self.clock_to_q_ns + self.setup_ns + self.clock_margin_ns


ULTRASCALE_PLUS_M2 = DelayModel()

_LUT_TYPES = {"LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV"}
_MUX_TYPES = {"MUXF7", "MUXF8", "MUXF9"}
_FF_TYPES = {"FDRE", "FDSE", "FDCE", "FDPE"}


def _stage_modules(rtl_dir: Path, top: str) -> list[tuple[int, str, Path]]:
    stages = []
    for path in (rtl_dir / "src").glob(f"{top}_stage*.v"):
        match = re.fullmatch(rf"{re.escape(top)}_stage(\d+)", path.stem)
        if match:
            stages.append((int(match.group(1)), path.stem, path))
    if not stages:
        raise JbotEdgeError(f"{rtl_dir / 'src'} has no per-stage modules {top}_stage<k>.v (not a da4ml design?)")
    return sorted(stages)


def _cell_delay(kind: str, port: str, driver_kind: str | None, model: DelayModel) -> float:
    """Delay from one input pin of a mapped cell to its outputs."""
    if kind == "INV":
        return 0.0
    if kind in _LUT_TYPES:
        return model.route_ns + model.lut_ns
    if kind.startswith("CARRY"):
        if port in ("CI", "CI_TOP"):
            return model.carry_hop_ns_per_8_bits * (0.5 if kind == "CARRY4" else 1.0)
        # S/DI come from the LUT packed beside the carry chain; anything else is routed to it first.
        packed = driver_kind in _LUT_TYPES
        return model.carry_entry_ns + (0.0 if packed else model.route_ns)
    if kind in _MUX_TYPES:
        return model.mux_ns
    return model.route_ns + model.lut_ns  # any other cell: count it as a LUT level (errs on the slow side)


def longest_path(module: dict[str, Any], model: DelayModel = ULTRASCALE_PLUS_M2) -> dict[str, Any]:
    """Deepest combinational path of one mapped module from Yosys' JSON netlist: ``{"path_ns", "lut_levels",
    "carry_cells", "cells"}``. Paths start at input ports and register outputs, end at output ports and register
    inputs (``path_ns`` excludes the register overhead)."""
    cells = module.get("cells", {})
    driver: dict[int, str] = {}
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) == "output":
                for bit in bits:
                    if isinstance(bit, int):
                        driver[bit] = name
    def source(bit) -> str | None:
        """The combinational cell driving a net bit (None: an input port, a constant or a register output)."""
        name = driver.get(bit) if isinstance(bit, int) else None
        return None if name is None or cells[name]["type"] in _FF_TYPES else name

    fanin: dict[str, list[tuple[str, Any]]] = {}
    fanout: dict[str, set[str]] = defaultdict(set)
    for name, cell in cells.items():
        if cell["type"] in _FF_TYPES:
            continue
        pins = [(port, bit) for port, bits in cell["connections"].items()
                if cell.get("port_directions", {}).get(port) == "input" for bit in bits]
        fanin[name] = pins
        for _, bit in pins:
            if (upstream := source(bit)) is not None:
                fanout[upstream].add(name)
    # Arrival (ns, LUT levels, carry cells) at each cell's outputs, in topological order (Kahn).
    waiting = {name: len({source(bit) for _, bit in pins} - {None}) for name, pins in fanin.items()}
    ready = [name for name, n in waiting.items() if n == 0]
    arrival: dict[str, tuple[float, int, int]] = {}
    while ready:
        name = ready.pop()
        kind = cells[name]["type"]
        best = (0.0, 0, 0)
        for port, bit in fanin[name]:
            upstream = source(bit)
            ns, luts, carries = arrival[upstream] if upstream else (0.0, 0, 0)
            upstream_kind = cells[upstream]["type"] if upstream else None
            best = max(best, (ns + _cell_delay(kind, port, upstream_kind, model),
                              luts + (kind in _LUT_TYPES - {"INV"}), carries + kind.startswith("CARRY")))
        arrival[name] = best
        for downstream in fanout[name]:
            waiting[downstream] -= 1
            if waiting[downstream] == 0:
                ready.append(downstream)
    if len(arrival) != len(fanin):
        raise JbotEdgeError("combinational loop in the mapped netlist: cannot measure its paths")

    def at_bit(bit) -> tuple[float, int, int]:
        upstream = source(bit)
        return arrival[upstream] if upstream else (0.0, 0, 0)

    ends = [bit for port in module.get("ports", {}).values() if port["direction"] == "output" for bit in port["bits"]]
    ends += [bit for cell in cells.values() if cell["type"] in _FF_TYPES for bit in cell["connections"].get("D", [])]
    deepest = max((at_bit(bit) for bit in ends), default=(0.0, 0, 0))
    counts: dict[str, int] = defaultdict(int)
    for cell in cells.values():
        counts[cell["type"]] += 1
    return {"path_ns": round(deepest[0], 3), "lut_levels": deepest[1], "carry_cells": deepest[2],
            "cells": dict(sorted(counts.items()))}


def _key(sources: list[Path], version: str, model: DelayModel, family: str) -> str:
    digest = hashlib.sha256(f"{version}|{family}|{json.dumps(asdict(model), sort_keys=True)}".encode())
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def measure_timing(rtl_dir: str | os.PathLike[str], model: DelayModel = ULTRASCALE_PLUS_M2, family: str = "xcup",
                   timeout_s: float = 3600.0) -> dict[str, Any]:
    """Map every pipeline stage with Yosys and measure its deepest path (cached in ``rtl_dir/timing/``). Returns::

        {"tool": "yosys-sta", "version", "family", "delay_model": {...}, "seconds", "key",
         "stages": [{"stage": k, "path_ns", "stage_ns" (path + register overhead), "lut_levels", "carry_cells",
                     "cells": {type: n}}],
         "critical_stage": k, "min_clock_ns": max stage_ns, "fmax_mhz"}
    """
    yosys = require_yosys()
    design = load_rtl(rtl_dir)
    rtl_dir = design.directory
    stages = _stage_modules(rtl_dir, design.top)
    static = sorted((rtl_dir / "src" / "static").glob("*.v"))
    key = _key([p for _, _, p in stages] + static, yosys.version, model, family)
    out = rtl_dir / "timing"
    out.mkdir(exist_ok=True)
    summary_path = out / "summary.json"
    if summary_path.is_file():
        cached = json.loads(summary_path.read_text())
        if cached.get("key") == key:
            return cached

    static_files = " ".join(str(p.relative_to(rtl_dir)) for p in static)
    script = []
    for k, module, path in stages:
        script.append(f"design -reset; read_verilog -defer -Isrc -Isrc/static {path.relative_to(rtl_dir)} {static_files}; "
                      f"synth_xilinx -family {family} -top {module} -flatten -noiopad; "
                      f"write_json timing/stage{k}.json")
    log.info("mapping %d pipeline stages of %s with yosys synth_xilinx -family %s for timing", len(stages), rtl_dir,
             family)
    start = time.perf_counter()
    with open(out / "yosys.log", "w") as log_file:
        try:
            result = subprocess.run([yosys.path, "-q", "-p", "; ".join(script)], cwd=rtl_dir, stdout=log_file,
                                    stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise JbotEdgeError(f"yosys timing took longer than {timeout_s:.0f} s; see {out / 'yosys.log'}") from exc
    if result.returncode != 0:
        raise JbotEdgeError(f"yosys failed (exit {result.returncode}); see {out / 'yosys.log'}")
    rows = []
    for k, module, _ in stages:
        netlist = json.loads((out / f"stage{k}.json").read_text())
        mapped = netlist["modules"].get(module) or netlist["modules"].get(f"\\{module}")
        if mapped is None:
            raise JbotEdgeError(f"{out / f'stage{k}.json'} has no module {module}")
        path = longest_path(mapped, model)
        rows.append({"stage": k, **path, "stage_ns": round(path["path_ns"] + model.register_overhead_ns, 3)})
    critical = max(rows, key=lambda r: r["stage_ns"])
    summary = {
        "tool": "yosys-sta",
        "version": yosys.version,
        "family": family,
        "delay_model": asdict(model),
        "seconds": round(time.perf_counter() - start, 1),
        "key": key,
        "stages": rows,
        "critical_stage": critical["stage"],
        "min_clock_ns": critical["stage_ns"],
        "fmax_mhz": round(1000.0 / critical["stage_ns"], 1),
    }
    with atomic_path(summary_path) as tmp:
        write_json(tmp, summary)
    return summary


def timing_estimate(summary: dict[str, Any], clock_ns: float):
    """A timing summary as a synth-report :class:`~jbot_edge.firmware.reports.Estimate` (achievable clock)."""
    from jbot_edge.firmware.reports import Estimate

    too_slow = [r["stage"] for r in summary["stages"] if r["stage_ns"] > clock_ns * (1 + 1e-3)]
    per_stage = ", ".join(f"{r['stage']}: {r['stage_ns']:g} ns ({r['lut_levels']} LUT + {r['carry_cells']} CARRY8)"
                          for r in summary["stages"])
    note = (f"timing from the yosys {summary['version']} netlist (synth_xilinx -family {summary['family']}, one run per "
            f"stage): deepest path per stage incl. {DelayModel(**summary['delay_model']).register_overhead_ns:g} ns "
            f"register overhead = {per_stage}; fmax {summary['fmax_mhz']:g} MHz "
            f"(delay model '{summary['delay_model']['name']}': "
            f"{summary['delay_model'].get('sources', 'no sources recorded')}; see jbot_edge.firmware.rtl.timing)")
    if too_slow:
        note += f"; stage(s) {too_slow} do not fit the {clock_ns:g} ns clock"
    return Estimate(tool="yosys-sta", estimated_clock_ns=summary["min_clock_ns"], notes=[note], timing={
        "critical_stage": summary["critical_stage"], "stages_exceeding_clock": too_slow,
        "per_stage_ns": [r["stage_ns"] for r in summary["stages"]],
        "per_stage_lut_levels": [r["lut_levels"] for r in summary["stages"]],
        "delay_model": summary["delay_model"]})

"""Logic synthesis of the generated RTL with Yosys: LUT / FF / DSP counts for a Xilinx family, no vendor tool.

``synth_xilinx -family xcup -flatten -noiopad`` maps the top module (out of context, like da4ml's Vivado script)
onto UltraScale+ primitives; ``stat -json`` counts the cells. Counting, in the units of synth_report.json:

* ``LUT``  = LUT1…LUT6, INV (a LUT1 unless Vivado absorbs it: counted, to err on the safe side) and SRL16E/SRLC32E
  shift registers (LUTs used as memory: Vivado's "CLB LUTs" counts both);
* ``FF``   = FDRE/FDSE/FDCE/FDPE; ``DSP`` = DSP48E2; ``BRAM`` = RAMB36E2 + RAMB18E2 / 2; carry chains (CARRY4/8) and
  wide muxes (MUXF7/8/9) are reported in ``cells`` but are not LUTs.

Yosys' mapping is not Vivado's (no retiming, different LUT packing; measured on a 16-particle Deep Sets: 61.8k LUT
from Yosys 0.23 vs 65.1k from da4ml's cost model), so it is labelled ``estimate:yosys`` wherever it is reported.

Results are cached in ``<rtl_dir>/yosys/`` (``yosys.log``, ``stat.json``, ``summary.json``), keyed by a hash of the
sources, the family and the Yosys version.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from jbot_edge.atomic import atomic_path, write_json
from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.rtl.design import load_rtl
from jbot_edge.firmware.rtl.tools import INSTALL_YOSYS, find_yosys, require_yosys
from jbot_edge.logs import get_logger

log = get_logger(__name__)

_LUT_CELLS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV", "SRL16E", "SRLC32E")
_FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE")


def _sources(rtl_dir: Path) -> list[Path]:
    src = rtl_dir / "src"
    # The uniform-width wrapper only exists for the simulation binder; the top module is what goes on the chip.
    design = [p for p in sorted(src.glob("*.v")) if not p.stem.endswith("_wrapper")]
    return design + sorted((src / "static").glob("*.v"))


def _count(cells: dict[str, int]) -> dict[str, float]:
    luts = sum(cells.get(c, 0) for c in _LUT_CELLS)
    ffs = sum(cells.get(c, 0) for c in _FF_CELLS)
    dsps = sum(n for c, n in cells.items() if c.startswith("DSP48"))
    bram = cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2
    return {"LUT": float(luts), "FF": float(ffs), "DSP": float(dsps), "BRAM": float(bram)}


def _top_cells(stat: dict[str, Any], top: str) -> dict[str, int]:
    modules = stat.get("modules", {})
    module = modules.get(f"\\{top}") or modules.get(top)
    if module is None:
        if len(modules) != 1:
            raise JbotEdgeError(f"yosys statistics name no module {top!r} (found {sorted(modules)})")
        module = next(iter(modules.values()))
    return {str(k): int(v) for k, v in module.get("num_cells_by_type", {}).items()}


def estimate_with_yosys(rtl_dir: str | os.PathLike[str], family: str = "xcup",
                        timeout_s: float = 3600.0) -> dict[str, Any]:
    """Run (or reuse) Yosys logic synthesis of an RTL directory; returns the summary (also in yosys/summary.json):

    ``{"tool": "yosys", "version", "family", "command", "seconds", "resources": {"LUT", "FF", "DSP", "BRAM"},
    "cells": {cell type: count}}``. Raises a one-line error when yosys is not installed or fails.
    """
    yosys = require_yosys()
    design = load_rtl(rtl_dir)
    rtl_dir = design.directory
    out = rtl_dir / "yosys"
    out.mkdir(exist_ok=True)
    sources = _sources(rtl_dir)
    digest = hashlib.sha256(f"{family}|{yosys.version}|{design.top}".encode())
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    key = digest.hexdigest()[:16]
    summary_path = out / "summary.json"
    if summary_path.is_file():
        cached = json.loads(summary_path.read_text())
        if cached.get("key") == key:
            cached["resources"] = _count(cached["cells"])  # counting rules may be newer than the cache
            return cached

    stat_path = out / "stat.json"
    files = " ".join(str(p.relative_to(rtl_dir)) for p in sources)
    script = (f"read_verilog -defer -Isrc -Isrc/static {files}; "
              f"synth_xilinx -family {family} -top {design.top} -flatten -noiopad; "
              f"tee -q -o {stat_path.relative_to(rtl_dir)} stat -json")
    log.info("running yosys synth_xilinx -family %s on %s (minutes for large designs)", family, rtl_dir)
    start = time.perf_counter()
    with open(out / "yosys.log", "w") as log_file:
        try:
            result = subprocess.run([yosys.path, "-q", "-p", script], cwd=rtl_dir, stdout=log_file,
                                    stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise JbotEdgeError(f"yosys took longer than {timeout_s:.0f} s; see {out / 'yosys.log'}") from exc
    if result.returncode != 0 or not stat_path.is_file():
        raise JbotEdgeError(f"yosys failed (exit {result.returncode}); see {out / 'yosys.log'}")
    try:
        cells = _top_cells(json.loads(stat_path.read_text()), design.top)
    except json.JSONDecodeError as exc:
        raise JbotEdgeError(f"yosys wrote unreadable statistics {stat_path}: {exc}") from exc
    summary = {
        "tool": "yosys",
        "version": yosys.version,
        "family": family,
        "command": f"yosys -p '{script}'",
        "seconds": round(time.perf_counter() - start, 1),
        "resources": _count(cells),
        "cells": cells,
        "key": key,
    }
    with atomic_path(summary_path) as tmp:
        write_json(tmp, summary)
    return summary


def yosys_estimate(summary: dict[str, Any]):
    """A Yosys summary as a synth-report :class:`~jbot_edge.firmware.reports.Estimate` (resources only)."""
    from jbot_edge.firmware.reports import Estimate

    cells = summary.get("cells", {})
    srl = sum(cells.get(c, 0) for c in ("SRL16E", "SRLC32E"))
    carry = sum(n for c, n in cells.items() if c.startswith("CARRY"))
    note = (f"yosys {summary['version']} synth_xilinx -family {summary['family']} (out of context, flattened): LUT "
            f"includes {cells.get('INV', 0)} INV and {srl} SRL cells, not the {carry} carry-chain cells; Yosys maps "
            "differently from Vivado, so this is an estimate")
    return Estimate(tool="yosys", resources=summary["resources"], notes=[note])


def rtl_estimates(rtl_dir: str | os.PathLike[str], yosys: bool | None = None, family: str = "xcup",
                  timing: bool | None = None, clock_ns: float | None = None) -> list:
    """The estimates for ``build_synth_report`` of an RTL directory, most trusted first: the netlist timing of every
    pipeline stage (:mod:`~jbot_edge.firmware.rtl.timing`; when ``timing`` is True, or None and yosys is on PATH),
    Yosys' synthesised counts (when ``yosys`` is True, or None and yosys is on PATH), then da4ml's (latency, II,
    LUT/FF model, DSP). ``clock_ns`` (default: the design's) is the clock the stages are checked against."""
    from jbot_edge.firmware.rtl.timing import measure_timing, timing_estimate

    design = load_rtl(rtl_dir)
    estimates = []
    found = find_yosys() is not None
    da4ml = design.estimate()
    if timing or (timing is None and found):
        estimates.append(timing_estimate(measure_timing(rtl_dir, family=family),
                                         design.clock_ns if clock_ns is None else clock_ns))
    else:
        da4ml.notes.append("stage timing not measured from the netlist (" + (
            "rtl.timing=never)" if found else f"yosys not on PATH: {INSTALL_YOSYS})") + ": the pipeline depth rests "
            "on da4ml's adder-levels-per-ns heuristic")
    if yosys or (yosys is None and found):
        estimates.append(yosys_estimate(estimate_with_yosys(rtl_dir, family=family)))
    elif not found:
        da4ml.notes.append(f"yosys not on PATH: LUT/FF from da4ml's cost model only ({INSTALL_YOSYS})")
    estimates.append(da4ml)
    return estimates


def rtl_synth_report(rtl_dir: str | os.PathLike[str], board=None, yosys: bool | None = None,
                     notes: tuple[str, ...] = (), timing: bool | None = None) -> dict[str, Any]:
    """``synth_report.json`` content (backend ``"rtl"``) for an RTL directory: latency/II from the pipeline, timing
    from the netlist (when measured), LUT/FF from Yosys (when run) else da4ml, every figure labelled with its source.
    ``board`` defaults to the design's."""
    from jbot_edge.firmware.boards import load_board
    from jbot_edge.firmware.reports import build_synth_report

    design = load_rtl(rtl_dir)
    board = load_board(design.description["board"]) if board is None else board
    precisions = {node: {"result_t": kind} for node, kind in design.description.get("precisions", {}).items()}
    return build_synth_report(board, design.clock_ns, "rtl", "da4ml", 1, precisions,
                              estimates=rtl_estimates(design.directory, yosys=yosys, timing=timing), notes=notes)

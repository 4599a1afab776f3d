"""The README's firmware figures, generated from a run's own reports (never typed by hand).

Usage (prints the JSON on stdout; writes benchmarks/results/firmware.json and firmware.md)::

    bash scripts/demo.sh                                           # or: jbot-edge demo --out runs/demo
    jbot-edge synth --student runs/demo/student --backend rtl --out runs/demo/firmware-rtl   # netlist timing
    python benchmarks/firmware_table.py --run runs/demo [--rtl runs/demo/firmware-rtl] [--emulate BENCH.json]

Reads ``RUN/firmware/synth_report.json`` and ``emulate.json`` (and the RTL backend's ``synth_report.json`` for the
per-stage netlist timing, and optionally the JSON printed by ``benchmarks/emulate.py`` for exactness at scale) and
writes one table: latency, II, LUT/FF/DSP with the basis of each figure, the verdict and its basis, the exactness
counts and throughput per leg — stamped with the commit (``git rev-parse HEAD``, ``+dirty`` when the tree has
uncommitted changes) and the date it was measured at.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _read(path: Path | None) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def _figure(figure: dict[str, Any], unit: str = "") -> str:
    if figure["value"] is None:
        return f"unknown ({figure.get('reason', 'no source')})"
    return f"{figure['value']:g}{unit} ({figure['source']})"


def _design_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    resources = report["resources"]
    rows = [
        ("design", report.get("design", {}).get("label", report["backend"])),
        ("figures describe", report["latency_cycles"].get("design", "")),
        ("latency", f"{_figure(report['latency_cycles'], ' cycles')} = {_figure(report['latency_ns'], ' ns')}"),
        ("II", _figure(report["ii"])),
        *((kind, _figure(resources[kind]) + ("" if resources[kind]["percent_of_board"] is None else
                                            f", {resources[kind]['percent_of_board']:.3g}% of {report['board']}"))
          for kind in ("LUT", "FF", "DSP")),
        ("budget verdict", report["budget"].get("verdict_text", report["budget"]["verdict"])),
    ]
    timing = report.get("timing", {})
    if timing.get("estimated_clock_ns") is not None:
        per_stage = timing.get("per_stage_ns")
        rows.append(("timing", f"deepest stage {timing['estimated_clock_ns']:g} ns → fmax "
                               f"{timing.get('fmax_mhz', 1000 / timing['estimated_clock_ns']):.4g} MHz vs "
                               f"{report['clock_ns']:g} ns target ({timing['source']})"
                     + (f"; per stage {per_stage} ns" if per_stage else "")))
    return rows


def _emulate_rows(emulate: dict[str, Any]) -> list[tuple[str, str]]:
    skipped = ", ".join(f"{s['leg']} ({s['reason']})" for s in emulate.get("legs_skipped", [])) or "none"
    counts = emulate.get("counts", {})
    return [
        ("emulation legs", f"{', '.join(emulate.get('legs_run', emulate['legs']))}; skipped: {skipped}"),
        ("bit exact", f"{emulate['exact']}: " + ", ".join(f"{count} {name}" for name, count in counts.items())
                      + " equal on every leg (data jets, fuzz codes, raw fuzz inputs)"),
        ("throughput (jets/s, one thread)", ", ".join(f"{leg} {rate:g}" for leg, rate in
                                                      emulate.get("throughput_jets_per_s", {}).items() if rate)),
    ]


def _scale_rows(bench: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = bench.get("comparisons", {})
    equal = min((c["exact"] for c in pairs.values()), default=0)
    fuzz = bench.get("fuzz", {})
    fuzz_equal = min((c["exact"] for c in fuzz.get("comparisons", {}).values()), default=0)
    return [("bit exact at scale (benchmarks/emulate.py)",
             f"{bench['exact']}: {equal}/{bench['n']} jets, {fuzz_equal}/{fuzz.get('n', 0)} fuzz jets "
             f"({', '.join(bench['legs'])}); jets/s {bench.get('jets_per_s')}")]


def build_table(run: Path, rtl: Path | None, scale: Path | None, label: str = "") -> dict[str, Any]:
    synth = _read(run / "firmware" / "synth_report.json")
    if synth is None:
        raise SystemExit(f"error: {run / 'firmware' / 'synth_report.json'} does not exist (run the demo first)")
    emulate = _read(run / "firmware" / "emulate.json")
    main = f"{synth['backend']} backend (RUN/firmware)"
    sections = {main: _design_rows(synth)}
    if emulate is not None:
        sections[main] += _emulate_rows(emulate)
    rtl_report = _read(rtl / "synth_report.json") if rtl else None
    if rtl_report is not None:
        sections["RTL backend (--rtl)"] = _design_rows(rtl_report)
        if (rtl_emulate := _read(rtl / "emulate.json")) is not None:
            sections["RTL backend (--rtl)"] += _emulate_rows(rtl_emulate)
    if (bench := _read(scale)) is not None:
        sections["scale"] = _scale_rows(bench)
    return {"benchmark": "firmware_table", "commit": _commit(),
            "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "run": str(run), "rtl": str(rtl) if rtl else None, "label": label,
            "sections": {name: dict(rows) for name, rows in sections.items()}}


def to_markdown(table: dict[str, Any]) -> str:
    lines = ["# Firmware figures (generated by `benchmarks/firmware_table.py`; do not edit)", "",
             f"Measured at commit `{table['commit']}` on {table['measured_at']} from `{table['run']}`"
             + (f" and `{table['rtl']}`" if table["rtl"] else "") + ". Every figure names its basis "
             "(`vendor:*`, `estimate:<tool>`, or unknown with the reason).", ""]
    if table.get("label"):
        lines += [f"What was measured: {table['label']}", ""]
    for name, rows in table["sections"].items():
        lines += [f"## {name}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {key} | {str(value).replace('|', '/')} |" for key, value in rows.items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "demo", help="demo run directory")
    parser.add_argument("--rtl", type=Path, help="FW_DIR of `synth --backend rtl` of the same student")
    parser.add_argument("--emulate", type=Path, help="JSON printed by benchmarks/emulate.py (exactness at scale)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where firmware.json / firmware.md go")
    parser.add_argument("--label", default="", help="one line saying what the run is (e.g. which student)")
    args = parser.parse_args()
    table = build_table(args.run, args.rtl, args.emulate, args.label)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "firmware.json").write_text(json.dumps(table, indent=2) + "\n")
    (args.out / "firmware.md").write_text(to_markdown(table))
    json.dump(table, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()

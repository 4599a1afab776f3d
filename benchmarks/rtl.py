"""Vendor-free level-1 budget of students as RTL: da4ml Verilog, Verilator exactness, Yosys resources.

Usage (prints one JSON object on stdout; progress on stderr)::

    python benchmarks/rtl.py --data L1.h5 [--data MORE.h5 ...] --n 10000            # the two demo students
    python benchmarks/rtl.py --data L1.h5 --student STUDENT_DIR --n 2000 --no-yosys

Without ``--student`` it builds the demo students: ``configs/qat/default.yaml``'s Deep Sets (6-bit weights) and the
same configuration with ``kind: mlp``, each briefly trained on the data (tests/student_factory.py recipe: real
weights, biases and activation scales; not a distilled anomaly score, which does not change the hardware cost).
Jets are read from the ``--data`` files in order (any canonical file with part_pt/part_deta/part_dphi and at least
16 particles) until ``--n``; the fuzz set (jbot_edge.firmware.fuzz) is always added.

For each student: the RTL at the board clock is simulated with Verilator and compared bit for bit with the
Brevitas student (and da4ml's interpreter), then rebuilt at 200/240/360 MHz for the stage count (latency =
stages × period), and synthesised with Yosys (``synth_xilinx -family xcup``) for LUT/FF/DSP next to da4ml's
estimate, as a share of the VU13P and against the goal (latency ≤ 50 ns, II = 1, LUT ≤ 2% of the device).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
CLOCKS_MHZ = (200.0, 240.0, 360.0)


def _read_codes(files: list[Path], spec, n: int) -> np.ndarray:
    from jbot_edge.data.reader import JetFile

    parts, have = [], 0
    for path in files:
        with JetFile(path) as f:
            spec.check_file(f)
            take = min(n - have, f.n_jets)
            batch = f.read(slice(0, take), particle_features=spec.stored_feature_names, jet_features=[])
        parts.append(spec.quantize(batch))
        have += take
        if have >= n:
            break
    return np.concatenate(parts)


def _demo_students(root: Path, data: list[Path]) -> dict[str, Path]:
    sys.path.insert(0, str(REPO / "tests"))
    from student_factory import make_student_dir

    from jbot_edge.config import load_yaml
    from jbot_edge.data.l1quant import L1InputSpec

    student_cfg = load_yaml(REPO / "configs" / "qat" / "default.yaml")["student"]
    codes = _read_codes(data, L1InputSpec(), 2000)
    out = {}
    for kind in ("deepsets", "mlp"):
        overrides = {key: value for key, value in student_cfg.items() if key != "kind"}
        out[kind] = make_student_dir(root / kind, kind, codes, **overrides)
    return out


def _exact(expected: np.ndarray, got: np.ndarray) -> dict[str, int]:
    diff = np.abs(expected - got)
    return {"n": len(expected), "exact": int((diff == 0).sum()), "max_abs_diff_lsb": int(diff.max(initial=0))}


def _bench_student(student: Path, args, root: Path, log) -> dict:
    from jbot_edge.firmware.boards import load_board
    from jbot_edge.firmware.fuzz import fuzz_codes
    from jbot_edge.firmware.rtl import RtlSimulator, build_rtl, estimate_with_yosys, find_yosys
    from jbot_edge.models.students import load_student, score_codes, summary

    board = load_board(args.board)
    model, cfg, spec, _ = load_student(student)
    codes = _read_codes(args.data, spec, args.n)
    fuzz, _ = fuzz_codes(spec)
    result: dict = {"student": str(student), "kind": cfg.kind, "student_summary": summary(model),
                    "n_jets": len(codes), "n_fuzz": len(fuzz)}

    start = time.perf_counter()
    design = build_rtl(student, root / f"{cfg.kind}-board", board=args.board)
    result["build_rtl_s"] = round(time.perf_counter() - start, 1)
    log(f"{cfg.kind}: {design.stages} stages at {design.clock_ns} ns, "
        f"da4ml LUT {design.description['da4ml']['lut_estimate']}")

    expected = {name: score_codes(model, torch.from_numpy(spec.to_model_input(c)))
                for name, c in (("jets", codes), ("fuzz", fuzz))}
    result["exactness"] = {"interpreter": {name: _exact(expected[name], design.interpret_codes(c))
                                           for name, c in (("jets", codes), ("fuzz", fuzz))}}
    if not args.no_verilator:
        sim = RtlSimulator(design)
        sim.build()
        result["verilator_build_s"] = sim.build_seconds
        start = time.perf_counter()
        got = sim.predict_codes(codes)
        result["verilator_jets_per_s"] = round(len(codes) / (time.perf_counter() - start), 1)
        result["exactness"]["verilator"] = {"jets": _exact(expected["jets"], got),
                                            "fuzz": _exact(expected["fuzz"], sim.predict_codes(fuzz))}
    result["exact"] = all(r["exact"] == r["n"] for leg in result["exactness"].values() for r in leg.values())

    latency = {}
    for mhz in CLOCKS_MHZ:
        clock_ns = round(1000.0 / mhz, 3)
        other = design if abs(clock_ns - design.clock_ns) < 1e-3 else build_rtl(
            student, root / f"{cfg.kind}-{mhz:.0f}", board=args.board, clock_ns=clock_ns)
        latency[f"{mhz:.0f}MHz"] = {"clock_ns": clock_ns, "stages": other.stages, "latency_ns": other.latency_ns(),
                                    "adder_levels_per_stage": other.description["pipeline"]["latency_cutoff_adders"]}
    result["latency"] = latency

    lut_total = board.resources.total("LUT")
    da4ml = design.description["da4ml"]
    resources = {"da4ml": {"LUT": da4ml["lut_estimate"], "FF": da4ml["ff_estimate"],
                           "DSP": 0 if da4ml["multipliers"] == 0 else None}}
    if not args.no_yosys and find_yosys() is not None:
        log(f"{cfg.kind}: yosys synth_xilinx (minutes)")
        summary_yosys = estimate_with_yosys(design.directory)
        resources["yosys"] = {**summary_yosys["resources"], "seconds": summary_yosys["seconds"]}
    for source in resources.values():
        source["LUT_percent_of_" + board.name] = round(100.0 * source["LUT"] / lut_total, 3)
    result["resources"] = resources

    goal = board.budget
    lut_best = resources.get("yosys", resources["da4ml"])["LUT"]
    result["goal"] = {
        "latency_ns_max": goal.latency_ns_max, "ii_required": goal.ii_required,
        "lut_fraction_max": goal.resource_fraction_max.get("LUT"),
        "latency_ok_at": [k for k, v in latency.items() if v["latency_ns"] <= goal.latency_ns_max * 1.001],
        "ii": 1,
        "lut_ok": bool(lut_best <= goal.resource_fraction_max.get("LUT", 1.0) * lut_total),
        "latency_at_board_clock_ns": design.latency_ns(),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", required=True, help="canonical jet file(s)")
    parser.add_argument("--student", type=Path, action="append", help="STUDENT_DIR (default: the demo students)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--board", default="vu13p")
    parser.add_argument("--no-verilator", action="store_true")
    parser.add_argument("--no-yosys", action="store_true")
    parser.add_argument("--out", type=Path, help="keep the RTL directories here (default: a temporary directory)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from jbot_edge.logs import setup_logging

    setup_logging()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    root = args.out or Path(tempfile.mkdtemp(prefix="jbot-edge-rtl-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    students = {str(p): p for p in args.student} if args.student else _demo_students(root / "students", args.data)
    results = [_bench_student(Path(p), args, root / f"rtl-{i}", log) for i, p in enumerate(students.values())]
    print(json.dumps({"benchmark": "rtl", "board": args.board, "work_dir": str(root), "students": results,
                      "exact": all(r["exact"] for r in results), "wall_s": round(time.perf_counter() - start, 1)},
                     indent=2))


if __name__ == "__main__":
    main()

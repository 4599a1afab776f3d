"""The fast integer emulator (``emulate --fast``): throughput and bit-exactness against every other leg.

Usage (prints one JSON object on stdout)::

    python benchmarks/emulate_fast.py --firmware runs/demo/firmware --data JETS.h5 --n-exact 100000 --legs brevitas,qonnx,csim
    python benchmarks/emulate_fast.py --data JETS.h5 --kind mlp      # builds a briefly trained student (qat defaults)

1. exactness: ``--n-exact`` jets (the file's jets, then jittered copies as in benchmarks/emulate.py) plus the fuzz
   set, scored by ``--legs`` of the firmware directory (the fuzz set by all of them) and by the fast emulator;
   every pair is compared exactly.
2. speed: ``--n-speed`` jets (the same pre-quantised int32 codes tiled: no HDF5 reading or L1 quantisation)
   through the fast emulator with 1 and ``--threads`` threads, ``--repeats`` times each; best and median wall-clock
   rates are reported with the load average after every run (the machine may be shared), with the C simulation's
   single-thread rate from step 1 for the ratio. ``--chunks`` also times other chunk sizes (jets per work item).
3. streaming: the whole ``--data`` file through read → L1 quantisation → fast emulator (``score_file``).

A student built here (no ``--firmware``) has the architecture of ``jbot-edge qat``'s defaults
(configs/qat/default.yaml) at ``--bits`` bits, as the demo's, briefly trained on the file's jets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import git_commit
from emulate import _codes, _firmware_for  # benchmarks/emulate.py: same inputs, same freshly built students


def _rates(fn, n: int) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "jets_per_s": round(n / wall),
            "jets_per_cpu_s": round(n / cpu), "load_average": [round(v, 2) for v in os.getloadavg()]}


def _repeated(fast, codes: np.ndarray, threads: int, chunk: int, repeats: int) -> dict:
    """``repeats`` timed runs of the fast emulator on ``codes``: best and median wall-clock rate, every run kept."""
    runs = [_rates(lambda: fast.score_codes(codes, threads=threads, chunk=chunk), len(codes)) for _ in range(repeats)]
    rates = [r["jets_per_s"] for r in runs]
    return {"n": len(codes), "threads": threads, "chunk": chunk, "best_jets_per_s": max(rates),
            "median_jets_per_s": round(statistics.median(rates)), "runs": runs}


def _demo_student_overrides(kind: str, bits: int) -> dict:
    """StudentConfig fields of `jbot-edge qat --student KIND --bits BITS` with the packaged defaults (the demo's)."""
    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.qat.distill import QatConfig

    cfg = resolve_config(QatConfig, None, [], cli_values={"student.kind": kind, "student.weight_bits": bits,
                                                          "student.act_bits": bits},
                         default_file=packaged_config("qat/default.yaml"))
    return cfg.student.model_dump(exclude={"kind", "collect_stats_steps"})


def _exactness(fw, codes: np.ndarray, legs: tuple[str, ...], batch: int, timings: dict[str, list[float]]) -> dict:
    """Every pair of ``legs`` on ``codes`` (in batches) and of all the firmware's legs on the fuzz set."""
    from jbot_edge.firmware.emulate import all_exact, compare, merge_results
    from jbot_edge.firmware.fuzz import fuzz_codes

    totals = merge_results([compare(fw, codes[lo:lo + batch], legs=legs, timings=timings)
                            for lo in range(0, len(codes), batch)])["comparisons"]
    fuzz, names = fuzz_codes(fw.spec)
    fuzz_result = compare(fw, fuzz, names, legs=fw.legs)  # the fuzz set on every leg, rtl included
    exact = bool(totals) and all(t["mismatched"] == 0 for t in totals.values()) and all_exact(fuzz_result)
    return {"comparisons": totals, "fuzz": {"n": fuzz_result["n"], "comparisons": fuzz_result["comparisons"]},
            "exact": exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firmware", type=Path, help="FW_DIR from `jbot-edge synth` (else one is built)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--kind", choices=["deepsets", "mlp"], default="deepsets")
    parser.add_argument("--n-exact", type=int, default=100_000)
    parser.add_argument("--n-speed", type=int, default=2_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per thread count (best and median)")
    parser.add_argument("--chunks", default="", help="comma-separated chunk sizes to time as well (jets per work "
                        "item, --threads threads)")
    parser.add_argument("--speed-only", action="store_true", help="skip the exactness step (1) and the leg rates; "
                        "for re-timing on a quiet machine (\"exactness\": null in the JSON)")
    parser.add_argument("--bits", type=int, default=6, help="(built student) weight and activation bits")
    parser.add_argument("--batch", type=int, default=8192, help="jets per compare() call in the exactness step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--legs", default=None, help="comma-separated legs to compare (default: all of the firmware "
                        "directory's; fast is always added); e.g. drop the slow rtl leg for 10^5 jets")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from jbot_edge.firmware.emulate import load_firmware, throughput
    from jbot_edge.firmware.fast_emulate import CPU_CHUNK_JETS, CPU_CHUNK_JETS_THREADED, score_file
    from jbot_edge.logs import setup_logging

    setup_logging()
    fw_dir = args.firmware or _firmware_for(args, **_demo_student_overrides(args.kind, args.bits))
    fw = load_firmware(fw_dir, fast=True)
    fast = fw.scorers["fast"].emulator
    codes, n_real = _codes(args.data, fw.spec, args.n_exact, args.seed)
    legs = tuple(dict.fromkeys([*args.legs.split(","), "fast"])) if args.legs else fw.legs
    timings: dict[str, list[float]] = {}
    exactness = None if args.speed_only else _exactness(fw, codes, legs, args.batch, timings)
    exactness = exactness and {"n": len(codes), "n_real_jets": int(n_real), **exactness}
    if args.speed_only and "csim" in fw.legs:  # the ratio's denominator, timed under the same load
        start = time.perf_counter()
        fw.score_lsb("csim", codes[:20000])
        timings["csim"] = [time.perf_counter() - start, len(codes[:20000])]

    tiled = np.ascontiguousarray(codes[np.arange(args.n_speed) % len(codes)])
    fast.score_codes(tiled[:65536], threads=args.threads)  # warm-up
    speed = _repeated(fast, tiled, args.threads, CPU_CHUNK_JETS_THREADED if args.threads > 1 else CPU_CHUNK_JETS,
                      args.repeats)
    speed_1t = _repeated(fast, tiled, 1, CPU_CHUNK_JETS, args.repeats)
    chunk_sweep = [_repeated(fast, tiled, args.threads, int(c), args.repeats) for c in args.chunks.split(",") if c]
    for entry in chunk_sweep:
        del entry["runs"]
    torch.set_num_threads(args.threads)
    stream = score_file(fast, args.data)
    rates = throughput(timings)
    print(json.dumps({
        "benchmark": "emulate_fast",
        "commit": git_commit(),
        "firmware": str(fw_dir),
        "kind": fw.metadata.get("student_config", {}).get("kind", args.kind),
        "legs": list(legs),
        "fuzz_legs": list(fw.legs),
        "exactness": exactness,
        "fast": {"codes": "pre-quantised int32 codes in memory (no HDF5 reading, no L1 quantisation)",
                 "float_type": str(fast.dtype).removeprefix("torch."), **speed, "single_thread": speed_1t,
                 "chunk_sweep": chunk_sweep},
        "legs_jets_per_s_single_thread": rates,
        "speedup_vs_csim": round(speed["median_jets_per_s"] / rates["csim"], 1) if rates.get("csim") else None,
        "stream_file": {"path": str(args.data), **{k: (round(v, 3) if isinstance(v, float) else v)
                                                     for k, v in stream.items()}},
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()

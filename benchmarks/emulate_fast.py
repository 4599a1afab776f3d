"""The fast integer emulator (``emulate --fast``): throughput and bit-exactness against every other leg.

Usage (prints one JSON object on stdout)::

    python benchmarks/emulate_fast.py --data JETS.h5 --kind deepsets --n-exact 100000 --n-speed 2000000
    python benchmarks/emulate_fast.py --firmware FW_DIR --data JETS.h5

1. exactness: ``--n-exact`` jets (the file's jets, then jittered copies as in benchmarks/emulate.py) plus the fuzz
   set, scored by every leg of the firmware directory and by the fast emulator; every pair is compared exactly.
2. speed: ``--n-speed`` jets (the same codes tiled) through the fast emulator with ``--threads`` threads; wall-clock
   and CPU-time rates are both reported (the machine may be shared: ``load_average`` is recorded next to them), with
   the C simulation's single-thread rate from step 1 for the ratio.
3. streaming: the whole ``--data`` file through read → L1 quantisation → fast emulator (``score_file``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from emulate import _codes, _firmware_for  # benchmarks/emulate.py: same inputs, same freshly built students


def _rates(fn, n: int) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "jets_per_s": round(n / wall),
            "jets_per_cpu_s": round(n / cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firmware", type=Path, help="FW_DIR from `jbot-edge synth` (else one is built)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--kind", choices=["deepsets", "mlp"], default="deepsets")
    parser.add_argument("--n-exact", type=int, default=100_000)
    parser.add_argument("--n-speed", type=int, default=2_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8192, help="jets per compare() call in the exactness step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--legs", default=None, help="comma-separated legs to compare (default: all of the firmware "
                        "directory's, plus fast); e.g. drop the slow rtl leg for 10^5 jets")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from jbot_edge.commands.emulate import _merge as merge_results  # per-batch results → totals, as the CLI
    from jbot_edge.firmware.emulate import all_exact, compare, load_firmware, throughput
    from jbot_edge.firmware.fast_emulate import score_file
    from jbot_edge.firmware.fuzz import fuzz_codes
    from jbot_edge.logs import setup_logging

    setup_logging()
    fw_dir = args.firmware or _firmware_for(args)
    fw = load_firmware(fw_dir, fast=True)
    fast = fw.scorers["fast"].emulator
    codes, n_real = _codes(args.data, fw.spec, args.n_exact, args.seed)
    legs = tuple(args.legs.split(",")) if args.legs else fw.legs
    timings: dict[str, list[float]] = {}
    totals = merge_results([(None, compare(fw, codes[lo:lo + args.batch], legs=legs, timings=timings))
                            for lo in range(0, len(codes), args.batch)])["comparisons"]
    fuzz, names = fuzz_codes(fw.spec)
    fuzz_result = compare(fw, fuzz, names, legs=fw.legs)  # the fuzz set on every leg, rtl included
    exact = all(t["mismatched"] == 0 for t in totals.values()) and all_exact(fuzz_result)

    tiled = codes[np.arange(args.n_speed) % len(codes)]
    fast.score_codes(tiled[:4096], threads=args.threads)  # warm-up
    speed = _rates(lambda: fast.score_codes(tiled, threads=args.threads), len(tiled))
    speed_1t = _rates(lambda: fast.score_codes(tiled[: len(tiled) // 4], threads=1), len(tiled) // 4)
    torch.set_num_threads(args.threads)
    stream = score_file(fast, args.data)
    rates = throughput(timings)
    print(json.dumps({
        "benchmark": "emulate_fast",
        "firmware": str(fw_dir),
        "kind": fw.metadata.get("student_config", {}).get("kind", args.kind),
        "legs": list(legs),
        "fuzz_legs": list(fw.legs),
        "exactness": {"n": len(codes), "n_real_jets": int(n_real), "comparisons": totals,
                      "fuzz": {"n": fuzz_result["n"], "comparisons": fuzz_result["comparisons"]}, "exact": exact},
        "fast": {"n": len(tiled), "threads": args.threads, **speed, "single_thread": speed_1t,
                 "float_type": str(fast.dtype).removeprefix("torch.")},
        "legs_jets_per_s_single_thread": rates,
        "speedup_vs_csim": round(speed["jets_per_s"] / rates["csim"], 1) if rates.get("csim") else None,
        "stream_file": {"path": str(args.data), **{k: (round(v, 3) if isinstance(v, float) else v)
                                                     for k, v in stream.items()}},
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()

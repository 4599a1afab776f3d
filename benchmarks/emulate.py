"""Emulation throughput and exactness: hls4ml C simulation vs QONNX execution vs Brevitas, in jets/s.

Usage (prints one JSON object on stdout)::

    python benchmarks/emulate.py --firmware FW_DIR --data JETS.h5 --n 100000
    python benchmarks/emulate.py --data JETS.h5 --kind deepsets --n 2000      # builds a briefly trained student
    python benchmarks/emulate.py --data JETS.h5 --kind mlp --saturate-output --rtl --n 100000
        # the student with its output layer scaled until the output saturates at both ends, RTL leg included

With ``--n`` above the number of jets in the file, the extra jets are the file's jets with every code jittered by a
few LSBs (clipped to the spec's ranges) — new, realistic inputs — and the JSON says how many were real.
All legs run single-threaded on the same codes; exactness is counted per pair over all jets plus the fuzz set (codes)
and the raw fuzz set (inputs at/beyond the input boundaries, fed raw to the legs that quantise themselves); the
verdict is :func:`jbot_edge.firmware.emulate.emulation_verdict` (no vacuous pass), with the saturated-output counts.
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


def _codes(data: Path, spec, n: int, seed: int) -> tuple[np.ndarray, int]:
    from jbot_edge.data.reader import JetFile

    with JetFile(data) as f:
        real = spec.quantize(f.read(slice(0, min(n, f.n_jets)), particle_features=spec.stored_feature_names,
                                    jet_features=[]))
    if n <= len(real):
        return real, len(real)
    rng = np.random.default_rng(seed)
    lo, hi = spec.code_bounds()
    extra = real[rng.integers(0, len(real), n - len(real))].astype(np.int64)
    filled = extra[..., :1] != 0  # jitter real particles only; padding stays zero
    extra = np.where(filled, np.clip(extra + rng.integers(-3, 4, extra.shape), lo, hi), 0)
    return np.concatenate([real, extra.astype(np.int32)]), len(real)


def _firmware_for(args, **student_overrides) -> Path:
    """A freshly built firmware directory for a briefly trained ``args.kind`` student (StudentConfig overrides)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from student_factory import l1_codes, make_student_dir

    from jbot_edge.firmware.convert import SynthConfig, build_firmware

    from student_factory import saturating_variant

    from jbot_edge.firmware.convert import RtlSettings

    root = Path(tempfile.mkdtemp(prefix="jbot-edge-bench-"))
    codes = l1_codes(args.data, 2000)
    student = make_student_dir(root / "student", args.kind, codes, **student_overrides)
    if getattr(args, "saturate_output", False):
        student = saturating_variant(student, root / "saturating", codes)
    rtl = RtlSettings(estimate="always" if getattr(args, "rtl", False) else "never")
    build_firmware(student, SynthConfig(rtl=rtl), root / "fw")
    return root / "fw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firmware", type=Path, help="FW_DIR from `jbot-edge synth` (else one is built)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--kind", choices=["deepsets", "mlp"], default="deepsets")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--saturate-output", action="store_true",
                        help="(built student) scale its output layer until the output saturates at both ends")
    parser.add_argument("--rtl", action="store_true", help="(built student) also build the da4ml RTL leg")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from jbot_edge.firmware.emulate import (
        compare,
        compare_raw,
        emulation_verdict,
        fuzz_set,
        load_firmware,
        merge_results,
        throughput,
    )
    from jbot_edge.firmware.fuzz import fuzz_raw_inputs
    from jbot_edge.logs import setup_logging

    setup_logging()
    fw_dir = args.firmware or _firmware_for(args)
    fw = load_firmware(fw_dir)
    codes, n_real = _codes(args.data, fw.spec, args.n, args.seed)
    timings: dict[str, list[float]] = {}
    results = []
    saturated = {"top": 0, "bottom": 0}
    top = None
    start = time.perf_counter()
    for lo in range(0, len(codes), args.batch):
        chunk = codes[lo:lo + args.batch]
        results.append(compare(fw, chunk, timings=timings))
        if top is None:
            top = 2 ** (int(fw.metadata.get("student_config", {}).get("output_bits", 16)) - 1)
        scores = fw.score_lsb(fw.legs[0], chunk)
        saturated["top"] += int((scores == top - 1).sum())
        saturated["bottom"] += int((scores == -top).sum())
    data = merge_results(results)
    fuzz, names, rounding_coverage = fuzz_set(fw)
    fuzz_result = compare(fw, fuzz, names)
    raw_result = compare_raw(fw, *fuzz_raw_inputs(fw.spec))
    verdict = emulation_verdict(fw, data, fuzz_result, raw_result)
    print(json.dumps({
        "benchmark": "emulate",
        "firmware": str(fw_dir),
        "kind": fw.metadata.get("student_config", {}).get("kind"),
        "saturate_output": bool(args.saturate_output),
        "n": len(codes),
        "n_real_jets": int(n_real),
        "n_jittered_jets": int(len(codes) - n_real),
        "legs": list(fw.legs),
        **verdict,
        "output_saturated_jets": saturated,
        "comparisons": data["comparisons"],
        "fuzz": {"n": fuzz_result["n"], "comparisons": fuzz_result["comparisons"],
                 "rounding_targets_met": len(rounding_coverage["found"]),
                 "rounding_missing": rounding_coverage["missing"]},
        "fuzz_raw": {"n": raw_result["n"], "legs": raw_result["legs"], "comparisons": raw_result["comparisons"]},
        "jets_per_s": throughput(timings),
        "wall_s": round(time.perf_counter() - start, 2),
        "threads": 1,
    }, indent=2))


if __name__ == "__main__":
    main()

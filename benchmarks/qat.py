"""Distillation fidelity of both students at 4, 6 and 8 bits (issue 5), printed as one JSON object.

Usage::

    python benchmarks/qat.py --run RUN_DIR --data JETS.h5 [--bits 4 6 8] [--kinds deepsets mlp] [--epochs 30]

RUN_DIR is a pre-training run with a score head (``jbot-edge pretrain`` + ``jbot-edge evaluate``), e.g. the demo's
``runs/demo/teacher`` with ``runs/demo/jets.h5``. Each point trains through :func:`jbot_edge.qat.distill.train_student`
(the code behind ``jbot-edge qat``) into a scratch directory; the teacher pass is shared through the prepared-data
cache of the first point. Reported per point: Spearman/Pearson (all test jets and background), AUC and TPR@1e-3 of
teacher and student per signal with their ratios, the goal verdict, parameters, weight bits, BOPs and training time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="pre-training run with teacher.pt + score head")
    parser.add_argument("--data", type=Path, required=True, help="canonical jet file of the teacher's preset")
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 6, 8])
    parser.add_argument("--kinds", nargs="+", default=["deepsets", "mlp"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="extra key=value qat overrides")
    args = parser.parse_args()

    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.logs import setup_logging
    from jbot_edge.qat.distill import QatConfig, train_student

    setup_logging()
    points = []
    with tempfile.TemporaryDirectory(prefix="jbot-qat-bench-") as scratch:
        shared: Path | None = None
        for kind in args.kinds:
            for bits in args.bits:
                cfg = resolve_config(QatConfig, None, [f"optim.epochs={args.epochs}", f"threads={args.threads}",
                                                       *args.overrides],
                                     cli_values={"student.kind": kind, "student.weight_bits": bits,
                                                 "student.act_bits": bits},
                                     default_file=packaged_config("qat/default.yaml"))
                out = Path(scratch) / f"{kind}-{bits}"
                out.mkdir()
                if shared is not None:  # same teacher, data and spec: reuse the teacher scores
                    for name in ("prepared.npz", "prepared.json"):
                        shutil.copy(shared / name, out / name)
                t0 = time.perf_counter()
                report = train_student(cfg, args.run, args.data, out)
                shared = shared or out
                points.append({
                    "kind": kind, "bits": bits, "seconds": round(time.perf_counter() - t0, 1),
                    "spearman": report["spearman"], "pearson": report["pearson"],
                    "auc_teacher": report["auc_teacher"], "auc_student": report["auc_student"],
                    "auc_ratio": report["auc_ratio"], "tpr_teacher": report["tpr_teacher"],
                    "tpr_student": report["tpr_student"], "tpr_ratio": report["tpr_ratio"], "goals": report["goals"],
                    **{k: report["student"][k] for k in ("parameters", "total_weight_bits", "bops")},
                })
    json.dump({"benchmark": "qat", "run": str(args.run), "data": str(args.data), "epochs": args.epochs,
               "threads": args.threads, "cpu_count": os.cpu_count(), "points": points}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

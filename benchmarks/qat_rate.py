"""Student ↔ teacher agreement at trigger rates, on a background-only sample large enough to resolve them (issue 13).

At the 10 kHz budget the per-jet false-positive rate is 3.5e-4 (28.61 MHz crossings, one jet each): the qat
benchmark's held-out split (≈ 6000 background jets) puts two jets above threshold, so its 10 kHz overlap counts
noise. This script scores a separate, larger background file (another seed, never used for training or for the
score head) with the teacher's score head and with a trained student, and reports, at each rate budget and FPR
point, both thresholds and the **background overlap**: the share of the background jets the teacher triggers on that
the student triggers on too (bootstrap errors; qat/fidelity.py, the same code as ``qat_report.json``). Those jets
are the trigger's rate, so this needs no signal model and is meaningful however weak the teacher is on signals.

    python benchmarks/qat.py                      # first: the cached teacher, head and students (runs/bench-qat)
    python benchmarks/qat_rate.py                 # then: 75k q + 75k g l1 jets (seed 7), ~20 min to generate once

Prints one JSON object (also written to ``--json``); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ensure_background(path: Path, n_jets: int, seed: int) -> float:
    """Generate the background-only l1 file once (the qat benchmark's settings, another seed); seconds spent."""
    if path.is_file():
        return 0.0
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jbot_edge", "generate", "--preset", "l1", "--processes", "q,g",
                    "--n-jets", str(n_jets), "--seed", str(seed), "--workers", "2", "--no-mpi", "--no-progress",
                    "jet_pt_min=200", "pthat_min=180", "--out", str(path)], check=True, cwd=REPO)
    return time.perf_counter() - start


def background_batches(run: Path, data: Path, feature_names, batch_size: int = 8192):
    """Yield ``(teacher score-head scores, batch)`` for each block of background jets of ``data`` (the labels the
    score head's bank carried), read with the teacher's features plus ``feature_names``."""
    import numpy as np

    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.score_head import ScoreHead
    from jbot_edge.pretrain.artifact import load_teacher

    head = ScoreHead.load(run)
    teacher = load_teacher(run, **head.embedding)
    with JetFile(data) as jets:
        features = sorted(set(teacher.stored_features(jets.particle_features)) | set(feature_names))
        background = [jets.label_names.index(n) for n in head.background_labels if n in jets.label_names]
        if not background:
            raise SystemExit(f"error: {data} has none of the score head's background labels {head.background_labels}")
        for batch in jets.iter_batches(batch_size, particle_features=features, jet_features=[]):
            batch = batch.select(np.flatnonzero(np.isin(batch.labels, background)))
            yield head.score(teacher.embed(batch)), batch


def score_file(run: Path, student_dirs: list[Path], data: Path, batch_size: int = 8192):
    """Teacher score-head scores of every background jet of ``data`` and, per student, its bit-exact scores (score
    codes × output LSB) of the same jets, in one pass over the file."""
    import numpy as np
    import torch

    from jbot_edge.evaluate.score_head import ScoreHead
    from jbot_edge.models.students import load_student, output_lsb, score_codes

    students = []  # (model, its L1 input spec)
    for directory in student_dirs:
        model, _, spec, _ = load_student(directory)
        students.append((model, spec))
    teacher_scores, student_scores = [], [[] for _ in students]
    wanted = {name for _, spec in students for name in spec.stored_feature_names}
    for scores, batch in background_batches(run, data, wanted, batch_size):
        teacher_scores.append(scores)
        inputs: dict[str, torch.Tensor] = {}  # students with the same input spec share one quantisation
        for (model, spec), out in zip(students, student_scores):
            key = spec.model_dump_json()
            if key not in inputs:
                inputs[key] = torch.from_numpy(spec.to_model_input(spec.quantize(batch)))
            out.append(score_codes(model, inputs[key]).astype(np.float64) * output_lsb(model))
    return np.concatenate(teacher_scores), [np.concatenate(s) for s in student_scores], ScoreHead.load(run).name


def agreement(teacher, student, rates: list[float], fprs: list[float]) -> tuple[float, list[dict]]:
    """Spearman correlation and, per rate budget / FPR point, the background overlap with its bootstrap error."""
    from scipy.stats import spearmanr

    from jbot_edge.evaluate.config import TriggerSettings
    from jbot_edge.qat.fidelity import operating_points

    trigger = TriggerSettings()
    points = operating_points(teacher, student, {}, rate_budgets_khz=rates, fprs=fprs,
                              background_rate_mhz=trigger.background_rate_mhz,
                              jets_per_crossing=trigger.jets_per_crossing, n_bootstrap=100, seed=0)
    rows = [{"point": p["name"], "per_jet_fpr": p["per_jet_fpr"], "n_teacher_triggered": p["n_background_triggered"],
             "background_overlap": round(p["background_overlap"], 4),
             "background_overlap_err": round(p["background_overlap_error"], 4), "threshold": p["threshold"]}
            for p in points]
    return round(float(spearmanr(teacher, student).statistic), 4), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-qat")
    parser.add_argument("--student", type=Path, default=None,
                        help="student directory (default: the qat benchmark's default point in --json-qat)")
    parser.add_argument("--json-qat", type=Path, default=REPO / "benchmarks" / "results" / "qat.json")
    parser.add_argument("--n-jets", type=int, default=75000, help="q and g jets each in the background file")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=None, help="score this file's background jets instead of "
                        "generating one (must not be the file the student was distilled on)")
    parser.add_argument("--rates", type=float, nargs="*", default=[1.0, 5.0, 10.0, 50.0], help="kHz")
    parser.add_argument("--fprs", type=float, nargs="*", default=[1e-2, 1e-3])
    parser.add_argument("--all-points", action="store_true", help="also score every student of --json-qat "
                        "(per_point: background overlap and Spearman of each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "qat_rate.json")
    args = parser.parse_args()

    import torch

    from _common import git_commit, write_result
    from jbot_edge.evaluate.config import TriggerSettings

    torch.set_num_threads(args.threads)
    data = args.data or args.work / f"rate_background_{args.n_jets}_s{args.seed}.h5"
    generate_s = 0.0 if args.data else ensure_background(data, args.n_jets, args.seed)
    student = args.student or default_student(args.work, args.json_qat)
    others = benchmark_points(args.work, args.json_qat) if args.all_points else {}
    others.pop(student.name, None)
    start = time.perf_counter()
    teacher, scores, head = score_file(args.work / "teacher", [student, *others.values()], data)
    score_s = time.perf_counter() - start
    agreements = [agreement(teacher, s, args.rates, args.fprs) for s in scores]
    spearman, rows = agreements[0]
    report = {"benchmark": "qat_rate", "commit": git_commit(), "data": _shown(data),
              "n_background": int(len(teacher)), "score_head": head, "student": _shown(student),
              "spearman": spearman, "background_rate_mhz": TriggerSettings().background_rate_mhz,
              "jets_per_crossing": TriggerSettings().jets_per_crossing,
              "points": rows, "generate_s": round(generate_s, 1), "score_s": round(score_s, 1)}
    if args.all_points:
        report["per_point"] = {}
        for name, (rho, point_rows) in zip([student.name, *others], agreements):
            report["per_point"][name] = {"spearman": rho, **{r["point"]: [r["background_overlap"],
                                                                          r["background_overlap_err"]]
                                                             for r in point_rows}}
    write_result(report, args.json)


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def benchmark_points(work: Path, qat_json: Path) -> dict[str, Path]:
    """Every point the qat benchmark trained (name → student directory; points that reused another's result are
    left out)."""
    report = json.loads(qat_json.read_text())
    return {p["name"]: work / "points" / p["name"] for p in report["points"] if "same_as" not in p}


def default_student(work: Path, qat_json: Path) -> Path:
    """The student directory of the qat benchmark's default point (6-bit Deep Sets, default recipe; a point that
    reused an identical configuration's result lives under that one's name)."""
    report = json.loads(qat_json.read_text())
    for point in report["points"]:
        if (point["kind"], point["bits"], point["recipe"]) == ("deepsets", 6, "default"):
            return work / "points" / point.get("same_as", point["name"])
    raise SystemExit(f"error: {qat_json} has no 6-bit Deep Sets default point; pass --student")


if __name__ == "__main__":
    main()

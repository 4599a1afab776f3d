"""Distillation fidelity table (issue 13): students × bits × distillation recipe, judged at trigger operating points.

Usage (prints one JSON object on stdout, also written to ``--json``; progress on stderr)::

    python benchmarks/qat.py                       # default: data + teacher cached under runs/bench-qat
    python benchmarks/qat.py --run RUN_DIR --data JETS.h5 [--recipes survival log-huber] [--kinds deepsets mlp]
    python benchmarks/qat_table.py benchmarks/results/qat.json   # README table + Pareto plot from the JSON

Without ``--data``/``--run`` it builds, once, what the issue asks for and caches it under ``--work``: the ``l1``
preset above 200 GeV (``jet_pt_min=200 pthat_min=180``, MPI off, 2 workers) with ``--n-jets`` per process for
q, g (background) and w, z, t (signals), a ``small`` teacher briefly pre-trained on q+g (``--teacher-steps``) and
its score head (``--scorer``; default: evaluate's default, knn_oe on [CLS] + jet-shape observables).

Grid (target: ≤ 20 min on an otherwise idle 2-core machine, at the training length of configs/qat/default.yaml,
so the table describes what ``jbot-edge qat`` gives; see the README): every recipe on the default student (6-bit
Deep Sets), then every
(kind, bits) of ``--kinds`` × ``--bits`` with the **default recipe** (``configs/qat/default.yaml`` as it stands).
Every point trains through :func:`jbot_edge.qat.distill.train_student` (the code behind ``jbot-edge qat``) and is
judged on its held-out test split; then its da4ml RTL is built (LUT estimate, pipeline latency at the board clock)
and checked bit for bit against the Brevitas student on the test jets (da4ml's interpreter). A grid point whose
resolved configuration equals an earlier point's (the default recipe is one of the recipes) reuses its result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

def _recipe(target: str, tail_power: int, pt_normalisation: bool = False, outlier_exposure: bool = False,
            embedding_matching: bool = False, oe_mode: str = "overlay", oe_fraction: float = 0.25,
            epochs: int | None = None, mass_moment: bool = False, mass_moment_unnormalised: bool = False,
            jet_term: bool = False) -> list[str]:
    """qat overrides of one distillation recipe; every key is set, so a recipe does not move with the defaults
    (``epochs``: None trains for the benchmark's --epochs, as the other points)."""
    return [f"target.kind={target}", f"target.tail_weight.power={tail_power}",
            f"input.pt_normalisation={'{}' if pt_normalisation else 'null'}",
            f"outlier_exposure.enabled={str(outlier_exposure).lower()}",
            *([f"outlier_exposure.mode={oe_mode}", f"outlier_exposure.fraction={oe_fraction}"]
              if outlier_exposure else []),
            *(["embedding_matching.enabled=true"] if embedding_matching else []),
            *([f"optim.epochs={epochs}"] if epochs else []),
            f"student.jet_term={'{}' if jet_term else 'null'}",
            f"input.features=[{PARTICLE_INPUTS}{MASS_MOMENT_COLUMN if mass_moment else ''}"
            f"{MASS_MOMENT_RAW_COLUMN if mass_moment_unnormalised else ''}]"]


#: The level-1 particle inputs (pT, Δη, Δφ codes) and the derived mass-moment column (jbot_edge/data/l1quant.py:
#: each particle's z·r², so that a mean pool gives the jet's m²/pT²; its lsb, (π/720)² rad², documents a code).
PARTICLE_INPUTS = ("{name: part_pt, lsb: 0.25, bits: 12, signed: false}, "
                   "{name: part_deta, lsb: pi/720, bits: 9, signed: true}, "
                   "{name: part_dphi, lsb: pi/720, bits: 9, signed: true}")
MASS_MOMENT_COLUMN = (", {name: part_m2_moment, lsb: 1.9039e-5, bits: 12, signed: false, "
                      "derived: {kind: mass_moment, shift: 8}}")
#: The same column without the per-jet pT normalisation: pT code · r² / 2^10 (no ΣpT, ROM or divider on its path).
MASS_MOMENT_RAW_COLUMN = (", {name: part_m2_moment, lsb: 1.9039e-5, bits: 12, signed: false, "
                          "derived: {kind: mass_moment, shift: 10, normalisation: null}}")


#: Distillation recipes: qat overrides on top of configs/qat/default.yaml. "default" is the file as it stands.
RECIPES: dict[str, list[str]] = {
    "default": [],
    "log-huber": _recipe("log_standardize", 0),
    "survival": _recipe("survival", 0),
    "survival-tail1": _recipe("survival", 1),
    "survival-ptnorm": _recipe("survival", 0, pt_normalisation=True),
    "survival-tail1-ptnorm": _recipe("survival", 1, pt_normalisation=True),
    "survival-tail2": _recipe("survival", 2),
    "survival-tail1-oe": _recipe("survival", 1, outlier_exposure=True),
    # the pre-training's k-prong pseudo-anomalies instead of overlaid jets
    "survival-tail1-prongs": _recipe("survival", 1, outlier_exposure=True, oe_mode="prongs"),
    # trained to convergence on the background: one overlaid jet per background jet, 100 epochs (~3.3x the steps)
    "survival-tail1-oe1-long": _recipe("survival", 1, outlier_exposure=True, oe_fraction=1.0, epochs=100),
    "survival-tail1-embed": _recipe("survival", 1, embedding_matching=True),
    # the derived mass-moment input column (the l1 teacher's score tail follows the jet's m/pT)
    "survival-tail1-oe-mass": _recipe("survival", 1, outlier_exposure=True, mass_moment=True),
    # the jet's log2(m²/pT²) in fixed point beside the network, added to its score (models/jet_term.py)
    "survival-tail1-oe-jetterm": _recipe("survival", 1, outlier_exposure=True, jet_term=True),
    # the same column without the per-jet normalisation (a shorter input block)
    "survival-tail1-oe-mass-raw": _recipe("survival", 1, outlier_exposure=True, mass_moment_unnormalised=True),
}
DEFAULT_RECIPES = ["log-huber", "survival", "survival-tail1", "survival-tail2", "survival-ptnorm",
                   "survival-tail1-ptnorm", "survival-tail1-oe", "survival-tail1-prongs", "survival-tail1-oe1-long",
                   "survival-tail1-oe-mass", "survival-tail1-oe-jetterm"]


def log(message: str) -> None:
    print(f"[bench-qat {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cli(*argv: str) -> None:
    """One jbot-edge command in a subprocess (argument list, no shell), failing loudly."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    log("jbot-edge " + " ".join(argv))
    subprocess.run([sys.executable, "-m", "jbot_edge", *argv], check=True, env=env)


def ensure_inputs(work: Path, n_jets: int, teacher_steps: int, scorer: str | None) -> tuple[Path, Path]:
    """The cached l1 jet file, teacher run and score head (made once; reused while they exist). ``scorer``: the
    score head to distil (None: evaluate's default, configs/evaluate/default.yaml)."""
    data, run = work / "jets.h5", work / "teacher"
    if not data.is_file():
        _cli("generate", "--preset", "l1", "--processes", "q,g,w,z,t", "--n-jets", str(n_jets), "--seed", "1",
             "--workers", "2", "--no-mpi", "--no-progress", "jet_pt_min=200", "pthat_min=180", "--out", str(data))
    if not (run / "teacher.pt").is_file():
        _cli("pretrain", "--config", str(REPO / "configs/pretrain/small.yaml"), "--data", str(data), "--out",
             str(run), "--train-labels", "q,g", "--max-steps", str(teacher_steps), "optim.batch_size=512")
    if not _head_matches(run, scorer):
        chosen = [] if scorer is None else ["--scorer", scorer, f"compare=[{scorer}]"]
        _cli("evaluate", "--run", str(run), "--data", str(data), "--background", "q,g", "--signals", "w,z,t",
             "--out", str(work / "evaluate"), "finetune.enabled=false", "clustering.enabled=false",
             "probes.enabled=false", "lct.enabled=false", "two_sample.enabled=false", *chosen)
    return data, run


def _default_qat_config():
    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.qat.distill import QatConfig

    return resolve_config(QatConfig, None, [], default_file=packaged_config("qat/default.yaml"))


def _head_matches(run: Path, scorer: str | None) -> bool:
    """Whether the cached run's score head is the one asked for (name, parameters, embedding observables and their
    layout), so a cache made under other defaults is re-evaluated instead of silently reused."""
    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.evaluate.config import EvaluateConfig
    from jbot_edge.evaluate.pipeline import with_preset_oe_weight

    path = run / "score_head.json"
    if not path.is_file():
        return False
    meta = json.loads(path.read_text())
    defaults = with_preset_oe_weight(
        resolve_config(EvaluateConfig, None, [], default_file=packaged_config("evaluate/default.yaml")), "l1")
    observables = ((meta.get("embedding") or {}).get("observables") or {}).get("names", [])
    name = scorer or defaults.scorer
    params = getattr(defaults.scorers, name).model_dump(mode="json")
    laid_out = not observables or any(k.endswith("network_dim") for k in meta.get("arrays", {}))
    return (meta["name"] == name and meta.get("params") == params and laid_out
            and observables == defaults.embedding.resolved_observables("l1"))


def _head_description(run: Path) -> dict:
    """Which score the students distil: the head's name and how its embeddings are made."""
    meta = json.loads((Path(run) / "score_head.json").read_text())
    return {"name": meta["name"], "embedding": {k: v if k != "observables" else v["names"]
                                                for k, v in (meta.get("embedding") or {}).items()}}


def _rtl(student_dir: Path, codes, board: str) -> dict:
    """da4ml LUT estimate, latency at the board clock and bit-exactness of the RTL (da4ml interpreter)."""
    import numpy as np
    import torch

    from jbot_edge.firmware.boards import load_board
    from jbot_edge.firmware.rtl import build_rtl
    from jbot_edge.models.students import load_student, score_codes

    from jbot_edge.firmware.rtl.input_block import write_input_block
    from jbot_edge.firmware.rtl.jet_term import write_jet_term
    from jbot_edge.models.jet_term import jet_term_codes

    model, cfg, spec, _ = load_student(student_dir)
    design = build_rtl(student_dir, student_dir / "rtl", board=board)
    expected = score_codes(model, torch.from_numpy(spec.to_model_input(codes)))
    got = np.asarray(design.interpret_codes(codes))
    if cfg.jet_term is not None:  # the term is built beside the network: the score adds it
        got = got + jet_term_codes(cfg.jet_term, spec.feature_names, codes)
    exact = int((got == expected).sum())
    lut = float(design.description["da4ml"]["lut_estimate"])
    budget = load_board(board)
    lut_total = budget.resources.total("LUT")
    latency = design.latency_ns()
    # The integer block ahead of the network (derived columns, pT normalisation), which da4ml does not build:
    # Yosys LUT/DSP and the pipeline stages its path needs at least (None without Yosys).
    _, block = write_input_block(spec, student_dir / "input_block", design.clock_ns)
    if block is not None:
        lut += (block["resources"] or {}).get("LUT") or 0.0
        latency += (block["min_stages"] or 0) * design.clock_ns
    # The jet term beside the network (Yosys, multiplies in LUTs): in parallel, then one adder stage.
    _, term = write_jet_term(spec, cfg.jet_term, student_dir / "jet_term", design.clock_ns)
    if term is not None:
        lut += (term["resources"] or {}).get("LUT") or 0.0
        latency = (max(round(latency / design.clock_ns), term["stages"] or 0) + 1) * design.clock_ns
    return {"lut_da4ml": lut, "lut_percent": round(100.0 * lut / lut_total, 3), "latency_ns": round(latency, 3),
            "ii": 1, "bram": 0, "exact": exact, "n_exact_checked": len(codes), "bit_exact": exact == len(codes),
            "input_block": block,  # included in lut_da4ml and latency_ns (as a lower bound) when not None
            "jet_term": term,  # included in lut_da4ml and latency_ns when not None
            "in_budget": bool(latency <= budget.budget.latency_ns_max * 1.001
                              and lut <= budget.budget.resource_fraction_max.get("LUT", 1.0) * lut_total)}


def _summary(report: dict) -> dict:
    """The table's columns from one qat_report.json."""
    points = {p["name"]: p for p in report["operating_points"]}
    tpr_ratio = {name: {s: round(r["tpr_ratio"], 4) for s, r in p["signals"].items()} for name, p in points.items()}
    tpr_ratio_err = {name: {s: round(r["error"]["tpr_ratio"], 4) for s, r in p["signals"].items()}
                     for name, p in points.items()}
    overlap = {name: {s: round(r["overlap"], 4) for s, r in p["signals"].items()} for name, p in points.items()}
    tpr_teacher = {name: {s: round(r["tpr_teacher"], 4) for s, r in p["signals"].items()} for name, p in points.items()}
    return {"auc_teacher": report["auc_teacher"], "auc_ratio": report["auc_ratio"],
            "auc_ratio_err": {s: e["ratio"] for s, e in report["auc_error"].items()},
            "tpr_teacher": tpr_teacher, "tpr_ratio": tpr_ratio, "tpr_ratio_err": tpr_ratio_err, "overlap": overlap,
            "spearman_all": report["spearman"]["all"], "top_tie_fraction": report["student_top_tie_fraction"],
            "goals_all_met": report["goals"]["all_met"], "goals_missed": report["goals"]["missed"],
            "parameters": report["student"]["parameters"], "warnings": report["warnings"],
            "n_test": report["n_test"]}


def run_point(name: str, kind: str, bits: int, recipe: str, args, scratch: Path, codes_cache: dict,
              done: dict) -> dict:
    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.qat.distill import SPLIT_TEST, QatConfig, train_student

    import numpy as np

    cfg = resolve_config(QatConfig, None, [f"optim.epochs={args.epochs}", f"optim.batch_size={args.batch_size}",
                                           f"threads={args.threads}", *RECIPES[recipe], *args.overrides],
                         cli_values={"student.kind": kind, "student.weight_bits": bits, "student.act_bits": bits},
                         default_file=packaged_config("qat/default.yaml"))
    if (same := done.get(cfg.model_dump_json())) is not None:  # e.g. the default recipe is one of the recipes
        log(f"{name}: same configuration as {same['name']}, result reused")
        return {**same, "name": name, "kind": kind, "bits": bits, "recipe": recipe, "same_as": same["name"]}
    out = scratch / name
    out.mkdir(parents=True, exist_ok=True)
    # Points with the same teacher pass share it (prepare() verifies the cached file's provenance itself).
    key = json.dumps([cfg.input.model_dump(mode="json"), cfg.outlier_exposure.model_dump(mode="json"),
                      cfg.embedding_matching.enabled])
    if key in codes_cache and not (out / "prepared.npz").exists():
        for suffix in ("npz", "json"):
            (out / f"prepared.{suffix}").write_bytes((codes_cache[key] / f"prepared.{suffix}").read_bytes())
    log(f"{name}: training ({recipe})")
    t0 = time.perf_counter()
    report = train_student(cfg, args.run, args.data, out)
    seconds = round(time.perf_counter() - t0, 1)
    codes_cache.setdefault(key, out)
    row = {"name": name, "kind": kind, "bits": bits, "recipe": recipe, "overrides": RECIPES[recipe],
           "epochs": cfg.optim.epochs, "seconds": seconds, **_summary(report)}
    if not args.no_rtl:
        with np.load(out / "prepared.npz") as prepared:
            codes = prepared["codes"][prepared["split"] == SPLIT_TEST][:args.exact_jets]
        t0 = time.perf_counter()
        row["rtl"] = _rtl(out, codes, args.board)
        row["rtl"]["seconds"] = round(time.perf_counter() - t0, 1)
    done[cfg.model_dump_json()] = row
    log(f"{name}: AUC ratio {row['auc_ratio']}, overlap@10kHz {row['overlap'].get('10 kHz')}, "
        f"LUT {row.get('rtl', {}).get('lut_da4ml')}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="pre-training run with teacher.pt + score head (default: cached)")
    parser.add_argument("--data", type=Path, help="canonical l1 jet file (default: cached)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-qat", help="cache and student dirs")
    parser.add_argument("--n-jets", type=int, default=10000, help="jets per process for the cached file")
    parser.add_argument("--teacher-steps", type=int, default=50, help="pre-training steps (batch 512) of the "
                        "cached teacher: fidelity needs a teacher, not a converged one")
    parser.add_argument("--scorer", default=None, help="score head of the cached teacher (default: evaluate's "
                        "default, configs/evaluate/default.yaml)")
    parser.add_argument("--recipes", nargs="*", default=DEFAULT_RECIPES, choices=sorted(RECIPES),
                        help="recipes tried on the 6-bit Deep Sets student (none: skip)")
    parser.add_argument("--kinds", nargs="*", default=["deepsets", "mlp"], help="students of the default-recipe grid")
    parser.add_argument("--bits", type=int, nargs="*", default=[4, 6, 8])
    parser.add_argument("--epochs", type=int, default=None, help="default: configs/qat/default.yaml's, so the "
                        "table describes what `jbot-edge qat` gives")
    parser.add_argument("--batch-size", type=int, default=None, help="default: configs/qat/default.yaml's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--board", default="vu13p")
    parser.add_argument("--exact-jets", type=int, default=2000, help="test jets checked bit for bit per point")
    parser.add_argument("--no-rtl", action="store_true", help="skip the da4ml RTL (LUT, latency, exactness)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "qat.json")
    parser.add_argument("overrides", nargs="*", help="extra key=value qat overrides for every point")
    args = parser.parse_args()

    from jbot_edge.logs import setup_logging

    setup_logging()
    start = time.perf_counter()
    defaults = _default_qat_config().optim
    args.epochs = args.epochs or defaults.epochs
    args.batch_size = args.batch_size or defaults.batch_size
    if args.data is None or args.run is None:
        data, run = ensure_inputs(args.work, args.n_jets, args.teacher_steps, args.scorer)
        args.data, args.run = args.data or data, args.run or run
    scratch = args.work / "points"
    codes_cache: dict = {}
    done: dict = {}
    points = [run_point(f"deepsets-6-{recipe}", "deepsets", 6, recipe, args, scratch, codes_cache, done)
              for recipe in args.recipes]
    points += [run_point(f"{kind}-{bits}-default", kind, bits, "default", args, scratch, codes_cache, done)
               for kind in args.kinds for bits in args.bits]
    from _common import git_commit

    result = {"benchmark": "qat", "commit": git_commit(), "run": str(args.run), "data": str(args.data),
              "epochs": args.epochs, "batch_size": args.batch_size, "threads": args.threads, "cpu_count": os.cpu_count(), "board": args.board, "overrides": args.overrides,
              "score_head": _head_description(args.run),
              "default_recipe": "default (configs/qat/default.yaml)", "wall_s": round(time.perf_counter() - start, 1),
              "points": points}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

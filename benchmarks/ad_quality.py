"""Anomaly-detection quality of the teacher on held-out Pythia jets, next to the physics observables.

The protocol of issue #12, through the CLI a user types:

1. ``jbot-edge generate`` (cached under ``--cache``): a **training file** of q + g jets (JetNet-like: anti-kT
   R = 0.8, 500 < pT < 1000 GeV, pT-hat 450–1300 GeV, MPI on, 30 particles) and an independent **test file** of q,
   g, w, z, t jets (another seed). ``pretrain`` learns on the train split of the training file only.
2. for each config: ``jbot-edge pretrain --config CFG --data TRAIN --train-labels q,g optim.epochs=E`` (cached),
   then ``jbot-edge evaluate --data TEST --bank-data TRAIN``: bank from the training file's train split, every jet of
   the test file scored (none was seen in pre-training), the untrained encoder and the observables alongside.
3. one JSON table: config × scorer × signal → AUC, TPR at FPR 1e-2 and 1e-3 (bootstrap errors), the same rows for
   the untrained encoder and for each physics observable, and the wall time of each stage.

    python benchmarks/ad_quality.py                                  # default run: ~15 min on 2 cores
    python benchmarks/ad_quality.py --configs configs/pretrain/small.yaml,configs/pretrain/reference.yaml
    python benchmarks/ad_quality.py --markdown benchmarks/results/ad_quality.md --update-readme

Settings are fixed in the configs before any test-file signal is scored; the test file's seed differs from the
training file's, so re-running with ``--test-seed`` checks a sample nobody tuned on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import git_commit, jbot_edge_cli as cli

ROOT = Path(__file__).resolve().parent.parent
SIGNALS = ("w", "z", "t")
FPR_KEYS = ("1e-2", "1e-3")
README_BEGIN, README_END = "<!-- ad_quality:begin -->", "<!-- ad_quality:end -->"


def ensure_file(path: Path, processes: str, n_jets: int, seed: int, workers: int, mpi: bool) -> float:
    if path.is_file():
        return 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    return cli("generate", "--preset", "jetnet", "--processes", processes, "--n-jets", str(n_jets), "--seed",
               str(seed), "--workers", str(workers), "--mpi" if mpi else "--no-mpi", "pthat_max=1300",
               "--no-progress", "--out", str(path), log=path.with_suffix(".log"))


def rows_of(block: dict) -> dict[str, dict]:
    """signal → {auc, auc_err, tpr@1e-2, ...} from an evaluate.json metrics block {SIGNAL: METRICS}."""
    out = {}
    for signal, m in block.items():
        unc = m.get("uncertainty") or {}
        row = {"auc": round(m["auc"], 4), "auc_err": round(unc.get("auc", float("nan")), 4)}
        for key in FPR_KEYS:
            row[f"tpr@{key}"] = round(m["tpr_at_fpr"][key], 4)
            row[f"tpr@{key}_err"] = round((unc.get("tpr_at_fpr") or {}).get(key, float("nan")), 4)
        out[signal] = row
    return out


def run_config(config: Path, name: str, args: argparse.Namespace, train: Path, test: Path) -> dict:
    runs = args.cache / "runs"
    run_dir, eval_dir = runs / name, runs / f"{name}-evaluate-{test.stem}"
    runs.mkdir(parents=True, exist_ok=True)
    timing = {"pretrain_s": 0.0}
    if not (run_dir / "teacher.pt").is_file():
        timing["pretrain_s"] = cli("pretrain", "--config", str(config), "--data", str(train), "--out", str(run_dir),
                                   "--train-labels", "q,g", f"optim.epochs={args.epochs}",
                                   f"train.num_threads={args.threads}", "train.progress=false",
                                   log=runs / f"{name}.pretrain.log")
    timing["evaluate_s"] = cli("evaluate", "--run", str(run_dir), "--data", str(test), "--bank-data", str(train),
                               "--background", "q,g", "--signals", ",".join(args.signals), "--out", str(eval_dir),
                               f"compare=[{','.join(args.scorers)}]", f"scorer={args.scorers[0]}",
                               "finetune.enabled=false", "probes.enabled=false", "clustering.enabled=false",
                               f"threads={args.threads}", log=runs / f"{name}.evaluate-{test.stem}.log")
    report = json.loads((eval_dir / "evaluate.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    untrained = (report.get("reference") or {}).get("untrained") or {}
    untrained_rows = {untrained["scorer"]: rows_of(untrained["signals"])} if untrained else {}
    return {
        "config": str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else config),
        "steps": summary.get("steps"), "jets_seen": summary.get("jets_seen"),
        "train_seconds": summary.get("train_seconds"),
        "scorers": {s: rows_of(r["signals"]) for s, r in report["scorers"].items()},
        "untrained": untrained_rows,
        "split": report.get("split", {}).get("eval_counts"),
        "timing": timing,
    }


def markdown(result: dict, source: Path | None = None) -> str:
    """The README table: one row per (config, scorer) and its untrained twin, then the observables; ``source``: the
    JSON file the table is rendered from or written next to, named in the note."""
    signals = result["meta"].get("signals", SIGNALS)
    head = ("| score | " + " | ".join(f"AUC {s} | TPR@1e-2 {s}" for s in signals) + " |\n"
            + "|---" * (1 + 2 * len(signals)) + "|\n")

    def cells(rows: dict) -> str:
        return " | ".join(f"{rows[s]['auc']:.3f} ± {rows[s]['auc_err']:.3f} | {rows[s]['tpr@1e-2']:.3f}"
                          for s in signals)

    lines = []
    for cfg in result["configs"]:
        name = Path(cfg["config"]).stem
        for scorer, rows in cfg["scorers"].items():
            lines.append(f"| {name}, {scorer} | {cells(rows)} |")
            if scorer in cfg["untrained"]:
                lines.append(f"| {name}, {scorer}, **untrained** | {cells(cfg['untrained'][scorer])} |")
    for obs, rows in result["observables"].items():
        lines.append(f"| observable: {obs} | {cells(rows)} |")
    meta = result["meta"]
    trained = ", ".join(f"{Path(c['config']).stem} {c['steps']} steps in {c['train_seconds'] or 0:.0f} s"
                        for c in result["configs"])
    note = (f"\nMeasured at commit `{meta['commit']}` by `python benchmarks/ad_quality.py` "
            f"({meta['n_train_jets_per_class']} q + g jets per class generated for training, of which the train "
            f"split is used; {meta['epochs']} epochs: {trained}; test file {meta['n_test_jets_per_class']} jets per "
            f"class, seed {meta['test_seed']}, MPI {'on' if meta['mpi'] else 'off'}); ± = bootstrap std; TPR at "
            f"FPR 1e-3 and all errors in {_shown(source) if source else 'the JSON of the run'}.\n")
    return head + "\n".join(lines) + "\n" + note


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        sys.exit(f"error: README.md lacks the markers {README_BEGIN} … {README_END}")
    before, rest = text.split(README_BEGIN, 1)
    _, after = rest.split(README_END, 1)
    readme.write_text(f"{before}{README_BEGIN}\n{table}{README_END}{after}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="configs/pretrain/small.yaml,configs/pretrain/reference.yaml",
                    help="comma-separated pretrain configs")
    ap.add_argument("--scorers", default="knn_oe,knn,oe,mahalanobis_cc", help="first one is the headline scorer")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "ad_quality")
    ap.add_argument("--n-train", type=int, default=8334, help="q and g jets each in the training file (its train "
                    "split, 60%% by default, gives 10k training jets)")
    ap.add_argument("--n-test", type=int, default=2000, help="jets per class in the test file")
    ap.add_argument("--train-seed", type=int, default=101)
    ap.add_argument("--test-seed", type=int, default=202)
    ap.add_argument("--signals", default=",".join(SIGNALS), help="signal processes of the test file (e.g. w,z,t,h "
                    "for a signal no setting was chosen on)")
    ap.add_argument("--epochs", type=float, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-mpi", action="store_true", help="generate without MPI (≈4× faster, less realistic)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the README table here")
    ap.add_argument("--update-readme", action="store_true", help="replace the table between the README markers")
    ap.add_argument("--from-json", type=Path, default=None, help="render a previous run's JSON instead of running")
    args = ap.parse_args()
    if args.from_json:
        table = markdown(json.loads(args.from_json.read_text()), args.from_json)
        if args.markdown:
            args.markdown.write_text(table)
        if args.update_readme:
            update_readme(table)
        print(table)
        return
    args.scorers = [s for s in args.scorers.split(",") if s]
    args.signals = [s for s in args.signals.split(",") if s]
    t0 = time.perf_counter()
    mpi = not args.no_mpi
    tag = "mpi" if mpi else "nompi"
    train = args.cache / f"train_qg_{args.n_train}_s{args.train_seed}_{tag}.h5"
    extra = "" if tuple(args.signals) == SIGNALS else "_" + "".join(args.signals)
    test = args.cache / f"test_{args.n_test}_s{args.test_seed}{extra}_{tag}.h5"
    gen_s = ensure_file(train, "q,g", args.n_train, args.train_seed, args.workers, mpi)
    gen_s += ensure_file(test, ",".join(["q", "g", *args.signals]), args.n_test, args.test_seed, args.workers, mpi)
    configs = []
    observables = {}
    for path in [ROOT / c if not Path(c).is_absolute() else Path(c) for c in args.configs.split(",") if c]:
        name = f"{path.stem}-e{args.epochs:g}-s{args.train_seed}-{tag}"
        configs.append(run_config(path, name, args, train, test))
        report = json.loads((args.cache / "runs" / f"{name}-evaluate-{test.stem}" / "evaluate.json").read_text())
        observables = {o: rows_of(r["signals"]) for o, r in (report.get("observables") or {}).items()}
    commit = git_commit()
    result = {
        "benchmark": "ad_quality",
        "meta": {"commit": commit, "n_train_jets_per_class": args.n_train, "n_test_jets_per_class": args.n_test,
                 "train_seed": args.train_seed, "test_seed": args.test_seed, "signals": args.signals,
                 "epochs": args.epochs, "mpi": mpi,
                 "generate_s": gen_s, "wall_s": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count()},
        "configs": configs,
        "observables": observables,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    table = markdown(result, args.out)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    if args.update_readme:
        update_readme(table)


if __name__ == "__main__":
    main()

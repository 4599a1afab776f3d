"""Does jBOT pre-training help? Pre-train ``small`` on QCD (q+g) only, then compare with the same, untrained
architecture (same initial weights, same fitted input normalisation; ``untrained_raw_inputs``: also without the
normalisation) on: kNN-distance anomaly AUC of t, W, Z vs q+g (jBOT: k=30 on L2-normalised raw [CLS], bank of
background embeddings) and k-means NMI on all classes (k = number of classes).

Prints one JSON object. Generated data are cached under ``.cache/bench-data`` (Pythia 8, jetnet preset, MPI off
for speed unless --mpi).

    python benchmarks/pretrain_quality.py --steps 300                # a few minutes on one CPU core
    python benchmarks/pretrain_quality.py --steps 300 model.input_norm=none model.dropout=0.2 \
        loss.koleo_weight=0.01 loss.teacher_ema_horizon=0                 # the reference settings
    python benchmarks/pretrain_quality.py --train big_qcd.h5 --eval all.h5 --steps 20000 key=value ...
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score, roc_auc_score

from jbot_edge.config import packaged_config, resolve_config
from jbot_edge.data.reader import JetFile
from jbot_edge.pretrain.artifact import Teacher, load_teacher
from jbot_edge.pretrain.train import PretrainConfig, run_pretrain

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench-data"


def ensure_data(name: str, processes: list[str], n_jets: int, seed: int, mpi: bool) -> Path:
    from jbot_edge.data.generator import GeneratorConfig, generate, preset_file

    path = CACHE / f"{name}{'_mpi' if mpi else ''}.h5"
    if not path.is_file():
        cfg = resolve_config(GeneratorConfig, cli_values={"processes": processes, "n_jets": n_jets, "seed": seed,
                                                          "workers": 2, "mpi": mpi},
                             default_file=preset_file("jetnet"))
        generate(cfg, path, show_progress=False)
    return path


def knn_scores(bank: np.ndarray, queries: np.ndarray, k: int = 30) -> np.ndarray:
    try:  # the evaluate stage's scorer, when present, so both report the same definition
        from jbot_edge.evaluate.scores import fit_scorer

        return fit_scorer("knn", bank, {"k": k}).score(queries)
    except ImportError:
        def norm(a: np.ndarray) -> np.ndarray:
            return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b, q = norm(bank), norm(queries)
        d2 = np.maximum(2 - 2 * q @ b.T, 0)
        return np.sqrt(np.partition(d2, k - 1, axis=1)[:, :k]).mean(1)


def quality(teacher: Teacher, train_file: Path, eval_file: Path, bank_size: int, seed: int) -> dict:
    with JetFile(train_file) as f:
        bank_batch = f.read(slice(0, min(bank_size, f.n_jets)))
    with JetFile(eval_file) as f:
        ev = f.read(slice(0, f.n_jets))
        names = f.label_names
    bank = teacher.embed(bank_batch)
    emb = teacher.embed(ev)
    background = np.isin(ev.labels, [names.index(n) for n in ("q", "g") if n in names])
    scores = knn_scores(bank, emb)
    out: dict = {"auc": {}}
    for sig in ("t", "w", "z"):
        if sig in names:
            sel = background | (ev.labels == names.index(sig))
            out["auc"][sig] = float(roc_auc_score((ev.labels[sel] == names.index(sig)).astype(int), scores[sel]))
    normed = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    clusters = KMeans(n_clusters=len(set(ev.labels.tolist())), n_init=10, random_state=seed).fit_predict(normed)
    out["kmeans_nmi"] = float(normalized_mutual_info_score(ev.labels, clusters))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, help="QCD training file (default: generated q+g, 3000 each)")
    ap.add_argument("--eval", type=Path, help="evaluation file with q,g,w,z,t (default: generated, 600 each)")
    ap.add_argument("--mpi", action="store_true", help="generate default data with MPI on (slower)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--bank", type=int, default=2000, help="background bank size (jets of the training file)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the pretrain run here (default: temporary)")
    ap.add_argument("overrides", nargs="*", help="pretrain config overrides key=value")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train_file = args.train or ensure_data("qcd_6k", ["q", "g"], 3000, 11, args.mpi)
    eval_file = args.eval or ensure_data("all_3k", ["q", "g", "w", "z", "t"], 600, 12, args.mpi)
    overrides = [f"optim.batch_size={args.batch}", f"optim.max_steps={args.steps}", "train.progress=false",
                 f"train.seed={args.seed}", "train.log_every=25", *args.overrides]
    cfg = resolve_config(PretrainConfig, config_file=packaged_config("pretrain/small.yaml"), overrides=overrides,
                         cli_values={"data.file": str(train_file), "data.train_labels": ["q", "g"]},
                         default_file=packaged_config("pretrain/default.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.out or Path(tmp) / "run"
        t0 = time.perf_counter()
        summary = run_pretrain(cfg, run_dir)
        train_s = time.perf_counter() - t0
        trained = load_teacher(run_dir)
        # Same architecture and input spec, weights as initialised (same seed) — the untrained baseline.
        torch.manual_seed(args.seed)  # train.py seeds the initial weights with train.seed
        from jbot_edge.models.transformer import build_encoder

        untrained = Teacher(encoder=build_encoder(trained.model_config).eval(), input_spec=trained.input_spec,
                            model_config=trained.model_config)
        baselines = {"untrained": quality(untrained, train_file, eval_file, args.bank, args.seed)}
        if trained.model_config.get("input_norm", "none") != "none":
            # The same untrained weights without the input normalisation (the reference's raw inputs): shows how
            # much of the gain is the normalisation alone.
            raw_config = {**trained.model_config, "input_norm": "none", "input_norm_stats": None}
            torch.manual_seed(args.seed)
            raw = Teacher(encoder=build_encoder(raw_config).eval(), input_spec=trained.input_spec,
                          model_config=raw_config)
            baselines["untrained_raw_inputs"] = quality(raw, train_file, eval_file, args.bank, args.seed)
        report = {
            "train_file": str(train_file), "eval_file": str(eval_file), "steps": summary["steps"],
            "epochs": summary["epochs"], "train_seconds": train_s, "final": summary["final"],
            "collapse": summary["collapse"], "overrides": overrides,
            "teacher_momentum_start": summary.get("teacher_momentum_start"),
            "input_norm": trained.model_config.get("input_norm", "none"),
            "trained": quality(trained, train_file, eval_file, args.bank, args.seed),
            **baselines,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

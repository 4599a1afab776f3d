"""jBOT vs the baselines (JetCLR, VAE, OE-VAE) on the same generated jets, through the real pipeline.

For every method: ``pretrain`` (jBOT: ``configs/pretrain/small.yaml``; baselines: ``--method``) on background
(q+g) jets, ``evaluate`` unchanged (Mahalanobis score head and kNN, finetune off), then from the frozen embedding
the JetCLR linear classifier test (LCT, each signal vs q+g, AUC and 1/ε_B at ε_S = 0.5), and the background
mass-sculpting JSD at ε_B = 0.1 (from evaluate.json). VAE methods also report their native reconstruction and KL
scores. Prints one JSON object: {"settings": ..., "methods": {name: {...}}, "table": [rows]}.

    python benchmarks/baselines_compare.py --train QCD.h5 --eval ALL.h5 --outlier H.h5 --steps 150 --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

SIGNALS = ("t", "w", "z")


def _pretrain(method: str, train: Path, outlier: Path | None, out: Path, steps: int, batch: int) -> dict:
    from jbot_edge.config import packaged_config, resolve_config

    common = [f"optim.batch_size={batch}", "train.progress=false", "train.num_threads=1", "optim.warmup_epochs=0.5"]
    values = {"data.file": str(train), "data.train_labels": ["q", "g"], "optim.max_steps": steps}
    if method == "jbot":
        from jbot_edge.pretrain.train import PretrainConfig, run_pretrain

        cfg = resolve_config(PretrainConfig, config_file=packaged_config("pretrain/small.yaml"), overrides=common,
                             cli_values=values, default_file=packaged_config("pretrain/default.yaml"))
        return run_pretrain(cfg, out)
    from jbot_edge.baselines.registry import run_method

    extra = []
    if method == "oe-vae":
        extra = ["loss.outlier.labels=[h]", f"loss.outlier.file={outlier}"]
    return run_method(method, None, common + extra, values, out)


def _evaluate(run: Path, data: Path, out: Path) -> dict:
    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.evaluate.config import EvaluateConfig
    from jbot_edge.evaluate.pipeline import run_evaluate

    cfg = resolve_config(EvaluateConfig, overrides=["finetune.enabled=false", "clustering.tsne=false",
                                                    "compare=[mahalanobis,knn]", "metrics.n_resamples=5",
                                                    "data.bank_size=1500", "threads=1"],
                         default_file=packaged_config("evaluate/default.yaml"))
    return run_evaluate(cfg, run, data, out)


def _native_vae_scores(run: Path, data: Path) -> dict:
    from jbot_edge.data.preprocessing import build_inputs
    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.metrics import point_metrics
    from jbot_edge.evaluate.sculpting import mass_sculpting
    from jbot_edge.pretrain.artifact import load_teacher

    teacher = load_teacher(run)
    with JetFile(data) as f:
        batch = f.read(slice(0, len(f)))
        names = f.label_names
    x, m = build_inputs(batch, teacher.input_spec)
    scores = {k: v.numpy() for k, v in teacher.encoder.anomaly_scores(torch.from_numpy(x), torch.from_numpy(m)).items()}
    bkg = np.isin(batch.labels, [names.index("q"), names.index("g")])
    out = {}
    for kind, s in scores.items():
        out[kind] = {sig: {k: v for k, v in point_metrics(s[bkg], s[batch.labels == names.index(sig)]).items()
                           if k in ("auc", "tpr_at_fpr")} for sig in SIGNALS}
        out[kind]["mass_jsd_0.1"] = mass_sculpting(s[bkg], batch.jets["jet_mass"][bkg])["by_bkg_eff"]["0.1"]
    return out


def _lct(run: Path, data: Path) -> dict:
    from jbot_edge.baselines.jetclr import linear_classifier_test
    from jbot_edge.data.reader import JetFile
    from jbot_edge.pretrain.artifact import load_teacher

    teacher = load_teacher(run)
    with JetFile(data) as f:
        batch = f.read(slice(0, len(f)))
        names = f.label_names
    emb = teacher.embed(batch)
    bkg = np.isin(batch.labels, [names.index("q"), names.index("g")])
    out = {}
    for sig in SIGNALS:
        keep = bkg | (batch.labels == names.index(sig))
        out[sig] = linear_classifier_test(emb[keep], (batch.labels == names.index(sig))[keep])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="background (q,g) training jets")
    parser.add_argument("--eval", type=Path, required=True, help="q,g,w,z,t evaluation jets")
    parser.add_argument("--outlier", type=Path, required=True, help="OE-VAE outlier sample (label h)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--methods", default="jbot,jetclr,vae,oe-vae")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results, table = {}, []
    for method in args.methods.split(","):
        run = args.out / method
        t0 = time.perf_counter()
        summary = _pretrain(method, args.train, args.outlier, run, args.steps, args.batch)
        t1 = time.perf_counter()
        report = _evaluate(run, args.eval, args.out / f"{method}-eval")
        lct = _lct(run, args.eval)
        entry = {"train_seconds": round(t1 - t0, 1), "final_loss": summary["final"].get("loss"),
                 "evaluate": {name: {"signals": {s: {"auc": r["signals"][s]["auc"],
                                                     "tpr_at_1e-3": r["signals"][s]["tpr_at_fpr"]["1e-3"]}
                                                 for s in SIGNALS},
                                     "mass_jsd_0.1": r["mass_sculpting"]["by_bkg_eff"]["0.1"]}
                              for name, r in report["scorers"].items()},
                 "lct": lct}
        if method in ("vae", "oe-vae"):
            entry["native_scores"] = _native_vae_scores(run, args.eval)
        results[method] = entry
        m = entry["evaluate"]["mahalanobis"]
        table.append({"method": method, **{f"auc_{s}": round(m["signals"][s]["auc"], 3) for s in SIGNALS},
                      **{f"tpr1e-3_{s}": round(m["signals"][s]["tpr_at_1e-3"], 3) for s in SIGNALS},
                      **{f"lct_auc_{s}": round(lct[s]["auc"], 3) for s in SIGNALS},
                      "lct_inv_eb_t": round(lct["t"]["inv_bkg_eff_at_sig_eff"]["0.5"], 1),
                      "mass_jsd_0.1": round(m["mass_jsd_0.1"]["jsd"], 4),
                      "mass_jsd_0.1_random": round(m["mass_jsd_0.1"]["jsd_random"], 4)})
    print(json.dumps({"settings": {"steps": args.steps, "batch": args.batch, "train": str(args.train),
                                   "eval": str(args.eval), "scorer": "mahalanobis (table), knn (methods)"},
                      "methods": results, "table": table}, indent=1))


if __name__ == "__main__":
    main()

"""jBOT vs every baseline on the same data and budget, through the real pipeline: one table.

For every method (jbot, jetclr, simclr, vicreg, supcon, vae, oe-vae): ``pretrain`` on the background (q+g) jets of
``--train`` for ``--steps`` steps of batch ``--batch`` (jBOT: ``configs/pretrain/small.yaml``; baselines: their
packaged config; supcon uses the q/g process labels), then ``evaluate`` (default config; fine-tuning and t-SNE off
for time) on ``--eval``. From evaluate.json per signal: the Mahalanobis AUC and TPR at FPR = 1e-2 (plus, for VAE
teachers, their own ``recon`` score), the linear classifier test (LCT AUC and 1/ε_B at ε_S = 0.5) and the
two-sample test p-value. Prints one JSON object {"settings", "table": [rows]}, also written to ``--json``
(default benchmarks/results/baselines_compare.json), which the physics notebook shows.

    python benchmarks/baselines_compare.py --train QCD.h5 --eval ALL.h5 [--outlier H.h5] --steps 300 --out DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import pretrain_small, write_result

METHODS = ("jbot", "jetclr", "simclr", "vicreg", "supcon", "vae", "oe-vae")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "baselines_compare.json"


def _evaluate(run: Path, data: Path, out: Path, signals: list[str]) -> dict:
    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.evaluate.config import EvaluateConfig
    from jbot_edge.evaluate.pipeline import run_evaluate

    cfg = resolve_config(EvaluateConfig, overrides=["finetune.enabled=false", "clustering.tsne=false", "threads=1",
                                                    "metrics.n_resamples=5", "write_score_head=false"],
                         cli_values={"data.signals": signals}, default_file=packaged_config("evaluate/default.yaml"))
    return run_evaluate(cfg, run, data, out)


def table_row(method: str, report: dict, signals: list[str]) -> dict:
    """One table row from an evaluate.json: AUC, TPR at 1e-2 (Mahalanobis; recon for VAEs), LCT, two-sample p."""
    row: dict = {"method": method}
    scorers = [("maha", "mahalanobis")] + ([("recon", "recon")] if "recon" in report["scorers"] else [])
    for s in signals:
        for short, name in scorers:
            m = report["scorers"][name]["signals"][s]
            row[f"{s}_auc_{short}"] = round(m["auc"], 3)
            row[f"{s}_tpr1e-2_{short}"] = round(m["tpr_at_fpr"]["1e-2"], 3)
        lct = report["lct"]["signals"][s]
        row[f"{s}_lct_auc"] = round(lct["auc"], 3)
        row[f"{s}_lct_inv_eb_0.5"] = round(lct["inv_bkg_eff_at_sig_eff"]["0.5"], 1)
        row[f"{s}_two_sample_p"] = report["two_sample"]["signals"][s]["p_value"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="training jets (q, g used)")
    parser.add_argument("--eval", type=Path, required=True, help="q, g + signal evaluation jets")
    parser.add_argument("--outlier", type=Path, default=None, help="OE-VAE outlier sample (label h); "
                                                                   "without it oe-vae is skipped")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--signals", default="w,z,t")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    torch.set_num_threads(1)
    signals = args.signals.split(",")
    methods = [m for m in args.methods.split(",") if m != "oe-vae" or args.outlier is not None]
    table = []
    for method in methods:
        run = args.out / method
        t0 = time.perf_counter()
        extra = ["loss.outlier.labels=[h]", f"loss.outlier.file={args.outlier}"] if method == "oe-vae" else []
        summary = pretrain_small(method, args.train, run, args.steps, args.batch, ["q", "g"], extra)
        t1 = time.perf_counter()
        report = _evaluate(run, args.eval, args.out / f"{method}-eval", signals)
        table.append({**table_row(method, report, signals), "train_seconds": round(t1 - t0, 1),
                      "final_loss": summary["final"].get("loss")})
    result = {"settings": {"steps": args.steps, "batch": args.batch, "train": str(args.train),
                           "eval": str(args.eval), "signals": signals, "methods": methods,
                           "columns": "maha: Mahalanobis score head; recon: the VAE's own score; lct: linear "
                                      "classifier test; two_sample_p: NPLM-style test, 10% injected signal"},
              "table": table}
    write_result(result, args.json)


if __name__ == "__main__":
    main()

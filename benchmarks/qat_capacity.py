"""How large must a student be to follow its teacher at trigger rates? Full-precision Deep Sets ceilings (issue 13).

The 6-bit Deep Sets student of the qat benchmark agrees with its teacher on the bulk of the background (Spearman
≈ 0.86) but not on the last 3.5e-4 that a 10 kHz budget keeps. This script separates the causes: it trains
*unquantised* Deep Sets of several sizes (``PHI:RHO`` layer widths) on exactly what a qat point distilled on (its
cached ``prepared.npz``: the teacher's targets, tail weights and pseudo-anomalies), with the same loss, and scores them
on the 150k-jet background file of ``qat_rate.py`` (never used for training or for the score head):

* background overlap at each rate budget / FPR point and the Spearman correlation with the teacher;
* each signal's TPR ratio and overlap at FPR 1e-2, thresholds set on that 150k-jet background;
* BOPs of the same network at the point's bit widths, and a LUT **estimate**: the point's da4ml LUT count scaled by
  the BOPs ratio (an estimate, not a synthesis: LUTs grow roughly with BOPs at fixed bit width).

If a full-precision network of the deployed size stops where the quantised one does, quantisation is not what
limits the fidelity: capacity is.

    python benchmarks/qat.py && python benchmarks/qat_rate.py      # the points and the 150k-jet background file
    python benchmarks/qat_capacity.py                              # ~4 min on 2 cores (5 sizes x 3 seeds)

Prints one JSON object (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = ["16:16,16", "32:16,16", "16,16:16,16", "16:64,64", "64,64:64,64"]


def _widths(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_size(text: str) -> tuple[list[int], list[int]]:
    """``"16,16:64"`` → ([16, 16], [64]): per-particle (phi) and after-pooling (rho) layer widths."""
    phi, sep, rho = text.partition(":")
    if not sep or not _widths(phi):
        raise SystemExit(f"error: --sizes {text!r}: expected PHI:RHO widths, e.g. 16:16,16")
    return _widths(phi), _widths(rho)


def float_deepsets(n_features: int, phi: list[int], rho: list[int]):
    """Full-precision Deep Sets with the student's layout: phi per particle, mean pooling, rho, one output."""
    import torch

    class DeepSets(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers, width = [], n_features
            for w in phi:
                layers += [torch.nn.Linear(width, w), torch.nn.ReLU()]
                width = w
            self.phi = torch.nn.Sequential(*layers)
            layers = []
            for w in rho:
                layers += [torch.nn.Linear(width, w), torch.nn.ReLU()]
                width = w
            self.rho = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))

        def forward(self, x):
            return self.rho(self.phi(x).mean(1)).reshape(-1)

    return DeepSets()


def distill_float(model, x, y, w, train, val, epochs: int, batch: int, lr: float, seed: int):
    """The qat loss (Huber, per-jet tail weights) with AdamW and a cosine schedule; the best validation epoch."""
    import numpy as np
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = torch.nn.HuberLoss(reduction="none")
    best, state = float("inf"), None
    val_t = torch.from_numpy(val)
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))
        order = np.random.default_rng([seed, epoch]).permutation(train)
        for lo in range(0, len(order) - batch + 1, batch):
            idx = torch.from_numpy(order[lo:lo + batch])
            loss = (loss_fn(model(x[idx]), y[idx]) * w[idx]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = float((loss_fn(model(x[val_t]), y[val_t]) * w[val_t]).sum() / w[val_t].sum())
        if val_loss < best:
            best, state = val_loss, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return best


def load_point(point_dir: Path):
    """The point's resolved qat config and what it distilled on: model inputs, targets, weights, train / val rows
    (real jets, then its pseudo-anomalies), and the held-out test jets' teacher scores, inputs and labels."""
    import numpy as np
    import torch

    from jbot_edge.config import resolve_config
    from jbot_edge.qat.distill import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, QatConfig, _targets_and_weights

    cfg = resolve_config(QatConfig, point_dir / "config.yaml", [])
    with np.load(point_dir / "prepared.npz") as npz:
        p = {k: npz[k] for k in npz.files}
    from jbot_edge.data.reader import JetFile

    report = json.loads((point_dir / "qat_report.json").read_text())
    with JetFile(report["data"]) as jets:
        names = jets.label_names
    train_labels = report["training"]["train_labels"]
    background = np.isin(p["labels"], [names.index(n) for n in train_labels])
    scores = np.concatenate([p["scores"], p.get("oe_scores", np.zeros(0))])
    train_bkg = np.zeros(len(scores), dtype=bool)
    train_bkg[:len(background)] = background & (p["split"] == SPLIT_TRAIN)
    _, targets, weights = _targets_and_weights(cfg, scores, train_bkg)
    codes = np.concatenate([p["codes"], p["oe_codes"]]) if "oe_codes" in p else p["codes"]
    n_real = len(p["scores"])
    train = np.concatenate([np.flatnonzero(background & (p["split"] == SPLIT_TRAIN)), np.arange(n_real, len(scores))])
    val = np.flatnonzero(background & (p["split"] == SPLIT_VAL))
    test = (p["split"] == SPLIT_TEST) & ~background
    signals = {name: (p["scores"][test & (p["labels"] == i)], p["codes"][test & (p["labels"] == i)])
               for i, name in enumerate(names) if name not in train_labels}
    return (cfg, torch.from_numpy(cfg.input.to_model_input(codes)), torch.from_numpy(targets),
            torch.from_numpy(weights), train, val, signals)


def rate_file_inputs(run: Path, data: Path, spec):
    """Teacher scores and L1 codes of the background jets of the rate file (the score head's background labels)."""
    import numpy as np

    from qat_rate import background_batches

    scores, codes = [], []
    for teacher_scores, batch in background_batches(run, data, spec.stored_feature_names):
        scores.append(teacher_scores)
        codes.append(spec.quantize(batch))
    return np.concatenate(scores), np.concatenate(codes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-qat")
    parser.add_argument("--point", default="deepsets-6-survival-tail1-oe1-long",
                        help="qat benchmark point whose distillation data (prepared.npz) and config are used")
    parser.add_argument("--rate-data", type=Path, default=None,
                        help="background file (default: qat_rate.py's, WORK/rate_background_75000_s7.h5)")
    parser.add_argument("--json-qat", type=Path, default=REPO / "benchmarks" / "results" / "qat.json")
    parser.add_argument("--sizes", nargs="*", default=DEFAULT_SIZES, help="PHI:RHO layer widths")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="training seeds per size (the "
                        "far tail moves from seed to seed: report the spread)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "qat_capacity.json")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes]

    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import git_commit, write_result
    from qat_rate import agreement

    from jbot_edge.models.students import bops
    from jbot_edge.qat.fidelity import operating_points

    torch.set_num_threads(args.threads)
    point_dir = args.work / "points" / args.point
    if not (point_dir / "prepared.npz").is_file():
        raise SystemExit(f"error: {point_dir}/prepared.npz not found; run benchmarks/qat.py first (--point)")
    rate_data = args.rate_data or args.work / "rate_background_75000_s7.h5"
    if not rate_data.is_file():
        raise SystemExit(f"error: {rate_data} not found; run benchmarks/qat_rate.py first (--rate-data)")
    cfg, x, y, w, train, val, signals = load_point(point_dir)
    spec = cfg.input
    deployed = next((p for p in json.loads(args.json_qat.read_text())["points"] if p["name"] == args.point), {})
    lut_deployed = (deployed.get("rtl") or {}).get("lut_da4ml")
    bops_deployed = bops(cfg.student, spec)
    start = time.perf_counter()
    teacher_bkg, codes_bkg = rate_file_inputs(args.work / "teacher", rate_data, spec)
    x_bkg = torch.from_numpy(spec.to_model_input(codes_bkg))
    trigger = cfg.report.trigger
    rows = []
    for ((phi, rho), text), seed in [(size, seed) for size in zip(sizes, args.sizes) for seed in args.seeds]:
        torch.manual_seed(seed)
        model = float_deepsets(x.shape[-1], phi, rho)
        t0 = time.perf_counter()
        best = distill_float(model, x, y, w, train, val, args.epochs, cfg.optim.batch_size, cfg.optim.lr, seed)
        model.eval()
        with torch.no_grad():
            student_bkg = model(x_bkg).numpy().astype(np.float64)
            sig = {n: (t, model(torch.from_numpy(spec.to_model_input(c))).numpy().astype(np.float64))
                   for n, (t, c) in signals.items()}
        spearman, points = agreement(teacher_bkg, student_bkg, trigger.rate_budget_khz, cfg.report.fpr)
        at_1e2 = operating_points(teacher_bkg, student_bkg, sig, rate_budgets_khz=[], fprs=[1e-2],
                                  background_rate_mhz=trigger.background_rate_mhz,
                                  jets_per_crossing=trigger.jets_per_crossing, n_bootstrap=50, seed=0)[0]["signals"]
        size_bops = bops(cfg.student.model_copy(update={"phi_widths": phi, "rho_widths": rho}), spec)
        rows.append({
            "size": text, "seed": seed, "phi": phi, "rho": rho, "best_val_loss": round(best, 5),
            "train_s": round(time.perf_counter() - t0, 1), "spearman": spearman,
            "background_overlap": {p["point"]: [p["background_overlap"], p["background_overlap_err"]] for p in points},
            "signals_fpr_1e-2": {n: {"tpr_teacher": round(v["tpr_teacher"], 4), "tpr_ratio": round(v["tpr_ratio"], 3),
                                     "tpr_ratio_err": round(v["error"]["tpr_ratio"], 3),
                                     "overlap": round(v["overlap"], 3)} for n, v in at_1e2.items()},
            "bops": size_bops,
            "lut_estimate": round(lut_deployed * size_bops / bops_deployed) if lut_deployed else None,
        })
        print(f"[qat-capacity] {text} seed {seed}: overlap@10kHz {rows[-1]['background_overlap'].get('10 kHz')}, "
              f"spearman {spearman}", file=sys.stderr, flush=True)
    summary = {}
    for text in args.sizes:
        runs = [r for r in rows if r["size"] == text]
        overlaps = [r["background_overlap"]["10 kHz"][0] for r in runs if "10 kHz" in r["background_overlap"]]
        summary[text] = {"background_overlap_10khz_mean": round(float(np.mean(overlaps)), 3) if overlaps else None,
                         "background_overlap_10khz_seed_std": round(float(np.std(overlaps, ddof=1)), 3)
                         if len(overlaps) > 1 else None,
                         "spearman_mean": round(float(np.mean([r["spearman"] for r in runs])), 4),
                         "lut_estimate": runs[0]["lut_estimate"], "bops": runs[0]["bops"]}
    write_result({"benchmark": "qat_capacity", "commit": git_commit(), "point": args.point,
                  "deployed": {"phi": cfg.student.phi_widths, "rho": cfg.student.rho_widths,
                               "bits": cfg.student.weight_bits, "bops": bops_deployed, "lut_da4ml": lut_deployed},
                  "rate_data": str(rate_data), "n_background": int(len(teacher_bkg)), "epochs": args.epochs,
                  "lut_estimate_note": "da4ml LUTs of the deployed point x BOPs ratio at its bit widths; an "
                                       "estimate, not a synthesis",
                  "wall_s": round(time.perf_counter() - start, 1), "summary": summary, "sizes": rows}, args.json)


if __name__ == "__main__":
    main()

"""JetCLR augmentation ablation with the linear classifier test (LCT): one table, with errors and the ordering.

Trains JetCLR (``pretrain --method jetclr``) once per view recipe and seed — none / translations / rotations /
soft+collinear / all (the JetCLR paper's table) — on the jets of ``--train`` and reports the LCT (signal vs q+g,
logistic regression on the frozen representation of ``--eval``, :mod:`jbot_edge.evaluate.lct`): AUC and 1/ε_B at
ε_S = 0.5. Errors: the spread over ``--seeds`` trainings where there are several, else the bootstrap error of the
test jets. Prints one JSON object {"settings", "table": [{augmentations, auc, auc_err, inv_bkg_eff_0.5, ...}],
"ordering": [recipes by AUC], "distinct": whether the best and worst recipe differ by more than their errors,
"seed_ordering": the JetCLR paper's (all > soft+collinear > rotations ~ translations > none)}.

The default budget (1500 steps of batch 128 at base_lr 1e-3, one seed) takes about 15 minutes on two free cores;
200 steps at the packaged lr (5e-5 peak) leave the five recipes within noise of each other (the issue that set
this default).

    python benchmarks/jetclr_ablation.py --train QCD_AND_T.h5 --eval ALL.h5 --signal t --out DIR [--steps N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

#: view recipe → overrides of the ``views`` section (``both`` applies to both views, ``first`` to one).
RECIPES = {
    "none": {"both": "rotation=false translation=false", "first": "smearing=false splitting=false"},
    "translations": {"both": "rotation=false translation=true", "first": "smearing=false splitting=false"},
    "rotations": {"both": "rotation=true translation=false", "first": "smearing=false splitting=false"},
    "soft+collinear": {"both": "rotation=false translation=false", "first": "smearing=true splitting=true"},
    "all": {"both": "rotation=true translation=true", "first": "smearing=true splitting=true"},
}
SEED_ORDERING = ["all", "soft+collinear", "rotations", "translations", "none"]


def recipe_overrides(name: str) -> list[str]:
    out = []
    for section, flags in RECIPES[name].items():
        out += [f"views.{section}.{flag}" for flag in flags.split()]
    return out


def main() -> None:
    from jbot_edge.baselines.registry import run_method
    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.lct import linear_classifier_test
    from jbot_edge.pretrain.artifact import load_teacher

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--eval", type=Path, required=True)
    parser.add_argument("--signal", default="t")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--base-lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--bootstrap", type=int, default=50)
    parser.add_argument("overrides", nargs="*", help="extra key=value config overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with JetFile(args.eval) as f:
        batch = f.read(slice(0, len(f)))
        names = f.label_names
    keep = np.isin(batch.labels, [names.index(n) for n in ("q", "g", args.signal)])
    batch = batch.select(np.flatnonzero(keep))
    is_signal = batch.labels == names.index(args.signal)
    table = []
    t_start = time.perf_counter()
    for name in RECIPES:
        aucs, inv, boot, losses = [], [], [], []
        for seed in range(args.seeds):
            run = args.out / f"{name}-seed{seed}"
            summary = run_method("jetclr", None, [f"optim.batch_size={args.batch}", f"optim.base_lr={args.base_lr}",
                                                  "optim.warmup_epochs=0.1", "train.progress=false",
                                                  "train.num_threads=1", f"train.seed={seed}",
                                                  *recipe_overrides(name), *args.overrides],
                                 {"data.file": str(args.train), "optim.max_steps": args.steps}, run)
            lct = linear_classifier_test(load_teacher(run).embed(batch), is_signal, n_bootstrap=args.bootstrap)
            aucs.append(lct["auc"])
            inv.append(lct["inv_bkg_eff_at_sig_eff"]["0.5"])
            boot.append(lct.get("auc_std", 0.0))
            losses.append(summary["final"]["loss"])
        err = float(np.std(aucs, ddof=1)) if len(aucs) > 1 else float(boot[0])
        table.append({"augmentations": name, "auc": round(float(np.mean(aucs)), 4), "auc_err": round(err, 4),
                      "inv_bkg_eff_0.5": round(float(np.mean(inv)), 2), "final_loss": round(float(np.mean(losses)), 4),
                      "error_kind": "seed std" if len(aucs) > 1 else "bootstrap std", "n_test": lct["n_test"]})
    ordering = sorted(table, key=lambda r: -r["auc"])
    best, worst = ordering[0], ordering[-1]
    distinct = best["auc"] - worst["auc"] > np.hypot(best["auc_err"], worst["auc_err"])
    print(json.dumps({"settings": {"train": str(args.train), "eval": str(args.eval), "signal": args.signal,
                                   "steps": args.steps, "batch": args.batch, "base_lr": args.base_lr,
                                   "seeds": args.seeds, "seconds": round(time.perf_counter() - t_start, 1)},
                      "table": table, "ordering": [r["augmentations"] for r in ordering],
                      "distinct": bool(distinct), "seed_ordering": SEED_ORDERING}, indent=1))


if __name__ == "__main__":
    main()

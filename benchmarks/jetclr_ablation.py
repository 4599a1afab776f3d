"""JetCLR augmentation ablation with the linear classifier test (LCT): one table.

Trains JetCLR (``pretrain --method jetclr``) once per view recipe — none / translations / rotations /
soft+collinear / all (the JetCLR talk's table) — on the unlabeled jets of ``--train`` and reports the LCT
(signal vs q+g, logistic regression on the frozen representation of ``--eval``): AUC and 1/ε_B at ε_S = 0.5.
Prints one JSON object {"settings", "table": [{augmentations, auc, inv_bkg_eff_0.5, final_loss}]}.

    python benchmarks/jetclr_ablation.py --train ALL.h5 --eval ALL.h5 --signal t --steps 200 --out DIR
"""

from __future__ import annotations

import argparse
import json
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


def recipe_overrides(name: str) -> list[str]:
    out = []
    for section, flags in RECIPES[name].items():
        out += [f"views.{section}.{flag}" for flag in flags.split()]
    return out


def main() -> None:
    from jbot_edge.baselines.jetclr import linear_classifier_test
    from jbot_edge.baselines.registry import run_method
    from jbot_edge.data.reader import JetFile
    from jbot_edge.pretrain.artifact import load_teacher

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--eval", type=Path, required=True)
    parser.add_argument("--signal", default="t")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=128)
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
    for name in RECIPES:
        run = args.out / name
        summary = run_method("jetclr", None, [f"optim.batch_size={args.batch}", "train.progress=false",
                                              "train.num_threads=1", *recipe_overrides(name), *args.overrides],
                             {"data.file": str(args.train), "optim.max_steps": args.steps}, run)
        lct = linear_classifier_test(load_teacher(run).embed(batch), is_signal)
        table.append({"augmentations": name, "auc": round(lct["auc"], 4),
                      "inv_bkg_eff_0.5": round(lct["inv_bkg_eff_at_sig_eff"]["0.5"], 2),
                      "final_loss": round(summary["final"]["loss"], 4), "n_test": lct["n_test"]})
    print(json.dumps({"settings": {"train": str(args.train), "eval": str(args.eval), "signal": args.signal,
                                   "steps": args.steps, "batch": args.batch}, "table": table}, indent=1))


if __name__ == "__main__":
    main()

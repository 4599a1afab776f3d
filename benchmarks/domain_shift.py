"""Domain shift (Kishimoto et al.): pre-train on one generator setting, fine-tune with few labels on another.

The "data" domain stands in for real collisions: Pythia 8 with a different tune (default ``Tune:pp = 5``, 4C)
and MPI on; the "simulation" domain, where labels exist, is the packaged preset (Monash, MPI off here for
speed and for a larger shift). Steps, all through the real pipeline:

1. ``generate`` both domains (``--processes``, ``--n-jets`` per process; cached in ``--out``);
2. ``pretrain --method METHOD`` on the *data* domain without labels (all processes mixed, as real data would be);
3. ``evaluate`` on the *simulation* domain with binary fine-tuning (``--signal`` vs q+g) at label fractions
   1 %, 10 %, 100 %: the pre-trained encoder (fine-tuned) vs the same architecture from scratch, same steps.

Prints one JSON object {"settings", "table": [{label_fraction, finetune_auc, scratch_auc, finetune_accuracy,
scratch_accuracy, n_train}]} and writes it to ``--json`` (default benchmarks/results/domain_shift.json).

    python benchmarks/domain_shift.py --out DIR [--method jbot] [--n-jets 2000] [--steps 300]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import pretrain_small, write_result

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "domain_shift.json"


def _generate(path: Path, processes: list[str], n_jets: int, seed: int, mpi: bool, tune: list[str]) -> Path:
    from jbot_edge.config import resolve_config
    from jbot_edge.data.generator import GeneratorConfig, generate, preset_file

    if not path.is_file():
        cfg = resolve_config(GeneratorConfig, cli_values={"processes": processes, "n_jets": n_jets, "seed": seed,
                                                          "mpi": mpi, "pythia_settings": tune, "workers": 2},
                             default_file=preset_file("jetnet"))
        generate(cfg, path, show_progress=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--method", default="jbot")
    parser.add_argument("--processes", default="q,g,t")
    parser.add_argument("--signal", default="t")
    parser.add_argument("--n-jets", type=int, default=2000, help="jets per process and domain")
    parser.add_argument("--steps", type=int, default=300, help="pre-training steps")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--data-tune", default="Tune:pp = 5", help="Pythia line(s) of the 'data' domain, ';'-separated")
    parser.add_argument("--finetune-steps", type=int, default=200, help="minimum steps per fine-tuning run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    processes = args.processes.split(",")
    tune = [s.strip() for s in args.data_tune.split(";") if s.strip()]
    data = _generate(args.out / "data_domain.h5", processes, args.n_jets, 11, True, tune)
    sim = _generate(args.out / "sim_domain.h5", processes, args.n_jets, 12, False, [])
    run = args.out / f"{args.method}-pretrained-on-data"
    if not (run / "teacher.pt").is_file():
        pretrain_small(args.method, data, run, args.steps, args.batch)

    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.evaluate.config import EvaluateConfig
    from jbot_edge.evaluate.pipeline import run_evaluate

    cfg = resolve_config(EvaluateConfig, overrides=[
        "threads=1", "clustering.enabled=false", "probes.enabled=false", "lct.enabled=false",
        "two_sample.enabled=false", "write_score_head=false", "compare=[mahalanobis]", "metrics.n_resamples=2",
        f"finetune.signal_labels=[{args.signal}]", "finetune.label_fractions=[0.01,0.1,1.0]",
        f"finetune.min_steps={args.finetune_steps}"], default_file=packaged_config("evaluate/default.yaml"))
    report = run_evaluate(cfg, run, sim, args.out / "evaluate-on-sim")
    table = [{"label_fraction": r["label_fraction"], "n_train": r["finetune"]["n_train"],
              "finetune_auc": round(r["finetune"]["auc_macro_ovr"], 4), "scratch_auc": round(r["scratch"]["auc_macro_ovr"], 4),
              "finetune_accuracy": round(r["finetune"]["accuracy"], 4),
              "scratch_accuracy": round(r["scratch"]["accuracy"], 4)} for r in report["finetune"]["runs"]]
    result = {"settings": {"method": args.method, "processes": processes, "signal": args.signal,
                           "n_jets_per_process": args.n_jets, "pretrain_steps": args.steps,
                           "data_domain": {"mpi": True, "pythia": tune}, "sim_domain": {"mpi": False, "pythia": []},
                           "finetune_min_steps": args.finetune_steps, "classes": report["finetune"]["classes"]},
              "table": table}
    write_result(result, args.json)


if __name__ == "__main__":
    main()

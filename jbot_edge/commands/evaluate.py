"""``jbot-edge evaluate --run RUN_DIR --data FILE.h5``: anomaly scores, metrics, trigger view, clustering, probes and
fine-tuning of a pre-trained teacher; writes EVAL_DIR/evaluate.json + PNGs and RUN_DIR/score_head.{npz,json}.

Output schemas: :mod:`jbot_edge.evaluate.pipeline` (evaluate.json) and :mod:`jbot_edge.evaluate.score_head`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from jbot_edge.commands import label_list


def register(app: typer.Typer) -> None:
    @app.command("evaluate", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
    def evaluate(
        ctx: typer.Context,
        run: Path = typer.Option(..., "--run", help="Pretraining run directory (holds teacher.pt)."),
        data: Path = typer.Option(..., "--data", help="Canonical jet file (HDF5) with background and signal jets; "
                                  "the bank comes from its 'train' split, the scored jets from its 'test' split."),
        bank_data: Path = typer.Option(None, "--bank-data", help="Another jet file to draw the background bank from "
                                       "(then all jets of each file are used unless data.bank_split/eval_split say "
                                       "otherwise)."),
        background: str = typer.Option(None, "--background", help="Comma-separated background labels (default q,g)."),
        signals: str = typer.Option(None, "--signals", help="Comma-separated signal labels (default: all others)."),
        scorer: str = typer.Option(None, "--scorer",
                                   help=("Score head saved for qat: knn, cosine, mahalanobis (default), gmm, kmeans; "
                                         "recon or kl (VAE teachers: headline score, no score head).")),
        out: Path = typer.Option(None, "--out", help="Evaluation directory (default RUN_DIR/evaluate)."),
        config: Path = typer.Option(None, "--config", help="YAML config (see configs/evaluate/default.yaml)."),
        compare_untrained: bool = typer.Option(
            None, "--compare-untrained/--no-compare-untrained",
            help="Also score with the same encoder untrained (default on: reference.untrained)."),
        force: bool = typer.Option(False, "--force", help="Replace OUT even if it is not a previous output of this "
                                   "command."),
    ) -> None:
        """Evaluate a teacher: every anomaly scorer, trigger view, clustering, probes, LCT, two-sample test,
        fine-tuning vs scratch.

        Extra KEY=VALUE arguments override config keys (e.g. data.bank_size=5000 finetune.enabled=false)."""
        from jbot_edge.config import packaged_config, resolve_config
        from jbot_edge.evaluate.config import EvaluateConfig
        from jbot_edge.evaluate.pipeline import run_evaluate
        from jbot_edge.outputs import check_output_dir

        cfg = resolve_config(
            EvaluateConfig, config_file=config, overrides=list(ctx.args),
            cli_values={"data.background": label_list(background, "--background"),
                        "data.signals": label_list(signals, "--signals"), "scorer": scorer,
                        "reference.untrained": compare_untrained},
            default_file=packaged_config("evaluate/default.yaml"),
        )
        check_output_dir(out if out is not None else run / "evaluate", "evaluate",
                         inputs=[run, data, config, bank_data], force=force)
        report = run_evaluate(cfg, run, data, out, bank_path=bank_data)
        head = report["score_head"]["name"]
        for name, metrics in report["signals"].items():
            typer.echo(f"{name}: AUC {metrics['auc']:.3f}  TPR@FPR=1e-3 {metrics['tpr_at_fpr'].get('1e-3', float('nan')):.3f}"
                       f"  ({head})")

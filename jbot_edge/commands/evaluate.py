"""``jbot-edge evaluate --run RUN_DIR --data FILE.h5``: anomaly scores, metrics, trigger view, clustering, probes and
fine-tuning of a pre-trained teacher; writes EVAL_DIR/evaluate.json + PNGs and RUN_DIR/score_head.{npz,json}.

Output schemas: :mod:`jbot_edge.evaluate.pipeline` (evaluate.json) and :mod:`jbot_edge.evaluate.score_head`.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _label_list(value: str | None, option: str) -> list[str] | None:
    from jbot_edge.errors import JbotEdgeError

    if value is None:
        return None
    labels = [s.strip() for s in value.split(",") if s.strip()]
    if not labels:
        raise JbotEdgeError(f"{option} {value!r}: give comma-separated labels, e.g. q,g")
    return labels


def register(app: typer.Typer) -> None:
    @app.command("evaluate", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
    def evaluate(
        ctx: typer.Context,
        run: Path = typer.Option(..., "--run", help="Pretraining run directory (holds teacher.pt)."),
        data: Path = typer.Option(..., "--data", help="Canonical jet file (HDF5) with background and signal jets."),
        background: str = typer.Option(None, "--background", help="Comma-separated background labels (default q,g)."),
        signals: str = typer.Option(None, "--signals", help="Comma-separated signal labels (default: all others)."),
        scorer: str = typer.Option(None, "--scorer",
                                   help=("Score head saved for qat: knn, cosine, mahalanobis (default), gmm, kmeans; "
                                         "recon or kl (VAE teachers: headline score, no score head).")),
        out: Path = typer.Option(None, "--out", help="Evaluation directory (default RUN_DIR/evaluate)."),
        config: Path = typer.Option(None, "--config", help="YAML config (see configs/evaluate/default.yaml)."),
    ) -> None:
        """Evaluate a teacher: every anomaly scorer, trigger view, clustering, probes, LCT, two-sample test,
        fine-tuning vs scratch.

        Extra KEY=VALUE arguments override config keys (e.g. data.bank_size=5000 finetune.enabled=false)."""
        from jbot_edge.config import packaged_config, resolve_config
        from jbot_edge.evaluate.config import EvaluateConfig
        from jbot_edge.evaluate.pipeline import run_evaluate

        cfg = resolve_config(
            EvaluateConfig, config_file=config, overrides=list(ctx.args),
            cli_values={"data.background": _label_list(background, "--background"),
                        "data.signals": _label_list(signals, "--signals"), "scorer": scorer},
            default_file=packaged_config("evaluate/default.yaml"),
        )
        report = run_evaluate(cfg, run, data, out)
        head = report["score_head"]["name"]
        for name, metrics in report["signals"].items():
            typer.echo(f"{name}: AUC {metrics['auc']:.3f}  TPR@FPR=1e-3 {metrics['tpr_at_fpr'].get('1e-3', float('nan')):.3f}"
                       f"  ({head})")

"""``jbot-edge pretrain``: train a jBOT teacher by self-distillation (GPU when present, CPU otherwise).

Multi-GPU: ``torchrun --nproc-per-node K -m jbot_edge pretrain ...`` (DDP; rank 0 logs and writes).
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("pretrain")
    def pretrain(
        overrides: list[str] = typer.Argument(None, metavar="KEY=VALUE",
                                              help="Config overrides, e.g. optim.batch_size=512 model.dropout=0."),
        data: Path = typer.Option(..., "--data", help="Canonical jet file (HDF5) to train on."),
        out: Path = typer.Option(..., "--out", help="Run directory (teacher.pt, summary.json, checkpoints/)."),
        config: Path = typer.Option(None, "--config", help="YAML config (e.g. configs/pretrain/small.yaml)."),
        train_labels: str = typer.Option(None, "--train-labels", help="Comma-separated labels to train on, e.g. q,g."),
        epochs: float = typer.Option(None, "--epochs", help="Number of epochs (overrides optim.epochs)."),
        max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many steps."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.pt."),
        method: str = typer.Option("jbot", "--method", help=(
            "jbot | jetclr | simclr | vicreg | supcon | vae | oe-vae (baselines: jbot_edge/baselines, same outputs; "
            "one process: refused under torchrun).")),
    ) -> None:
        """Pre-train a jBOT teacher. Extra KEY=VALUE arguments override config keys (e.g. optim.batch_size=512)."""
        from jbot_edge.config import packaged_config, resolve_config
        from jbot_edge.errors import JbotEdgeError
        from jbot_edge.outputs import claim_output_dir
        from jbot_edge.pretrain.train import PretrainConfig, run_pretrain

        labels = None
        if train_labels is not None:
            labels = [s.strip() for s in train_labels.split(",") if s.strip()]
            if not labels:
                raise JbotEdgeError(f"--train-labels {train_labels!r}: the label filter is empty")
        if method != "jbot":
            from jbot_edge.baselines.registry import run_method

            with claim_output_dir(out, "pretrain", inputs=[data, config], resume=resume):
                summary = run_method(method, config, list(overrides or []),
                                     {"data.file": str(data), "data.train_labels": labels, "optim.epochs": epochs,
                                      "optim.max_steps": max_steps}, out, resume=resume)
            typer.echo(f"{out}: {method}, {summary['steps']} steps, {summary['epochs']:.2f} epochs, "
                       f"loss {summary['final'].get('loss', float('nan')):.4f}")
            return
        cfg = resolve_config(
            PretrainConfig,
            config_file=config,
            overrides=list(overrides or []),
            cli_values={"data.file": str(data), "data.train_labels": labels, "optim.epochs": epochs,
                        "optim.max_steps": max_steps},
            default_file=packaged_config("pretrain/default.yaml"),
        )
        with claim_output_dir(out, "pretrain", inputs=[data, config], resume=resume):
            summary = run_pretrain(cfg, out, resume=resume)
        final = summary.get("final", {})
        typer.echo(f"{out}: {summary['steps']} steps, {summary['epochs']:.2f} epochs, "
                   f"loss {final.get('loss', float('nan')):.4f}, {summary['jets_per_s'] or 0:,.0f} jets/s")

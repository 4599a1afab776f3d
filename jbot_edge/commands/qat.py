"""``jbot-edge qat``: distil the teacher's saved anomaly score into a quantization-aware student."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("qat", context_settings={"allow_extra_args": False})
    def qat(
        run: Path = typer.Option(..., "--run", help="Pre-training run directory (teacher.pt + score head)."),
        data: Path = typer.Option(..., "--data", help="Canonical jet file (same preset as the teacher)."),
        student: Optional[str] = typer.Option(None, "--student", help="Student architecture: deepsets or mlp."),
        bits: Optional[int] = typer.Option(None, "--bits", help="Weight and activation bit width."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default RUN_DIR/student-KIND)."),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML config (default configs/qat/default.yaml)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs."),
        resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.pt."),
        force: bool = typer.Option(False, "--force", help="Replace OUT even if it is not a previous output of this "
                                   "command."),
        overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. optim.lr=1e-3"),
    ) -> None:
        """Train a Brevitas student (power-of-two fixed point, L1-precision inputs) on the teacher's score."""
        from jbot_edge.config import packaged_config, resolve_config
        from jbot_edge.errors import JbotEdgeError
        from jbot_edge.logs import get_logger
        from jbot_edge.outputs import claim_output_dir
        from jbot_edge.qat.distill import QatConfig, train_student

        if student is not None and student not in ("deepsets", "mlp"):
            raise JbotEdgeError(f"--student {student!r}: expected 'deepsets' or 'mlp'")
        if bits is not None and not 2 <= bits <= 16:
            raise JbotEdgeError(f"--bits {bits}: expected an integer from 2 to 16")
        cfg = resolve_config(
            QatConfig, config, overrides or [],
            cli_values={"student.kind": student, "student.weight_bits": bits, "student.act_bits": bits,
                        "optim.epochs": epochs},
            default_file=packaged_config("qat/default.yaml"),
        )
        out_dir = out or (run / f"student-{cfg.student.kind}")
        with claim_output_dir(out_dir, "qat", inputs=[run, data, config], force=force, resume=resume):
            report = train_student(cfg, run, data, out_dir, resume=resume)
        log = get_logger("jbot_edge.qat")
        for sig in report["auc_student"]:
            log.info("%s: AUC teacher %.4f student %.4f (ratio %.3f), spearman %.3f", sig,
                     report["auc_teacher"][sig], report["auc_student"][sig], report["auc_ratio"][sig],
                     report["spearman"].get(sig, 0.0))
        typer.echo(str(out_dir / "student.pt"))

"""``jbot-edge sweep``: qat → synth → emulate over a grid of students and firmware settings, one row per design."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep(
        config: Path = typer.Option(..., "--config", help="Sweep YAML (e.g. configs/sweep/default.yaml)."),
        run: Path = typer.Option(..., "--run", help="Teacher run directory (teacher.pt + score head)."),
        data: Path = typer.Option(..., "--data", help="Canonical jet file the students train and are scored on."),
        out: Path = typer.Option(..., "--out", help="Sweep directory (sweep.csv, sweep_summary.json, points/)."),
        overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. qat.optim.epochs=5"),
        force: bool = typer.Option(False, "--force", help="Replace OUT even if it is not a previous output of this "
                                   "command."),
    ) -> None:
        """Train, convert and check every design of the grid; finished points are skipped on a re-run."""
        import sys

        from jbot_edge.config import resolve_config
        from jbot_edge.logs import get_logger
        from jbot_edge.outputs import claim_output_dir, mark_output
        from jbot_edge.sweep import CSV_NAME, SweepConfig, Sweep

        cfg = resolve_config(SweepConfig, config, overrides or [])
        with claim_output_dir(out, "sweep", inputs=[config, run, data], force=force):
            mark_output(out, "sweep")
            summary = Sweep(cfg, run, data, out).run()
        log = get_logger("jbot_edge.sweep")
        log.info("%d/%d points ok, %d failed; Pareto fronts: %s", summary["n_ok"], summary["n_points"],
                 summary["n_failed"], {k: v for k, v in summary["pareto"].items() if "auc" in k})
        typer.echo(str(out / CSV_NAME))
        if summary["n_failed"]:
            typer.echo(f"error: {summary['n_failed']} sweep point(s) failed; see the status column of "
                       f"{out / CSV_NAME}", err=True)
            sys.exit(1)

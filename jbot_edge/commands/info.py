"""``jbot-edge info FILE.h5``: counts per label, features and provenance of a canonical jet file."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info(
        path: Path = typer.Argument(..., help="Canonical jet file (HDF5)."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of text."),
    ) -> None:
        """Show counts per label, stored features and provenance of a jet file."""
        from jbot_edge.data.reader import JetFile

        with JetFile(path) as f:
            summary = {
                "path": str(path),
                "n_jets": f.n_jets,
                "n_particles": f.n_particles,
                "counts": f.counts_per_label(),
                "particle_features": f.particle_features,
                "jet_features": f.jet_features,
                "attrs": f.attrs,
            }
        if as_json:
            typer.echo(json.dumps(summary, indent=2, default=str))
            return
        typer.echo(f"{path}: {summary['n_jets']} jets, {summary['n_particles']} particle slots")
        typer.echo("labels:   " + ", ".join(f"{k}={v}" for k, v in summary["counts"].items()))
        typer.echo("particle: " + ", ".join(summary["particle_features"]))
        typer.echo("jet:      " + ", ".join(summary["jet_features"]))
        for key, value in summary["attrs"].items():
            if key not in ("label_names",):
                typer.echo(f"{key}: {json.dumps(value, default=str) if not isinstance(value, str) else value}")

"""``jbot-edge generate``: Pythia 8 + FastJet jets in the canonical format (see :mod:`jbot_edge.data.generator`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        out: Path = typer.Option(..., "--out", "-o", help="Output jet file (HDF5); FILE.summary.json and "
                                 "FILE.config.yaml are written next to it."),
        preset: str = typer.Option(None, "--preset", help="Defaults to start from: jetnet (R=0.8, 500-1000 GeV, "
                                   "30 particles; the default), l1 (R=0.4, 30-500 GeV, 16 particles) or l1-event "
                                   "(ADC2021-like event object sets: MET, 4 e, 4 mu, 10 jets)."),
        processes: str = typer.Option(None, "--processes", help="Comma-separated classes (label order in "
                                      "the file): q,g,w,z,t,h for jet presets; qcd,w,z,tt,zprime,htautau,h4l for "
                                      "l1-event."),
        n_jets: int = typer.Option(None, "--n-jets", help="Jets per process."),
        seed: int = typer.Option(None, "--seed", help="Master seed; shard seeds are derived from it."),
        workers: int = typer.Option(None, "--workers", help="Worker processes (one Pythia each)."),
        shards: int = typer.Option(None, "--shards", help="Independent Pythia runs per stream (default: workers); "
                                   "fix it to make the output independent of --workers."),
        mpi: bool = typer.Option(None, "--mpi/--no-mpi", help="Multi-parton interactions (on in both presets; "
                                 "off is ~4x faster)."),
        config: Path = typer.Option(None, "--config", help="YAML file overriding the preset's keys."),
        shard: str = typer.Option(None, "--shard", help="K/N: write only piece K (from 0) of N for a batch system; "
                                  "`jbot-edge merge` joins the N pieces into the unsharded run's file. Needs "
                                  "--shards (Pythia runs per stream; same value in every piece)."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
        force: bool = typer.Option(False, "--force", help="Replace OUT even if it is not a previous output of this "
                                   "command."),
        overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. jet_r=0.4 pthat_min=400."),
    ) -> None:
        """Generate labelled jets with Pythia 8 (pp, 13.6 TeV) and FastJet anti-kT."""
        from jbot_edge.config import load_yaml, resolve_config
        from jbot_edge.data.generator import GeneratorConfig, parse_processes, parse_shard, preset_file
        from jbot_edge.data.generator import generate as run
        from jbot_edge.data.generator import output_paths
        from jbot_edge.errors import JbotEdgeError
        from jbot_edge.outputs import claim_output_file, is_jet_file

        if preset is None:
            preset = str(load_yaml(config).get("preset", "jetnet")) if config is not None else "jetnet"
        default_file = preset_file(preset)
        cli_values = {
            "preset": preset,
            "processes": None if processes is None else parse_processes(processes),
            "n_jets": n_jets, "seed": seed, "workers": workers, "shards": shards, "mpi": mpi,
        }
        settings = resolve_config(GeneratorConfig, config, overrides or [], cli_values, default_file=default_file)
        piece = None if shard is None else parse_shard(shard)
        if piece is not None and settings.shards is None:
            raise JbotEdgeError("--shard needs --shards (or shards= in the config): the number of Pythia runs per "
                                "stream fixes the jets, so every piece and the unsharded run must use the same one")
        paths = output_paths(out.resolve())  # resolved: `--out .` must reach the check, not crash naming sidecars
        claim_output_file(out, "generate", owned=is_jet_file, sidecars=[paths["summary"], paths["config"]],
                          inputs=[config], force=force)
        summary = run(settings, out, show_progress=progress, shard=piece)
        typer.echo(json.dumps({"out": summary["out"], "n_jets": summary["n_jets"], "counts": summary["counts"],
                               "wall_time_s": round(summary["wall_time_s"], 3)}))

"""``jbot-edge convert --from FORMAT SRC... --out FILE.h5``: public jet formats → the canonical format.

Next to ``FILE.h5`` it writes ``FILE.summary.json`` (counts per label, sources, timing) and ``FILE.config.yaml``
(the resolved config), the same sidecar names as ``jbot-edge generate``, so several files can share a directory.
"""

from __future__ import annotations

import re
from pathlib import Path
import typer
from pydantic import Field

from jbot_edge.data.format import SplitSettings

#: ``key=value`` items among the positional arguments are config overrides, not source files.
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


class ConvertConfig(SplitSettings):
    """Settings of ``jbot-edge convert`` (defaults in ``configs/data/convert.yaml``)."""

    format: str | None = None
    sources: list[str] = Field(default_factory=list)
    out: str | None = None
    #: none: inferred from file names; one: for all files; else one per file
    labels: list[str] = Field(default_factory=list)
    #: particle slots P; None = the source's own width (30 JetNet, 200 Top Tagging, 128 JetClass, 19 ADC)
    n_particles: int | None = Field(default=None, ge=1, le=512)
    #: read at most this many jets from each source (quick looks at huge files)
    max_jets: int | None = Field(default=None, ge=1)
    #: jets read from a source at a time: bounds memory (~ chunk × source width × features × 8 bytes)
    chunk_size: int = Field(default=4096, ge=1)
    compression: str | None = "gzip"


def sidecar_paths(out: Path) -> tuple[Path, Path]:
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.summary.json"), out.with_name(f"{stem}.config.yaml")


def register(app: typer.Typer) -> None:
    @app.command("convert")
    def convert(
        sources: list[str] = typer.Argument(
            None, metavar="SRC|KEY=VALUE",
            help="Source files (several are merged, e.g. one JetNet file per class), then optional config overrides "
                 "such as n_particles=16."),
        from_format: str | None = typer.Option(
            None, "--from", help="Source format: jetnet, toptagging, jetclass, adc2021 or cms-nanoaod (PFNano AK8 jets)."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Output canonical jet file (.h5)."),
        labels: list[str] | None = typer.Option(
            None, "--label", "-l",
            help="Class name per file (jetnet, adc2021, cms-nanoaod): repeat once per SRC in order, give once for all files, or "
                 "omit to infer from published file names (q.hdf5, g150.hdf5, background_for_training.h5, ...)."),
        n_particles: int | None = typer.Option(
            None, "--n-particles", help="Particle slots P (pT-ordered, truncated or zero-padded). Default: the "
                                        "source's width."),
        max_jets: int | None = typer.Option(None, "--max-jets", help="Read at most N jets per source."),
        config: Path | None = typer.Option(None, "--config", help="YAML config (see configs/data/convert.yaml)."),
        force: bool = typer.Option(False, "--force", help="Replace OUT even if it is not a previous output of this "
                                   "command."),
    ) -> None:
        """Convert JetNet, Top Tagging, JetClass, CMS ADC2021 or CMS NanoAOD (PFNano) files into the canonical
        jet format."""
        import time

        from jbot_edge.atomic import write_json
        from jbot_edge.config import packaged_config, resolve_config, save_config
        from jbot_edge.data.converters import convert_files, get_converter
        from jbot_edge.errors import JbotEdgeError
        from jbot_edge.logs import get_logger, progress_bar
        from jbot_edge.outputs import claim_output_file, is_jet_file

        log = get_logger("jbot_edge.convert")
        items = list(sources or [])
        overrides = [s for s in items if _OVERRIDE.match(s) and not Path(s).exists()]
        files = [s for s in items if s not in overrides]
        cfg = resolve_config(
            ConvertConfig, config_file=config, overrides=overrides,
            default_file=packaged_config("data/convert.yaml"),
            cli_values={"format": from_format, "sources": files or None, "out": str(out) if out else None,
                        "labels": labels or None, "n_particles": n_particles, "max_jets": max_jets},
        )
        if cfg.format is None:
            raise JbotEdgeError("--from is required (one of jetnet, toptagging, jetclass, adc2021, cms-nanoaod)")
        converter = get_converter(cfg.format)
        if cfg.out is None:
            raise JbotEdgeError("--out FILE.h5 is required")
        if not cfg.sources:
            raise JbotEdgeError("convert: give at least one SRC file")
        if cfg.compression not in (None, "gzip", "lzf"):
            raise JbotEdgeError(f"config key 'compression': {cfg.compression!r}, expected gzip, lzf or null")
        out_path = Path(cfg.out)
        summary_path, config_path = sidecar_paths(out_path.resolve() if not out_path.name else out_path)
        claim_output_file(out_path, "convert", owned=is_jet_file, sidecars=[summary_path, config_path],
                          inputs=[*cfg.sources, config], force=force)

        started = time.perf_counter()
        # The bar starts with the first written chunk: a source rejected during the up-front checks then
        # produces only its one error line.
        progress = progress_bar()
        task = progress.add_task(f"convert {converter.name}", total=None)

        def advance(n: int, total: int) -> None:
            if not progress.live.is_started:
                progress.start()
            progress.update(task, advance=n, total=total)

        try:
            summary = convert_files(
                cfg.format, cfg.sources, out_path, labels=cfg.labels, n_particles=cfg.n_particles,
                chunk_size=cfg.chunk_size, max_jets=cfg.max_jets, compression=cfg.compression,
                options=cfg.model_dump(mode="json"), on_progress=advance, split_spec=cfg.split_spec(),
            )
        finally:
            if progress.live.is_started:
                progress.stop()
        elapsed = time.perf_counter() - started
        summary["seconds"] = round(elapsed, 3)
        summary["jets_per_second"] = round(summary["n_jets"] / elapsed, 1) if elapsed > 0 else None
        summary["config"] = str(config_path)
        write_json(summary_path, summary)
        save_config(cfg, config_path)
        log.info("wrote %s: %d jets × %d slots (%s) in %.1f s", out_path, summary["n_jets"], summary["n_particles"],
                 ", ".join(f"{k}={v}" for k, v in summary["counts"].items()), elapsed)
        log.info("summary %s, config %s", summary_path, config_path)

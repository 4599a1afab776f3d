"""``jbot-edge merge``: join `generate --shard K/N` pieces (or any canonical jet files) into one file."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("merge")
    def merge(
        inputs: list[Path] = typer.Argument(..., help="Canonical jet files: all N pieces of one `generate --shard "
                                            "K/N` run (any order), or files to concatenate in the order given."),
        out: Path = typer.Option(..., "--out", "-o", help="Merged jet file (HDF5)."),
    ) -> None:
        """Pieces of a sharded generate → the file the unsharded run writes; other files → their concatenation
        with every per-jet dataset carried over."""
        from jbot_edge.data.merge import merge_files

        typer.echo(json.dumps(merge_files(inputs, out)))

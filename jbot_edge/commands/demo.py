"""``jbot-edge demo``: generate → pretrain → evaluate → qat → synth → emulate with small defaults.

The stages are the exact CLI commands a user would type, listed in ``configs/demo.yaml`` (data described by config,
not code), run in this process one after the other. Each stage names the file that proves it finished; finished
stages are skipped, so an interrupted demo resumes. ``demo_summary.json`` records each stage's status, time and
command, plus the headline numbers read back from the stages' own JSON summaries.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any, Optional

import typer


def _headline(out: Path) -> dict[str, Any]:
    """Key figures from the stage summaries (whatever exists)."""
    figures: dict[str, Any] = {}

    def read(rel: str) -> dict[str, Any] | None:
        path = out / rel
        return json.loads(path.read_text()) if path.is_file() else None

    if (qat := read("student/qat_report.json")) is not None:
        figures["qat"] = {k: qat[k] for k in ("auc_teacher", "auc_student", "spearman", "goals")}
        figures["qat"]["student"] = {k: qat["student"][k] for k in ("kind", "parameters", "bops")}
    if (synth := read("firmware/synth_report.json")) is not None:
        figures["synth"] = {k: synth.get(k) for k in ("board", "latency_ns", "latency_cycles", "ii", "budget")}
    if (emu := read("firmware/emulate.json")) is not None:
        figures["emulate"] = {k: emu.get(k) for k in ("n", "exact", "all_exact")}
    return figures


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", help="Demo directory."),
        config: Optional[Path] = typer.Option(None, "--config", help="Stage list (default configs/demo.yaml)."),
        fresh: bool = typer.Option(False, "--fresh", help="Re-run every stage even if its output exists."),
        force: bool = typer.Option(False, "--force", help="Replace OUT even if it is not a previous output of this "
                                   "command."),
    ) -> None:
        """Run the whole chain end to end on a small embedded default."""
        import yaml

        from jbot_edge.atomic import write_json
        from jbot_edge.cli import app as root_app
        from jbot_edge.config import CONFIG_DIR, load_yaml, packaged_config
        from jbot_edge.errors import JbotEdgeError
        from jbot_edge.logs import get_logger
        from jbot_edge.outputs import check_output_dir, mark_output

        log = get_logger("jbot_edge.demo")
        spec = load_yaml(config or packaged_config("demo.yaml"))
        stages = spec.get("stages")
        if not isinstance(stages, list) or not stages:
            raise JbotEdgeError(f"{config or 'configs/demo.yaml'}: key 'stages' must be a non-empty list")
        check_output_dir(out, "demo", inputs=[config], force=force)
        mark_output(out, "demo")
        summary: dict[str, Any] = {"out": str(out), "stages": []}
        for stage in stages:
            try:
                name, done, argv = stage["name"], stage["done"], stage["argv"]
            except (KeyError, TypeError):
                raise JbotEdgeError(f"demo stage {stage!r} needs keys name, done, argv") from None
            argv = [str(a).format(out=out, configs=CONFIG_DIR) for a in argv]
            record = {"name": name, "command": "jbot-edge " + shlex.join(argv)}
            if (out / done).exists() and not fresh:
                log.info("[demo] %s: done already (%s)", name, out / done)
                summary["stages"].append({**record, "status": "skipped (output exists)"})
                continue
            log.info("[demo] %s: %s", name, record["command"])
            t0 = time.perf_counter()
            try:
                root_app(args=argv, prog_name="jbot-edge", standalone_mode=False)
            except SystemExit as exc:  # a stage's own non-zero exit (e.g. emulate mismatch)
                if exc.code not in (0, None):
                    summary["stages"].append({**record, "status": f"failed (exit {exc.code})",
                                              "seconds": time.perf_counter() - t0})
                    write_json(out / "demo_summary.json", summary)
                    raise
            summary["stages"].append({**record, "status": "ran", "seconds": round(time.perf_counter() - t0, 1)})
            write_json(out / "demo_summary.json", summary)
        summary["headline"] = _headline(out)
        write_json(out / "demo_summary.json", summary)
        typer.echo(yaml.safe_dump(summary["headline"], sort_keys=False) if summary["headline"] else "done")
        typer.echo(f"demo summary: {out / 'demo_summary.json'}")

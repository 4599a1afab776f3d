"""``jbot-edge synth``: a trained student → QONNX → hls4ml project, C simulation and ``synth_report.json``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        student: Path = typer.Option(..., "--student", help="Student directory (student.pt from `jbot-edge qat`)."),
        board: str = typer.Option("vu13p", "--board", help="Board name from configs/boards/ or a board YAML file."),
        backend: str = typer.Option("hls4ml", "--backend", help="Firmware flow: hls4ml (HLS project + C "
                                    "simulation) or rtl (vendor-free Verilog through da4ml, Verilator, Yosys)."),
        hls_backend: str | None = typer.Option(None, "--hls-backend", help="hls4ml backend: Vitis (default) "
                                                  "or Vivado."),
        clock_ns: float | None = typer.Option(None, "--clock-ns", help="Clock period (default: the board's)."),
        reuse_factor: int | None = typer.Option(None, "--reuse-factor", help="hls4ml ReuseFactor (default 1)."),
        strategy: str | None = typer.Option(None, "--strategy", help="latency (default) or resource."),
        out: Path | None = typer.Option(None, "--out", help="Firmware directory (default firmware/<student>)."),
        config: Path | None = typer.Option(None, "--config", help="YAML config with SynthConfig keys."),
        force: bool = typer.Option(False, "--force", help="Replace OUT even if it is not a previous output of this "
                                   "command."),
        overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. hls.reuse_factor=2"),
    ) -> None:
        """Convert a student to an hls4ml project for BOARD, compile its C simulation and write synth_report.json."""
        from jbot_edge.config import resolve_config
        from jbot_edge.errors import JbotEdgeError
        from jbot_edge.firmware.boards import load_board
        from jbot_edge.firmware.convert import SynthConfig, build_firmware
        from jbot_edge.firmware.reports import summary_lines
        from jbot_edge.logs import get_logger
        from jbot_edge.outputs import check_output_dir

        if backend not in ("hls4ml", "rtl"):
            raise JbotEdgeError(f"--backend {backend!r}: expected 'hls4ml' or 'rtl'")
        if strategy is not None and strategy.lower() not in ("latency", "resource"):
            raise JbotEdgeError(f"--strategy {strategy!r}: expected 'latency' or 'resource'")
        if hls_backend is not None and hls_backend.lower() not in ("vitis", "vivado"):
            raise JbotEdgeError(f"--hls-backend {hls_backend!r}: expected 'Vitis' or 'Vivado'")
        if clock_ns is not None and not clock_ns > 0:
            raise JbotEdgeError(f"--clock-ns {clock_ns}: expected a positive number of nanoseconds")
        board_def = load_board(board)
        cfg = resolve_config(
            SynthConfig, config, overrides or [],
            cli_values={"board": board, "backend": backend, "hls.clock_ns": clock_ns if clock_ns is not None else board_def.clock_ns,
                        "hls.part": board_def.part, "hls.reuse_factor": reuse_factor,
                        "hls.strategy": strategy.lower() if strategy else None,
                        "hls.backend": hls_backend.capitalize() if hls_backend else None},
        )
        student_dir = student if student.is_dir() else student.parent
        out_dir = out or Path("firmware") / student_dir.resolve().name
        check_output_dir(out_dir, "synth", inputs=[student_dir, config], force=force)
        if set('"\\') & set(str(out_dir.resolve())):
            raise JbotEdgeError(f"--out {str(out_dir)[:200]!r}: the firmware path holds a quote or backslash, which the "
                                "C simulation cannot take as its weights directory; choose another name")
        report = build_firmware(student, cfg, out_dir)
        log = get_logger("jbot_edge.synth")
        for line in summary_lines(report):
            log.info(line)
        typer.echo(str(out_dir))

"""AMD/Xilinx vendor tools: find them on PATH and drive an hls4ml project's C and logic synthesis with them.

Nothing here is needed to write, compile or emulate a project; these tools only turn it into latency and resource
figures. Every step logs the tool's output to a file in the project, and a tool that fails becomes a one-line
:class:`~jbot_edge.errors.JbotEdgeError` naming the tool and that log.

Steps and logs (all under the hls4ml project directory):

=====================  ==========================  ===================================================
step                   tool                        log
=====================  ==========================  ===================================================
C sim / C synthesis    ``vitis-run`` (Vitis)       ``build_stdout.log``, ``build_stderr.log`` (hls4ml's)
C sim / C synthesis    ``vivado_hls`` (Vivado)     ``vivado_hls_build.log`` (+ the tool's ``vivado_hls.log``)
logic synthesis        ``vivado``                  ``vivado_synth.log`` -> report ``vivado_synth.rpt``
=====================  ==========================  ===================================================
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import console, get_logger

log = get_logger(__name__)

#: Tools looked for on PATH, in the order they are reported.
VENDOR_TOOLS: tuple[str, ...] = ("vitis-run", "v++", "vitis_hls", "vivado_hls", "vivado")

#: The program hls4ml's build() runs for C simulation / C synthesis, per hls4ml backend.
HLS_TOOL_FOR_BACKEND: dict[str, str] = {"Vitis": "vitis-run", "Vivado": "vivado_hls"}

_VERSION_IN_PATH = re.compile(r"[/\\](20\d\d\.\d)(?:[/\\]|$)")
_VERSION_IN_OUTPUT = re.compile(r"v?(20\d\d\.\d)")


def canonical_backend(backend: str) -> str:
    """``"vitis"`` → ``"Vitis"``; only the two AMD HLS backends have vendor reports we read."""
    for name in HLS_TOOL_FOR_BACKEND:
        if backend.lower() == name.lower():
            return name
    raise JbotEdgeError(
        f"backend {backend!r} has no AMD vendor flow: expected one of {', '.join(HLS_TOOL_FOR_BACKEND)}"
    )


def _tool_version(path: str, probe_timeout_s: float) -> str | None:
    # AMD installs live under .../<Tool>/<YYYY.N>/bin, so the path usually tells the release without
    # starting the tool (vivado takes seconds just to print its version).
    match = _VERSION_IN_PATH.search(os.path.realpath(path))
    if match:
        return match.group(1)
    if probe_timeout_s <= 0:
        return None
    try:
        out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=probe_timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    match = _VERSION_IN_OUTPUT.search(out.stdout + out.stderr)
    return match.group(1) if match else None


def find_vendor_tools(probe_timeout_s: float = 20.0) -> dict[str, dict[str, str | None] | None]:
    """Which vendor tools are on PATH: ``{tool: {"path": ..., "version": "2023.2" | None} | None}``.

    The version comes from the install path or, failing that, from ``TOOL -version`` (``probe_timeout_s`` caps
    that; 0 skips it). A tool that is absent maps to ``None``.
    """
    found: dict[str, dict[str, str | None] | None] = {}
    for tool in VENDOR_TOOLS:
        path = shutil.which(tool)
        found[tool] = None if path is None else {"path": path, "version": _tool_version(path, probe_timeout_s)}
    return found


def missing_tools_note(tools: dict[str, Any]) -> str | None:
    """A plain sentence for synth_report.json when no vendor tool can run, else None."""
    if any(tools.get(t) for t in ("vitis-run", "vivado_hls")):
        return None
    return (
        "no Vivado/Vitis on PATH (looked for " + ", ".join(VENDOR_TOOLS) + "): latency and resources unknown "
        "from vendor tools; use --backend rtl for vendor-free estimates"
    )


def _require_on_path(tool: str, purpose: str) -> None:
    if shutil.which(tool) is None:
        raise JbotEdgeError(
            f"{purpose} needs {tool!r} on PATH and it is not there: source the AMD settings64.sh of a "
            f"Vivado/Vitis install, or use --backend rtl for vendor-free estimates"
        )


def _run_logged(command: list[str], cwd: Path, log_file: Path, tool: str, step: str,
                timeout_s: float | None) -> None:
    log.info("%s: running %s in %s (log: %s)", step, tool, cwd, log_file)
    try:
        with open(log_file, "w") as sink, console.status(f"{tool}: {step} (log: {log_file.name})"):
            completed = subprocess.run(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise JbotEdgeError(f"{tool} ({step}) did not finish within {timeout_s:g} s; see {log_file}") from exc
    except OSError as exc:
        raise JbotEdgeError(f"could not start {tool} ({step}): {exc.strerror}; see {log_file}") from exc
    if completed.returncode != 0:
        raise JbotEdgeError(f"{tool} ({step}) failed with exit status {completed.returncode}; see {log_file}")


def _csynth_report_path(project_dir: Path, project_name: str) -> Path:
    return project_dir / f"{project_name}_prj" / "solution1" / "syn" / "report" / f"{project_name}_csynth.xml"


def _run_hls(hls_model: Any, backend: str, project_dir: Path, csim: bool, synth: bool,
             timeout_s: float | None) -> None:
    tool = HLS_TOOL_FOR_BACKEND[backend]
    step = " + ".join(s for s, on in (("C simulation", csim), ("C synthesis", synth)) if on)
    if backend == "Vitis":
        # hls4ml's own build(): it writes build_opt.tcl, runs vitis-run and checks its exit status.
        stdout_log, stderr_log = project_dir / "build_stdout.log", project_dir / "build_stderr.log"
        log.info("%s: running %s in %s (logs: %s, %s)", step, tool, project_dir, stdout_log.name, stderr_log.name)
        try:
            with console.status(f"{tool}: {step} (logs: {stdout_log.name}, {stderr_log.name})"):
                hls_model.build(reset=False, csim=csim, synth=synth, cosim=False, validation=False, export=False,
                                vsynth=False, fifo_opt=False, log_to_stdout=False)
        except Exception as exc:  # hls4ml raises a bare Exception when the build fails
            if "Build failed" not in str(exc):
                raise
            raise JbotEdgeError(f"{tool} ({step}) failed; see {stdout_log} and {stderr_log}") from exc
    else:
        # hls4ml 1.3.0's VivadoBackend.build() runs vivado_hls through os.system and ignores its exit status,
        # so a failed synthesis would look like a successful one; run the same command line ourselves.
        options = f"reset=0 csim={int(csim)} synth={int(synth)} cosim=0 validation=0 export=0 vsynth=0 fifo_opt=0"
        _run_logged([tool, "-f", "build_prj.tcl", options], project_dir, project_dir / "vivado_hls_build.log",
                    tool, step, timeout_s)


def run_vendor_build(hls_model: Any, csim: bool = False, synth: bool = True, vsynth: bool = False,
                     timeout_s: float | None = None) -> dict[str, Any]:
    """Run the vendor flow on a written hls4ml project and return :func:`parse_vendor_reports`'s result.

    ``csim``/``synth`` run C simulation / C synthesis with the backend's HLS tool; ``vsynth`` then runs Vivado
    logic synthesis (``vivado_synth.tcl``, written by hls4ml) as a separate step, so that a Vivado failure is
    reported as Vivado's with its own log and can be rerun without redoing C synthesis. Tools are checked before
    anything starts; a step that fails, times out (``timeout_s`` per step) or leaves no report raises
    :class:`JbotEdgeError` naming the tool and its log.
    """
    from jbot_edge.firmware.reports import parse_vendor_reports

    backend = canonical_backend(hls_model.config.backend.name)
    project_dir = Path(hls_model.config.get_output_dir()).resolve()
    project_name = hls_model.config.get_project_name()
    hls_tool = HLS_TOOL_FOR_BACKEND[backend]
    if csim or synth:
        _require_on_path(hls_tool, f"C {'synthesis' if synth else 'simulation'} with the {backend} backend")
    if vsynth:
        _require_on_path("vivado", "logic synthesis")
    if not (project_dir / "build_prj.tcl").is_file():
        hls_model.write()

    csynth_xml = _csynth_report_path(project_dir, project_name)
    if csim or synth:
        if synth:
            # A stale report from an earlier run must never pass for this run's result.
            csynth_xml.unlink(missing_ok=True)
        if timeout_s is not None and backend == "Vitis":
            log.warning("timeout_s is not enforced for vitis-run: hls4ml's build() has no timeout")
        _run_hls(hls_model, backend, project_dir, csim, synth, timeout_s)
        if synth and not csynth_xml.is_file():
            raise JbotEdgeError(
                f"{hls_tool} (C synthesis) finished but wrote no report {csynth_xml}; see the logs in {project_dir}"
            )

    if vsynth:
        verilog_dir = project_dir / f"{project_name}_prj" / "solution1" / "syn" / "verilog"
        if not verilog_dir.is_dir():
            raise JbotEdgeError(f"logic synthesis needs C synthesis output {verilog_dir}; run C synthesis first")
        utilisation = project_dir / "vivado_synth.rpt"
        utilisation.unlink(missing_ok=True)
        _run_logged(["vivado", "-mode", "batch", "-nojournal", "-nolog", "-source", "vivado_synth.tcl"],
                    project_dir, project_dir / "vivado_synth.log", "vivado", "logic synthesis", timeout_s)
        if not utilisation.is_file():
            raise JbotEdgeError(
                f"vivado (logic synthesis) finished but wrote no {utilisation}; see {project_dir / 'vivado_synth.log'}"
            )

    return parse_vendor_reports(project_dir, backend)

"""The external tools of the vendor-free RTL path: da4ml (Python), Verilator and Yosys (executables).

Each ``require_*`` raises a one-line :class:`~jbot_edge.errors.JbotEdgeError` that says what is missing and the
exact command that installs it; each ``find_*`` returns ``None`` instead, for callers that can do without.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass

from jbot_edge.errors import JbotEdgeError

#: da4ml's Python API and Verilog generator are used directly; this is the version the exactness tests cover.
DA4ML_TESTED_VERSION = "0.6.0"
INSTALL_DA4ML = "pip install 'jbot-edge[rtl]' (or: pip install da4ml==0.6.0)"
INSTALL_VERILATOR = "apt-get update && apt-get install -y verilator (Debian/Ubuntu)"
INSTALL_YOSYS = "apt-get update && apt-get install -y yosys (Debian/Ubuntu)"


@dataclass(frozen=True)
class Tool:
    name: str
    path: str
    version: str

    def describe(self) -> dict[str, str]:
        return {"path": self.path, "version": self.version}


def da4ml_version() -> str | None:
    try:
        import da4ml
    except ImportError:
        return None
    return str(getattr(da4ml, "__version__", "unknown"))


def require_da4ml() -> str:
    """da4ml's version; a clear error when it is missing or not the 0.6 series the translation is written for."""
    version = da4ml_version()
    if version is None:
        raise JbotEdgeError(f"the RTL backend needs the Python package da4ml, which is not installed: {INSTALL_DA4ML}")
    if not version.startswith("0.6."):
        raise JbotEdgeError(f"da4ml {version} is installed, but the RTL backend is written and tested against "
                            f"da4ml {DA4ML_TESTED_VERSION}: pip install da4ml=={DA4ML_TESTED_VERSION}")
    return version


@functools.cache
def _probe(executable: str, version_args: tuple[str, ...]) -> Tool | None:
    path = shutil.which(executable)
    if path is None:
        return None
    try:
        result = subprocess.run([path, *version_args], capture_output=True, text=True, check=False, timeout=30)
        text = (result.stdout or result.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    return Tool(executable, path, match.group(1) if match else "unknown")


def find_verilator() -> Tool | None:
    return _probe("verilator", ("--version",))


def find_yosys() -> Tool | None:
    return _probe("yosys", ("-V",))


def require_verilator() -> Tool:
    tool = find_verilator()
    if tool is None:
        raise JbotEdgeError(f"verilator is not on PATH; it is needed to simulate the RTL: {INSTALL_VERILATOR}")
    return tool


def require_yosys() -> Tool:
    tool = find_yosys()
    if tool is None:
        raise JbotEdgeError(f"yosys is not on PATH; it is needed for the logic-synthesis resource estimate: "
                            f"{INSTALL_YOSYS}")
    return tool


def verilator_root(verilator: Tool) -> str:
    """VERILATOR_ROOT (headers and runtime sources) as the installed verilator reports it."""
    result = subprocess.run([verilator.path, "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True, check=False,
                            timeout=30)
    root = result.stdout.strip()
    if result.returncode != 0 or not root:
        raise JbotEdgeError(f"{verilator.path} --getenv VERILATOR_ROOT gave no directory; reinstall verilator: "
                            f"{INSTALL_VERILATOR}")
    return root

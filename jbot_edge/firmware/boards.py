"""FPGA boards: device part, resource totals, default clock and the level-1 budget a design must meet.

A board is a YAML file in ``configs/boards/`` (``vu13p``, ``vu9p``) or anywhere else (give its path). Schema::

    name: vu13p                         # defaults to the file's stem
    part: xcvu13p-flga2577-2-e          # the part string handed to Vivado / Vitis HLS
    family: virtexuplus
    description: free text
    resources:                          # device totals, in the units synth_report.json uses
      LUT: 1728000                      #   CLB LUTs
      FF: 3456000                       #   CLB registers
      DSP: 12288                        #   DSP48E2 slices
      BRAM: 2688                        #   36 Kb block RAM tiles (a BRAM_18K counts as half a tile)
      URAM: 1280                        #   288 Kb UltraRAM blocks
    clock_ns: 4.167                     # default target clock period (override with --clock-ns)
    budget:
      latency_ns_max: 50.0              # the algorithm's level-1 latency budget
      ii_required: 1                    # initiation interval the trigger needs (1 = a new input every clock)
      resource_fraction_max:            # optional caps as a fraction of the device (0 < f <= 1)
        LUT: 0.02

A board file may start from another with ``inherit: vu13p.yaml`` (resolved next to the file) and change a few keys,
e.g. a tighter budget or a faster clock.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pydantic

from jbot_edge.config import CONFIG_DIR, StrictModel, format_validation_error, load_yaml
from jbot_edge.errors import JbotEdgeError, shorten

BOARDS_DIR = CONFIG_DIR / "boards"

#: Resource kinds, in the order reports list them.
RESOURCE_KINDS: tuple[str, ...] = ("LUT", "FF", "DSP", "BRAM", "URAM")
ResourceKind = Literal["LUT", "FF", "DSP", "BRAM", "URAM"]

#: What one unit of each resource is; written into synth_report.json so the numbers cannot be misread.
RESOURCE_UNITS: dict[str, str] = {
    "LUT": "CLB LUTs",
    "FF": "CLB registers",
    "DSP": "DSP48E2 slices",
    "BRAM": "36 Kb block RAM tiles (BRAM_18K / 2)",
    "URAM": "288 Kb UltraRAM blocks",
}


class BoardResources(StrictModel):
    """Device totals; every count must be positive except URAM (some parts have none)."""

    LUT: int = pydantic.Field(gt=0)
    FF: int = pydantic.Field(gt=0)
    DSP: int = pydantic.Field(gt=0)
    BRAM: int = pydantic.Field(gt=0)
    URAM: int = pydantic.Field(ge=0)

    def total(self, kind: str) -> int:
        return int(getattr(self, kind))


class Budget(StrictModel):
    """The level-1 requirements a design is judged against."""

    latency_ns_max: float = pydantic.Field(50.0, gt=0)
    ii_required: int = pydantic.Field(1, ge=1)
    resource_fraction_max: dict[ResourceKind, float] = pydantic.Field(default_factory=lambda: {"LUT": 0.02})

    @pydantic.field_validator("resource_fraction_max")
    @classmethod
    def _fractions_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, fraction in value.items():
            if not 0.0 < fraction <= 1.0:
                raise ValueError(f"{kind} fraction must be in (0, 1], got {fraction}")
        return value


#: A device part as the vendor tools know it (xcvu13p-flga2577-2-e); it lands in ``set part "..."`` Tcl lines, where
#: brackets or dollars would run commands.
PART_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Board(StrictModel):
    name: str
    part: str = pydantic.Field(min_length=1, pattern=PART_NAME)
    family: str = ""
    description: str = ""
    resources: BoardResources
    clock_ns: float = pydantic.Field(gt=0)
    budget: Budget = pydantic.Field(default_factory=Budget)

    @property
    def clock_mhz(self) -> float:
        return 1000.0 / self.clock_ns


def list_boards() -> list[str]:
    """Names of the boards shipped in ``configs/boards/``."""
    return sorted(path.stem for path in BOARDS_DIR.glob("*.yaml"))


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path or "\\" in name_or_path


def load_board(name_or_path: str | Path) -> Board:
    """A shipped board by name (``"vu13p"``) or a board YAML file by path; one-line error for anything else."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        path = Path(name_or_path)
        if not path.is_file():
            raise JbotEdgeError(f"board file {path} does not exist (shipped boards: {', '.join(list_boards())})")
    else:
        path = BOARDS_DIR / f"{text.lower()}.yaml"
        if not re.fullmatch(r"[\w.-]{1,64}", text) or not path.is_file():
            raise JbotEdgeError(
                f"unknown board {shorten(text)}: available boards are {', '.join(list_boards())} "
                f"(or give the path to a board YAML file)"
            )
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    try:
        return Board.model_validate(data)
    except pydantic.ValidationError as exc:
        raise JbotEdgeError(format_validation_error(exc, f"board {path}")) from exc

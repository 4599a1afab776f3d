"""A tiny sweep over the shared ``l1_teacher_run`` (tests/conftest.py), built once per pytest session (fixture
``tiny_sweep``) and used by test_sweep.py and test_notebooks.py: both need the same real artifacts.

Everything is real: the sweep runs ``configs/sweep/tiny.yaml`` (2 points) through the CLI, and the demo-like run
directory links the teacher, the jet file and one point's student and firmware.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from jbot_edge.config import CONFIG_DIR

TINY_SWEEP = CONFIG_DIR / "sweep" / "tiny.yaml"


@dataclass
class TinyArtifacts:
    teacher: Path
    data: Path
    sweep: Path
    sweep_result: subprocess.CompletedProcess[str]
    run: Path  # demo layout: jets.h5, teacher/, student/, firmware/


def build_tiny_artifacts(root: Path, teacher: Path, l1_file: Path, run_cli) -> TinyArtifacts:
    """Sweep ``configs/sweep/tiny.yaml`` over ``teacher`` and lay out a demo-like run directory of one point."""
    sweep = root / "sweep"
    result = run_cli("sweep", "--config", TINY_SWEEP, "--run", teacher, "--data", l1_file, "--out", sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    run = root / "run"
    run.mkdir()
    point = sweep / "points" / "ds8-w4a4-rf1-4.167ns"
    (run / "teacher").symlink_to(teacher)
    (run / "jets.h5").symlink_to(l1_file)
    (run / "student").symlink_to(point / "student")
    (run / "firmware").symlink_to(point / "firmware")
    return TinyArtifacts(teacher, l1_file, sweep, result, run)

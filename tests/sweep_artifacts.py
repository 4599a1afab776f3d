"""A tiny teacher run and a tiny sweep over it, built once per pytest process and shared by test_sweep.py and
test_notebooks.py (both need the same real artifacts; building them twice would double the slowest part).

Everything is real: the teacher is pre-trained by the CLI on the ``l1_file`` fixture's jets and gets a Mahalanobis
score head (as in tests/test_qat.py), the sweep runs ``configs/sweep/tiny.yaml`` (2 points) through the CLI, and the
demo-like run directory links the teacher, the jet file and one point's student and firmware.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jbot_edge.config import CONFIG_DIR, packaged_config

TINY_SWEEP = CONFIG_DIR / "sweep" / "tiny.yaml"


@dataclass
class TinyArtifacts:
    teacher: Path
    data: Path
    sweep: Path
    sweep_result: subprocess.CompletedProcess[str]
    run: Path  # demo layout: jets.h5, teacher/, student/, firmware/


_CACHE: dict[str, TinyArtifacts] = {}


def make_teacher(root: Path, l1_file: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> Path:
    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.score_head import ScoreHead
    from jbot_edge.pretrain.artifact import load_teacher

    run = root / "teacher"
    result = run_cli("pretrain", "--config", packaged_config("pretrain/small.yaml"), "--data", l1_file, "--out", run,
                     "--train-labels", "q,g", "--max-steps", "15", "optim.batch_size=128")
    assert result.returncode == 0, result.stderr
    teacher = load_teacher(run)
    with JetFile(l1_file) as jets:
        background = jets.read(np.flatnonzero(np.isin(jets.labels(), jets.label_indices(["q", "g"]))))
    ScoreHead.fit("mahalanobis", teacher.embed(background), background_labels=["q", "g"]).save(run)
    return run


def tiny_artifacts(tmp_path_factory, l1_file: Path, run_cli) -> TinyArtifacts:
    if "tiny" in _CACHE:
        return _CACHE["tiny"]
    root = tmp_path_factory.mktemp("sweep")
    teacher = make_teacher(root, l1_file, run_cli)
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
    _CACHE["tiny"] = TinyArtifacts(teacher, l1_file, sweep, result, run)
    return _CACHE["tiny"]

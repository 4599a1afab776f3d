"""Shared pytest fixtures: small real Pythia 8 datasets, generated once and cached, and a CLI runner.

The datasets go through the real generator (:func:`jbot_edge.data.generator.generate`) with MPI off (≈4× faster;
everything else as in the presets) and are cached under ``.cache/test-data/<name>-<hash>.h5`` in the repository
(override with ``JBOT_EDGE_TEST_DATA``). The hash covers the generator settings and the source of the modules that
shape the jets, so a change to the generator regenerates the data and a re-run is instant otherwise. A file lock
keeps parallel pytest sessions from generating the same file twice.

Session fixtures (paths to canonical jet files, see ``jbot_edge/data/format.py``):

* ``qcd_jetnet_file`` — q, g × 1500, ``jetnet`` preset (R = 0.8, 500–1000 GeV, 30 particles)
* ``jetnet_file``     — q, g, w, z, t × 300, ``jetnet`` preset
* ``l1_file``         — q, g, w, z, t × 400, ``l1`` preset (R = 0.4, 30–500 GeV, 16 particles, absolute
  ``part_pt``/``part_eta``/``part_phi`` included)
* ``make_generated_file(name, preset, processes, n_jets, **overrides)`` — the same machinery for other settings
* ``run_cli(*args, check=False, timeout=...)`` — runs ``python -m jbot_edge ARGS`` in a subprocess, returns the
  ``subprocess.CompletedProcess`` (text mode, stdout and stderr captured)
* ``l1_teacher_run`` — a briefly pre-trained ``small`` teacher on ``l1_file`` (q+g) with a Mahalanobis score head:
  a real run directory for qat, sweep and report tests (treat it as read-only)
* ``tiny_sweep`` — ``configs/sweep/tiny.yaml`` swept over ``l1_teacher_run`` (see tests/sweep_artifacts.py)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA_DIR = Path(os.environ.get("JBOT_EDGE_TEST_DATA", REPO_ROOT / ".cache" / "test-data"))
#: Sources whose change must invalidate cached test data.
_GENERATOR_SOURCES = ("jbot_edge/data/generator.py", "jbot_edge/data/processes.py", "jbot_edge/data/format.py",
                      "configs/data/jetnet.yaml", "configs/data/l1.yaml")
_FIXTURE_WORKERS = 2


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def generated_file(name: str, preset: str, processes: list[str], n_jets: int, seed: int = 1234,
                   **overrides: Any) -> Path:
    """Path of a cached generated dataset, generating it first if needed (MPI off unless overridden)."""
    from jbot_edge.config import resolve_config
    from jbot_edge.data.generator import GeneratorConfig, generate, preset_file

    values = {"processes": processes, "n_jets": n_jets, "seed": seed, "workers": _FIXTURE_WORKERS, "mpi": False,
              **overrides}
    config = resolve_config(GeneratorConfig, cli_values=values, default_file=preset_file(preset))
    digest = hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    for source in _GENERATOR_SOURCES:
        digest.update((REPO_ROOT / source).read_bytes())
    path = TEST_DATA_DIR / f"{name}-{digest.hexdigest()[:12]}.h5"
    with _locked(TEST_DATA_DIR / f".{path.name}.lock"):
        if not path.is_file():
            generate(config, path, show_progress=False)
    return path


@pytest.fixture(scope="session")
def make_generated_file() -> Callable[..., Path]:
    return generated_file


@pytest.fixture(scope="session")
def qcd_jetnet_file() -> Path:
    return generated_file("qcd_jetnet", "jetnet", ["q", "g"], 1500)


@pytest.fixture(scope="session")
def jetnet_file() -> Path:
    return generated_file("jetnet", "jetnet", ["q", "g", "w", "z", "t"], 300)


@pytest.fixture(scope="session")
def l1_file() -> Path:
    return generated_file("l1", "l1", ["q", "g", "w", "z", "t"], 400)


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real CLI in a subprocess: ``run_cli("info", path)`` → CompletedProcess (never raises on failure)."""

    def run(*args: Any, check: bool = False, timeout: float = 600, cwd: str | Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        return subprocess.run([sys.executable, "-m", "jbot_edge", *map(str, args)], capture_output=True, text=True,
                              check=check, timeout=timeout, cwd=cwd, env=full_env)

    return run


@pytest.fixture(scope="session")
def l1_teacher_run(tmp_path_factory, l1_file, run_cli) -> Path:
    """A real pre-training run (15 steps, CLI) with a Mahalanobis score head fitted on its background jets."""
    import numpy as np

    from jbot_edge.config import packaged_config
    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.score_head import ScoreHead
    from jbot_edge.pretrain.artifact import load_teacher

    run = tmp_path_factory.mktemp("l1-teacher") / "teacher"
    result = run_cli("pretrain", "--config", packaged_config("pretrain/small.yaml"), "--data", l1_file, "--out", run,
                     "--train-labels", "q,g", "--max-steps", "15", "optim.batch_size=128")
    assert result.returncode == 0, result.stderr
    teacher = load_teacher(run)
    with JetFile(l1_file) as jets:
        background = jets.read(np.flatnonzero(np.isin(jets.labels(), jets.label_indices(["q", "g"]))))
    ScoreHead.fit("mahalanobis", teacher.embed(background), background_labels=["q", "g"]).save(run)
    return run


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, l1_teacher_run, l1_file, run_cli):
    from sweep_artifacts import build_tiny_artifacts

    return build_tiny_artifacts(tmp_path_factory.mktemp("sweep"), l1_teacher_run, l1_file, run_cli)

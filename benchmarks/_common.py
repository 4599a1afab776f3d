"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this module is importable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def pretrain_small(method: str, data: Path, out: Path, steps: int, batch: int, labels: list[str] | None = None,
                   extra: list[str] | None = None) -> dict[str, Any]:
    """One pre-training of ``method`` for ``steps`` steps (jBOT: configs/pretrain/small.yaml; baselines: their
    packaged config), single thread, no progress bar."""
    from jbot_edge.baselines.registry import pretrain_method
    from jbot_edge.config import packaged_config

    config = packaged_config("pretrain/small.yaml") if method == "jbot" else None
    overrides = [f"optim.batch_size={batch}", "train.progress=false", "train.num_threads=1", *(extra or [])]
    return pretrain_method(method, config, overrides, {"data.file": str(data), "data.train_labels": labels,
                                                       "optim.max_steps": steps}, out)


def write_result(result: dict[str, Any], path: Path) -> None:
    """Write the benchmark's JSON object to ``path`` and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def git_commit() -> str:
    """The short commit the benchmark ran at, ``+dirty`` when tracked code differs from it (regenerated results, the
    README and its plots do not count)."""
    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ".", ":!benchmarks/results", ":!README.md",
                            ":!docs/*.png"], cwd=root).returncode != 0
    return (head.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def jbot_edge_cli(*args: str, log: Path, env: dict[str, str] | None = None) -> float:
    """Run ``python -m jbot_edge ARGS`` (an argument list, no shell) with its output in ``log``, extra environment
    ``env``; return its wall time; stop the benchmark on failure."""
    root = Path(__file__).resolve().parent.parent
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "jbot_edge", *args], stdout=fh, stderr=subprocess.STDOUT,
                              cwd=root, env={**os.environ, "PYTHONPATH": str(root), **(env or {})})
    if done.returncode != 0:
        sys.exit(f"error: jbot-edge {args[0]} failed (exit {done.returncode}); see {log}")
    return round(time.perf_counter() - t0, 1)

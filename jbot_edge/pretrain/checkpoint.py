"""Resumable training checkpoints ``RUN_DIR/checkpoints/last.pt`` (written atomically, rank 0 only).

Schema (``torch.load(weights_only=True)``-loadable: plain types and tensors only)::

    {
      "format": "jbot-edge.pretrain-checkpoint", "version": 1,
      "step": int,                              # optimiser steps completed
      "position": {"epoch": int, "batch": int}, # next batch of the data stream (see stream.py)
      "model": state_dict,                      # JBOTMetaArch: student, EMA teacher, [CLS]/particle centres
      "optimizer": state_dict,
      "rng": {"torch": ByteTensor, "cuda": [ByteTensor] | None, "numpy": {...}, "python": tuple,
              "augment": ByteTensor},          # augmentation/masking generator (per rank, see below)
      "config": resolved config dict,
      "elapsed_s": float, "jets_seen": int
    }

Under DDP each rank draws augmentations from its own generator seeded with (seed, rank); their states are gathered
to rank 0 and stored as ``rng["augment_per_rank"]`` so every rank resumes exactly.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jbot_edge.atomic import atomic_path
from jbot_edge.errors import JbotEdgeError

CHECKPOINT_FORMAT = "jbot-edge.pretrain-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"


def checkpoint_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST


def capture_rng(augment_states: list[torch.Tensor]) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
        "augment_per_rank": [s.cpu() for s in augment_states],
    }


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    n = rng["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    py = rng["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_checkpoint(run_dir: str | Path, payload: dict[str, Any]) -> Path:
    path = checkpoint_path(run_dir)
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, tmp)
    return path


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise JbotEdgeError(f"--resume: no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # many unpickling error types; the user needs to know the file is unusable
        raise JbotEdgeError(f"--resume: checkpoint {path} cannot be read ({type(exc).__name__})") from exc
    from jbot_edge.artifact_schemas import PretrainCheckpoint, validate_artifact

    validate_artifact(PretrainCheckpoint, payload, path)
    return payload

"""Small real students for the firmware tests: briefly trained on real L1 jets (not distilled from a teacher).

The target is a smooth function of the jet (log of the summed constituent pT plus the pT-weighted spread), so the
weights, biases and learned activation scales are non-trivial and realistic; a few dozen Adam steps suffice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.data.reader import JetFile
from jbot_edge.models.students import StudentConfig, build_student, save_student


def l1_codes(path: Path, n: int | None = None, spec: L1InputSpec | None = None) -> np.ndarray:
    spec = spec or L1InputSpec()
    with JetFile(path) as f:
        batch = f.read(slice(0, n), particle_features=spec.stored_feature_names, jet_features=[])
    return spec.quantize(batch)


def _target(codes: np.ndarray, spec: L1InputSpec) -> torch.Tensor:
    physical = spec.dequantize(codes)
    pt = physical[..., 0]
    spread = (pt * np.hypot(physical[..., 1], physical[..., 2])).sum(1) / np.maximum(pt.sum(1), 1e-3)
    target = np.log1p(pt.sum(1)) + 10 * spread
    return torch.tensor((target - target.mean()) / target.std(), dtype=torch.float32).reshape(-1, 1)


def train_student(kind: str, codes: np.ndarray, steps: int = 60, seed: int = 0, spec: L1InputSpec | None = None,
                  **overrides) -> tuple:
    """(model, cfg, spec) after ``steps`` Adam steps on ``codes`` (made with ``spec``, default L1InputSpec())."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    spec = spec or L1InputSpec()
    cfg = StudentConfig(kind=kind, **overrides)
    model = build_student(cfg, spec)
    x = torch.tensor(spec.to_model_input(codes))
    y = _target(codes, spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(0, len(x), (256,), generator=generator)
        loss = torch.nn.functional.huber_loss(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, cfg, spec


def make_student_dir(directory: Path, kind: str, codes: np.ndarray, spec: L1InputSpec | None = None,
                     **overrides) -> Path:
    model, cfg, spec = train_student(kind, codes, spec=spec, **overrides)
    directory.mkdir(parents=True, exist_ok=True)
    save_student(directory / "student.pt", model, cfg, spec, {"target": "test: log sum pT + spread"})
    return directory


def saturating_variant(student_dir: Path, directory: Path, codes: np.ndarray) -> Path:
    """The student with its output layer (weights and bias) scaled by the smallest ``2**k`` that makes the output
    quantizer saturate at both ends on ``codes``: every pre-quantizer output is multiplied exactly by that power of
    two (power-of-two quantizer scales), so the variant is as exact-representable as the original."""
    from jbot_edge.models.students import load_student, score_codes

    for gain_bits in range(1, 16):
        model, cfg, spec, extra = load_student(student_dir)
        with torch.no_grad():
            model.head.weight *= 2.0 ** gain_bits
            model.head.bias *= 2.0 ** gain_bits
        scores = score_codes(model, torch.from_numpy(spec.to_model_input(codes)))
        top = 2 ** (cfg.output_bits - 1)
        if (scores == top - 1).sum() >= 5 and (scores == -top).sum() >= 5:
            directory.mkdir(parents=True, exist_ok=True)
            save_student(directory / "student.pt", model, cfg, spec,
                         {**extra, "variant": f"output layer x 2**{gain_bits}: saturates at both ends"})
            return directory
    raise AssertionError(f"{student_dir}: no output gain up to 2**15 saturates both ends")

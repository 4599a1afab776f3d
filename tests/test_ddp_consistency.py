"""DDP across two CPU processes (gloo), each on different jets and augmentations: after every step the averaged
gradients, and at the end the student, the EMA teacher and the loss centres, are identical on both ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch


def test_gradients_and_ema_teacher_agree_across_ranks(tmp_path: Path) -> None:
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(worker), str(rank), "2", "29657", str(tmp_path / f"r{rank}.pt")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    r0, r1 = (torch.load(tmp_path / f"r{rank}.pt", weights_only=True) for rank in range(2))
    assert len(r0["grads"]) == 3
    for g0, g1 in zip(r0["grads"], r1["grads"]):
        assert g0.abs().sum() > 0
        torch.testing.assert_close(g0, g1, rtol=0, atol=0)
    for part in ("student", "teacher"):
        for key, value in r0[part].items():
            assert torch.equal(value, r1[part][key]), f"{part}.{key}"
    for c0, c1 in zip(r0["centers"], r1["centers"]):
        assert torch.equal(c0, c1)
    # Not vacuous: the teacher moved away from its initial copy of the student.
    assert any(not torch.equal(r0["teacher"][k], r0["student"][k]) for k in r0["teacher"])

"""The CUDA path, on a GPU only (marker ``gpu``; skipped without CUDA; ``scripts/gpu_check.sh`` runs them):
pre-training on the GPU (bf16 autocast, the whole step on device), DDP over one GPU with NCCL, teacher embeddings
and the fast integer emulator on the GPU agreeing with the CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jbot_edge.config import packaged_config, resolve_config
from jbot_edge.pretrain.artifact import load_teacher
from jbot_edge.pretrain.train import PretrainConfig, run_pretrain

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SMALL = packaged_config("pretrain/small.yaml")
TINY = ["optim.batch_size=256", "train.progress=false", "optim.warmup_epochs=0.5", "train.device=cuda"]


def _config(data: Path, *overrides: str) -> PretrainConfig:
    return resolve_config(PretrainConfig, config_file=SMALL, overrides=[*TINY, *overrides],
                          cli_values={"data.file": str(data)}, default_file=packaged_config("pretrain/default.yaml"))


@pytest.fixture(scope="module")
def gpu_run(qcd_jetnet_file: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu") / "run"
    run_pretrain(_config(qcd_jetnet_file, "optim.max_steps=20", "train.log_every=5"), out)
    return out


def test_pretrain_on_cuda_with_bf16_autocast(gpu_run: Path) -> None:
    summary = json.loads((gpu_run / "summary.json").read_text())
    assert summary["device"].startswith("cuda:") and summary["precision"] == "bf16"
    assert summary["steps"] == 20
    metrics = [json.loads(line) for line in (gpu_run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(m["loss"]) for m in metrics) and [m["step"] for m in metrics] == [5, 10, 15, 20]


def _meta_and_batch(data: Path, n: int = 512, seed: int = 0):
    from jbot_edge.data.preprocessing import InputSpec
    from jbot_edge.pretrain.meta_arch import JBOTMetaArch

    cfg = _config(data)
    device = torch.device("cuda")
    torch.manual_seed(seed)
    meta = JBOTMetaArch(InputSpec(n_particles=30), cfg.model, cfg.loss, cfg.augment, cfg.masking).to(device).train()
    g = torch.Generator(device=device).manual_seed(seed)
    mask = torch.arange(30, device=device)[None] < torch.randint(5, 31, (n, 1), device=device, generator=g)
    x = torch.rand(n, 30, 4, device=device, generator=g) * mask[..., None]
    return meta, x, mask


def test_training_step_has_no_host_sync(qcd_jetnet_file: Path) -> None:
    """Augmentations, masking, both views, loss, backward and the EMA update stay on the GPU: the step runs under
    CUDA's sync debug mode set to raise on any device→host synchronisation."""
    meta, x, mask = _meta_and_batch(qcd_jetnet_file)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for sync_mode in ("default", "error"):  # the first step warms up lazy initialisations
        torch.cuda.set_sync_debug_mode(sync_mode)
        try:
            meta.forward_backward(x, mask, gen, torch.autocast("cuda", dtype=torch.bfloat16))
            meta.update_teacher(0.996)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_ddp_with_one_gpu_nccl(qcd_jetnet_file: Path) -> None:
    """The student wrapped in DDP over an NCCL group of one GPU gives the same gradients as without DDP."""
    import torch.distributed as dist

    dist.init_process_group("nccl", init_method="tcp://127.0.0.1:29641", rank=0, world_size=1)
    try:
        grads = []
        for wrap in (False, True):
            meta, x, mask = _meta_and_batch(qcd_jetnet_file)
            if wrap:
                meta.student_forward = torch.nn.parallel.DistributedDataParallel(meta.student, device_ids=[0])
            gen = torch.Generator(device="cuda").manual_seed(1)
            meta.forward_backward(x, mask, gen, torch.autocast("cuda", dtype=torch.bfloat16))
            grads.append([p.grad.clone() for p in meta.student.parameters() if p.grad is not None])
        assert len(grads[0]) == len(grads[1]) > 0
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b)
    finally:
        dist.destroy_process_group()


def test_embeddings_on_gpu_match_cpu(gpu_run: Path, qcd_jetnet_file: Path) -> None:
    from jbot_edge.data.reader import JetFile

    teacher = load_teacher(gpu_run)
    with JetFile(qcd_jetnet_file) as f:
        batch = f.read(slice(0, 512), particle_features=teacher.input_spec.stored_features(), jet_features=[])
    on_gpu = teacher.to("cuda").embed(batch)
    on_cpu = teacher.to("cpu").embed(batch)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)


def test_fast_emulator_on_gpu_is_bit_exact(l1_file: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from student_factory import l1_codes, train_student

    from jbot_edge.firmware.fast_emulate import FastEmulator
    from jbot_edge.firmware.fuzz import fuzz_codes

    codes = l1_codes(l1_file)
    model, cfg, spec = train_student("deepsets", codes, steps=20)
    fast = FastEmulator.from_model(model, cfg, spec)
    every = np.concatenate([codes, fuzz_codes(spec)[0]])
    np.testing.assert_array_equal(fast.score_codes(every, device="cuda"), fast.score_codes(every))

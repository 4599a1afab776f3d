"""Throughput of one jBOT training step (two augmented views, masking, teacher + student, backward, AdamW, EMA).

Prints one JSON object: for each device (CPU, and CUDA when available) and size preset (small, base): jets/s,
ms/step, peak memory, FLOPs per step (counted with torch.utils.flop_counter) and the achieved fraction of the
device's measured dense matrix-multiply rate (fp32; on CUDA also bf16, the training precision there).

Synthetic jets (JetNet-like: 30 slots, 10–30 real particles) are used so the number measures the training step,
not HDF5 decompression; the data stream prefetches in a background thread during real training.

    python benchmarks/pretrain.py                       # CPU + GPU if present, small + base
    python benchmarks/pretrain.py --devices cuda --batch 8192 --steps 50
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time

import torch

from _common import git_commit
from jbot_edge.config import packaged_config, resolve_config
from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.pretrain.meta_arch import JBOTMetaArch
from jbot_edge.pretrain.train import PretrainConfig, cpu_has_bf16


def synthetic_jets(n: int, p: int, device: torch.device, features: list[str],
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """JetNet-like jets with the named input columns (Δη, Δφ, pT fraction, pT at a 1 TeV jet, mask)."""
    g = torch.Generator().manual_seed(seed)
    n_real = torch.randint(10, p + 1, (n,), generator=g)
    mask = torch.arange(p)[None] < n_real[:, None]
    pt = torch.distributions.Exponential(1.0).sample((n, p)) * mask
    pt = pt / pt.sum(1, keepdim=True)
    columns = {"part_deta": torch.randn(n, p) * 0.2 * mask, "part_dphi": torch.randn(n, p) * 0.2 * mask,
               "part_pt_rel": pt, "part_pt": pt * 1000.0, "mask": mask.float()}
    x = torch.stack([columns[name] for name in features], dim=-1)
    return x.to(device), mask.to(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 1.0) -> float:
    """Sustained dense matmul FLOP/s for an n×n×n product."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            a @ b
        reps += 10
        sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def bench_step(preset: str, device: torch.device, batch: int, steps: int, warmup: int,
               compile_model: bool, bf16: bool | None = None, overrides: tuple[str, ...] = ()) -> dict:
    cfg = resolve_config(PretrainConfig, config_file=packaged_config(f"pretrain/{preset}.yaml"), overrides=overrides,
                         default_file=packaged_config("pretrain/default.yaml"))
    # The step as configured: input columns, outlier exposure and local crops included (jet radius 0.8, JetNet).
    spec = InputSpec(features=cfg.data.features, n_particles=30)
    oe = cfg.outlier_exposure.model_copy(update={"jet_radius": 0.8})
    crops = cfg.local_crops.model_copy(update={"jet_radius": 0.8})
    meta = JBOTMetaArch(spec, cfg.model, cfg.loss, cfg.augment, cfg.masking, oe, crops).to(device).train()
    if compile_model:
        meta.student_forward = torch.compile(meta.student)
        meta.teacher = torch.compile(meta.teacher)
    opt = torch.optim.AdamW(meta.param_groups(1e-4), lr=1e-3, fused=device.type == "cuda")
    params = list(meta.student.parameters())
    gen = torch.Generator(device=device).manual_seed(0)
    x, m = synthetic_jets(batch, 30, device, cfg.data.features)
    bf16 = device.type == "cuda" if bf16 is None else bf16
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        meta.forward_backward(x, m, gen, autocast())
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        meta.update_teacher(0.996)

    for _ in range(warmup):
        step()
    sync()
    flops = None
    if not compile_model:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    out = {"preset": preset, "batch": batch, "steps": steps, "ms_per_step": dt * 1e3, "jets_per_s": batch / dt,
           "flops_per_step": flops, "achieved_flops": None if flops is None else flops / dt,
           "backbone_params": sum(p.numel() for p in meta.student.backbone.parameters()),
           "precision": "bf16-autocast" if bf16 else "fp32", "compiled": compile_model}
    if device.type == "cuda":
        out["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        out["peak_rss_mb_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", default="auto", help="auto | cpu | cuda | cpu,cuda")
    ap.add_argument("--presets", default="small,base")
    ap.add_argument("--batch", type=int, default=None, help="default: 512 on CPU, 8192 on CUDA")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 5 CPU, 50 CUDA)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    ap.add_argument("--cpu-bf16", action="store_true", help="also time bf16 autocast on the CPU (only where the "
                    "CPU has AVX-512 BF16 / AMX; recorded as unsupported otherwise)")
    ap.add_argument("overrides", nargs="*", help="config overrides KEY=VALUE, as `jbot-edge pretrain` takes them "
                    "(e.g. local_crops.n_crops=2)")
    args = ap.parse_args()
    overrides = tuple(args.overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.devices == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = args.devices.split(",")
    import os

    report: dict = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "overrides": list(overrides),
                    "results": [],
                    "cpu_bf16_supported": cpu_has_bf16()}
    for name in devices:
        device = torch.device(name)
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
            report["gpu"] = torch.cuda.get_device_name(device)
        peak32 = matmul_rate(device, torch.float32, 8192 if cuda else 1024)
        peaks = {"fp32": peak32}
        if cuda:
            peaks["bf16"] = matmul_rate(device, torch.bfloat16, 8192)
        report[f"{name}_matmul_flops"] = peaks
        batch = args.batch or (8192 if cuda else 512)
        steps = args.steps or (50 if cuda else 5)
        warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
        for preset in args.presets.split(","):
            for compiled in ([False, True] if args.compile else [False]):
                r = bench_step(preset, device, batch, steps, warmup, compiled, overrides=overrides)
                r["device"] = name
                if r["achieved_flops"] is not None:
                    r["fraction_of_fp32_matmul"] = r["achieved_flops"] / peak32
                    if cuda:
                        r["fraction_of_bf16_matmul"] = r["achieved_flops"] / peaks["bf16"]
                report["results"].append(r)
            if device.type == "cpu" and args.cpu_bf16 and report["cpu_bf16_supported"]:
                r = bench_step(preset, device, batch, steps, warmup, False, bf16=True, overrides=overrides)
                r.update(device=name, fraction_of_fp32_matmul=r["achieved_flops"] / peak32)
                report["results"].append(r)
    # The machine may be shared: the load says how much of it the timings had.
    report["load_average"] = os.getloadavg()
    report["commit"] = git_commit()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

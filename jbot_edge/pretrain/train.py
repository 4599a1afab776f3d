"""The jBOT pre-training loop: config, data stream, optimiser, schedules, logging, checkpoints, artifact.

Outputs in ``RUN_DIR`` (rank 0 only)::

    config.yaml          resolved configuration
    metrics.jsonl        one JSON object per logging interval: step, epoch, lr, teacher momentum, losses, val_loss
                         (same loss on up to data.val_jets jets of the file's val split, fixed views, no update),
                         entropies (teacher, teacher marginal, student, particle), centre norms, grad norm, jets/s
    checkpoints/last.pt  resumable state (see checkpoint.py), every ``train.checkpoint_every`` steps and at the end
    teacher.pt           the frozen EMA-teacher backbone (see artifact.py)
    summary.json         steps, epochs, final losses and entropies, jets/s, collapse flags, device, data file,
                         jets per label used for training
    tensorboard/         event files, when the ``tensorboard`` package is importable
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from jbot_edge.atomic import write_json, write_text
from jbot_edge.outputs import mark_output
from jbot_edge.config import StrictModel, config_to_dict, save_config
from jbot_edge.data.preprocessing import JBOT_FEATURES, InputSpec
from jbot_edge.data.provenance import jet_radius
from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import get_logger, progress_bar
from jbot_edge.models.transformer import ModelConfig, model_config_dict
from jbot_edge.pretrain import distributed
from jbot_edge.pretrain.artifact import TEACHER_FILE, save_teacher, teacher_payload
from jbot_edge.pretrain.augmentations import AugmentationConfig
from jbot_edge.pretrain.local_crops import LocalCropsConfig
from jbot_edge.pretrain.loss import OutlierExposureLossConfig
from jbot_edge.pretrain.checkpoint import capture_rng, checkpoint_path, load_checkpoint, restore_rng, save_checkpoint
from jbot_edge.pretrain.meta_arch import (
    JBOTMetaArch,
    LossConfig,
    MaskingConfig,
    effective_momentum_start,
    teacher_momentum,
    with_input_features,
)
from jbot_edge.pretrain.stream import JetStream, StreamPosition

log = get_logger(__name__)


class DataConfig(StrictModel):
    file: str | None = Field(default=None, description="canonical jet file (set by --data)")
    train_labels: list[str] | None = Field(default=None, description="train only on these labels (e.g. [q, g])")
    features: list[str] = Field(default_factory=lambda: list(JBOT_FEATURES))
    n_particles: int | None = Field(default=None, ge=2, description="leading particles used; default: the file's")
    block_jets: int = Field(default=4096, ge=1)
    shuffle_buffer_jets: int = Field(default=65536, ge=1)
    norm_fit_jets: int = Field(default=50_000, ge=1, description=(
        "training jets (spread over the file, label filter applied) used to fit model.input_norm"))
    train_splits: list[Literal["train", "val", "test"]] = Field(
        default_factory=lambda: ["train"], min_length=1,
        description="held-out splits of the file (its /split) to learn on; evaluate scores 'test'")
    val_jets: int = Field(default=2048, ge=0, description=(
        "jets of the 'val' split (label filter applied) whose loss is logged as val_loss; 0 = none"))


class OptimConfig(StrictModel):
    batch_size: int = Field(default=1024, ge=2, le=1 << 20, description="global batch (summed over processes)")
    base_lr: float = Field(default=5e-4, gt=0.0, le=10.0, description="lr = base_lr · batch_size / 256")
    weight_decay: float = Field(default=1e-4, ge=0.0)
    epochs: float = Field(default=80, gt=0.0, le=1e5)
    max_steps: int | None = Field(default=None, ge=1, description="stop after this many steps (caps epochs)")
    warmup_epochs: float = Field(default=10, ge=0.0, le=1e5)
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0, description="cosine floor as a fraction of lr")
    clip_grad: float = Field(default=3.0, ge=0.0, description="max gradient norm; 0 disables clipping")


class TrainConfig(StrictModel):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(default="auto", description=(
        "bf16 autocast: auto = on CUDA only; bf16 = on CUDA and on CPU (fast where the CPU has AVX-512 BF16 / AMX)"))
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads")
    log_every: int = Field(default=50, ge=1)
    checkpoint_every: int = Field(default=1000, ge=1)
    progress: bool = True
    stop_at_step: int | None = Field(default=None, ge=1, description=(
        "end this invocation after this step without changing the schedules (for wall-time-limited jobs; "
        "continue with --resume)"))


class PretrainConfig(StrictModel):
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentationConfig = Field(default_factory=AugmentationConfig)
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    outlier_exposure: OutlierExposureLossConfig = Field(default_factory=OutlierExposureLossConfig)
    local_crops: LocalCropsConfig = Field(default_factory=LocalCropsConfig)


#: Settings that may change between a run and its resumption (the rest must match the checkpoint).
RESUMABLE_CHANGES = {"optim.epochs", "optim.max_steps", "train.log_every", "train.checkpoint_every",
                     "train.progress", "train.num_threads", "train.stop_at_step"}
#: Collapse thresholds, as fractions of log K (K = projection dimension).
UNIFORM_COLLAPSE = 0.95
DOMINANT_COLLAPSE = 0.10


def step_schedule(oc: OptimConfig, steps_per_epoch: int) -> tuple[int, int, bool]:
    """``(total_steps, warmup_steps, warmup_clipped)``: epochs → steps, capped by ``max_steps``; a warm-up that would
    span the whole run is cut to a tenth of it (``warmup_clipped``)."""
    total_steps = max(1, int(round(oc.epochs * steps_per_epoch)))
    if oc.max_steps is not None:
        total_steps = min(total_steps, oc.max_steps)
    warmup = int(round(oc.warmup_epochs * steps_per_epoch))
    if warmup >= total_steps:
        return total_steps, total_steps // 10, True
    return total_steps, warmup, False


def learning_rate(step: int, total: int, warmup: int, peak: float, schedule: str, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return peak
    progress = (step - warmup) / max(total - warmup, 1)
    floor = peak * min_ratio
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def collapse_flags(metrics: dict[str, float], proj_dim: int) -> list[str]:
    """'uniform': teacher outputs ~ uniform (entropy → log K); 'dominant': all jets on one dimension."""
    log_k = math.log(proj_dim)
    flags = []
    if metrics["teacher_entropy"] >= UNIFORM_COLLAPSE * log_k:
        flags.append("uniform")
    if metrics["teacher_marginal_entropy"] <= DOMINANT_COLLAPSE * log_k:
        flags.append("dominant")
    return flags


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def check_resume_config(saved: dict[str, Any], current: dict[str, Any]) -> None:
    a, b = _flatten(saved), _flatten(current)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        k = changed[0]
        raise JbotEdgeError(f"--resume: config key '{k}' is {b.get(k)!r} but the checkpoint was trained with "
                            f"{a.get(k)!r} (only {sorted(RESUMABLE_CHANGES)} may change)")


def select_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise JbotEdgeError("train.device=cuda but no CUDA device is available")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", distributed.local_rank())


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX-BF16 in /proc/cpuinfo: only then is bf16 autocast on the CPU faster than fp32."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16_autocast(precision: str, device: torch.device) -> bool:
    """``train.precision``: bf16 → always; fp32 → never; auto → on CUDA only."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _seed_everything(seed: int, rank: int) -> None:
    torch.manual_seed(seed * 1000 + rank)
    np.random.seed((seed * 1000 + rank) % 2**32)
    random.seed(seed * 1000 + rank)


def prepare_data(config: PretrainConfig) -> tuple[InputSpec, str | None, dict[str, Any]]:
    """Validate the file against the config: features, particle count, label filter. Returns spec, preset, info."""
    if config.data.file is None:
        raise JbotEdgeError("--data: a training file is required")
    path = Path(config.data.file)
    with JetFile(path) as f:
        n_particles = config.data.n_particles or f.n_particles
        try:
            spec = InputSpec(features=list(config.data.features), n_particles=n_particles)
        except Exception as exc:  # pydantic ValidationError: report the config key, not a traceback
            raise JbotEdgeError(f"data.features / data.n_particles: {str(exc).splitlines()[-1].strip()}") from exc
        spec.check_file(f)
        if config.data.train_labels is not None:
            f.label_indices(config.data.train_labels, "--train-labels")
        preset = f.provenance.get("preset")
        info = {"file": str(path.resolve()), "n_jets_file": f.n_jets, "counts_file": f.counts_per_label(),
                "train_splits": list(config.data.train_splits), "split": f.split_summary(),
                "jet_r": jet_radius(f.provenance)[0]}
    return spec, preset, info


def fit_model_input_norm(config: PretrainConfig, spec: InputSpec) -> ModelConfig:
    """The model config with ``input_norm_stats`` fitted on the training data (unchanged when already set or off).

    Reads ``data.norm_fit_jets`` jets in 8 slices spread over the file (cheap on huge files, representative when
    the file is ordered by label), keeps those passing the label filter in the training split(s), and fits on their
    unaugmented inputs.
    Deterministic, so every DDP rank and every resumption gets the same numbers.
    """
    from jbot_edge.data.preprocessing import build_inputs
    from jbot_edge.models.input_norm import fit_input_norm

    model = config.model
    if model.input_norm == "none" or model.input_norm_stats is not None:
        return model
    with JetFile(config.data.file) as f:
        n = f.n_jets
        keep = f.selection(config.data.train_labels, config.data.train_splits, "--train-labels")
        n_slices = 8
        per_slice = max(1, -(-min(config.data.norm_fit_jets, n) // n_slices))
        starts = np.unique(np.linspace(0, max(n - per_slice, 0), n_slices).astype(int))
        xs, masks = [], []
        for lo in starts:
            hi = int(min(lo + per_slice, n))
            batch = f.read(slice(int(lo), hi)).select(np.flatnonzero(keep[int(lo):hi]))
            x, m = build_inputs(batch, spec)
            xs.append(x)
            masks.append(m)
    try:
        stats = fit_input_norm(np.concatenate(xs), np.concatenate(masks), spec.features)
    except ValueError as exc:
        raise JbotEdgeError(f"model.input_norm: {exc} (in {config.data.file})") from exc
    return model.model_copy(update={"input_norm_stats": stats})


def validation_inputs(config: PretrainConfig, spec: InputSpec,
                      device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The first ``data.val_jets`` jets of the ``val`` split passing the label filter, as model inputs (or None)."""
    from jbot_edge.data.preprocessing import build_inputs

    if config.data.val_jets == 0 or "val" in config.data.train_splits:
        return None, None
    with JetFile(config.data.file) as f:
        index = np.flatnonzero(f.selection(config.data.train_labels, ["val"], "--train-labels"))
        if len(index) == 0:
            log.warning("%s has no 'val' jets with labels %s: no val_loss is logged", config.data.file,
                        config.data.train_labels)
            return None, None
        x, m = build_inputs(f.read(index[: config.data.val_jets]), spec)
    return torch.from_numpy(x).to(device), torch.from_numpy(m).to(device)


def validation_loss(meta: JBOTMetaArch, x: torch.Tensor, mask: torch.Tensor, seed: int, autocast) -> float:
    """The training loss on held-out jets: same views every time (fixed generator), no gradients, no centre or
    teacher update, dropout off."""
    generator = torch.Generator(device=x.device)
    generator.manual_seed(seed + 0x5EED)
    meta.eval()
    try:
        with torch.no_grad():
            metrics = meta.forward_backward(x, mask, generator, autocast(), update=False)
    finally:
        meta.train()
    return float(metrics["loss"])


def run_pretrain(config: PretrainConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train a jBOT teacher; returns the summary (also written to ``out_dir/summary.json``)."""
    out_dir = Path(out_dir)
    device = select_device(config.train.device)
    distributed.init(device.type)
    rank, world = distributed.get_rank(), distributed.get_world_size()
    main = rank == 0
    try:
        return _run(config, out_dir, resume, device, rank, world, main)
    finally:
        distributed.shutdown()


@dataclass
class _Schedule:
    """The step counts, learning rate and teacher momentum start of the whole run (the same on every rank)."""

    steps_per_epoch: int
    total_steps: int
    warmup: int
    peak_lr: float
    momentum_start: float
    stop_at: int  # the last step of this invocation (train.stop_at_step ends it early without changing the schedules)


@dataclass
class _Run:
    """What the training loop works with: fixed once built, except the model and optimiser updated in place."""

    config: PretrainConfig
    out_dir: Path
    device: torch.device
    rank: int
    world: int
    main: bool
    spec: InputSpec
    preset: str | None
    data_info: dict[str, Any]
    stream: JetStream
    val_x: torch.Tensor | None
    val_m: torch.Tensor | None
    schedule: _Schedule
    model_config: ModelConfig
    meta: JBOTMetaArch
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    use_bf16: bool
    autocast: Callable[[], Any]


@dataclass
class _LoopState:
    """Where training stands: what a checkpoint stores besides the model, optimiser and random states."""

    step: int = 0
    position: StreamPosition = field(default_factory=lambda: StreamPosition(0, 0))
    elapsed: float = 0.0
    jets_seen: int = 0


@dataclass
class _Window:
    """The metrics summed over the steps since the last log line."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    n_steps: int = 0
    start: float = field(default_factory=time.perf_counter)
    jets: int = 0


@dataclass
class _Monitor:
    """The loop's reporting side: the current window, the last logged metrics, the collapse flags raised so far,
    the progress bar and TensorBoard (rank 0 only)."""

    writer: Any
    progress: Any = None
    task: Any = None
    window: _Window = field(default_factory=_Window)
    last: dict[str, float] = field(default_factory=dict)
    flags_seen: set[str] = field(default_factory=set)


def _run(config: PretrainConfig, out_dir: Path, resume: bool, device: torch.device, rank: int, world: int,
         main: bool) -> dict[str, Any]:
    """:func:`run_pretrain` on this process: prepare, resume or start, train, checkpoint, write the teacher."""
    run = _prepare_run(config, out_dir, resume, device, rank, world, main)
    state = _resume_state(run) if resume else _LoopState()
    if main:
        _start_outputs(run, state.step if resume else 0)
    monitor = _train(run, state)
    _save_checkpoint(run, state, final=True)
    summary = _summary(run, state, monitor)
    if main:
        _write_teacher(run, state, monitor.last, summary)
    distributed.barrier()
    return summary


def _check_request(config: PretrainConfig, out_dir: Path, resume: bool,
                   world: int) -> tuple[InputSpec, str | None, dict[str, Any]]:
    """Refuse a bad request before any work; returns the input spec, data preset and data info."""
    oc = config.optim
    if oc.batch_size % world:
        raise JbotEdgeError(f"optim.batch_size={oc.batch_size} must be divisible by the {world} processes")
    spec, preset, data_info = prepare_data(config)
    with_input_features(config.model, spec)  # a pair bias without the columns it reads: an error before any work
    if not resume and (checkpoint_path(out_dir).exists() or (out_dir / TEACHER_FILE).exists()):
        raise JbotEdgeError(f"--out {out_dir} already holds a pretrain run; pass --resume or choose a new directory")
    return spec, preset, data_info


def _prepare_run(config: PretrainConfig, out_dir: Path, resume: bool, device: torch.device, rank: int, world: int,
                 main: bool) -> _Run:
    """Data stream, schedules, model, optimiser and augmentation generator, in the order the random streams
    require."""
    tc, oc = config.train, config.optim
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    spec, preset, data_info = _check_request(config, out_dir, resume, world)
    stream = JetStream(config.data.file, spec, oc.batch_size // world, config.data.train_labels, tc.seed, rank,
                       world, config.data.block_jets, config.data.shuffle_buffer_jets, config.data.train_splits)
    val_x, val_m = validation_inputs(config, spec, device)
    schedule = _make_schedule(config, stream.batches_per_epoch, main)
    model_config, meta = _build_model(config, spec, data_info["jet_r"], device, rank, world)
    optimizer = torch.optim.AdamW(meta.param_groups(oc.weight_decay), lr=schedule.peak_lr, betas=(0.9, 0.999))
    generator = torch.Generator(device=device)
    generator.manual_seed(tc.seed * 1_000_003 + rank)
    use_bf16 = use_bf16_autocast(tc.precision, device)
    if use_bf16 and device.type == "cpu" and not cpu_has_bf16() and main:
        log.warning("train.precision=bf16 on a CPU without AVX-512 BF16 / AMX: emulated, slower than fp32")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    return _Run(config=config, out_dir=out_dir, device=device, rank=rank, world=world, main=main, spec=spec,
                preset=preset, data_info=data_info, stream=stream, val_x=val_x, val_m=val_m, schedule=schedule,
                model_config=model_config, meta=meta, optimizer=optimizer, generator=generator, use_bf16=use_bf16,
                autocast=autocast)


def _make_schedule(config: PretrainConfig, steps_per_epoch: int, main: bool) -> _Schedule:
    """Epochs → steps (warning when the warm-up had to be cut), peak lr and the teacher momentum start."""
    oc = config.optim
    total_steps, warmup, warmup_clipped = step_schedule(oc, steps_per_epoch)
    if warmup_clipped and main:
        log.warning("optim.warmup_epochs=%s spans the whole run; warming up for %d of %d steps instead",
                    oc.warmup_epochs, warmup, total_steps)
    momentum_start = effective_momentum_start(config.loss.teacher_momentum_start, total_steps,
                                              config.loss.teacher_ema_horizon)
    stop_at = total_steps if config.train.stop_at_step is None else min(config.train.stop_at_step, total_steps)
    return _Schedule(steps_per_epoch, total_steps, warmup, oc.base_lr * oc.batch_size / 256, momentum_start, stop_at)


def _build_model(config: PretrainConfig, spec: InputSpec, jet_r: float | None, device: torch.device, rank: int,
                 world: int) -> tuple[ModelConfig, JBOTMetaArch]:
    """The model config (input normalisation fitted) and the student/teacher pair, wrapped for DDP when distributed."""
    tc = config.train
    # Same initial weights on every rank (the teacher is a copy of the student made before DDP's broadcast),
    # then per-rank random streams for dropout.
    model_config = with_input_features(fit_model_input_norm(config, spec), spec)
    torch.manual_seed(tc.seed)
    oe = config.outlier_exposure
    if oe.jet_radius is None:
        oe = oe.model_copy(update={"jet_radius": jet_r})
    crops = config.local_crops
    if crops.jet_radius is None:
        crops = crops.model_copy(update={"jet_radius": jet_r})
    meta = JBOTMetaArch(spec, model_config, config.loss, config.augment, config.masking, oe, crops).to(device)
    _seed_everything(tc.seed, rank)
    if world > 1:
        meta.student_forward = torch.nn.parallel.DistributedDataParallel(
            meta.student, device_ids=[device.index] if device.type == "cuda" else None)
    return model_config, meta


def _resume_state(run: _Run) -> _LoopState:
    """Load ``checkpoints/last.pt`` into the model, optimiser and random streams; returns where training stood."""
    ckpt = load_checkpoint(run.out_dir)
    check_resume_config(ckpt["config"], config_to_dict(run.config))
    if len(ckpt["rng"]["augment_per_rank"]) != run.world:
        raise JbotEdgeError(f"--resume: checkpoint was written by {len(ckpt['rng']['augment_per_rank'])} "
                            f"process(es), this run has {run.world}")
    run.meta.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng(ckpt["rng"])
    run.generator.set_state(ckpt["rng"]["augment_per_rank"][run.rank])
    return _LoopState(step=int(ckpt["step"]),
                      position=StreamPosition(int(ckpt["position"]["epoch"]), int(ckpt["position"]["batch"])),
                      elapsed=float(ckpt.get("elapsed_s", 0.0)), jets_seen=int(ckpt.get("jets_seen", 0)))


def _start_outputs(run: _Run, keep_metrics_until_step: int) -> None:
    """Rank 0: mark the run directory, write the config, (re)start metrics.jsonl and state what will run."""
    config, oc, sched = run.config, run.config.optim, run.schedule
    mark_output(run.out_dir, "pretrain")
    save_config(config, run.out_dir / "config.yaml")
    prepare_metrics_file(run.out_dir / "metrics.jsonl", keep_metrics_until_step)
    log.info("pretrain: %s jets (%s) from %s; %d steps/epoch × batch %d on %s (%d process(es)); "
             "%d steps, lr %.2e, warm-up %d, teacher momentum %.4f → %.4f, input_norm %s",
             f"{run.stream.n_selected:,}", run.stream.counts, config.data.file, sched.steps_per_epoch, oc.batch_size,
             run.device, run.world, sched.total_steps, sched.peak_lr, sched.warmup, sched.momentum_start,
             config.loss.teacher_momentum_end, config.model.input_norm)


def _save_checkpoint(run: _Run, state: _LoopState, final: bool = False) -> None:
    """Every rank contributes its augmentation generator state; rank 0 writes ``checkpoints/last.pt``."""
    states = _gather_generator_states(run.generator)
    if run.main:
        save_checkpoint(run.out_dir, {
            "step": state.step, "position": {"epoch": state.position.epoch, "batch": state.position.batch},
            "model": run.meta.state_dict(), "optimizer": run.optimizer.state_dict(), "rng": capture_rng(states),
            "config": config_to_dict(run.config), "elapsed_s": state.elapsed, "jets_seen": state.jets_seen,
        })
        if final:
            log.info("checkpoint written at step %d", state.step)


def _train(run: _Run, state: _LoopState) -> _Monitor:
    """Train from ``state`` (advanced in place) to the schedule's stop step, logging and checkpointing on the way;
    returns the monitor holding the last logged metrics and the collapse flags seen."""
    tc, sched = run.config.train, run.schedule
    writer = _tensorboard(run.out_dir) if run.main else None
    run.meta.train()
    student_params = run.meta.trainable_parameters()
    monitor = _Monitor(writer=writer)
    _start_progress_bar(run, monitor, state.step)
    try:
        batches = run.stream.batches(state.position, run.device) if state.step < sched.stop_at else iter(())
        for pos, x, m in batches:
            if state.step >= sched.stop_at:
                break
            t0 = time.perf_counter()
            lr, momentum, metrics = _train_step(run, student_params, state.step, x, m)
            state.step += 1
            state.position = (StreamPosition(pos.epoch, pos.batch + 1) if pos.batch + 1 < sched.steps_per_epoch
                              else StreamPosition(pos.epoch + 1, 0))
            state.jets_seen += x.shape[0] * run.world
            _add_to_window(monitor.window, metrics, x.shape[0] * run.world)
            state.elapsed += time.perf_counter() - t0
            if state.step % tc.log_every == 0 or state.step == sched.stop_at:
                _log_window(run, monitor, state.step, lr, momentum)
            if state.step % tc.checkpoint_every == 0 and state.step < sched.stop_at:
                _save_checkpoint(run, state)
    finally:
        if monitor.progress is not None:
            monitor.progress.stop()
        if monitor.writer is not None:
            monitor.writer.close()
    return monitor


def _start_progress_bar(run: _Run, monitor: _Monitor, step: int) -> None:
    if run.main and run.config.train.progress:
        monitor.progress = progress_bar()
        monitor.progress.start()
        monitor.task = monitor.progress.add_task("pretrain", total=run.schedule.total_steps, completed=step, loss=0.0)


def _train_step(run: _Run, student_params: list[torch.nn.Parameter], step: int, x: torch.Tensor,
                m: torch.Tensor) -> tuple[float, float, dict[str, torch.Tensor]]:
    """One optimiser step on the student and one EMA update of the teacher; returns (lr, momentum, metrics)."""
    oc, sched, meta = run.config.optim, run.schedule, run.meta
    lr = learning_rate(step, sched.total_steps, sched.warmup, sched.peak_lr, oc.schedule, oc.min_lr_ratio)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.zero_grad(set_to_none=True)
    metrics = meta.forward_backward(x, m, run.generator, run.autocast())
    if run.world > 1:
        meta.sync_auxiliary_grads()
    if oc.clip_grad > 0:
        metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(student_params, oc.clip_grad)
    run.optimizer.step()
    momentum = teacher_momentum(step, sched.total_steps, sched.momentum_start, run.config.loss.teacher_momentum_end)
    meta.update_teacher(momentum)
    return lr, momentum, metrics


def _add_to_window(window: _Window, metrics: dict[str, torch.Tensor], jets: int) -> None:
    window.jets += jets
    for k, v in metrics.items():
        window.sums[k] = window.sums.get(k, 0) + v.detach().float()
    window.n_steps += 1


def _log_window(run: _Run, monitor: _Monitor, step: int, lr: float, momentum: float) -> None:
    """Average the window over steps and processes, add val_loss, check for NaNs and collapse, log, and start a new
    window."""
    config = run.config
    monitor.last = last = _window_metrics(run, monitor, step, lr, momentum)
    if not all(math.isfinite(v) for v in last.values()):
        raise FloatingPointError(f"non-finite training metrics at step {step}: {last}")
    flags = collapse_flags(last, config.model.proj_dim) if step > 0.1 * run.schedule.total_steps else []
    if run.main:
        _log_metrics(run.out_dir, last, monitor.writer)
        for flag in set(flags) - monitor.flags_seen:
            log.warning("teacher collapse suspected at step %d (%s): teacher entropy %.3f, "
                        "marginal entropy %.3f, log K = %.3f", step, flag, last["teacher_entropy"],
                        last["teacher_marginal_entropy"], math.log(config.model.proj_dim))
    monitor.flags_seen |= set(flags)
    if monitor.progress is not None:
        monitor.progress.update(monitor.task, completed=step, description=(
            f"pretrain loss {last['loss']:.3f} H_t {last['teacher_entropy']:.2f} "
            f"H_s {last['student_entropy']:.2f} {last['jets_per_s']:,.0f} jets/s"))


def _window_metrics(run: _Run, monitor: _Monitor, step: int, lr: float, momentum: float) -> dict[str, float]:
    """The window's metrics averaged over its steps and all processes, plus step, epoch, lr, momentum, jets/s and
    val_loss; resets the window."""
    window = monitor.window
    keys = sorted(window.sums)
    stacked = distributed.all_reduce_mean(torch.stack([window.sums[k] for k in keys]) / window.n_steps)
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    now = time.perf_counter()
    last = {k: float(v) for k, v in zip(keys, stacked.cpu().tolist())}
    last.update(step=step, epoch=step / run.schedule.steps_per_epoch, lr=lr, teacher_momentum=momentum,
                jets_per_s=window.jets / max(now - window.start, 1e-9))
    if run.val_x is not None:
        last["val_loss"] = validation_loss(run.meta, run.val_x, run.val_m, run.config.train.seed, run.autocast)
    monitor.window = _Window(start=now)
    return last


def _summary(run: _Run, state: _LoopState, monitor: _Monitor) -> dict[str, Any]:
    """The summary.json contents (see the module docstring)."""
    config, sched, last, step = run.config, run.schedule, monitor.last, state.step
    model_config = run.model_config
    return {
        "method": "jbot",
        "steps": step,
        "total_steps": sched.total_steps,
        "complete": step >= sched.total_steps,
        "epochs": step / sched.steps_per_epoch,
        "steps_per_epoch": sched.steps_per_epoch,
        "batch_size": config.optim.batch_size,
        "peak_lr": sched.peak_lr,
        "warmup_steps": sched.warmup,
        "teacher_momentum_start": sched.momentum_start,
        "final": {k: v for k, v in last.items() if k not in ("step",)},
        "collapse": {"flags": sorted(monitor.flags_seen),
                     "final": collapse_flags(last, config.model.proj_dim) if last else [],
                     "log_k": math.log(config.model.proj_dim)},
        "jets_per_s": state.jets_seen / state.elapsed if state.elapsed > 0 else None,
        "train_seconds": state.elapsed,
        "jets_seen": state.jets_seen,
        "device": _device_name(run.device),
        "world_size": run.world,
        "precision": "bf16" if run.use_bf16 else "fp32",
        "data": {**run.data_info, "preset": run.preset, "train_labels": config.data.train_labels,
                 "counts_used": run.stream.counts, "n_used": run.stream.n_selected,
                 "n_val": 0 if run.val_x is None else int(run.val_x.shape[0])},
        "input_spec": run.spec.model_dump(mode="json"),
        "input_norm": (model_config.input_norm_stats.model_dump(mode="json")
                       if model_config.input_norm_stats is not None else None),
        "parameters": {"backbone": sum(p.numel() for p in run.meta.student.backbone.parameters()),
                       "head": sum(p.numel() for p in run.meta.student.head.parameters())},
        "artifacts": {"teacher": TEACHER_FILE,
                      "checkpoint": str(checkpoint_path(run.out_dir).relative_to(run.out_dir)),
                      "metrics": "metrics.jsonl", "config": "config.yaml"},
    }


def _write_teacher(run: _Run, state: _LoopState, last: dict[str, float], summary: dict[str, Any]) -> None:
    """Rank 0: teacher.pt (the EMA teacher's backbone) and summary.json."""
    config, step, steps_per_epoch = run.config, state.step, run.schedule.steps_per_epoch
    payload = teacher_payload(
        run.meta.teacher.backbone, model_config_dict(run.model_config, len(run.spec.features)), run.spec,
        data={"preset": run.preset, "file": run.data_info["file"], "train_labels": config.data.train_labels},
        training={"steps": step, "epochs": step / steps_per_epoch, "seed": config.train.seed,
                  "final_loss": last.get("loss")},
        student=run.meta.student.backbone)
    save_teacher(run.out_dir / TEACHER_FILE, payload)
    write_json(run.out_dir / "summary.json", summary)
    log.info("teacher written to %s (%d steps, %.2f epochs, final loss %s)", run.out_dir / TEACHER_FILE, step,
             step / steps_per_epoch, f"{last['loss']:.4f}" if last else "n/a")


def _gather_generator_states(generator: torch.Generator) -> list[torch.Tensor]:
    state = generator.get_state()
    if not distributed.is_enabled():
        return [state]
    states: list[Any] = [None] * distributed.get_world_size()
    torch.distributed.all_gather_object(states, state)
    return states


def prepare_metrics_file(path: Path, keep_until_step: int) -> None:
    """Fresh run: empty file. Resume: drop lines logged after the checkpoint (they will be logged again)."""
    kept = []
    if keep_until_step > 0 and path.exists():
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= keep_until_step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue
    write_text(path, "".join(line + "\n" for line in kept))


def _log_metrics(out_dir: Path, metrics: dict[str, float], writer: Any) -> None:
    with open(out_dir / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(metrics) + "\n")
    if writer is not None:
        for k, v in metrics.items():
            if k != "step":
                writer.add_scalar(f"pretrain/{k}", v, int(metrics["step"]))


def _tensorboard(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"

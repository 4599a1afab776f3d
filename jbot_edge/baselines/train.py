"""Shared training loop of the baseline methods (JetCLR, VAE / OE-VAE, SimCLR / VICReg).

A method (:class:`BaselineMethod`: :mod:`.jetclr`, :mod:`.vae`, :mod:`.contrastive`) owns its config, its trainable
module and its loss; this loop owns everything else and reuses the jBOT infrastructure: the streamed, shuffled
HDF5 batches (:class:`~jbot_edge.pretrain.stream.JetStream`), the input-normalisation fit, the learning-rate
schedule, atomic checkpoints (:mod:`jbot_edge.pretrain.checkpoint`) and the teacher artifact
(:mod:`jbot_edge.pretrain.artifact`). Single process (CPU or one GPU): under torchrun (WORLD_SIZE > 1) it refuses
in one line on every rank before touching the run directory, so there are never two silent trainings.

Outputs in ``RUN_DIR`` — the same layout as jBOT, so ``evaluate``/``qat``/``synth`` work unchanged::

    config.yaml          resolved configuration (with ``method``)
    metrics.jsonl        one JSON object per logging interval: step, epoch, lr, loss and its terms, jets_per_s
    checkpoints/last.pt  resumable state (model, optimiser, RNG, stream position), every
                         ``train.checkpoint_every`` steps and at the end
    teacher.pt           ``method=<name>``; ``load_teacher`` rebuilds the method's encoder (see registry.py)
    summary.json         method, steps, epochs, first/final metrics, objective_decrease, jets/s, data, input spec,
                         parameters, artifacts
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from jbot_edge.atomic import write_json
from jbot_edge.outputs import mark_output
from jbot_edge.config import StrictModel, config_to_dict, save_config
from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.logs import get_logger, progress_bar
from jbot_edge.pretrain.artifact import TEACHER_FILE, save_teacher, teacher_payload
from jbot_edge.pretrain.checkpoint import (capture_rng, checkpoint_path, load_checkpoint, restore_rng,
                                           save_checkpoint)
from jbot_edge.pretrain.distributed import launched_by_torchrun
from jbot_edge.pretrain.stream import JetStream, StreamPosition
from jbot_edge.pretrain.train import (check_resume_config, fit_model_input_norm, learning_rate, prepare_data,
                                      prepare_metrics_file, select_device, step_schedule)

log = get_logger(__name__)

#: Settings that may change between a run and its resumption.

class BaselineMethod:
    """One method: builds its module from (config, input spec), computes the loss of a batch, exports an encoder.

    Subclasses set ``name`` and ``config_cls`` (a StrictModel with ``method, model, optim, data, train`` sections)
    and implement :meth:`build`, :meth:`training_step` and :meth:`export`.
    """

    names: ClassVar[tuple[str, ...]] = ()
    config_cls: ClassVar[type[StrictModel]]
    #: Whether :meth:`training_step` needs the process labels of the batch (supervised contrastive).
    needs_labels: bool = False

    def __init__(self, config: Any, spec: InputSpec, device: torch.device):
        self.config, self.spec, self.device = config, spec, device
        self.module: nn.Module = self.build()

    def build(self) -> nn.Module:
        raise NotImplementedError

    def start(self, step: int) -> None:
        """Called once before training (``step`` = steps already done): open auxiliary streams here."""

    def training_step(self, x: torch.Tensor, mask: torch.Tensor, generator: torch.Generator,
                      labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss (key ``loss``, differentiable) and detached monitoring terms for one batch (``labels``: file label
        ids ``[B]`` when :attr:`needs_labels`, else None)."""
        raise NotImplementedError

    def export(self) -> tuple[nn.Module, dict[str, Any]]:
        """(the encoder ``load_teacher`` will rebuild, its ``model_config`` dictionary)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Release auxiliary resources."""




def run_baseline(method_cls: type[BaselineMethod], config: Any, out_dir: str | Path,
                 resume: bool = False) -> dict[str, Any]:
    """Train one baseline method; returns the summary (also written to ``out_dir/summary.json``)."""
    out_dir = Path(out_dir)
    if launched_by_torchrun():
        raise JbotEdgeError(f"pretrain --method {config.method}: baselines train in one process (DDP is implemented "
                            f"for --method jbot only); run it without torchrun (WORLD_SIZE={os.environ['WORLD_SIZE']})")
    config = config.model_copy(deep=True)  # the fitted input normalisation is written into it below
    tc, oc = config.train, config.optim
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    device = select_device(tc.device)
    spec, preset, data_info = prepare_data(config)
    if not resume and (checkpoint_path(out_dir).exists() or (out_dir / TEACHER_FILE).exists()):
        raise JbotEdgeError(f"--out {out_dir} already holds a pretrain run; pass --resume or choose a new directory")
    stream = JetStream(config.data.file, spec, oc.batch_size, config.data.train_labels, tc.seed, 0, 1,
                       config.data.block_jets, config.data.shuffle_buffer_jets)
    steps_per_epoch = stream.batches_per_epoch
    total_steps, warmup, _ = step_schedule(oc, steps_per_epoch)
    peak_lr = oc.base_lr * oc.batch_size / 256

    config.model = fit_model_input_norm(config, spec)
    torch.manual_seed(tc.seed)
    method = method_cls(config, spec, device)
    method.module.to(device)
    decay = [p for n, p in method.module.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in method.module.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": oc.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=peak_lr)
    generator = torch.Generator(device=device)
    generator.manual_seed(tc.seed * 1_000_003)

    step, elapsed, jets_seen = 0, 0.0, 0
    if resume:
        ckpt = load_checkpoint(out_dir)
        check_resume_config(ckpt["config"], config_to_dict(config))
        method.module.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        restore_rng(ckpt["rng"])
        generator.set_state(ckpt["rng"]["augment_per_rank"][0])
        step = int(ckpt["step"])
        elapsed, jets_seen = float(ckpt.get("elapsed_s", 0.0)), int(ckpt.get("jets_seen", 0))
    mark_output(out_dir, "pretrain")
    save_config(config, out_dir / "config.yaml")
    prepare_metrics_file(out_dir / "metrics.jsonl", step)
    name = config.method
    log.info("pretrain --method %s: %s jets (%s) from %s; %d steps/epoch × batch %d on %s; %d steps, lr %.2e",
             name, f"{stream.n_selected:,}", stream.counts, config.data.file, steps_per_epoch, oc.batch_size,
             device, total_steps, peak_lr)

    def save() -> None:
        save_checkpoint(out_dir, {
            "step": step, "position": {"epoch": step // steps_per_epoch, "batch": step % steps_per_epoch},
            "model": method.module.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": capture_rng([generator.get_state()]), "config": config_to_dict(config),
            "elapsed_s": elapsed, "jets_seen": jets_seen})

    stop_at = min(total_steps, tc.stop_at_step) if tc.stop_at_step else total_steps
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    sums: dict[str, torch.Tensor] = {}
    n_window, window_jets, window_start = 0, 0, time.perf_counter()
    method.start(step)
    method.module.train()
    progress = progress_bar() if tc.progress else None
    task = None
    if progress is not None:
        progress.start()
        task = progress.add_task(f"pretrain {name}", total=total_steps, completed=step)
    batches = stream.batches(StreamPosition(step // steps_per_epoch, step % steps_per_epoch), device)
    try:
        while step < stop_at:
            t0 = time.perf_counter()
            position, x, mask = next(batches)
            labels = (torch.from_numpy(stream.batch_labels(position)).to(device) if method.needs_labels else None)
            lr = learning_rate(step, total_steps, warmup, peak_lr, oc.schedule, oc.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            terms = method.training_step(x, mask, generator, labels)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if oc.clip_grad > 0:
                terms["grad_norm"] = torch.nn.utils.clip_grad_norm_(method.module.parameters(), oc.clip_grad)
            optimizer.step()
            step += 1
            jets_seen += x.shape[0]
            window_jets += x.shape[0]
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v.detach().float()
            n_window += 1
            elapsed += time.perf_counter() - t0
            if step % tc.log_every == 0 or step == stop_at or step == 1:
                now = time.perf_counter()
                last = {k: float(v) / n_window for k, v in sums.items()}
                if not all(math.isfinite(v) for v in last.values()):
                    raise FloatingPointError(f"non-finite {name} training metrics at step {step}: {last}")
                last.update(step=step, epoch=step / steps_per_epoch, lr=lr,
                            jets_per_s=window_jets / max(now - window_start, 1e-9))
                if not first:
                    first = dict(last)
                sums, n_window, window_jets, window_start = {}, 0, 0, now
                with open(out_dir / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps(last) + "\n")
                if progress is not None:
                    progress.update(task, completed=step,
                                    description=f"pretrain {name} loss {last['loss']:.4f} "
                                                f"{last['jets_per_s']:,.0f} jets/s")
            if step % tc.checkpoint_every == 0 and step < stop_at:
                save()
    finally:
        if progress is not None:
            progress.stop()
        method.stop()
    save()

    encoder, model_config = method.export()
    summary = {
        "method": name, "steps": step, "total_steps": total_steps, "complete": step >= total_steps,
        "epochs": step / steps_per_epoch, "steps_per_epoch": steps_per_epoch, "batch_size": oc.batch_size,
        "peak_lr": peak_lr, "warmup_steps": warmup,
        "first": first, "final": last,
        "objective_decrease": (first.get("loss", math.nan) - last.get("loss", math.nan)) if first else None,
        "jets_per_s": jets_seen / elapsed if elapsed > 0 else None, "train_seconds": elapsed,
        "jets_seen": jets_seen, "device": str(device),
        "data": {**data_info, "preset": preset, "train_labels": config.data.train_labels,
                 "counts_used": stream.counts, "n_used": stream.n_selected},
        "input_spec": spec.model_dump(mode="json"),
        "embed_dim": int(encoder.embed_dim),
        "parameters": {"trained": sum(p.numel() for p in method.module.parameters()),
                       "exported_encoder": sum(p.numel() for p in encoder.parameters())},
        "artifacts": {"teacher": TEACHER_FILE, "checkpoint": str(checkpoint_path(out_dir).relative_to(out_dir)),
                      "metrics": "metrics.jsonl", "config": "config.yaml"},
    }
    payload = teacher_payload(encoder, model_config, spec,
                              data={"preset": preset, "file": data_info["file"],
                                    "train_labels": config.data.train_labels},
                              training={"steps": step, "epochs": step / steps_per_epoch, "seed": tc.seed,
                                        "final_loss": last.get("loss")},
                              method=name)
    save_teacher(out_dir / TEACHER_FILE, payload)
    write_json(out_dir / "summary.json", summary)
    log.info("%s teacher written to %s (%d steps, final loss %s)", name, out_dir / TEACHER_FILE, step,
             f"{last['loss']:.4f}" if last else "n/a")
    return summary

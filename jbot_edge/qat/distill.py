"""Distil the teacher's saved anomaly score into a quantization-aware level-1 student.

CICADA-style: the teacher (full-precision jBOT encoder + score head) scores every jet from its full-precision input;
the student sees the *trigger-precision* view of the same jet (:class:`~jbot_edge.data.l1quant.L1InputSpec` codes)
and regresses the transformed score (:mod:`jbot_edge.qat.targets`) with a Huber or MAE loss.

Data flow (``STUDENT_DIR`` layout)::

    prepared.npz          codes int16 [N, P, F], teacher scores float64 [N], labels int64 [N], split int8 [N]
                          (0 train, 1 validation, 2 test) — cached so --resume and reports skip the teacher pass
    prepared.json         what prepared.npz was made from (teacher hash, score head, file, spec); reused only on match
    checkpoints/last.pt   model + optimizer + epoch + best-so-far (atomic, every ``checkpoint_every`` epochs);
                          ``--resume`` continues bit for bit once Brevitas has initialised its activation scales
                          (after ``student.collect_stats_steps`` steps: its running statistics are not checkpointed)
    metrics.jsonl         one line per epoch: train/val loss, lr, jets/s
    student.pt            final student (best validation epoch), see jbot_edge.models.students
    qat_report.json       fidelity and physics figures (jbot_edge.qat.report)
    config.yaml           resolved configuration

Students train on background labels only (default: the teacher's training labels), as a trigger would, on the train
split; validation loss (background) selects the epoch; the report uses the held-out test split of every label. The
split is the jet file's own ``/split`` (``data.split: file``, the one pretrain and evaluate use), so the report's
test jets are jets neither the teacher, its score head nor the student was fitted on.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from jbot_edge.atomic import atomic_path, write_json
from jbot_edge.outputs import mark_output
from jbot_edge.config import StrictModel, save_config
from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate.config import TriggerSettings
from jbot_edge.logs import get_logger, progress_bar
from jbot_edge.models.jet_term import JetTermConfig, fit_jet_term, jet_term_ratio
from jbot_edge.models.students import (
    StudentConfig,
    build_student,
    check_power_of_two_scales,
    freeze_jet_term,
    save_student,
)
from jbot_edge.qat.embedding_match import EmbeddingMatcher, EmbeddingMatchingConfig
from jbot_edge.qat.outliers import OutlierExposureConfig, check_overlay_features, overlay_jets
from jbot_edge.qat.targets import TailWeightConfig, TargetTransform, tail_weights

log = get_logger(__name__)

CHECKPOINT_FORMAT = "jbot-edge.qat-checkpoint"
CHECKPOINT_PATH = Path("checkpoints") / "last.pt"
SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST = 0, 1, 2


class QatDataConfig(StrictModel):
    train_labels: list[str] | None = Field(default=None, description="background labels to train on; "
                                           "default: the labels the teacher was pre-trained on")
    max_jets: int | None = Field(default=None, ge=10, description="use at most this many jets of the file")
    split: Literal["file", "random"] = Field(default="file", description=(
        "file: the jet file's held-out /split (train, val, test), the one pretrain and evaluate use; random: a "
        "seeded shuffle with train_fraction / val_fraction"))
    train_fraction: float = Field(default=0.5, gt=0, lt=1, description="split=random only")
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="split=random only")
    read_batch_size: int = Field(default=4096, ge=64)

    @model_validator(mode="after")
    def _leaves_test(self) -> QatDataConfig:
        if self.train_fraction + self.val_fraction >= 1:
            raise ValueError("train_fraction + val_fraction must leave a test split (< 1)")
        if self.train_labels is not None and not self.train_labels:
            raise ValueError("train_labels is empty; give at least one background label")
        return self


class QatOptimConfig(StrictModel):
    epochs: int = Field(default=30, ge=1, le=100_000)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=2e-3, gt=0, le=10.0)
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    loss: Literal["huber", "mae"] = "huber"
    huber_delta: float = Field(default=1.0, gt=0)
    grad_clip: float = Field(default=1.0, gt=0)


class QatTargetConfig(StrictModel):
    kind: Literal["survival", "log_standardize"] = Field(
        default="survival", description="what the student regresses (jbot_edge.qat.targets)")
    tail_weight: TailWeightConfig = Field(default_factory=TailWeightConfig)


class QuantizerStatsConfig(StrictModel):
    """How many training steps initialise the activation ranges when ``student.collect_stats_steps`` is null."""

    fraction: float = Field(default=0.2, gt=0, le=1, description="share of the run's total training steps")
    min_steps: int = Field(default=50, ge=1, description="floor; a run shorter than this gets a warning")


def _trigger_defaults() -> TriggerSettings:
    return TriggerSettings(rate_budget_khz=[1.0, 5.0, 10.0, 50.0])


class QatReportConfig(StrictModel):
    """Operating points and goals of ``qat_report.json`` (jbot_edge.qat.report)."""

    fpr: list[float] = Field(default_factory=lambda: [1e-2, 1e-3], description="per-jet FPR points")
    trigger: TriggerSettings = Field(default_factory=_trigger_defaults)
    n_bootstrap: int = Field(default=50, ge=2, description="paired bootstrap resamples for the errors")
    goal_auc_ratio: float = Field(default=0.98, gt=0)
    goal_tpr_ratio: float = Field(default=0.90, gt=0)
    goal_tpr_fpr: list[float] = Field(default_factory=lambda: [1e-2, 1e-3],
                                      description="FPR points at which the TPR-ratio goal applies")
    goal_min_teacher_tpr: float = Field(default=0.02, ge=0, description="TPR goals apply where the teacher's "
                                        "TPR reaches this (others are reported, not judged)")
    goal_overlap: float = Field(default=0.8, ge=0, le=1)
    goal_overlap_budget_khz: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _known_points(self) -> QatReportConfig:
        if any(not 0 < f < 1 for f in self.fpr):
            raise ValueError(f"report.fpr {self.fpr}: every FPR point must lie in (0, 1)")
        missing = [f for f in self.goal_tpr_fpr if f not in self.fpr]
        if missing:
            raise ValueError(f"report.goal_tpr_fpr {missing} must be among report.fpr {self.fpr}")
        if self.goal_overlap_budget_khz not in self.trigger.rate_budget_khz:
            raise ValueError(f"report.goal_overlap_budget_khz {self.goal_overlap_budget_khz} must be among "
                             f"report.trigger.rate_budget_khz {self.trigger.rate_budget_khz}")
        return self


class QatConfig(StrictModel):
    student: StudentConfig = Field(default_factory=StudentConfig)
    input: L1InputSpec = Field(default_factory=L1InputSpec)
    data: QatDataConfig = Field(default_factory=QatDataConfig)
    optim: QatOptimConfig = Field(default_factory=QatOptimConfig)
    seed: int = 0
    checkpoint_every: int = Field(default=1, ge=1, description="epochs between checkpoints")
    allow_preset_mismatch: bool = Field(default=False, description="allow data from another generator preset "
                                        "than the teacher was trained on")
    outlier_exposure: OutlierExposureConfig = Field(default_factory=OutlierExposureConfig)
    embedding_matching: EmbeddingMatchingConfig = Field(default_factory=EmbeddingMatchingConfig)
    target: QatTargetConfig = Field(default_factory=QatTargetConfig)
    quantizer_stats: QuantizerStatsConfig = Field(default_factory=QuantizerStatsConfig)
    report: QatReportConfig = Field(default_factory=QatReportConfig)
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads (default: torch's choice)")


# -- data preparation -----------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_preset(teacher_preset: str | None, data_preset: str | None, data_path: Path, allow: bool) -> None:
    """A teacher only scores jets like those it learnt; a preset mismatch is refused unless explicitly allowed."""
    if teacher_preset and data_preset and teacher_preset != data_preset and not allow:
        raise JbotEdgeError(
            f"{data_path}: jets from preset '{data_preset}' but the teacher was pre-trained on '{teacher_preset}' "
            "jets; pre-train on this preset or pass allow_preset_mismatch=true"
        )


def prepare(cfg: QatConfig, run_dir: Path, data_path: Path, out_dir: Path) -> dict[str, np.ndarray]:
    """Teacher scores + student codes for the file's jets, cached in ``out_dir/prepared.npz``."""
    from jbot_edge.evaluate.score_head import ScoreHead
    from jbot_edge.pretrain.artifact import load_teacher

    head = ScoreHead.load(run_dir)
    teacher = load_teacher(run_dir, **head.embedding)  # the embedding the head was fitted on
    spec = cfg.input
    with JetFile(data_path) as jets:
        check_preset(teacher.data_preset, jets.provenance.get("preset"), data_path, cfg.allow_preset_mismatch)
        teacher.input_spec.check_file(jets)
        spec.check_file(jets)
        label_names = jets.label_names
        train_labels = cfg.data.train_labels or (teacher.data.get("train_labels") or None)
        if not train_labels:
            raise JbotEdgeError("qat: the teacher records no training labels; pass data.train_labels=[q,g]")
        jets.label_indices(train_labels, option="data.train_labels")
        n_total = len(jets) if cfg.data.max_jets is None else min(len(jets), cfg.data.max_jets)
        meta = {
            # the head's parameters as well as its arrays: a parameter (knn_oe's oe_weight, a normalisation) changes
            # the score without changing a single array
            "teacher_sha256": _sha256(Path(teacher.path)),
            "score_head": {k: v for k, v in head.metadata().items() if k in ("name", "params", "embedding")},
            "score_head_npz": _sha256(Path(run_dir) / "score_head.npz"),
            "data": str(Path(data_path).resolve()), "data_size": Path(data_path).stat().st_size,
            "n_jets": n_total, "input_spec": spec.model_dump(mode="json"), "seed": cfg.seed,
            "split": cfg.data.split, "train_fraction": cfg.data.train_fraction, "val_fraction": cfg.data.val_fraction,
            "outlier_exposure": cfg.outlier_exposure.model_dump(mode="json"),
            "embeddings": cfg.embedding_matching.enabled,
        }
        cache_npz, cache_json = out_dir / "prepared.npz", out_dir / "prepared.json"
        if cache_npz.is_file() and cache_json.is_file() and json.loads(cache_json.read_text()) == meta:
            log.info("reusing %s (same teacher, score head, data and spec)", cache_npz)
            with np.load(cache_npz, allow_pickle=False) as npz:
                prepared = {k: npz[k] for k in npz.files}
            prepared["label_names"] = np.array(label_names)
            prepared["train_labels"] = np.array(train_labels)
            return prepared

        features = sorted(set(teacher.stored_features(jets.particle_features)) | set(spec.stored_feature_names))
        file_split = jets.splits()[:n_total] if cfg.data.split == "file" else None
        codes, scores, labels, embeddings = [], [], [], []
        with progress_bar() as bar:
            task = bar.add_task("teacher scores", total=n_total)
            for batch in jets.iter_batches(cfg.data.read_batch_size, particle_features=features, jet_features=[],
                                           stop=n_total):
                embedded = teacher.embed(batch)
                scores.append(head.score(embedded))
                if cfg.embedding_matching.enabled:
                    embeddings.append(embedded)
                codes.append(spec.quantize(batch).astype(np.int16))
                labels.append(batch.labels)
                bar.advance(task, len(batch))
    prepared = {"codes": np.concatenate(codes), "scores": np.concatenate(scores),
                "labels": np.concatenate(labels).astype(np.int64)}
    if embeddings:
        prepared["embeddings"] = np.concatenate(embeddings)
    split = file_split if file_split is not None else _random_split(len(prepared["labels"]), cfg)
    prepared["split"] = split
    if cfg.outlier_exposure.enabled:
        check_overlay_features(features)
        prepared["oe_codes"], prepared["oe_scores"], oe_embeddings = _pseudo_anomalies(
            cfg, teacher, head, data_path, features, np.flatnonzero(
                np.isin(prepared["labels"], jets_label_indices(label_names, train_labels)) & (split == SPLIT_TRAIN)))
        if cfg.embedding_matching.enabled:
            prepared["oe_embeddings"] = oe_embeddings
    with atomic_path(cache_npz) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **prepared)
    write_json(cache_json, meta)
    prepared["label_names"] = np.array(label_names)
    prepared["train_labels"] = np.array(train_labels)
    log.info("scored %d jets with the teacher (%s head)", len(split), head.name)
    return prepared


def _random_split(n: int, cfg: QatConfig) -> np.ndarray:
    """``data.split=random``: a seeded shuffle cut at train_fraction / val_fraction (the rest is test)."""
    order = np.random.default_rng(cfg.seed).permutation(n)
    split = np.full(n, SPLIT_TEST, dtype=np.int8)
    n_train = int(round(cfg.data.train_fraction * n))
    n_val = int(round(cfg.data.val_fraction * n))
    split[order[:n_train]] = SPLIT_TRAIN
    split[order[n_train:n_train + n_val]] = SPLIT_VAL
    return split


def jets_label_indices(label_names: list[str], names: list[str]) -> list[int]:
    return [label_names.index(n) for n in names]


def _pseudo_anomalies(cfg: QatConfig, teacher, head, data_path: Path, features: list[str],
                      background_train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-anomalies made of background training jets (see :mod:`jbot_edge.qat.outliers`): student codes,
    teacher scores and teacher embeddings."""
    from jbot_edge.data.provenance import jet_radius
    from jbot_edge.data.pseudo_anomalies import make_pseudo_anomalies

    oe = cfg.outlier_exposure
    rng = np.random.default_rng([cfg.seed, 1])
    n = max(1, int(round(oe.fraction * len(background_train))))
    if oe.mode == "overlay":
        first = rng.choice(background_train, n)
        second = rng.choice(background_train, n)
        rows = np.unique(np.concatenate([first, second]))
    else:  # prongs: a pool of training jets, each pseudo-anomaly drawing two or three of them
        rows = np.unique(rng.choice(background_train, min(len(background_train), 3 * n), replace=False))
    with JetFile(data_path) as jets:
        pool = jets.read(rows, particle_features=features, jet_features=[])
        radius, _ = jet_radius(jets.provenance)
    if oe.mode == "overlay":
        where = {int(r): i for i, r in enumerate(rows)}
        pick = lambda idx: pool.select(np.array([where[int(i)] for i in idx]))  # noqa: E731
        pseudo = overlay_jets(pick(first), pick(second), oe, rng)
    else:
        pseudo = make_pseudo_anomalies(pool, n, oe.pseudo, radius, rng)
    log.info("outlier exposure: %d pseudo-anomalous jets (%s)", n, oe.mode)
    embedded = teacher.embed(pseudo)
    return cfg.input.quantize(pseudo).astype(np.int16), head.score(embedded), embedded


def background_mask(prepared: dict[str, np.ndarray]) -> np.ndarray:
    names = list(prepared["label_names"])
    keep = [names.index(n) for n in prepared["train_labels"]]
    return np.isin(prepared["labels"], keep)


# -- training -----------------------------------------------------------------------------------------------------
def _loss_fn(cfg: QatOptimConfig):
    """Per-jet loss (no reduction): the caller applies the tail weights."""
    if cfg.loss == "mae":
        return torch.nn.L1Loss(reduction="none")
    return torch.nn.HuberLoss(delta=cfg.huber_delta, reduction="none")


def quantizer_stats_steps(cfg: QatConfig, total_steps: int) -> tuple[int, list[str]]:
    """Training steps that initialise the activation ranges, sized to the run, and any warning about it.

    Explicit ``student.collect_stats_steps`` is kept unless it exceeds the run (then it is cut to the run, with a
    warning); null means ``quantizer_stats.fraction`` of the run with a floor of ``quantizer_stats.min_steps``.
    """
    stats = cfg.quantizer_stats
    explicit = cfg.student.collect_stats_steps
    wanted = explicit if explicit is not None else max(stats.min_steps, int(round(stats.fraction * total_steps)))
    warnings = []
    if wanted > total_steps:
        source = f"student.collect_stats_steps={explicit}" if explicit is not None else \
            f"the floor quantizer_stats.min_steps={stats.min_steps}"
        warnings.append(f"run too short for the quantizer statistics: {source} exceeds the run's {total_steps} "
                        f"training steps, so activation ranges are initialised over all {total_steps} steps and "
                        "never trained afterwards; raise optim.epochs or use more jets")
    return max(1, min(wanted, total_steps)), warnings


def _lr_at(epoch: int, cfg: QatOptimConfig) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    return float(cfg.lr * 0.5 * (1 + np.cos(np.pi * epoch / cfg.epochs)))  # a numpy scalar would break weights_only loading


def _evaluate_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, loss_fn,
                   batch: int = 4096) -> float:
    """Weighted mean loss (weights ``w``, the training's tail weights) without gradients."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(x), batch):
            pred = model(x[lo:lo + batch]).reshape(-1)
            total += float((loss_fn(pred, y[lo:lo + batch]) * w[lo:lo + batch]).sum())
    model.train()
    return total / max(float(w.sum()), 1e-12)


def _targets_and_weights(cfg: QatConfig, scores: np.ndarray, train_background: np.ndarray
                         ) -> tuple[TargetTransform, np.ndarray, np.ndarray]:
    """Target transform fitted on the training background, targets and tail weights of ``scores`` (weights
    normalised to mean 1 over the training background)."""
    transform = TargetTransform.fit(scores[train_background], kind=cfg.target.kind)
    surprise = transform if transform.kind == "survival" else TargetTransform.fit(scores[train_background],
                                                                                  kind="survival")
    weights = tail_weights(surprise(scores), cfg.target.tail_weight)
    return transform, transform(scores).astype(np.float32), (weights / weights[train_background].mean()
                                                             ).astype(np.float32)


@dataclass
class DistillData:
    """What the student learns from: model inputs, targets and loss weights of every jet (real jets first, then
    any pseudo-anomalies), the training and validation rows, and teacher embeddings for embedding matching."""

    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    train_idx: np.ndarray
    val_idx: np.ndarray
    embeddings: torch.Tensor | None = None


def _fitted_jet_term(cfg: QatConfig, data: DistillData) -> JetTermConfig | None:
    """``student.jet_term`` with its table fitted on the training rows (weighted least squares of the targets with
    the loss's tail weights); None without a jet term. Deterministic: a --resume refits the same."""
    term = cfg.student.jet_term
    if term is None or term.fitted:
        return term
    rows = torch.from_numpy(data.train_idx)
    codes = torch.round(data.x[rows].double() / cfg.input.input_scale).to(torch.int64).numpy()
    s = jet_term_ratio(term, cfg.input.feature_names, codes)
    fitted = fit_jet_term(term, s, data.y[rows].numpy(), data.w[rows].numpy(), cfg.student.output_lsb)
    log.info("jet term: a %d-entry table from s = %d (2^-%d units), fitted on %d training jets",
             len(fitted.table), fitted.table_min, term.frac_bits, len(rows))
    return fitted


def fit_student(cfg: QatConfig, data: DistillData, out_dir: Path, resume: bool = False
                ) -> tuple[torch.nn.Module, StudentConfig, dict[str, Any], dict[str, Any]]:
    """Train a student on ``data`` (metrics.jsonl and checkpoints in ``out_dir``); returns the best-epoch student
    in eval mode, the student configuration it was built with, the best-epoch record and the quantizer statistics
    sizing (``collect_stats_steps``, ``total_steps``, ``warnings``)."""
    spec = cfg.input
    total_steps = cfg.optim.epochs * (len(data.train_idx) // cfg.optim.batch_size)
    stats_steps, warnings = quantizer_stats_steps(cfg, total_steps)
    for warning in warnings:
        log.warning("%s", warning)
    # The student records the step count it was built with: --resume and the checkpoint rebuild the same quantizers.
    student_cfg = cfg.student.model_copy(update={"collect_stats_steps": stats_steps,
                                                 "jet_term": _fitted_jet_term(cfg, data)})
    torch.manual_seed(cfg.seed)
    model = build_student(student_cfg, spec)
    matcher = None
    if data.embeddings is not None:
        reference = data.embeddings[torch.from_numpy(data.train_idx)]
        matcher = EmbeddingMatcher(model, reference.mean(0), reference.std(0))
    ckpt_path = out_dir / CHECKPOINT_PATH
    # Weights first, optimizer after: loading swaps Brevitas's statistics-initialised scale Parameters for new
    # objects, so an optimizer built before the load would keep updating the discarded ones (the scales froze).
    checkpoint = _read_checkpoint(ckpt_path, cfg, model, matcher) if resume else None
    trainable = list(model.parameters()) + ([] if matcher is None else list(matcher.parameters()))
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    loss_fn = _loss_fn(cfg.optim)
    x_all, y_all, w_all, emb_all, train_idx = data.x, data.y, data.w, data.embeddings, data.train_idx
    x_val, y_val, w_val = x_all[data.val_idx], y_all[data.val_idx], w_all[data.val_idx]
    start_epoch, best = 0, {"val_loss": float("inf"), "epoch": -1, "state": None, "initial_val_loss": None}
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_epoch = int(checkpoint["epoch"])
        best = {"val_loss": checkpoint["best_val_loss"], "epoch": checkpoint["best_epoch"],
                "state": checkpoint["best_state"], "initial_val_loss": checkpoint["initial_val_loss"]}
        log.info("resuming from %s at epoch %d", ckpt_path, start_epoch)

    metrics_path = out_dir / "metrics.jsonl"
    if not resume:
        metrics_path.unlink(missing_ok=True)
        # The untrained student's validation loss: the reference the distillation must improve on.
        best["initial_val_loss"] = _evaluate_loss(model, x_val, y_val, w_val, loss_fn)
    model.train()
    from rich.progress import TextColumn

    with progress_bar(TextColumn("loss {task.fields[loss]:.4f} val {task.fields[val]:.4f}")) as bar:
        task = bar.add_task("distil", total=cfg.optim.epochs, completed=start_epoch, loss=float("nan"),
                            val=float("nan"))
        for epoch in range(start_epoch, cfg.optim.epochs):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(epoch, cfg.optim)
            # The permutation depends only on (seed, epoch): resuming needs no RNG state to be bit-identical.
            order = np.random.default_rng([cfg.seed, epoch]).permutation(train_idx)
            t0, running, seen = time.perf_counter(), 0.0, 0
            for lo in range(0, len(order) - cfg.optim.batch_size + 1, cfg.optim.batch_size):
                idx = torch.from_numpy(order[lo:lo + cfg.optim.batch_size])
                pred = model(x_all[idx]).reshape(-1)
                loss = (loss_fn(pred, y_all[idx]) * w_all[idx]).mean()
                if matcher is not None:
                    loss = loss + cfg.embedding_matching.weight * matcher.loss(emb_all[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                running += float(loss.detach()) * len(idx)
                seen += len(idx)
            train_loss = running / max(seen, 1)
            if not np.isfinite(train_loss):
                raise JbotEdgeError(f"qat: training loss became {train_loss} at epoch {epoch}; lower optim.lr")
            val_loss = _evaluate_loss(model, x_val, y_val, w_val, loss_fn)
            jets_per_s = seen / max(time.perf_counter() - t0, 1e-9)
            if val_loss < best["val_loss"]:
                best.update(val_loss=val_loss, epoch=epoch,
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                                     "lr": optimizer.param_groups[0]["lr"], "jets_per_s": jets_per_s}) + "\n")
            bar.update(task, advance=1, loss=train_loss, val=val_loss)
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.optim.epochs:
                _save_checkpoint(ckpt_path, model, optimizer, epoch + 1, best, cfg, matcher)
    log.info("best validation loss %.4f at epoch %d", best["val_loss"], best["epoch"])
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    check_power_of_two_scales(model, where="trained student")
    student_cfg = freeze_jet_term(model, student_cfg)
    return model, student_cfg, best, {"collect_stats_steps": stats_steps, "total_steps": total_steps,
                                      "warnings": warnings}


def train_student(cfg: QatConfig, run_dir: str | Path, data_path: str | Path, out_dir: str | Path,
                  resume: bool = False) -> dict[str, Any]:
    """Run the whole distillation; returns the qat report (also written to ``qat_report.json``)."""
    from jbot_edge.qat.report import build_report

    run_dir, data_path, out_dir = Path(run_dir), Path(data_path), Path(out_dir)
    mark_output(out_dir, "qat")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    save_config(cfg, out_dir / "config.yaml")
    if resume and not (out_dir / CHECKPOINT_PATH).is_file():
        raise JbotEdgeError(f"--resume: no checkpoint at {out_dir / CHECKPOINT_PATH}")

    prepared = prepare(cfg, run_dir, data_path, out_dir)
    spec = cfg.input
    bkg = background_mask(prepared)
    scores = np.concatenate([prepared["scores"], prepared.get("oe_scores", np.zeros(0))])
    train_background = np.zeros(len(scores), dtype=bool)
    train_background[:len(bkg)] = bkg & (prepared["split"] == SPLIT_TRAIN)
    transform, targets, weights = _targets_and_weights(cfg, scores, train_background)
    n_real = len(prepared["scores"])
    x_all = torch.from_numpy(spec.to_model_input(prepared["codes"]))
    y_all = torch.from_numpy(targets[:n_real])
    w_all = torch.from_numpy(weights)
    train_idx = np.flatnonzero(bkg & (prepared["split"] == SPLIT_TRAIN))
    val_idx = np.flatnonzero(bkg & (prepared["split"] == SPLIT_VAL))
    if len(train_idx) < cfg.optim.batch_size or len(val_idx) == 0:
        raise JbotEdgeError(f"qat: only {len(train_idx)} training / {len(val_idx)} validation background jets in "
                            f"{data_path}; need at least optim.batch_size={cfg.optim.batch_size} for training")
    if "oe_codes" in prepared:
        # Pseudo-anomalies join the training set only: validation and the report stay on real jets.
        x_all = torch.cat([x_all, torch.from_numpy(spec.to_model_input(prepared["oe_codes"]))])
        y_all = torch.from_numpy(targets)
        train_idx = np.concatenate([train_idx, n_real + np.arange(len(prepared["oe_codes"]))])
    emb_all = None
    if cfg.embedding_matching.enabled:
        emb_all = torch.from_numpy(np.concatenate([prepared["embeddings"], prepared.get(
            "oe_embeddings", np.zeros((0, prepared["embeddings"].shape[1]), np.float32))]).astype(np.float32))

    data = DistillData(x=x_all, y=y_all, w=w_all, train_idx=train_idx, val_idx=val_idx, embeddings=emb_all)
    model, student_cfg, best, stats = fit_student(cfg, data, out_dir, resume=resume)
    stats_steps, total_steps, warnings = stats["collect_stats_steps"], stats["total_steps"], stats["warnings"]

    report = build_report(model, cfg, prepared, transform, out_dir, run_dir=run_dir, data_path=data_path,
                          best_epoch=best["epoch"], best_val_loss=best["val_loss"],
                          initial_val_loss=best["initial_val_loss"],
                          quantizer_stats={"collect_stats_steps": stats_steps, "total_steps": total_steps},
                          warnings=warnings)
    save_student(out_dir / "student.pt", model, student_cfg, spec, extra={
        "target_transform": transform.describe(),
        "teacher": {"run_dir": str(run_dir.resolve()), "sha256": _sha256(run_dir / "teacher.pt"),
                    "score_head": report["score_head"]},
        "data": {"file": str(data_path.resolve()), "train_labels": list(prepared["train_labels"])},
        "training": {"best_epoch": best["epoch"], "best_val_loss": best["val_loss"], "epochs": cfg.optim.epochs},
    })
    write_json(out_dir / "qat_report.json", report)
    return report


def _save_checkpoint(path: Path, model, optimizer, epoch: int, best: dict[str, Any], cfg: QatConfig,
                     matcher=None) -> None:
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "epoch": epoch, "model": model.state_dict(),
               "optimizer": optimizer.state_dict(), "best_val_loss": best["val_loss"], "best_epoch": best["epoch"],
               "best_state": best["state"], "initial_val_loss": best["initial_val_loss"],
               "matcher": None if matcher is None else matcher.state_dict(),
               "config": cfg.model_dump(mode="json")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _read_checkpoint(path: Path, cfg: QatConfig, model, matcher=None) -> dict[str, Any]:
    """The checkpoint at ``path`` (validated, same configuration but optim.*), its weights loaded into ``model``
    (and ``matcher``); the caller restores the optimizer from ``["optimizer"]`` once it is built."""
    from brevitas import config as brevitas_config

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means the file is unusable
        raise JbotEdgeError(f"--resume: checkpoint {path} cannot be read ({type(exc).__name__})") from exc
    from jbot_edge.artifact_schemas import QatCheckpoint, validate_artifact

    validate_artifact(QatCheckpoint, payload, path)
    saved = dict(payload["config"])
    current = cfg.model_dump(mode="json")
    for key in ("optim", "threads"):
        saved.pop(key, None), current.pop(key, None)
    if saved != current:
        raise JbotEdgeError(f"--resume: the configuration differs from the one {path} was trained with "
                            "(only optim.* may change)")
    # Brevitas creates statistics-initialised scale parameters lazily; allow them to be absent before loading.
    brevitas_config.IGNORE_MISSING_KEYS = True
    try:
        model.load_state_dict(payload["model"], strict=False)
    finally:
        brevitas_config.IGNORE_MISSING_KEYS = False
    if matcher is not None:
        matcher.load_state_dict(payload["matcher"])
    return payload

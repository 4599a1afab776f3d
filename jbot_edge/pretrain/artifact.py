"""The pretrain artifact ``RUN_DIR/teacher.pt``: the frozen teacher backbone (jBOT or a baseline), self-describing.

Schema (one file, loadable with ``torch.load(weights_only=True)``; plain Python types and tensors only)::

    {
      "format": "jbot-edge.teacher",
      "version": 1,
      "method": "jbot",             # or jetclr | simclr | vicreg | supcon | vae | oe-vae: selects the encoder
                                    # builder in jbot_edge.models.registry (absent = "jbot")
      "state_dict": {...},          # EMA-teacher backbone weights (JetEncoder), float32 CPU tensors, including the
                                    # input-normalisation buffers input_norm.{log_columns,shift,scale} when on
      "model_config": {...},        # jbot: jbot_edge.models.transformer.ModelConfig fields + "in_features"; with
                                    # "input_norm": "standardize" | "none" and the fitted "input_norm_stats"
                                    # ({features, log, shift, scale}); files without "input_norm" predate it
                                    # and are loaded as "none" (raw inputs).
                                    # jetclr/simclr/vicreg/supcon: models.set_encoder.SetEncoderConfig fields +
                                    # "in_features", "pt_index", "n_particles"; vae/oe-vae: models.vae.VAEModelConfig
                                    # fields + "in_features", "n_particles"
      "input_spec": {"features": [...], "n_particles": P},   # jbot_edge.data.preprocessing.InputSpec
      "data": {"preset": "jetnet" | "l1" | None,   # the training file's provenance["preset"]
               "file": "/path/train.h5", "train_labels": ["q", "g"] | None},
      "training": {...},            # optional: steps, epochs, seed, final losses (informational)
      "student_state_dict": {...}   # optional: the student backbone at the end of training (same architecture),
                                    # loaded only with load_teacher(..., source="student")
    }

Usage::

    teacher = load_teacher(run_dir)        # RUN_DIR or RUN_DIR/teacher.pt
    emb = teacher.embed(batch)             # [N, D] raw [CLS] (jBOT) / the method's embedding, float32 numpy
    student = load_teacher(run_dir, source="student")          # the student backbone instead of the EMA teacher
    untrained = load_teacher(run_dir, source="untrained")      # same architecture, same seeded initialisation
    both = load_teacher(run_dir, features="cls+mean")          # [N, 2D]: [CLS] ‖ mean of the particle tokens
    shaped = load_teacher(run_dir, observables=spec)           # [N, D + k]: ‖ k standardised jet-shape features
                                                               # (ObservableFeatures; a score head records spec)
    cls, tokens = teacher.encoder(x, mask) # the nn.Module itself (eval mode)
    model = teacher.fine_tunable()         # trainable copy of the backbone; teacher.fresh_encoder(): same, untrained
    scores = teacher.native_scores(x, mask)  # {"recon": .., "kl": ..} for VAE teachers, {} otherwise
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from jbot_edge.artifact_schemas import TeacherFile, artifact_errors, read_torch_artifact, validate_artifact
from jbot_edge.atomic import atomic_path
from jbot_edge.config import StrictModel
from jbot_edge.data.format import JetBatch
from jbot_edge.data.preprocessing import InputSpec, build_inputs
from jbot_edge.data.substructure import ObservableName, constituent_observables
from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.registry import build_teacher_encoder, native_score_names

TEACHER_FORMAT = "jbot-edge.teacher"
TEACHER_VERSION = 1
TEACHER_FILE = "teacher.pt"
SOURCES = ("teacher", "student", "untrained")
FEATURES = ("cls", "cls+mean")


class ObservableFeatures(StrictModel):
    """Jet-shape features appended to the embedding, each standardised as ``(value - mean) / scale``.

    Self-distillation on QCD jets does not ask the embedding to resolve hard prongs or the jet's mass, and the
    anomaly scores need both (``evaluate``'s ``embedding.observables``: fitted on the bank jets, recorded in the score
    head so that ``qat`` embeds exactly the same way). Computed from the stored constituents only
    (:func:`jbot_edge.data.substructure.constituent_observables`)."""

    names: list[ObservableName] = Field(min_length=1)
    r0: float = Field(gt=0, description="N-subjettiness radius (the jet radius)")
    mean: list[float]
    scale: list[float]

    @model_validator(mode="after")
    def _consistent(self) -> ObservableFeatures:
        if not len(self.names) == len(self.mean) == len(self.scale):
            raise ValueError(f"names, mean and scale need one entry each per observable, got {len(self.names)}, "
                             f"{len(self.mean)}, {len(self.scale)}")
        if any(not np.isfinite(v) for v in self.mean) or any(not (np.isfinite(v) and v > 0) for v in self.scale):
            raise ValueError("mean must be finite and scale finite and positive")
        return self

    @classmethod
    def fit(cls, batch: JetBatch, names: list[str], r0: float) -> ObservableFeatures:
        """Standardisation fitted on ``batch`` (the background bank)."""
        values = constituent_observables(batch, names, r0)
        scale = np.maximum(values.std(axis=0), 1e-6)
        return cls(names=names, r0=r0, mean=values.mean(axis=0).tolist(), scale=scale.tolist())

    def __call__(self, batch: JetBatch) -> np.ndarray:
        values = constituent_observables(batch, self.names, self.r0)
        return ((values - np.asarray(self.mean)) / np.asarray(self.scale)).astype(np.float32)

    @staticmethod
    def particle_features(available: Sequence[str]) -> list[str]:
        """Stored particle features the observables read from a file offering ``available``."""
        return ["part_pt_rel" if "part_pt_rel" in available else "part_pt", "part_deta", "part_dphi"]


@dataclass
class Teacher:
    """A loaded, frozen teacher backbone plus everything needed to feed it the right inputs."""

    encoder: nn.Module
    input_spec: InputSpec
    model_config: dict[str, Any]
    data_preset: str | None = None
    method: str = "jbot"
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: which weights (teacher, student, untrained) and which embedding (cls, cls+mean) :meth:`embed` returns
    source: str = "teacher"
    features: str = "cls"
    #: jet-shape features appended by :meth:`embed` (None: the network's embedding alone)
    observables: ObservableFeatures | None = None

    @property
    def embed_dim(self) -> int:
        return self.network_dim + (0 if self.observables is None else len(self.observables.names))

    @property
    def network_dim(self) -> int:
        """The leading columns of :meth:`embed` that are the network's ([CLS], and the mean token for cls+mean);
        the observables, when set, follow them."""
        return self.encoder.embed_dim * (2 if self.features == "cls+mean" else 1)

    def stored_features(self, available: Sequence[str]) -> list[str]:
        """Particle features :meth:`embed` reads, from a file whose particle features are ``available``."""
        needed = list(self.input_spec.stored_features())
        if self.observables is not None:
            needed += [f for f in ObservableFeatures.particle_features(available) if f not in needed]
        return needed

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device: str | torch.device) -> Teacher:
        self.encoder.to(device)
        return self

    @torch.no_grad()
    def embed_inputs(self, x: np.ndarray, mask: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Raw [CLS] embeddings for prepared inputs ``x [N, P, F]``, ``mask [N, P]`` (the network alone: the
        observables, when set, need the jets and are appended by :meth:`embed`)."""
        self.encoder.eval()
        device = self.device
        out = np.empty((x.shape[0], self.network_dim), dtype=np.float32)
        for lo in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[lo:lo + batch_size])).to(device, torch.float32)
            mb = torch.from_numpy(np.ascontiguousarray(mask[lo:lo + batch_size])).to(device)
            cls, tokens = self.encoder(xb, mb)
            if self.features == "cls+mean":
                weights = mb.unsqueeze(-1).to(tokens.dtype)
                mean = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
                cls = torch.cat([cls, mean], dim=-1)
            out[lo:lo + len(xb)] = cls.float().cpu().numpy()
        return out

    def embed(self, batch: JetBatch, batch_size: int = 4096) -> np.ndarray:
        """Frozen raw [CLS] embeddings ``[N, D]`` (float32) of a :class:`JetBatch`; eval mode, no grad; followed by
        the standardised observables when set."""
        x, mask = build_inputs(batch, self.input_spec)
        embedded = self.embed_inputs(x, mask, batch_size=batch_size)
        if self.observables is None:
            return embedded
        return np.concatenate([embedded, self.observables(batch)], axis=1)

    def fine_tunable(self) -> nn.Module:
        """A trainable copy of the backbone (the teacher itself stays frozen)."""
        import copy

        return copy.deepcopy(self.encoder).train().requires_grad_(True)

    def fresh_encoder(self) -> nn.Module:
        """The same architecture, randomly initialised (the from-scratch arm of fine-tuning)."""
        return build_teacher_encoder(self.method, self.model_config)

    @property
    def native_score_names(self) -> tuple[str, ...]:
        """The method's own anomaly scores (VAE: ``recon``, ``kl``); empty for embedding-only methods."""
        return native_score_names(self.method)

    @torch.no_grad()
    def native_scores(self, x: np.ndarray, mask: np.ndarray, batch_size: int = 4096) -> dict[str, np.ndarray]:
        """Per-jet native scores ``{name: [N] float64}`` for prepared inputs (empty dict when the method has none)."""
        if not self.native_score_names:
            return {}
        self.encoder.eval()
        out: dict[str, list[np.ndarray]] = {name: [] for name in self.native_score_names}
        for lo in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[lo:lo + batch_size])).to(self.device, torch.float32)
            mb = torch.from_numpy(np.ascontiguousarray(mask[lo:lo + batch_size])).to(self.device)
            for name, value in self.encoder.anomaly_scores(xb, mb).items():
                out[name].append(value.double().cpu().numpy())
        return {name: np.concatenate(parts) for name, parts in out.items()}


def teacher_payload(
    encoder: nn.Module,
    model_config: Mapping[str, Any],
    input_spec: InputSpec,
    data: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
    method: str = "jbot",
    student: nn.Module | None = None,
) -> dict[str, Any]:
    """The dictionary written to ``teacher.pt`` (weights copied to CPU float32); ``student``: also store the
    student backbone (under ``student_state_dict``)."""
    def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", torch.float32).clone() for k, v in module.state_dict().items()}

    state = cpu_state(encoder)
    extra = {} if student is None else {"student_state_dict": cpu_state(student)}
    return {
        "format": TEACHER_FORMAT,
        "version": TEACHER_VERSION,
        "method": method,
        "state_dict": state,
        "model_config": dict(model_config),
        "input_spec": input_spec.model_dump(mode="json"),
        "data": {"preset": data.get("preset"), "file": None if data.get("file") is None else str(data["file"]),
                 "train_labels": None if data.get("train_labels") is None else list(data["train_labels"])},
        "training": dict(training or {}),
        **extra,
    }


def save_teacher(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write a payload from :func:`teacher_payload` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)
    return path


def load_teacher(path: str | os.PathLike[str], device: str | torch.device = "cpu", source: str = "teacher",
                 features: str = "cls", observables: ObservableFeatures | Mapping[str, Any] | None = None
                 ) -> Teacher:
    """Load ``RUN_DIR/teacher.pt`` (or the file itself) with ``torch.load(weights_only=True)``.

    ``source``: ``teacher`` (the EMA teacher, default), ``student`` (the student backbone, when the run stored it)
    or ``untrained`` (the same architecture with the initial weights of a run with the recorded seed, and the same
    fitted input normalisation: the reference that shows what pre-training bought). ``features``: ``cls`` or
    ``cls+mean`` (the [CLS] concatenated with the mean particle token). ``observables``: an
    :class:`ObservableFeatures` (or its dict, as a score head records it) appended to every embedding."""
    if source not in SOURCES:
        raise JbotEdgeError(f"embedding.source: {source!r} is not one of {', '.join(SOURCES)}")
    if features not in FEATURES:
        raise JbotEdgeError(f"embedding.features: {features!r} is not one of {', '.join(FEATURES)}")
    if observables is not None and not isinstance(observables, ObservableFeatures):
        observables = validate_artifact(ObservableFeatures, dict(observables), "embedding.observables")
    path = Path(path)
    if path.is_dir():
        path = path / TEACHER_FILE
    if not path.is_file():
        raise JbotEdgeError(f"teacher artifact {path} does not exist (run `jbot-edge pretrain` first)")
    payload = read_torch_artifact(path, "a jbot-edge teacher.pt")
    validate_artifact(TeacherFile, payload, path)
    spec = validate_artifact(InputSpec, payload["input_spec"], f"{path} (input_spec)")
    model_config = dict(payload["model_config"])
    method = str(payload.get("method", "jbot"))
    seed = int((payload.get("training") or {}).get("seed", 0))
    with torch.random.fork_rng(devices=[]), artifact_errors(path, "model_config/state_dict"):
        # The pretrain loop seeds torch with train.seed right before building the student (whose copy is the
        # teacher), so the same seed here gives the untrained network both started from.
        torch.manual_seed(seed)
        encoder = build_teacher_encoder(method, model_config)
    state = payload["state_dict"]
    if source == "student":
        if "student_state_dict" not in payload:
            raise JbotEdgeError(f"{path} stores no student backbone (written before it was saved); re-run "
                                "`jbot-edge pretrain` or use embedding.source=teacher")
        state = payload["student_state_dict"]
    elif source == "untrained":
        # Only the fitted input normalisation (statistics, not learnt) is taken from the artifact.
        state = {k: v for k, v in state.items() if k.startswith("input_norm.")}
        state = {**encoder.state_dict(), **state}
    with artifact_errors(path, "model_config/state_dict"):
        missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise JbotEdgeError(f"{path}: weights do not match model_config (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    encoder.eval().requires_grad_(False).to(device)
    data = dict(payload.get("data") or {})
    return Teacher(encoder=encoder, input_spec=spec, model_config=model_config, data_preset=data.get("preset"),
                   method=method, data=data,
                   training=dict(payload.get("training") or {}), path=path, source=source, features=features,
                   observables=observables)

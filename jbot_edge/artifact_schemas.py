"""Validated schemas of the artifacts one stage writes and a later stage loads.

A later stage never indexes into a loaded payload before it passed :func:`validate_artifact`, so a missing,
wrong-typed or tampered key is one line naming the file and the key (``teacher.pt: key 'input_spec': Field
required``), never a ``KeyError`` traceback. The schemas describe the top-level shape only; nested configs are
validated by their own pydantic models (``InputSpec``, ``StudentConfig``, ``HlsConfig``, ...) right after, with the
same one-line errors.

=====================  ==========================================  ===========================================
artifact               writer                                      schema
=====================  ==========================================  ===========================================
``teacher.pt``         :mod:`jbot_edge.pretrain.artifact`          :class:`TeacherFile`
``checkpoints/last.pt`` :mod:`jbot_edge.pretrain.checkpoint`        :class:`PretrainCheckpoint`
(pretrain)
``checkpoints/last.pt`` :mod:`jbot_edge.qat.distill`                :class:`QatCheckpoint`
(qat)
``student.pt``         :mod:`jbot_edge.models.students`            :class:`StudentFile`
``score_head.json``    :mod:`jbot_edge.evaluate.score_head`        :class:`ScoreHeadFile`
``firmware.json``      :mod:`jbot_edge.firmware.convert`           :class:`FirmwareFile`
=====================  ==========================================  ===========================================
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, TypeVar

import pydantic
import torch
from pydantic import Field, StrictInt, field_validator

from jbot_edge.errors import JbotEdgeError, shorten

SchemaT = TypeVar("SchemaT", bound=pydantic.BaseModel)


def _finite_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """NaN/inf weights would only surface as NaN scores much later; refuse them where they are loaded."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"tensor {name!r} holds NaN/inf")
    return state


StateDict = Annotated[dict[str, torch.Tensor], pydantic.AfterValidator(_finite_weights)]


class _Artifact(pydantic.BaseModel):
    """Unknown keys are kept (newer writers may add informational ones); known keys must have the right type."""

    model_config = pydantic.ConfigDict(extra="allow", arbitrary_types_allowed=True, allow_inf_nan=False,
                                       protected_namespaces=())


class TeacherFile(_Artifact):
    format: Literal["jbot-edge.teacher"]
    version: Literal[1]
    method: str = "jbot"
    state_dict: StateDict
    model_config_: dict[str, Any] = Field(alias="model_config")
    input_spec: dict[str, Any]
    data: dict[str, Any] | None = None
    training: dict[str, Any] | None = None


class _Position(_Artifact):
    epoch: StrictInt = Field(ge=0)
    batch: StrictInt = Field(ge=0)


class _Rng(_Artifact):
    torch: torch.Tensor
    numpy: dict[str, Any]
    python: tuple[Any, ...] | list[Any]
    augment_per_rank: list[torch.Tensor] = Field(min_length=1)


class PretrainCheckpoint(_Artifact):
    format: Literal["jbot-edge.pretrain-checkpoint"]
    version: Literal[1]
    step: StrictInt = Field(ge=0)
    position: _Position
    model: dict[str, Any]
    optimizer: dict[str, Any]
    rng: _Rng
    config: dict[str, Any]
    elapsed_s: float = 0.0
    jets_seen: StrictInt = 0


class QatCheckpoint(_Artifact):
    format: Literal["jbot-edge.qat-checkpoint"]
    version: Literal[1]
    epoch: StrictInt = Field(ge=0)
    model: StateDict
    optimizer: dict[str, Any]
    best_val_loss: float
    best_epoch: StrictInt
    best_state: StateDict | None
    initial_val_loss: float
    matcher: dict[str, Any] | None = None
    config: dict[str, Any]


class StudentFile(_Artifact):
    format: Literal["jbot-edge.student"]
    version: Literal[1]
    state_dict: StateDict
    student_config: dict[str, Any]
    input_spec: dict[str, Any] = Field(min_length=1)
    extra: dict[str, Any] = Field(default_factory=dict)


class ScoreHeadFile(_Artifact):
    schema_: Literal["jbot-edge.score_head"] = Field(alias="schema")
    schema_version: Literal[1]
    name: str
    params: dict[str, Any] | None = None
    arrays: dict[str, list[StrictInt]]
    npz_sha256: str
    embedding_dim: StrictInt | None = Field(default=None, ge=1)
    bank_size: StrictInt = Field(default=0, ge=0)
    background_labels: list[str] | None = None
    teacher_sha256: str | None = None
    fit_info: dict[str, Any] | None = None
    score_stats: dict[str, Any] | None = None


def _relative(value: str | None) -> str | None:
    """A path inside the artifact's own directory: relative, without ``..``."""
    if value is not None and (PurePosixPath(value).is_absolute() or ".." in PurePosixPath(value).parts):
        raise ValueError("must be a relative path inside the firmware directory")
    return value


class FirmwareFile(_Artifact):
    schema_: Literal["jbot-edge.firmware/1"] = Field(alias="schema")
    backend: Literal["hls4ml", "rtl"] = "hls4ml"
    legs: list[Literal["brevitas", "qonnx", "csim", "rtl", "fast"]] = Field(default=["brevitas", "qonnx", "csim"],
                                                                   min_length=2)
    project_name: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    hls_dir: str | None = None
    library: str | None = None
    rtl_dir: str | None = None
    weights_dir: str | None = None
    n_inputs: StrictInt = Field(ge=1)
    n_outputs: StrictInt = Field(default=1, ge=1)
    output_lsb: float = Field(gt=0)
    hls: dict[str, Any] | None = None

    _paths = field_validator("hls_dir", "library", "rtl_dir")(_relative)

    @pydantic.model_validator(mode="after")
    def _legs_have_files(self) -> FirmwareFile:
        needs = {"csim": ("project_name", "hls_dir", "library", "hls"), "rtl": ("rtl_dir",)}
        for leg, keys in needs.items():
            missing = [k for k in keys if leg in self.legs and getattr(self, k) is None]
            if missing:
                raise ValueError(f"leg {leg!r} needs key(s) {missing}")
        return self


def read_torch_artifact(path: str | os.PathLike[str], expected: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; any unpickling failure (truncated, garbage, a malicious pickle)
    is one line naming ``path`` and what was ``expected`` there (e.g. "a jbot-edge teacher.pt")."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; the user only needs to know the file is bad
        raise JbotEdgeError(f"{path} cannot be read ({type(exc).__name__}); expected {expected}") from exc


@contextlib.contextmanager
def artifact_errors(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn the errors a schema-valid but inconsistent payload raises while it is being built into a model (a
    ``model_config`` the builder rejects, tensors of the wrong shape) into one line naming ``path`` and ``what``."""
    try:
        yield
    except JbotEdgeError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JbotEdgeError(f"{path}: {what} is inconsistent ({type(exc).__name__}: {shorten(detail, 200, quote=False)})"
                            "; the file is damaged or not written by jbot-edge") from exc


def validate_artifact(schema: type[SchemaT], payload: Any, path: str | os.PathLike[str]) -> SchemaT:
    """``schema.model_validate(payload)``, or one :class:`JbotEdgeError` line naming ``path`` and the bad key(s)."""
    from jbot_edge.config import describe_validation_error

    if not isinstance(payload, dict):
        raise JbotEdgeError(f"{path}: expected a mapping of keys at top level, got {type(payload).__name__}")
    try:
        return schema.model_validate(payload)
    except pydantic.ValidationError as exc:
        raise JbotEdgeError(f"{path}: {describe_validation_error(exc)} (damaged or not written by jbot-edge)") from exc

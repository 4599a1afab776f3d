"""The score head: the one anomaly score that ``qat`` distils, saved next to the teacher.

``jbot-edge evaluate`` fits the chosen scorer (:mod:`jbot_edge.evaluate.scores`) on background-only teacher
embeddings and writes two files into the pretraining run directory::

    RUN_DIR/score_head.npz    the scorer's float64 arrays (np.savez, no pickles):
                                knn:         bank [B, D]               (normalised as params.normalize asks)
                                cosine:      bank [B, D]               (L2-normalised)
                                mahalanobis: mean [D], precision [D, D] (symmetric positive definite)
                                mahalanobis_cc: means [C, D], precision [D, D]
                                relative_mahalanobis: means [C, D], precision [D, D], mean_0 [D], precision_0 [D, D]
                                gmm:         weights [K], means [K, D], precisions_cholesky [K, D, D] or [K, D]
                                kmeans:      centroids [K, D]
                                oe:          mean, scale [D'], w0, b0 (, w1, b1): the classifier
                                knn_oe:      knn.* and oe.* (the parts' arrays), knn.calibration, oe.calibration
                                any of them: embedding_dim [1], network_dim [1] when observables follow the network's
                                             columns (EmbeddingLayout: what normalize and oe inputs act on)
    RUN_DIR/score_head.json   {
        "schema": "jbot-edge.score_head", "schema_version": 1,
        "name": "mahalanobis",                 # knn | cosine | mahalanobis | mahalanobis_cc | relative_mahalanobis
                                               # | gmm | kmeans
        "params": {...},                       # the scorer's parameters (scores.py *Params)
        "formula": "...",                      # the score in words; higher = more anomalous
        "input": "...",                        # what the score is applied to (raw teacher [CLS], teacher.embed)
        "embedding": {"source": "teacher", "features": "cls",    # load_teacher(run, **embedding) embeds the input
                      "observables": {"names": [...], "r0": R, "mean": [...], "scale": [...]}},  # optional:
                                               # standardised jet-shape features appended (ObservableFeatures)
        "embedding_dim": D, "bank_size": B,    # background jets the head was fitted on
        "background_labels": ["q", "g"],       # labels those jets carried
        "teacher_sha256": "...",               # hash of RUN_DIR/teacher.pt the embeddings came from
        "npz_sha256": "...",                   # hash of score_head.npz (detects a torn pair of files)
        "arrays": {"mean": [D], ...},          # array shapes
        "fpga_friendly": true, "fpga_note": "...",   # can the score itself run on an FPGA, and why (not)
        "fit_info": {...},                     # regularisation diagnostics (floored eigenvalues, GMM convergence)
        "score_stats": {...},                  # optional: score distribution of held-out background jets
        "created_by": "jbot-edge 0.1.0"
    }

The npz is written first and the json last, so the json is the commit marker: a head is loadable only when both
exist and the npz hash matches.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from jbot_edge import __version__
from jbot_edge.atomic import atomic_path, write_json
from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate.scores import Scorer, fit_scorer, make_params, scorer_class

SCHEMA_NAME = "jbot-edge.score_head"
SCHEMA_VERSION = 1
NPZ_NAME = "score_head.npz"
JSON_NAME = "score_head.json"
TEACHER_FILE = "teacher.pt"
INPUT_DESCRIPTION = ("raw embedding as returned by Teacher.embed of load_teacher(RUN_DIR, **embedding) (float64), no "
                     "other preprocessing; default embedding: the EMA teacher's [CLS]")
DEFAULT_EMBEDDING = {"source": "teacher", "features": "cls"}


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_dir(path: str | os.PathLike[str]) -> Path:
    """Accept RUN_DIR or a file inside it (RUN_DIR/teacher.pt, RUN_DIR/score_head.json)."""
    path = Path(path)
    return path.parent if path.suffix in (".pt", ".json", ".npz") else path


class ScoreHead:
    """A fitted scorer plus the provenance needed to trust it later."""

    def __init__(self, scorer: Scorer, bank_size: int, background_labels: list[str] | None = None,
                 teacher_sha256: str | None = None, score_stats: dict[str, float] | None = None,
                 embedding: dict[str, Any] | None = None):
        self.scorer = scorer
        #: how the scored embeddings are made: ``load_teacher(run_dir, **embedding).embed(batch)``
        self.embedding = dict(embedding or DEFAULT_EMBEDDING)
        self.bank_size = int(bank_size)
        self.background_labels = list(background_labels or [])
        self.teacher_sha256 = teacher_sha256
        self.score_stats = dict(score_stats or {})

    # -- the contract used by qat -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.scorer.name

    @property
    def params(self) -> dict[str, Any]:
        return self.scorer.params.model_dump(mode="json")

    @property
    def fpga_friendly(self) -> bool:
        return self.scorer.fpga_friendly

    @property
    def embedding_dim(self) -> int:
        return self.scorer.embedding_dim

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """float64 [N] anomaly scores of embeddings [N, D] made by ``load_teacher(run, **head.embedding).embed``;
        higher = more anomalous, finite."""
        dim = np.shape(embeddings)[-1] if np.ndim(embeddings) == 2 else None
        if dim is not None and dim != self.embedding_dim:
            raise JbotEdgeError(f"score head {self.name}: embeddings have dimension {dim}, the head was fitted on "
                                f"{self.embedding_dim} (embed with load_teacher(run, **head.embedding), which "
                                f"appends {self.embedding.get('observables', {}).get('names', [])})")
        return self.scorer.score(embeddings)

    @classmethod
    def fit(cls, name: str, background_embeddings: np.ndarray, *, background_labels: list[str] | None = None,
            teacher_sha256: str | None = None, bank_labels: np.ndarray | None = None,
            outliers: np.ndarray | None = None, network_dim: int | None = None, **params: Any) -> ScoreHead:
        """Fit scorer ``name`` on background-only embeddings; ``params`` are the scorer's (see scores.py);
        ``bank_labels`` (class of each embedding) for the class-conditional scorers; ``outliers`` (embeddings of
        pseudo-anomalies) for ``oe``; ``network_dim``: the leading columns that are the network's (the rest appended
        observables, see :class:`~jbot_edge.evaluate.scores.EmbeddingLayout`)."""
        scorer = fit_scorer(name, background_embeddings, params, bank_labels, outliers, network_dim)
        return cls(scorer, bank_size=len(background_embeddings), background_labels=background_labels,
                   teacher_sha256=teacher_sha256)

    # -- files ----------------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        s = self.scorer
        return {
            "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
            "name": s.name, "params": self.params, "formula": s.formula, "input": INPUT_DESCRIPTION,
            "embedding": self.embedding,
            "higher_is_more_anomalous": True,
            "embedding_dim": self.embedding_dim, "bank_size": self.bank_size,
            "background_labels": self.background_labels, "teacher_sha256": self.teacher_sha256,
            "arrays": {k: list(v.shape) for k, v in s.arrays.items()},
            "fpga_friendly": s.fpga_friendly, "fpga_note": s.fpga_note,
            "fit_info": s.info, "score_stats": self.score_stats,
            "created_by": f"jbot-edge {__version__}",
        }

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        """Write RUN_DIR/score_head.npz then RUN_DIR/score_head.json (atomically each); return the json path."""
        run_dir = _run_dir(run_dir)
        npz_path = run_dir / NPZ_NAME
        # A file object, because np.savez would append ".npz" to the temporary path.
        with atomic_path(npz_path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **self.scorer.arrays)
        meta = self.metadata()
        meta["npz_sha256"] = file_sha256(npz_path)
        return write_json(run_dir / JSON_NAME, meta)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str], verify_teacher: bool = True) -> ScoreHead:
        """Read the head written by :meth:`save`. With ``verify_teacher``, refuse a head fitted on another teacher.pt."""
        run_dir = _run_dir(run_dir)
        json_path, npz_path = run_dir / JSON_NAME, run_dir / NPZ_NAME
        if not json_path.is_file() or not npz_path.is_file():
            raise JbotEdgeError(f"run {run_dir} has no score head ({JSON_NAME} + {NPZ_NAME}): run `jbot-edge "
                                f"evaluate --run {run_dir} --data FILE.h5` first")
        try:
            meta = json.loads(json_path.read_text())
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise JbotEdgeError(f"{json_path} is not valid JSON; re-run jbot-edge evaluate") from exc
        from jbot_edge.artifact_schemas import ScoreHeadFile, artifact_errors, validate_artifact

        validate_artifact(ScoreHeadFile, meta, json_path)
        if meta.get("npz_sha256") != file_sha256(npz_path):
            raise JbotEdgeError(f"{npz_path} does not match {json_path} (interrupted or mixed writes); "
                                "re-run jbot-edge evaluate")
        teacher = run_dir / TEACHER_FILE
        if (verify_teacher and meta.get("teacher_sha256") and teacher.is_file()
                and file_sha256(teacher) != meta["teacher_sha256"]):
            raise JbotEdgeError(f"{json_path} was fitted on a different {TEACHER_FILE} than the one in {run_dir} "
                                "(teacher retrained?); re-run jbot-edge evaluate")
        cls_ = scorer_class(meta.get("name", "?"))
        with artifact_errors(npz_path, "the array file"):
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        shapes = {k: list(v.shape) for k, v in arrays.items()}
        if shapes != meta["arrays"]:
            raise JbotEdgeError(f"{npz_path}: arrays {shapes} differ from key 'arrays' {meta['arrays']} in {json_path}")
        for name, values in arrays.items():
            if values.dtype.kind not in "fiub" or not np.isfinite(values).all():
                raise JbotEdgeError(f"{npz_path}: array '{name}' is not finite numbers; re-run jbot-edge evaluate")
        with artifact_errors(json_path, "key 'params'"):
            scorer = cls_(make_params(cls_.name, meta.get("params")), arrays, meta.get("fit_info"))
        return cls(scorer, bank_size=meta.get("bank_size", 0), background_labels=meta.get("background_labels"),
                   teacher_sha256=meta.get("teacher_sha256"), score_stats=meta.get("score_stats"),
                   embedding=meta.get("embedding"))

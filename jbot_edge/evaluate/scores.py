"""Anomaly scorers in the frozen teacher embedding, fitted on a bank of background-only embeddings.

Every scorer maps raw teacher [CLS] embeddings ``[N, D]`` to one float64 score per jet, **higher = more anomalous**,
and is fully described by a few named arrays plus its parameters, so that it can be saved as a score head
(:mod:`jbot_edge.evaluate.score_head`) and recomputed bit-identically later.

==============  ========================================================================  ==========================
name            score                                                                     FPGA-computable?
==============  ========================================================================  ==========================
``knn``         mean L2 distance to the k nearest bank embeddings (optionally L2-normed)  no: needs the whole bank
``cosine``      −τ · log Σ_{top-k} exp(cos(x, b)/τ) over the bank (L2-normed)              no: bank + exp/log
``mahalanobis`` (x−μ)ᵀ P (x−μ), P = inverse of the shrunk background covariance           yes: one quadratic form
``mahalanobis_cc``  min over background classes c of (x−μ_c)ᵀ P (x−μ_c), P shared (jBOT)    yes: C quadratic forms
``relative_mahalanobis``  mahalanobis_cc(x) − (x−μ₀)ᵀ P₀ (x−μ₀) (Ren et al. 2106.09022)     yes: C + 1 forms
``gmm``         −log p(x) under a K-component Gaussian mixture fitted without labels      no: log-sum-exp over K
``kmeans``      L2 distance to the nearest of K k-means centroids                          yes: K distances + min
``oe``          logit of a classifier background vs pseudo-anomalies (outlier exposure)    yes: linear, or a tiny MLP
``knn_oe``      −log S_knn(x) − w · log S_oe(x): weighted Fisher combination of the two    no: needs the kNN bank
==============  ========================================================================  ==========================

``oe`` is the one scorer fitted on more than the bank: :mod:`jbot_edge.data.pseudo_anomalies` makes pseudo-anomalous
jets out of bank jets (k narrow prongs, no signal sample), the caller embeds them with the same teacher and passes
them as ``outliers``. Rarity under the background is not signal-likeness; this gives the score a direction.

``knn_oe`` combines rarity and direction without labels. A jet's ``knn`` and ``oe`` scores are each turned into the
fraction S of background jets scoring higher (its p-value under the background) and the score is
``−log S_knn − w · log S_oe``, Fisher's combination of the two p-values with the direction weighted by
``oe_weight`` = w (1: plain Fisher). S is counted on *calibration* jets: a fixed
share of the bank (``calibration_fraction``, drawn with ``seed``) that neither the kNN bank nor the classifier sees,
so the two p-values are honest and on one scale. ``(count + 1) / (n_calibration + 1)`` keeps −log S finite; it is
interpolated between calibration scores and extrapolated as an exponential tail beyond the highest, so the score
stays continuous and jets far in the tail are not tied (:func:`background_survival`).

Regularisation (documented so that no scorer ever returns NaN):

* ``knn``: ``k: auto`` follows the bank size, k = round(√n_bank) (recorded as ``fit_info.k``).
* ``mahalanobis_cc`` / ``relative_mahalanobis`` need the bank's class labels (``fit(..., labels=...)``): the shared
  covariance is the pooled within-class covariance; μ₀, P₀ of the relative score are the single-Gaussian fit of the
  whole bank. Both L2-normalise by default, as jBOT does.
* ``mahalanobis``: the covariance is shrunk (Ledoit-Wolf by default, or OAS, or a fixed shrinkage towards
  ``trace/D · I``); eigenvalues of the result are then floored at ``min_eigenvalue_ratio × largest`` (and at 1e-12
  absolute; 1.0 if the bank has zero spread), so a singular covariance (constant or collinear dimensions, a bank
  smaller than D) still gives a finite, positive-definite precision. The number of floored eigenvalues is recorded.
* ``gmm``: ``reg_covar`` is added to every component's covariance diagonal (sklearn), like the reference code.
* L2 normalisation maps an all-zero embedding to zero instead of dividing by zero.

A bank smaller than what a scorer needs (k neighbours, K components/centroids, 2 jets for a covariance) is a
:class:`~jbot_edge.errors.JbotEdgeError`, never a silent fallback.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from jbot_edge.config import StrictModel
from jbot_edge.errors import JbotEdgeError, shorten
from jbot_edge.evaluate.knn import nearest_k



# -- parameters (also the ``scorers:`` section of the evaluate config) ------------------------------------------
class KnnParams(StrictModel):
    k: int | Literal["auto"] = Field(default=30, description="neighbours averaged (jBOT: 30); auto: round(√n_bank)")
    normalize: bool = Field(default=True, description=(
        "L2-normalise the network's embedding first (jBOT: yes); appended observables are kept, as one block of "
        "unit RMS norm (see EmbeddingLayout)"))


class CosineParams(StrictModel):
    k: int = Field(default=100, ge=1, description="top-k similarities in the log-sum-exp (jBOT: 100)")
    tau: float = Field(default=0.02, gt=0, description="temperature (jBOT: 0.02)")


class MahalanobisParams(StrictModel):
    # Raw [CLS] by default: the score is then a single quadratic form of the embedding (no sqrt/division).
    normalize: bool = Field(default=False, description="L2-normalise embeddings first")
    shrinkage: Literal["ledoit_wolf", "oas"] | float = Field(
        default="ledoit_wolf", description="covariance shrinkage: ledoit_wolf, oas, or a fixed value in [0, 1]")
    min_eigenvalue_ratio: float = Field(default=1e-6, gt=0, lt=1,
                                        description="floor of covariance eigenvalues relative to the largest")


class ClassMahalanobisParams(MahalanobisParams):
    normalize: bool = Field(default=True, description="L2-normalise embeddings first (jBOT: yes)")


class GmmParams(StrictModel):
    n_components: int = Field(default=4, ge=1, description="mixture components K (jBOT: 4)")
    covariance_type: Literal["full", "diag"] = "full"
    reg_covar: float = Field(default=1e-4, gt=0, description="added to covariance diagonals")
    normalize: bool = True
    max_iter: int = Field(default=200, ge=1)
    n_init: int = Field(default=1, ge=1)
    seed: int = 0


class OutlierExposureParams(StrictModel):
    classifier: Literal["logistic", "mlp"] = Field(default="mlp", description=(
        "logistic: a linear logit; mlp: one hidden ReLU layer (sklearn MLPClassifier, early stopping)"))
    hidden: int = Field(default=64, ge=1, description="mlp hidden width")
    regularization: float = Field(default=1e-3, gt=0, description="L2 penalty (mlp alpha; logistic 1/C)")
    normalize: bool = Field(default=False, description="L2-normalise embeddings before standardising")
    inputs: Literal["all", "observables"] = Field(default="all", description=(
        "all: the whole embedding; observables: only the jet-shape observables appended to it "
        "(evaluate's embedding.observables)"))
    n_outliers: int = Field(default=0, ge=0, description="pseudo-anomalies to make; 0 = as many as bank jets")
    max_iter: int = Field(default=300, ge=1)
    seed: int = 0


class KnnOeParams(StrictModel):
    knn: KnnParams = Field(default_factory=KnnParams, description="the rarity part (mean distance to k neighbours)")
    oe: OutlierExposureParams = Field(default_factory=OutlierExposureParams, description="the direction part")
    calibration_fraction: float = Field(default=0.25, gt=0, lt=1, description=(
        "share of the bank held out of both fits to turn each score into a background p-value"))
    oe_weight: float | Literal["auto"] = Field(default=1.0, description=(
        "weight w > 0 of the direction's −log p-value in the sum (1: Fisher's combination, both parts alike); auto: "
        "evaluate's scorers.oe_weight_by_preset for the teacher's data preset"))
    seed: int = 0

    @field_validator("oe_weight")
    @classmethod
    def _positive_weight(cls, value: float | str) -> float | str:
        if value != "auto" and not value > 0:
            raise ValueError(f"oe_weight must be > 0 (or auto), got {value}")
        return value


class KmeansParams(StrictModel):
    n_clusters: int = Field(default=16, ge=1, description="centroids K")
    normalize: bool = True
    n_init: int = Field(default=3, ge=1)
    seed: int = 0


# -- helpers ----------------------------------------------------------------------------------------------------
def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (no division by zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class EmbeddingLayout:
    """Which columns of an embedding come from the network and which are appended jet-shape observables.

    A teacher's embedding is ``[network ‖ observables]`` (evaluate's ``embedding.observables``): the first
    ``network_dim`` columns are the network's [CLS] (and mean token), the rest are observables already standardised
    on the bank. ``normalize`` then L2-normalises the network's columns only and divides the observables by
    √n_observables, so each part weighs the same in a distance whatever the network's norm. (L2-normalising the whole
    row instead would let the [CLS] norm decide the observables' weight: measured on the validation sample, kNN AUC
    t 0.66 against 0.81 this way; benchmarks/ad_quality.py, configs/evaluate/default.yaml.) Without observables
    (``network_dim`` None or D) it is the plain L2 normalisation of the whole row."""

    def __init__(self, dim: int, network_dim: int | None = None):
        if network_dim is not None and not 0 < network_dim <= dim:
            raise JbotEdgeError(f"embedding layout: network_dim={network_dim} is not in 1..{dim}")
        self.dim = dim
        self.network_dim = None if network_dim in (None, dim) else int(network_dim)

    @classmethod
    def of(cls, arrays: dict[str, np.ndarray], default_dim: int) -> EmbeddingLayout:
        """The layout a fitted scorer recorded (none recorded: every column is the network's)."""
        if "network_dim" not in arrays:
            return cls(default_dim)
        return cls(int(arrays["embedding_dim"][0]), int(arrays["network_dim"][0]))

    def arrays(self) -> dict[str, np.ndarray]:
        if self.network_dim is None:
            return {}
        return {"embedding_dim": np.array([float(self.dim)]), "network_dim": np.array([float(self.network_dim)])}

    def prepare(self, x: np.ndarray, params: StrictModel, scorer: str) -> np.ndarray:
        """The columns a scorer reads (``params.inputs``), normalised as ``params.normalize`` asks."""
        if getattr(params, "inputs", "all") == "observables":
            if self.network_dim is None:
                raise JbotEdgeError(f"scorers.{scorer}.inputs=observables needs an embedding with jet-shape "
                                    "observables appended (evaluate's embedding.observables)")
            x = x[:, self.network_dim:]
            return x / np.sqrt(x.shape[1]) if getattr(params, "normalize", False) else x
        if not getattr(params, "normalize", False):
            return x
        if self.network_dim is None:
            return l2_normalize(x)
        observables = x[:, self.network_dim:]
        return np.concatenate([l2_normalize(x[:, :self.network_dim]), observables / np.sqrt(observables.shape[1])],
                              axis=1)


def _as_embeddings(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise JbotEdgeError(f"{what}: expected embeddings of shape [N, D], got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise JbotEdgeError(f"{what}: embeddings have dimension {x.shape[1]}, the scorer was fitted on {dim}")
    if not np.isfinite(x).all():
        raise JbotEdgeError(f"{what}: embeddings contain NaN/inf (diverged teacher?)")
    return x


def _require_bank(bank: np.ndarray, needed: int, scorer: str, param: str) -> None:
    if bank.shape[0] < needed:
        raise JbotEdgeError(f"scorer '{scorer}': {param}={needed} needs a background bank of at least {needed} jets, "
                            f"got {bank.shape[0]} (raise data.bank_size or lower scorers.{scorer}.{param})")


def _check_finite(scores: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(scores).all():  # a bug, not a user error: every regularisation above should prevent it
        raise RuntimeError(f"scorer '{name}' produced non-finite scores")
    return scores


# -- scorers ----------------------------------------------------------------------------------------------------
class Scorer(abc.ABC):
    """A fitted scorer: parameters + named float64 arrays; :meth:`score` is a pure function of both."""

    name: ClassVar[str]
    Params: ClassVar[type[StrictModel]]
    fpga_friendly: ClassVar[bool]
    fpga_note: ClassVar[str]
    formula: ClassVar[str]

    def __init__(self, params: StrictModel, arrays: dict[str, np.ndarray], info: dict | None = None):
        self.params = params
        self.arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        self.info = dict(info or {})  # fit diagnostics (e.g. floored eigenvalues), saved in score_head.json

    @property
    def embedding_dim(self) -> int:
        if "embedding_dim" in self.arrays:
            return int(self.arrays["embedding_dim"][0])
        return int(self.arrays[self._dim_array].shape[-1])

    @property
    def layout(self) -> EmbeddingLayout:
        return EmbeddingLayout.of(self.arrays, self.embedding_dim)

    _dim_array: ClassVar[str]

    #: whether :meth:`fit` needs the bank's class labels
    needs_labels: ClassVar[bool] = False
    #: whether :meth:`fit` needs embeddings of pseudo-anomalous jets (``outliers``, see ``oe``)
    needs_outliers: ClassVar[bool] = False

    @classmethod
    def fit(cls, bank: np.ndarray, params: StrictModel, labels: np.ndarray | None = None,
            outliers: np.ndarray | None = None, network_dim: int | None = None) -> Scorer:
        """``network_dim``: how many leading columns are the network's (the rest: appended observables; None: all);
        see :class:`EmbeddingLayout`."""
        bank = _as_embeddings(bank, f"scorer '{cls.name}' background bank")
        if bank.shape[0] == 0:
            raise JbotEdgeError(f"scorer '{cls.name}': the background bank is empty")
        layout = EmbeddingLayout(bank.shape[1], network_dim)
        prepared = layout.prepare(bank, params, cls.name)
        if cls.needs_outliers:
            if outliers is None or len(outliers) == 0:
                raise JbotEdgeError(f"scorer '{cls.name}' needs embeddings of pseudo-anomalous jets (outliers)")
            outliers = layout.prepare(_as_embeddings(outliers, f"scorer '{cls.name}' outliers", bank.shape[1]),
                                      params, cls.name)
            scorer = cls._fit_with_outliers(prepared, outliers, params, layout)
        elif not cls.needs_labels:
            scorer = cls._fit(prepared, params)
        elif labels is None or len(labels) != len(bank):
            raise JbotEdgeError(f"scorer '{cls.name}' needs the class label of every bank jet")
        else:
            scorer = cls._fit_labelled(prepared, params, np.asarray(labels))
        scorer.arrays |= layout.arrays()
        return scorer

    @classmethod
    def _fit(cls, bank: np.ndarray, params: StrictModel) -> Scorer:
        raise NotImplementedError

    @classmethod
    def _fit_labelled(cls, bank: np.ndarray, params: StrictModel, labels: np.ndarray) -> Scorer:
        raise NotImplementedError

    @classmethod
    def _fit_with_outliers(cls, bank: np.ndarray, outliers: np.ndarray, params: StrictModel,
                           layout: EmbeddingLayout) -> Scorer:
        raise NotImplementedError

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """float64 [N] anomaly scores, higher = more anomalous; always finite."""
        x = _as_embeddings(embeddings, f"scorer '{self.name}' input", self.embedding_dim)
        return _check_finite(self._score(self.layout.prepare(x, self.params, self.name)), self.name)

    @abc.abstractmethod
    def _score(self, x: np.ndarray) -> np.ndarray: ...


class KnnScorer(Scorer):
    name = "knn"
    Params = KnnParams
    fpga_friendly = False
    fpga_note = "needs the whole background bank on chip and a top-k selection over it"
    formula = "mean over the k nearest bank rows b of ||x - b||_2 (x, b L2-normalised if normalize)"
    _dim_array = "bank"

    @classmethod
    def _fit(cls, bank, params):
        k = resolve_k(params.k, len(bank))
        _require_bank(bank, k, cls.name, "k")
        return cls(params, {"bank": bank}, {"k": k})

    @property
    def k(self) -> int:
        return resolve_k(self.params.k, len(self.arrays["bank"]))

    def _score(self, x):
        p = self.params.model_copy(update={"k": self.k})
        nearest = nearest_k(x, self.arrays["bank"], p.k, "l2sq")
        return np.sqrt(np.maximum(nearest, 0.0)).mean(axis=1)


class CosineScorer(Scorer):
    name = "cosine"
    Params = CosineParams
    fpga_friendly = False
    fpga_note = "needs the whole background bank on chip, a top-k selection and exp/log"
    formula = "-tau * logsumexp(top-k over bank of cos(x, b) / tau)"
    _dim_array = "bank"

    @classmethod
    def _fit(cls, bank, params):
        _require_bank(bank, params.k, cls.name, "k")
        return cls(params, {"bank": l2_normalize(bank)})

    def _score(self, x):
        from scipy.special import logsumexp

        p = self.params
        x = l2_normalize(x)
        top = nearest_k(x, self.arrays["bank"], p.k, "dot")
        # Similar to the bank → large log-sum-exp → low score.
        return -p.tau * logsumexp(top / p.tau, axis=1)


class MahalanobisScorer(Scorer):
    name = "mahalanobis"
    Params = MahalanobisParams
    fpga_friendly = True
    fpga_note = ("one quadratic form (x-mu)^T P (x-mu): D subtractions and D(D+1)/2 multiplies with constant "
                 "parameters; with normalize=true it also needs 1/||x|| (a LUT)")
    formula = "(x - mean)^T precision (x - mean), the squared Mahalanobis distance (x L2-normalised if normalize)"
    _dim_array = "mean"

    @classmethod
    def _fit(cls, bank, params):
        _require_bank(bank, 2, cls.name, "bank size")
        mean = bank.mean(axis=0)
        precision, info = _regularised_precision(bank, params)
        return cls(params, {"mean": mean, "precision": precision}, info)

    def _score(self, x):
        return _quadratic_form(x, self.arrays["mean"], self.arrays["precision"])


def resolve_k(k: int | str, n_bank: int) -> int:
    """kNN neighbours: an integer ≥ 1, or ``auto`` = round(√n_bank) (at least 1)."""
    if k == "auto":
        return max(1, int(round(np.sqrt(n_bank))))
    if int(k) < 1:
        raise JbotEdgeError(f"scorers.knn.k must be ≥ 1 or auto, got {k}")
    return int(k)


def _quadratic_form(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    centred = x - mean
    return np.einsum("ij,jk,ik->i", centred, precision, centred, optimize=True)


def _regularised_precision(data: np.ndarray, params: MahalanobisParams) -> tuple[np.ndarray, dict]:
    """Inverse of the shrunk covariance of ``data`` with eigenvalues floored (see the module docstring)."""
    covariance, shrinkage = _shrunk_covariance(data, params.shrinkage)
    eigval, eigvec = np.linalg.eigh(covariance)
    largest = float(eigval.max())
    floor = max(params.min_eigenvalue_ratio * largest, 1e-12) if largest > 0 else 1.0
    n_floored = int((eigval < floor).sum())
    eigval = np.maximum(eigval, floor)
    precision = (eigvec / eigval) @ eigvec.T
    precision = 0.5 * (precision + precision.T)  # exactly symmetric, so x^T P x has no antisymmetric noise
    info = {"shrinkage": shrinkage, "eigenvalue_floor": floor, "n_eigenvalues_floored": n_floored,
            "condition_number": float(eigval.max() / eigval.min())}
    return precision, info


def _class_means_and_shared_precision(bank: np.ndarray, labels: np.ndarray, params: MahalanobisParams,
                                      scorer: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-class means [C, D] and the precision of the pooled within-class covariance (every class centred on
    its own mean, then one shrunk covariance of all of them)."""
    classes = np.unique(labels)
    means = np.stack([bank[labels == c].mean(axis=0) for c in classes])
    centred = bank - means[np.searchsorted(classes, labels)]
    _require_bank(bank, len(classes) + 1, scorer, "bank size")
    precision, info = _regularised_precision(centred, params)
    return means, precision, {**info, "classes": classes.tolist(),
                              "class_counts": [int((labels == c).sum()) for c in classes]}


def _min_class_distance(x: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    return np.min([_quadratic_form(x, mean, precision) for mean in means], axis=0)


class ClassMahalanobisScorer(Scorer):
    name = "mahalanobis_cc"
    Params = ClassMahalanobisParams
    needs_labels = True
    fpga_friendly = True
    fpga_note = ("C quadratic forms (one per background class, shared precision) and a min; with normalize=true "
                 "also 1/||x|| (a LUT)")
    formula = ("min over background classes c of (x - mean_c)^T precision (x - mean_c), precision = inverse of the "
               "pooled within-class covariance (x L2-normalised if normalize)")
    _dim_array = "means"

    @classmethod
    def _fit_labelled(cls, bank, params, labels):
        means, precision, info = _class_means_and_shared_precision(bank, labels, params, cls.name)
        return cls(params, {"means": means, "precision": precision}, info)

    def _score(self, x):
        return _min_class_distance(x, self.arrays["means"], self.arrays["precision"])


class RelativeMahalanobisScorer(ClassMahalanobisScorer):
    name = "relative_mahalanobis"
    fpga_note = "C + 1 quadratic forms, a min and a subtraction; with normalize=true also 1/||x|| (a LUT)"
    formula = ("mahalanobis_cc(x) - (x - mean_0)^T precision_0 (x - mean_0), with mean_0, precision_0 of one "
               "Gaussian fitted to the whole bank (x L2-normalised if normalize)")

    @classmethod
    def _fit_labelled(cls, bank, params, labels):
        conditional = super()._fit_labelled(bank, params, labels)
        precision_0, info_0 = _regularised_precision(bank, params)
        arrays = {**conditional.arrays, "mean_0": bank.mean(axis=0), "precision_0": precision_0}
        return cls(params, arrays, {**conditional.info, "background_fit": info_0})

    def _score(self, x):
        background = _quadratic_form(x, self.arrays["mean_0"], self.arrays["precision_0"])
        return super()._score(x) - background


def _shrunk_covariance(bank: np.ndarray, shrinkage: str | float) -> tuple[np.ndarray, float]:
    from sklearn.covariance import OAS, LedoitWolf, shrunk_covariance

    if shrinkage == "ledoit_wolf":
        est = LedoitWolf().fit(bank)
        return est.covariance_, float(est.shrinkage_)
    if shrinkage == "oas":
        est = OAS().fit(bank)
        return est.covariance_, float(est.shrinkage_)
    value = float(shrinkage)
    if not 0.0 <= value <= 1.0:
        raise JbotEdgeError(f"scorers.mahalanobis.shrinkage must be ledoit_wolf, oas or a number in [0, 1], "
                            f"got {shrinkage}")
    empirical = np.cov(bank, rowvar=False, bias=True).reshape(bank.shape[1], bank.shape[1])
    return shrunk_covariance(empirical, shrinkage=value), value


class GmmScorer(Scorer):
    name = "gmm"
    Params = GmmParams
    fpga_friendly = False
    fpga_note = "K quadratic forms are cheap, but the log-sum-exp over components needs exp/log lookup tables"
    formula = "-log sum_k w_k N(x | mu_k, Sigma_k) (x L2-normalised if normalize)"
    _dim_array = "means"

    @classmethod
    def _fit(cls, bank, params):
        from sklearn.mixture import GaussianMixture

        _require_bank(bank, max(params.n_components, 2), cls.name, "n_components")
        gmm = GaussianMixture(n_components=params.n_components, covariance_type=params.covariance_type,
                              reg_covar=params.reg_covar, max_iter=params.max_iter, n_init=params.n_init,
                              random_state=params.seed).fit(bank)
        arrays = {"weights": gmm.weights_, "means": gmm.means_, "precisions_cholesky": gmm.precisions_cholesky_}
        return cls(params, arrays, {"converged": bool(gmm.converged_), "n_iter": int(gmm.n_iter_)})

    def _score(self, x):
        from scipy.special import logsumexp

        weights, means, chol = self.arrays["weights"], self.arrays["means"], self.arrays["precisions_cholesky"]
        d = x.shape[1]
        log_prob = np.empty((len(x), len(weights)))
        for k in range(len(weights)):
            # Same parametrisation as sklearn: log N = -D/2 log 2π + log det(L) - |(x-μ) L|²/2 with P = L Lᵀ.
            if self.params.covariance_type == "full":
                y = (x - means[k]) @ chol[k]
                log_det = np.log(np.diag(chol[k])).sum()
            else:
                y = (x - means[k]) * chol[k]
                log_det = np.log(chol[k]).sum()
            log_prob[:, k] = -0.5 * d * np.log(2 * np.pi) + log_det - 0.5 * np.einsum("ij,ij->i", y, y)
        return -logsumexp(log_prob + np.log(weights), axis=1)


class KmeansScorer(Scorer):
    name = "kmeans"
    Params = KmeansParams
    fpga_friendly = True
    fpga_note = "K squared distances to constant centroids and a min (plus a sqrt, or compare squared distances)"
    formula = "min over centroids c of ||x - c||_2 (x L2-normalised if normalize)"
    _dim_array = "centroids"

    @classmethod
    def _fit(cls, bank, params):
        from sklearn.cluster import KMeans

        _require_bank(bank, params.n_clusters, cls.name, "n_clusters")
        km = KMeans(n_clusters=params.n_clusters, n_init=params.n_init, random_state=params.seed).fit(bank)
        return cls(params, {"centroids": km.cluster_centers_}, {"inertia": float(km.inertia_)})

    def _score(self, x):
        c = self.arrays["centroids"]
        d2 = (np.einsum("ij,ij->i", x, x)[:, None] + np.einsum("ij,ij->i", c, c)[None, :] - 2.0 * (x @ c.T))
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


class OutlierExposureScorer(Scorer):
    name = "oe"
    Params = OutlierExposureParams
    needs_outliers = True
    fpga_friendly = True
    fpga_note = "a standardisation and a dot product (logistic), or one small dense ReLU layer more (mlp)"
    formula = ("logit of P(pseudo-anomaly | z), z = (x - mean) / scale (x L2-normalised if normalize); classifier "
               "trained on bank jets (0) vs pseudo-anomalies made of bank jets (1)")
    _dim_array = "mean"

    @classmethod
    def _fit(cls, bank, params):
        raise JbotEdgeError("scorer 'oe' needs embeddings of pseudo-anomalous jets (outliers)")

    @classmethod
    def _fit_with_outliers(cls, bank, outliers, params, layout):
        _require_bank(bank, 2, cls.name, "bank")
        mean, scale = bank.mean(axis=0), 1.0 / np.maximum(bank.std(axis=0), 1e-9)
        x = np.concatenate([(bank - mean) * scale, (outliers - mean) * scale])
        y = np.concatenate([np.zeros(len(bank)), np.ones(len(outliers))])
        arrays = {"mean": mean, "scale": scale}
        if params.classifier == "logistic":
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(C=1.0 / params.regularization, max_iter=params.max_iter).fit(x, y)
            arrays |= {"w0": clf.coef_.T, "b0": clf.intercept_}
            info = {"train_accuracy": float(clf.score(x, y))}
        else:
            from sklearn.neural_network import MLPClassifier

            clf = MLPClassifier(hidden_layer_sizes=(params.hidden,), alpha=params.regularization,
                                max_iter=params.max_iter, early_stopping=True, random_state=params.seed).fit(x, y)
            arrays |= {"w0": clf.coefs_[0], "b0": clf.intercepts_[0], "w1": clf.coefs_[1], "b1": clf.intercepts_[1]}
            info = {"train_accuracy": float(clf.score(x, y)), "validation_accuracy": float(clf.best_validation_score_),
                    "iterations": int(clf.n_iter_)}
        info |= {"n_bank": int(len(bank)), "n_outliers": int(len(outliers))}
        return cls(params, arrays, info)

    def _score(self, x):
        a = self.arrays
        h = ((x - a["mean"]) * a["scale"]) @ a["w0"] + a["b0"]
        if "w1" in a:
            h = np.maximum(h, 0.0) @ a["w1"] + a["b1"]
        return h[:, 0]


#: Calibration points whose mean slope continues −log S beyond the highest calibration score (exponential tail).
TAIL_POINTS = 10


def background_survival(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """−log S(score), S the fraction of ``calibration`` scores (sorted ascending) at or above it.

    At the i-th calibration score S = (n − i + 1) / (n + 1) (never 0); in between, −log S is interpolated linearly,
    and beyond the highest calibration score it continues with the mean slope of the last ``TAIL_POINTS`` (an
    exponential tail). The result is continuous and increasing in the score, so jets in the far tail — where a
    trigger's threshold lives — keep their order instead of all sharing the last count."""
    n = len(calibration)
    levels = -np.log((n - np.arange(n) + 1.0) / (n + 1.0))
    out = np.interp(scores, calibration, levels)
    m = min(TAIL_POINTS, n - 1)
    span = calibration[-1] - calibration[-1 - m] if m > 0 else 0.0
    if span > 0:
        beyond = scores > calibration[-1]
        out[beyond] = levels[-1] + (levels[-1] - levels[-1 - m]) / span * (scores[beyond] - calibration[-1])
    return out


class KnnOeScorer(Scorer):
    name = "knn_oe"
    Params = KnnOeParams
    needs_outliers = True
    fpga_friendly = False
    fpga_note = "needs the kNN bank on chip (its oe part alone is FPGA-friendly)"
    formula = ("-log S_knn(x) - w log S_oe(x), S = fraction of held-out calibration bank jets scoring at least as "
               "high, w = oe_weight (Fisher's combination of the knn and oe p-values, the direction weighted by w)")
    _dim_array = "knn.bank"
    _parts: ClassVar[dict[str, type[Scorer]]] = {"knn": KnnScorer, "oe": OutlierExposureScorer}

    @classmethod
    def _fit(cls, bank, params):
        raise JbotEdgeError("scorer 'knn_oe' needs embeddings of pseudo-anomalous jets (outliers)")

    @classmethod
    def _fit_with_outliers(cls, bank, outliers, params, layout):
        if params.oe_weight == "auto":
            raise JbotEdgeError("scorer 'knn_oe': oe_weight=auto is resolved by evaluate from the teacher's data "
                                "preset (scorers.oe_weight_by_preset); give a number to fit the scorer directly")
        order = np.random.default_rng(params.seed).permutation(len(bank))
        n_calibration = int(round(params.calibration_fraction * len(bank)))
        if n_calibration < 1 or n_calibration >= len(bank):
            raise JbotEdgeError(f"scorer 'knn_oe': a bank of {len(bank)} jets leaves no calibration or no fit jets "
                                f"at calibration_fraction={params.calibration_fraction}")
        calibration, fit_bank = bank[np.sort(order[:n_calibration])], bank[np.sort(order[n_calibration:])]
        parts = {"knn": KnnScorer.fit(fit_bank, params.knn, network_dim=layout.network_dim),
                 "oe": OutlierExposureScorer.fit(fit_bank, params.oe, outliers=outliers,
                                                 network_dim=layout.network_dim)}
        arrays, info = {}, {"n_calibration": n_calibration, "n_fit": len(fit_bank)}
        for key, part in parts.items():
            arrays |= {f"{key}.{name}": value for name, value in part.arrays.items()}
            arrays[f"{key}.calibration"] = np.sort(part.score(calibration))
            info[key] = part.info
        return cls(params, arrays, info)

    def _part(self, key: str) -> Scorer:
        prefix = f"{key}."
        arrays = {name[len(prefix):]: value for name, value in self.arrays.items()
                  if name.startswith(prefix) and name != f"{key}.calibration"}
        return self._parts[key](getattr(self.params, key), arrays, self.info.get(key))

    def _score(self, x):
        weights = {"knn": 1.0, "oe": self.params.oe_weight}
        return sum(weights[key] * background_survival(self.arrays[f"{key}.calibration"], self._part(key).score(x))
                   for key in self._parts)


SCORERS: dict[str, type[Scorer]] = {cls.name: cls for cls in
                                    (KnnScorer, CosineScorer, MahalanobisScorer, ClassMahalanobisScorer,
                                     RelativeMahalanobisScorer, GmmScorer, KmeansScorer, OutlierExposureScorer,
                                     KnnOeScorer)}


def scorer_class(name: str) -> type[Scorer]:
    try:
        return SCORERS[name]
    except KeyError:
        raise JbotEdgeError(f"unknown scorer {shorten(name)}; expected one of {', '.join(SCORERS)}") from None


def make_params(name: str, params: dict | StrictModel | None = None) -> StrictModel:
    """Validate scorer parameters; an unknown or ill-typed parameter is a one-line error naming it."""
    import pydantic

    cls = scorer_class(name)
    if isinstance(params, cls.Params):
        return params
    if isinstance(params, StrictModel):
        params = params.model_dump()
    try:
        return cls.Params.model_validate(dict(params or {}))
    except pydantic.ValidationError as exc:
        from jbot_edge.config import format_validation_error

        raise JbotEdgeError(format_validation_error(exc, f"scorers.{name}")) from exc


def fit_scorer(name: str, bank: np.ndarray, params: dict | StrictModel | None = None,
               labels: np.ndarray | None = None, outliers: np.ndarray | None = None,
               network_dim: int | None = None) -> Scorer:
    """Fit scorer ``name`` on background-only embeddings ``bank`` [N, D] (``labels``: their classes, needed by the
    class-conditional scorers; ``outliers``: embeddings of pseudo-anomalies, needed by ``oe``; ``network_dim``: the
    leading columns that are the network's, the rest appended observables, see :class:`EmbeddingLayout`)."""
    return scorer_class(name).fit(bank, make_params(name, params), labels, outliers, network_dim)

"""Settings of ``jbot-edge evaluate`` (defaults in ``configs/evaluate/default.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from jbot_edge.config import StrictModel
from jbot_edge.data.pseudo_anomalies import PseudoAnomalyConfig
from jbot_edge.data.substructure import CONSTITUENT_OBSERVABLES, ObservableName as EmbeddingObservable
from jbot_edge.evaluate.lct import LctSettings
from jbot_edge.evaluate.metrics import LHC_CROSSING_RATE_MHZ
from jbot_edge.evaluate.scores import (ClassMahalanobisParams, CosineParams, GmmParams, KmeansParams, KnnOeParams,
                                       KnnParams, MahalanobisParams, OutlierExposureParams)
from jbot_edge.evaluate.two_sample import TwoSampleSettings

ScorerName = Literal["knn", "cosine", "mahalanobis", "mahalanobis_cc", "relative_mahalanobis", "gmm", "kmeans", "oe",
                     "knn_oe"]
SplitChoice = Literal["auto", "train", "val", "test", "all"]
ObservableName = Literal["mass", "m_over_pt", "multiplicity", "tau21", "tau32"]
#: Scores a teacher computes itself from the inputs (jbot_edge.models.registry.NATIVE_SCORES: the VAE's).
NativeScorerName = Literal["recon", "kl"]


class DataSettings(StrictModel):
    background: list[str] = Field(default_factory=lambda: ["q", "g"], description="labels forming the background")
    signals: list[str] | None = Field(default=None, description="signal labels; null = every other label present")
    bank_size: int = Field(default=20000, ge=1, description="background jets the scorers are fitted on (jBOT: 20k)")
    max_eval_background: int = Field(default=50000, ge=1, description="held-out background jets scored")
    max_eval_per_signal: int = Field(default=20000, ge=1, description="jets scored per signal label")
    split_seed: int = 0
    batch_size: int = Field(default=2048, ge=1, description="jets per teacher forward pass")
    bank_split: SplitChoice = Field(default="auto", description=(
        "held-out split (the file's /split) the bank is drawn from; auto: train (all of --bank-data when given)"))
    eval_split: SplitChoice = Field(default="auto", description=(
        "held-out split the evaluation jets are drawn from; auto: test (all of --data when --bank-data is another "
        "file)"))


def for_preset(by_preset: dict, preset: str | None):
    """``by_preset``'s entry for a teacher of data ``preset`` (its 'other' entry for presets not listed)."""
    return by_preset.get(preset or "", by_preset["other"])


def _require_other(by_preset: dict, key: str) -> None:
    if "other" not in by_preset:
        raise ValueError(f"{key} needs an 'other' entry (presets not listed)")


class EmbeddingSettings(StrictModel):
    source: Literal["teacher", "student"] = Field(default="teacher", description=(
        "backbone that embeds the jets: the EMA teacher, or the student stored next to it in teacher.pt"))
    features: Literal["cls", "cls+mean"] = Field(default="cls", description=(
        "[CLS] alone, or [CLS] concatenated with the mean particle token"))
    observables: list[EmbeddingObservable] | Literal["auto"] = Field(default="auto", description=(
        "jet-shape features appended to the embedding, standardised on the bank jets and recorded in the score "
        "head (pretrain.artifact.ObservableFeatures); empty: the network's embedding alone; auto: "
        "observables_by_preset[the teacher's data preset]"))
    observables_by_preset: dict[str, list[EmbeddingObservable]] = Field(
        default_factory=lambda: {"l1": ["log_m_over_pt"], "other": list(CONSTITUENT_OBSERVABLES)}, description=(
            "what observables: auto means for a teacher of each data preset ('other': every preset not listed)"))

    @model_validator(mode="after")
    def _other_preset_listed(self) -> EmbeddingSettings:
        _require_other(self.observables_by_preset, "observables_by_preset")
        return self

    def resolved_observables(self, preset: str | None) -> list[str]:
        """The observables for a teacher pre-trained on data of ``preset``."""
        if self.observables != "auto":
            return list(self.observables)
        return list(for_preset(self.observables_by_preset, preset))


class ReferenceSettings(StrictModel):
    untrained: bool = Field(default=True, description=(
        "also score with the same encoder untrained (same seeded init, scorer and jets): what pre-training bought"))


class ObservableSettings(StrictModel):
    enabled: bool = Field(default=True, description="score the evaluation jets with physics observables too")
    names: list[ObservableName] = Field(default_factory=lambda: ["mass", "m_over_pt", "multiplicity", "tau21",
                                                                 "tau32"])
    jet_r: float | None = Field(default=None, gt=0, description="N-subjettiness R0; null: the file's jet radius")


class ScorerSettings(StrictModel):
    knn: KnnParams = Field(default_factory=KnnParams)
    cosine: CosineParams = Field(default_factory=CosineParams)
    mahalanobis: MahalanobisParams = Field(default_factory=MahalanobisParams)
    mahalanobis_cc: ClassMahalanobisParams = Field(default_factory=ClassMahalanobisParams)
    relative_mahalanobis: ClassMahalanobisParams = Field(default_factory=ClassMahalanobisParams)
    gmm: GmmParams = Field(default_factory=GmmParams)
    kmeans: KmeansParams = Field(default_factory=KmeansParams)
    oe: OutlierExposureParams = Field(default_factory=OutlierExposureParams)
    knn_oe: KnnOeParams = Field(default_factory=KnnOeParams)
    oe_weight_by_preset: dict[str, float] = Field(
        default_factory=lambda: {"l1": 1.0, "other": 2.0}, description=(
            "knn_oe.oe_weight: auto means this weight for a teacher of each data preset ('other': every preset not "
            "listed)"))

    @model_validator(mode="after")
    def _weights_cover_other_presets(self) -> ScorerSettings:
        _require_other(self.oe_weight_by_preset, "oe_weight_by_preset")
        if any(not w > 0 for w in self.oe_weight_by_preset.values()):
            raise ValueError(f"oe_weight_by_preset weights must be > 0, got {self.oe_weight_by_preset}")
        return self

    def resolved_oe_weight(self, preset: str | None) -> float:
        """knn_oe's direction weight for a teacher pre-trained on data of ``preset``."""
        if self.knn_oe.oe_weight != "auto":
            return float(self.knn_oe.oe_weight)
        return float(for_preset(self.oe_weight_by_preset, preset))


class MetricSettings(StrictModel):
    fpr_targets: list[float] = Field(default_factory=lambda: [1e-1, 1e-2, 1e-3, 1e-4])
    sig_eff_targets: list[float] = Field(default_factory=lambda: [0.3, 0.5])
    uncertainty: Literal["bootstrap", "kfold"] = "bootstrap"
    n_resamples: int = Field(default=20, ge=2, description="bootstrap resamples or k folds")
    seed: int = 0

    @field_validator("fpr_targets", "sig_eff_targets")
    @classmethod
    def _in_unit_interval(cls, values: list[float]) -> list[float]:
        if not values or any(not 0 < v < 1 for v in values):
            raise ValueError("targets must be a non-empty list of numbers in (0, 1)")
        return values


class TriggerSettings(StrictModel):
    rate_budget_khz: list[float] = Field(default_factory=lambda: [1.0, 3.0, 10.0],
                                         description="L1 accept-rate budgets to evaluate (CICADA: 3 kHz)")
    background_rate_mhz: float = Field(default=LHC_CROSSING_RATE_MHZ, gt=0,
                                       description="crossing rate the budget is a fraction of")
    jets_per_crossing: int = Field(default=1, ge=1, description="scored jets per crossing (any passing fires)")

    @model_validator(mode="after")
    def _budget_below_rate(self) -> TriggerSettings:
        bad = [r for r in self.rate_budget_khz if not 0 < r < self.background_rate_mhz * 1e3]
        if bad:
            raise ValueError(f"rate budgets {bad} kHz must lie in (0, background_rate_mhz·1000)")
        return self


class ClusteringSettings(StrictModel):
    enabled: bool = True
    normalize: bool = True
    max_points: int = Field(default=20000, ge=10, description="jets used for k-means NMI/ARI/purity")
    pca_points: int = Field(default=5000, ge=10)
    tsne: bool = True
    tsne_points: int = Field(default=1500, ge=10, description="t-SNE is slow: a subsample")
    perplexity: float = Field(default=30.0, gt=1)


class ProbeSettings(StrictModel):
    enabled: bool = True
    train_fraction: float = Field(default=0.5, gt=0, lt=1)
    knn_k: int = Field(default=20, ge=1)
    max_jets: int = Field(default=40000, ge=10, description="evaluation jets used by the probes")


class FinetuneSettings(StrictModel):
    enabled: bool = True
    label_fractions: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0])
    train_fraction: float = Field(default=0.7, gt=0, lt=1, description="share of the jets for training")
    max_jets: int = Field(default=20000, ge=10, description="evaluation jets used (train + test)")
    epochs: int = Field(default=20, ge=1, description="passes over each label subset")
    min_steps: int = Field(default=200, ge=1, description="at least this many steps per run (small fractions)")
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    layer_decay: float = Field(default=0.75, gt=0, le=1, description="layer-wise lr decay for the pre-trained arm")
    scratch_layer_decay: float = Field(default=1.0, gt=0, le=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    signal_labels: list[str] | None = Field(default=None, description=(
        "binary fine-tuning: these labels (class 1) vs data.background (class 0), other labels dropped; "
        "null: one class per label present"))
    save_model: bool = Field(default=True, description=(
        "write EVAL_DIR/finetuned.pt: the fine-tuned classifier of the largest label fraction"))

    @field_validator("label_fractions")
    @classmethod
    def _fractions(cls, values: list[float]) -> list[float]:
        if not values or any(not 0 < v <= 1 for v in values):
            raise ValueError("label fractions must be a non-empty list of numbers in (0, 1]")
        return sorted(values)


class EvaluateConfig(StrictModel):
    scorer: ScorerName | NativeScorerName = Field(default="knn_oe", description=(
        "scorer saved as RUN_DIR's score head; recon|kl (VAE teachers) are reported as the headline score but "
        "write no score head (they are not functions of the embedding)"))
    compare: list[ScorerName] = Field(default_factory=lambda: ["knn", "oe", "knn_oe", "cosine", "mahalanobis",
                                                               "mahalanobis_cc", "relative_mahalanobis", "gmm",
                                                               "kmeans"],
                                      description="scorers evaluated (the score-head scorer is always added)")
    allow_preset_mismatch: bool = Field(default=False, description="evaluate a teacher on another data preset")
    write_score_head: bool = True
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, description="torch threads (null: torch default)")
    data: DataSettings = Field(default_factory=DataSettings)
    scorers: ScorerSettings = Field(default_factory=ScorerSettings)
    metrics: MetricSettings = Field(default_factory=MetricSettings)
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
    clustering: ClusteringSettings = Field(default_factory=ClusteringSettings)
    probes: ProbeSettings = Field(default_factory=ProbeSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    observables: ObservableSettings = Field(default_factory=ObservableSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    reference: ReferenceSettings = Field(default_factory=ReferenceSettings)
    pseudo_anomalies: PseudoAnomalyConfig = Field(default_factory=PseudoAnomalyConfig, description=(
        "how the oe scorer's pseudo-anomalous jets are made from the bank jets (jbot_edge.data.pseudo_anomalies)"))
    lct: LctSettings = Field(default_factory=LctSettings)
    two_sample: TwoSampleSettings = Field(default_factory=TwoSampleSettings)

    @property
    def native_scorer(self) -> bool:
        return self.scorer in ("recon", "kl")

    @model_validator(mode="after")
    def _score_head_is_compared(self) -> EvaluateConfig:
        if not self.native_scorer and self.scorer not in self.compare:
            self.compare = [*self.compare, self.scorer]
        if len(set(self.compare)) != len(self.compare):
            raise ValueError(f"compare lists a scorer twice: {self.compare}")
        return self

    @model_validator(mode="after")
    def _observable_inputs_exist(self) -> EvaluateConfig:
        if self.embedding.observables:  # a list, or auto (checked once the teacher's preset is known)
            return self
        asking = {"oe": self.scorers.oe.inputs, "knn_oe.oe": self.scorers.knn_oe.oe.inputs}
        for key, inputs in asking.items():
            if key.split(".")[0] in self.compare and inputs == "observables":
                raise ValueError(f"scorers.{key}.inputs=observables needs the jet-shape observables, but "
                                 f"embedding.observables is empty (set scorers.{key}.inputs=all to use the embedding)")
        return self

"""``jbot-edge evaluate`` end to end: embed, score with every scorer, measure, cluster, probe, fine-tune, plot.

Outputs (EVAL_DIR is written to a temporary sibling and renamed into place whole, so it is complete or absent)::

    EVAL_DIR/evaluate.json      schema "jbot-edge.evaluate" v1:
        teacher {path, sha256, data_preset, embed_dim, input_spec}, data {path, preset, n_jets, label_names},
        split {seed, bank_size(_requested), bank_counts, eval_counts, ...}     (see embed.py: bank ∩ eval = ∅)
        score_head {name, written, path, fpga_friendly, fpga_note}
        signals {SIGNAL: METRICS}            the score-head scorer's metrics (same as scorers[score_head.name])
        trigger [TRIGGER_ROW, ...]           the score-head scorer's trigger view
        scorers {SCORER: {params, fpga_friendly, fpga_note, fit_info, fit_seconds, score_seconds,
                          signals {SIGNAL: METRICS}, trigger [TRIGGER_ROW, ...],
                          mass_sculpting {...}}}   (when the file stores jet_mass; see sculpting.py)
                 SCORER also includes the teacher's native scores (VAE: recon, kl; "native": true)
        lct {...}                            the linear classifier test per signal (see lct.py)
        two_sample {...}                     signal-agnostic two-sample test + null calibration (two_sample.py)
        clustering {nmi, ari, purity, n_jets, n_clusters, normalize}, projections {pca: {...}, tsne: {...}}
        probes {linear {accuracy, auc_macro_ovr}, knn {...}, majority_class_accuracy, n_train, n_test}
        finetune {classes, runs [{label_fraction, finetune {accuracy, auc_macro_ovr, history, ...}, scratch {...}}],
                  saved: "finetuned.pt" | null}   (binary with finetune.signal_labels; model: see finetune.py)
        plots [file names], timing {stage: seconds}
      METRICS = {auc, tpr_at_fpr {"1e-1": .., "1e-2": .., "1e-3": .., "1e-4": ..}, tpr_at_fpr_resolved {...},
                 inv_bkg_eff_at_sig_eff {"0.3": .., "0.5": ..}, inv_bkg_eff_lower_bound {...},
                 n_background, n_signal, uncertainty {method, n_resamples, auc, tpr_at_fpr, inv_bkg_eff_at_sig_eff}}
      TRIGGER_ROW = see jbot_edge.evaluate.metrics.trigger_view
    EVAL_DIR/config.yaml        the resolved EvaluateConfig
    EVAL_DIR/*.png              see jbot_edge.evaluate.plots
    RUN_DIR/score_head.{npz,json}   the chosen scorer (see jbot_edge.evaluate.score_head), unless
                                    write_score_head=false

Every float in evaluate.json is checked finite before writing: a NaN is a bug and stops the command.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic

from jbot_edge import __version__
from jbot_edge.atomic import atomic_directory, write_json
from jbot_edge.config import format_validation_error, save_config
from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate.config import EvaluateConfig, MetricSettings, TriggerSettings
from jbot_edge.evaluate.metrics import metrics_with_uncertainty
from jbot_edge.evaluate.scores import fit_scorer
from jbot_edge.logs import get_logger

if TYPE_CHECKING:
    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.clustering import Projection
    from jbot_edge.evaluate.embed import EvaluationSplit
    from jbot_edge.evaluate.score_head import ScoreHead
    from jbot_edge.pretrain.artifact import Teacher

log = get_logger(__name__)

SCHEMA_NAME = "jbot-edge.evaluate"
SCHEMA_VERSION = 1


def check_preset(teacher_preset: str | None, data_preset: str | None, data_path: Path, allow: bool) -> None:
    """A teacher pre-trained on one preset (e.g. jetnet, R=0.8) must not silently score another (l1, R=0.4)."""
    if teacher_preset is None or data_preset is None:
        log.warning("cannot compare data presets (teacher: %s, %s: %s); evaluating anyway", teacher_preset,
                    data_path.name, data_preset)
        return
    if teacher_preset != data_preset:
        if not allow:
            raise JbotEdgeError(f"{data_path}: data preset {data_preset!r} differs from the teacher's training preset "
                                f"{teacher_preset!r}; pass allow_preset_mismatch=true to evaluate anyway")
        log.warning("teacher preset %r ≠ data preset %r (allowed by allow_preset_mismatch)", teacher_preset,
                    data_preset)


def assert_finite(value: Any, where: str = "evaluate.json") -> None:
    """Raise if any float in a nested dict/list is NaN or infinite, naming its key path."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert_finite(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            assert_finite(v, f"{where}[{i}]")
    elif isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        raise RuntimeError(f"{where} is {value}: refusing to write a non-finite number")


def _gather_inputs(jet_file, index: np.ndarray, spec) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs for sorted file ``index``, streamed block by block (never the whole file)."""
    from jbot_edge.data.preprocessing import build_inputs

    features = spec.stored_features()
    xs, masks = [], []
    block = 16384
    for lo in range(0, len(jet_file), block):
        a, b = np.searchsorted(index, [lo, lo + block])
        if a == b:
            continue
        chunk = jet_file.read(slice(lo, min(lo + block, len(jet_file))), particle_features=features,
                              jet_features=[]).select(index[a:b] - lo)
        x, m = build_inputs(chunk, spec)
        xs.append(x)
        masks.append(m)
    return np.concatenate(xs), np.concatenate(masks)


def _log_split(split, labels: np.ndarray, bank_labels: np.ndarray, data_path: Path, bank_path: Path,
               teacher) -> None:
    """State which jets the bank and the evaluation use, and warn when they may include the teacher's training
    jets."""
    from jbot_edge.evaluate.embed import split_where

    log.info("bank: %d background jets from %s; evaluation: %d jets from %s", len(split.bank_index),
             split_where(split.bank_splits, str(bank_path)), len(split.eval_index),
             split_where(split.eval_splits, str(data_path)))
    trained_on = teacher.data.get("file")
    if trained_on and Path(trained_on).resolve() == data_path.resolve() and (
            split.eval_splits is None or "train" in split.eval_splits):
        log.warning("the teacher was pre-trained on %s and the evaluation jets include its train split: the scores "
                    "are not held out", data_path)


def _read_jets(jet_file, index: np.ndarray, features: list[str]):
    """The jets at sorted file ``index`` as one JetBatch (read block by block, only the named particle features)."""
    from jbot_edge.data.format import JetBatch

    parts = []
    block = 16384
    for lo in range(0, len(jet_file), block):
        a, b = np.searchsorted(index, [lo, lo + block])
        if a < b:
            parts.append(jet_file.read(slice(lo, min(lo + block, len(jet_file))), particle_features=features,
                                       jet_features=[]).select(index[a:b] - lo))
    return JetBatch.concatenate(parts)


def needs_pseudo_anomalies(name: str) -> bool:
    """Whether scorer ``name`` is fitted on embeddings of pseudo-anomalies as well (``oe``, ``knn_oe``)."""
    from jbot_edge.evaluate.scores import SCORERS

    return name in SCORERS and SCORERS[name].needs_outliers


def with_preset_observables(cfg: EvaluateConfig, preset: str | None) -> EvaluateConfig:
    """``embedding.observables: auto`` replaced by the list for the teacher's data preset (validated again, so that
    an oe part asking for observables that this preset does not get is the usual one-line error)."""
    if cfg.embedding.observables != "auto":
        return cfg
    names = cfg.embedding.resolved_observables(preset)
    log.info("embedding.observables: auto → %s for a teacher of the %s preset", names or "none", preset or "unknown")
    try:
        return EvaluateConfig.model_validate({**cfg.model_dump(), "embedding": {**cfg.embedding.model_dump(),
                                                                               "observables": names}})
    except pydantic.ValidationError as exc:
        raise JbotEdgeError(format_validation_error(exc, f"embedding.observables=auto ({preset} preset)")) from exc


def with_preset_oe_weight(cfg: EvaluateConfig, preset: str | None) -> EvaluateConfig:
    """``scorers.knn_oe.oe_weight: auto`` replaced by ``scorers.oe_weight_by_preset`` for the teacher's data preset,
    so that the score head records a number."""
    if cfg.scorers.knn_oe.oe_weight != "auto":
        return cfg
    weight = cfg.scorers.resolved_oe_weight(preset)
    log.info("scorers.knn_oe.oe_weight: auto → %g for a teacher of the %s preset", weight, preset or "unknown")
    knn_oe = cfg.scorers.knn_oe.model_copy(update={"oe_weight": weight})
    return cfg.model_copy(update={"scorers": cfg.scorers.model_copy(update={"knn_oe": knn_oe})})


def without_jet_only_parts(cfg: EvaluateConfig, teacher) -> tuple[EvaluateConfig, str | None]:
    """The outlier-exposure scorers (``oe``, ``knn_oe``) and the embedding's jet-shape observables assume jets of
    (pT, Δη, Δφ) constituents: for teachers whose inputs carry more (particle ids, event-level objects) the scorers
    are dropped from ``compare`` (when one was the headline, Mahalanobis takes its place) and
    ``embedding.observables`` is emptied. The returned note says so (logged and recorded in evaluate.json); nothing
    else changes."""
    from jbot_edge.data.pseudo_anomalies import check_rebuildable

    unusable = [s for s in dict.fromkeys([*cfg.compare, cfg.scorer]) if needs_pseudo_anomalies(s)]
    if not unusable and not cfg.embedding.observables:
        return cfg, None
    try:
        check_rebuildable(teacher.input_spec.features)
    except JbotEdgeError:
        compare = [s for s in cfg.compare if s not in unusable]
        scorer = "mahalanobis" if cfg.scorer in unusable else cfg.scorer
        left_out = unusable + (["embedding.observables"] if cfg.embedding.observables else [])
        note = (f"the teacher's inputs {list(teacher.input_spec.features)} are more than jet constituents' "
                f"(pT, Δη, Δφ): {', '.join(left_out)} left out"
                + ("; score head: mahalanobis" if cfg.scorer in unusable else ""))
        log.warning("%s", note)
        embedding = cfg.embedding.model_copy(update={"observables": []})
        return cfg.model_copy(update={"compare": compare or [scorer], "scorer": scorer,
                                      "embedding": embedding}), note
    return cfg, None


def embedding_observables(cfg: EvaluateConfig, bank_file, bank_index: np.ndarray):
    """``embedding.observables`` as an :class:`~jbot_edge.pretrain.artifact.ObservableFeatures` standardised on the
    bank jets, or None when the list is empty."""
    if not cfg.embedding.observables:
        return None
    from jbot_edge.data.provenance import jet_radius
    from jbot_edge.pretrain.artifact import ObservableFeatures

    r0, origin = (cfg.observables.jet_r, "observables.jet_r") if cfg.observables.jet_r else jet_radius(
        bank_file.provenance)
    jets = _read_jets(bank_file, bank_index, ObservableFeatures.particle_features(bank_file.particle_features))
    spec = ObservableFeatures.fit(jets, list(cfg.embedding.observables), r0)
    log.info("embedding + %s, standardised on %d bank jets (N-subjettiness R0 = %g from %s)",
             ", ".join(spec.names), len(bank_index), r0, origin)
    return spec


def _with_shape_of(network: np.ndarray, embedded: np.ndarray, teacher) -> np.ndarray:
    """``network`` embeddings of the same jets as ``embedded`` (made by ``teacher``), followed by the jet-shape
    observable columns ``teacher`` appended to ``embedded`` (none when it appends none)."""
    if teacher.observables is None:
        return network
    return np.concatenate([network, embedded[:, -len(teacher.observables.names):]], axis=1)


def pseudo_anomaly_embeddings(cfg: EvaluateConfig, teachers: list, bank_file, bank_index: np.ndarray) -> list:
    """Embeddings, one array per teacher, of pseudo-anomalies made of the bank jets (for ``oe`` and ``knn_oe``)."""
    from jbot_edge.data.provenance import jet_radius
    from jbot_edge.data.pseudo_anomalies import REBUILDABLE_FEATURES, check_rebuildable, make_pseudo_anomalies

    check_rebuildable(teachers[0].input_spec.features, "scorer oe")
    features = [f for f in REBUILDABLE_FEATURES if f in bank_file.particle_features]
    bank_jets = _read_jets(bank_file, bank_index, features)
    n = cfg.scorers.oe.n_outliers or len(bank_index)
    radius, origin = jet_radius(bank_file.provenance)
    anomalies = make_pseudo_anomalies(bank_jets, n, cfg.pseudo_anomalies, radius, np.random.default_rng(cfg.seed))
    log.info("oe: %d pseudo-anomalies made of bank jets (jet radius %g from %s)", n, radius, origin)
    return [t.embed(anomalies, batch_size=cfg.data.batch_size) for t in teachers]


def _subsample(n: int, max_n: int, seed: int) -> np.ndarray:
    if n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))


def _score_stats(background_scores: np.ndarray) -> dict[str, float]:
    q = np.quantile(background_scores, [0.5, 0.9, 0.99, 0.999])
    return {"n": int(len(background_scores)), "mean": float(background_scores.mean()),
            "std": float(background_scores.std()), "min": float(background_scores.min()),
            "max": float(background_scores.max()), "q50": float(q[0]), "q90": float(q[1]), "q99": float(q[2]),
            "q999": float(q[3])}


def scorer_signal_report(scores: np.ndarray, is_background: np.ndarray, eval_labels: np.ndarray,
                         signal_ids: dict[str, int], eval_mass: np.ndarray | None, m: MetricSettings,
                         t: TriggerSettings) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    """Metrics per signal, trigger view and mass sculpting of one per-jet score (higher = more anomalous)."""
    from jbot_edge.evaluate.metrics import trigger_view
    from jbot_edge.evaluate.sculpting import mass_sculpting

    background, signals = _by_class(scores, eval_labels, is_background, signal_ids)
    report = {
        "signals": _metrics_per_signal(background, signals, m),
        "trigger": trigger_view(background, signals, t.rate_budget_khz, t.background_rate_mhz, t.jets_per_crossing),
    }
    if eval_mass is not None:  # background mass sculpting by this score's cut (see sculpting.py)
        report["mass_sculpting"] = mass_sculpting(background, eval_mass[is_background])
    return report, background, signals


def finetune_classes(x: np.ndarray, mask: np.ndarray, y_file: np.ndarray, label_names: list[str],
                     background: list[str], signal_labels: list[str] | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(x, mask, class ids, class names): one class per label present, or binary background vs ``signal_labels``."""
    if signal_labels is None:
        present = np.unique(y_file)
        return x, mask, np.searchsorted(present, y_file), [label_names[i] for i in present]
    unknown = [s for s in signal_labels if s not in label_names or s in background]
    if unknown:
        raise JbotEdgeError(f"finetune.signal_labels: {unknown} are not non-background labels of the file "
                            f"(labels {label_names}, background {background})")
    sig = np.isin(y_file, [label_names.index(s) for s in signal_labels])
    keep = sig | np.isin(y_file, [label_names.index(b) for b in background])
    if sig[keep].all() or not sig[keep].any():
        raise JbotEdgeError(f"finetune.signal_labels {signal_labels}: the fine-tuning jets hold only one class")
    return x[keep], mask[keep], sig[keep].astype(np.int64), ["+".join(background), "+".join(signal_labels)]


def embedding_tests(cfg: EvaluateConfig, bank: np.ndarray, background: np.ndarray,
                    signals: dict[str, np.ndarray]) -> dict[str, Any]:
    """The ``lct`` and ``two_sample`` sections (each when enabled): label-aware and signal-agnostic tests."""
    from jbot_edge.evaluate.lct import lct_report
    from jbot_edge.evaluate.two_sample import two_sample_report

    out: dict[str, Any] = {}
    if cfg.lct.enabled:
        out["lct"] = lct_report(background, signals, cfg.lct, seed=cfg.seed)
        log.info("LCT: " + "  ".join(f"{s}: AUC {r['auc']:.3f}" for s, r in out["lct"]["signals"].items()))
    if cfg.two_sample.enabled:
        out["two_sample"] = two_sample_report(bank, background, signals, cfg.two_sample, seed=cfg.seed)
        log.info("two-sample test: null KS p %.3f; " % out["two_sample"]["null"]["ks_pvalue"]
                 + "  ".join(f"{s}: p {r['p_value']:.3g}" for s, r in out["two_sample"]["signals"].items()))
    return out


def _by_class(scores: np.ndarray, labels: np.ndarray, is_background: np.ndarray,
              signal_ids: dict[str, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scores of the background jets and of each signal's jets."""
    return scores[is_background], {s: scores[labels == i] for s, i in signal_ids.items()}


def _metrics_per_signal(background: np.ndarray, signals: dict[str, np.ndarray], m) -> dict[str, dict]:
    return {s: metrics_with_uncertainty(background, sig, m.fpr_targets, m.sig_eff_targets, m.uncertainty,
                                        m.n_resamples, m.seed) for s, sig in signals.items()}


def best_observable(observables: dict[str, dict]) -> dict[str, dict]:
    """Per signal, the observable with the highest AUC (a reference to beat: the orientations stay fixed)."""
    signals = next(iter(observables.values()))["signals"] if observables else {}
    out = {}
    for signal in signals:
        name = max(observables, key=lambda n: observables[n]["signals"][signal]["auc"])
        out[signal] = {"name": name, "auc": observables[name]["signals"][signal]["auc"]}
    return out


def untrained_reference(scorer: str, untrained: dict[str, dict], trained: dict[str, dict]) -> dict:
    """The ``reference.untrained`` block: the untrained encoder's metrics with the same scorer, and per signal the
    AUC gained by pre-training with its bootstrap error (both errors added in quadrature)."""
    return {
        "scorer": scorer, "source": "untrained (same architecture, seeded init and input normalisation)",
        "signals": untrained,
        "delta_auc": {s: trained[s]["auc"] - m["auc"] for s, m in untrained.items()},
        "delta_auc_error": {s: math.hypot(trained[s]["uncertainty"]["auc"], m["uncertainty"]["auc"])
                            for s, m in untrained.items()},
    }


class _StageTimer:
    """Seconds per stage (evaluate.json's ``timing``), each measured from the end of the previous stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._clock, 3)
        self._clock = now


@dataclass
class _Evaluation:
    """The request once checked: the (adjusted) config, the teacher and where everything is read and written."""

    cfg: EvaluateConfig
    teacher: Teacher
    oe_note: str | None  # why jet-only parts of the config were left out (see without_jet_only_parts)
    teacher_sha: str
    run_dir: Path
    out_dir: Path
    data_path: Path
    bank_path: Path
    timer: _StageTimer


@dataclass
class _Embeddings:
    """The teacher's embeddings of the bank and evaluation jets, and those the references and ``oe`` need."""

    description: dict[str, Any]  # how they are made: evaluate.json's teacher.embedding and the score head's
    bank: np.ndarray
    bank_labels: np.ndarray
    eval: np.ndarray
    untrained: tuple[np.ndarray, np.ndarray] | None  # (bank, evaluation) by the untrained network
    outliers: np.ndarray | None  # pseudo-anomalies made of bank jets
    untrained_outliers: np.ndarray | None


@dataclass
class _Inputs:
    """Everything read from the jet files (open only while this is gathered)."""

    data_preset: str | None
    labels: np.ndarray  # every jet of the data file
    label_names: list[str]
    split: EvaluationSplit
    split_report: dict[str, Any]
    emb: _Embeddings
    eval_labels: np.ndarray
    eval_mass: np.ndarray | None
    is_background: np.ndarray
    signal_ids: dict[str, int]
    observable_scores: dict[str, np.ndarray] | None
    finetune_inputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (x, mask, file label) of a subsample
    native: dict[str, np.ndarray]  # the teacher's own scores (VAE: recon, kl)

    def by_class(self, scores: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return _by_class(scores, self.eval_labels, self.is_background, self.signal_ids)


@dataclass
class _Scored:
    """Every score of the evaluation jets, split by class, and its report."""

    reports: dict[str, dict] = field(default_factory=dict)  # evaluate.json's scorers
    fitted: dict[str, Any] = field(default_factory=dict)  # the fitted scorers by name
    by_class: dict[str, tuple] = field(default_factory=dict)  # name → (background scores, {signal: scores})
    observables: dict[str, dict] = field(default_factory=dict)  # evaluate.json's observables
    references: dict[str, tuple] = field(default_factory=dict)  # observables and untrained, by class (plotted)
    untrained: dict | None = None  # evaluate.json's reference.untrained


@dataclass
class _Results:
    """The report and what is written besides it."""

    report: dict[str, Any]
    head: ScoreHead | None = None  # saved in RUN_DIR (None for a native score)
    projections: list[Projection] = field(default_factory=list)
    kept: dict[str, Any] = field(default_factory=dict)  # the fine-tuned classifier to save (largest label fraction)


def run_evaluate(cfg: EvaluateConfig, run_dir: str | os.PathLike[str], data_path: str | os.PathLike[str],
                 out_dir: str | os.PathLike[str] | None = None,
                 bank_path: str | os.PathLike[str] | None = None) -> dict:
    """Evaluate the teacher in ``run_dir`` on ``data_path``; write EVAL_DIR and the score head; return the report.

    The bank comes from the ``train`` split and the scored jets from the ``test`` split of ``data_path`` (see
    :func:`jbot_edge.evaluate.embed.choose_jets`); with ``bank_path`` (another file) the bank comes from it."""
    ev = _prepare(cfg, run_dir, data_path, out_dir, bank_path)
    inputs = _read_inputs(ev)
    scored = _score(ev, inputs)
    results = _Results(report=_report(ev, inputs, scored))
    results.head = _add_score_sections(ev, inputs, scored, results.report)
    _label_aware_analyses(ev, inputs, results)
    _write_outputs(ev, inputs, scored, results)
    log.info("wrote %s (score head: %s%s)", ev.out_dir / "evaluate.json", ev.cfg.scorer,
             f" → {ev.run_dir / 'score_head.json'}" if results.report["score_head"]["written"] else ", not written")
    return results.report


def _prepare(cfg: EvaluateConfig, run_dir: str | os.PathLike[str], data_path: str | os.PathLike[str],
             out_dir: str | os.PathLike[str] | None, bank_path: str | os.PathLike[str] | None) -> _Evaluation:
    """Load the teacher, adapt the config to it and refuse what cannot be evaluated."""
    import torch

    from jbot_edge.evaluate.score_head import file_sha256
    from jbot_edge.pretrain.artifact import load_teacher

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    timer = _StageTimer()
    data_path = Path(data_path)
    teacher = load_teacher(run_dir, source=cfg.embedding.source, features=cfg.embedding.features)
    cfg = with_preset_oe_weight(with_preset_observables(cfg, teacher.data_preset), teacher.data_preset)
    cfg, oe_note = without_jet_only_parts(cfg, teacher)
    run_dir = teacher.path.parent
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "evaluate"
    if out_dir.resolve() == run_dir.resolve() or run_dir.resolve().is_relative_to(out_dir.resolve()):
        raise JbotEdgeError(f"--out {out_dir}: EVAL_DIR is replaced as a whole, so it must not be the run directory "
                            f"{run_dir} or contain it (default: {run_dir / 'evaluate'})")
    teacher_sha = file_sha256(teacher.path)
    if cfg.native_scorer and cfg.scorer not in teacher.native_score_names:
        raise JbotEdgeError(f"--scorer {cfg.scorer}: a {teacher.method} teacher has no such score (native scores: "
                            f"{', '.join(teacher.native_score_names) or 'none'}; recon and kl need a vae or oe-vae "
                            "teacher)")
    return _Evaluation(cfg=cfg, teacher=teacher, oe_note=oe_note, teacher_sha=teacher_sha, run_dir=run_dir,
                       out_dir=out_dir, data_path=data_path,
                       bank_path=data_path if bank_path is None else Path(bank_path), timer=timer)


def _read_inputs(ev: _Evaluation) -> _Inputs:
    """Split the jets, embed them and read what the scores, references and fine-tuning need, with the files open."""
    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.embed import choose_jets
    from jbot_edge.evaluate.sculpting import read_jet_feature

    cfg, teacher = ev.cfg, ev.teacher
    separate_bank = ev.bank_path.resolve() != ev.data_path.resolve()
    with contextlib.ExitStack() as stack:
        jet_file = stack.enter_context(JetFile(ev.data_path))
        bank_file = stack.enter_context(JetFile(ev.bank_path)) if separate_bank else jet_file
        for f in {id(jet_file): jet_file, id(bank_file): bank_file}.values():
            teacher.input_spec.check_file(f)
            check_preset(teacher.data_preset, f.provenance.get("preset"), f.path, cfg.allow_preset_mismatch)
        data_preset = jet_file.provenance.get("preset")
        labels = jet_file.labels()
        label_names = jet_file.label_names
        split = choose_jets(cfg.data, jet_file, bank_file, str(ev.data_path), str(ev.bank_path))
        _log_split(split, labels, bank_file.labels(), ev.data_path, ev.bank_path, teacher)
        emb = _embed(ev, jet_file, bank_file, split)
        eval_labels = labels[split.eval_index]
        eval_mass = read_jet_feature(jet_file, split.eval_index, "jet_mass")
        log.info("embedded %d bank + %d evaluation jets (D=%d)", len(emb.bank), len(emb.eval), emb.eval.shape[1])
        observable_scores = _observable_scores(ev, jet_file, split.eval_index)
        split_report = {**split.summary(labels, bank_file.labels()), "file_split": jet_file.split_summary()}
        if separate_bank:
            split_report["bank_file_split"] = bank_file.split_summary()
        finetune_inputs = None
        if cfg.finetune.enabled:
            pick = _subsample(len(split.eval_index), cfg.finetune.max_jets, cfg.seed)
            finetune_inputs = (*_gather_inputs(jet_file, split.eval_index[pick], teacher.input_spec),
                               eval_labels[pick])
        # The teacher's own scores (VAE: reconstruction, KL) need the inputs, not the embedding.
        native = (teacher.native_scores(*_gather_inputs(jet_file, split.eval_index, teacher.input_spec))
                  if teacher.native_score_names else {})
    return _Inputs(data_preset=data_preset, labels=labels, label_names=label_names, split=split,
                   split_report=split_report, emb=emb, eval_labels=eval_labels, eval_mass=eval_mass,
                   is_background=np.isin(eval_labels, [label_names.index(n) for n in split.background]),
                   signal_ids={n: label_names.index(n) for n in split.signals},
                   observable_scores=observable_scores, finetune_inputs=finetune_inputs, native=native)


def _embed(ev: _Evaluation, jet_file: JetFile, bank_file: JetFile, split: EvaluationSplit) -> _Embeddings:
    """The teacher's embeddings (jet-shape observables appended when configured), the untrained network's and
    those of the pseudo-anomalies, as the config asks."""
    from jbot_edge.evaluate.embed import embed_index

    cfg, teacher, batch_size = ev.cfg, ev.teacher, ev.cfg.data.batch_size
    teacher.observables = embedding_observables(cfg, bank_file, split.bank_index)
    description = {**cfg.embedding.model_dump(exclude={"observables", "observables_by_preset"}),
                   **({} if teacher.observables is None else {"observables": teacher.observables.model_dump()})}
    bank = embed_index(teacher, bank_file, split.bank_index, batch_size, "embedding bank jets")
    bank_labels = bank_file.labels()[split.bank_index]
    eval_emb = embed_index(teacher, jet_file, split.eval_index, batch_size, "embedding evaluation jets")
    ev.timer.lap("embed")
    untrained, untrained_emb = _embed_untrained(ev, jet_file, bank_file, split, bank, eval_emb)
    outliers = untrained_outliers = None
    if any(needs_pseudo_anomalies(name) for name in cfg.compare):
        teachers = [teacher] + ([untrained] if cfg.reference.untrained and needs_pseudo_anomalies(cfg.scorer)
                                else [])
        outliers, *rest = pseudo_anomaly_embeddings(cfg, teachers, bank_file, split.bank_index)
        untrained_outliers = _with_shape_of(rest[0], outliers, teacher) if rest else None
        ev.timer.lap("pseudo-anomalies")
    return _Embeddings(description=description, bank=bank, bank_labels=bank_labels, eval=eval_emb,
                       untrained=untrained_emb, outliers=outliers, untrained_outliers=untrained_outliers)


def _embed_untrained(ev: _Evaluation, jet_file: JetFile, bank_file: JetFile, split: EvaluationSplit,
                     bank: np.ndarray, eval_emb: np.ndarray) -> tuple[Teacher | None, tuple | None]:
    """The untrained network and its (bank, evaluation) embeddings, when the untrained reference is asked for."""
    from jbot_edge.evaluate.embed import embed_index
    from jbot_edge.pretrain.artifact import load_teacher

    cfg, teacher, batch_size = ev.cfg, ev.teacher, ev.cfg.data.batch_size
    # The untrained row re-fits the score-head scorer on embeddings: not defined for a native (recon/kl) head.
    if not cfg.reference.untrained or cfg.native_scorer:
        return None, None
    # The network alone: the jet-shape columns are the same jets' and are copied, not recomputed.
    untrained = load_teacher(ev.run_dir, source="untrained", features=cfg.embedding.features)
    untrained_emb = (
        _with_shape_of(embed_index(untrained, bank_file, split.bank_index, batch_size, "untrained: bank"),
                       bank, teacher),
        _with_shape_of(embed_index(untrained, jet_file, split.eval_index, batch_size, "untrained: evaluation"),
                       eval_emb, teacher))
    ev.timer.lap("embed untrained")
    return untrained, untrained_emb


def _observable_scores(ev: _Evaluation, jet_file: JetFile, eval_index: np.ndarray) -> dict[str, np.ndarray] | None:
    if not ev.cfg.observables.enabled:
        return None
    from jbot_edge.evaluate.observables import observable_scores

    scores = observable_scores(jet_file, eval_index, r0=ev.cfg.observables.jet_r, names=ev.cfg.observables.names)
    ev.timer.lap("observables")
    return scores


def _log_aucs(name: str, signals: dict[str, dict]) -> None:
    log.info("%-11s " + "  ".join(f"{s}: AUC {r['auc']:.3f}" for s, r in signals.items()), name)


def _score(ev: _Evaluation, inputs: _Inputs) -> _Scored:
    """Every scorer of ``compare`` fitted on the bank, the teacher's native scores, the observables and the
    untrained reference, each with its metrics per signal."""
    cfg, emb, scored = ev.cfg, inputs.emb, _Scored()
    for name in cfg.compare:
        t0 = time.perf_counter()
        scorer = fit_scorer(name, emb.bank, getattr(cfg.scorers, name), emb.bank_labels, emb.outliers,
                            ev.teacher.network_dim)
        t1 = time.perf_counter()
        scores = scorer.score(emb.eval)
        t2 = time.perf_counter()
        section = _signal_report(ev, inputs, scores, scored, name)
        scored.reports[name] = {
            "params": scorer.params.model_dump(mode="json"), "fpga_friendly": scorer.fpga_friendly,
            "fpga_note": scorer.fpga_note, "formula": scorer.formula, "fit_info": scorer.info,
            "fit_seconds": round(t1 - t0, 3), "score_seconds": round(t2 - t1, 3), **section,
        }
        scored.fitted[name] = scorer
    for name, scores in inputs.native.items():
        section = _signal_report(ev, inputs, scores, scored, name)
        scored.reports[name] = {"native": True, "fpga_friendly": False, "fpga_note": (
            f"the {ev.teacher.method} teacher's own score from the inputs (not a function of the embedding): "
            "no score head"), **section}
    ev.timer.lap("scores")
    _score_observables(ev, inputs, scored)
    _score_untrained(ev, inputs, scored)
    return scored


def _signal_report(ev: _Evaluation, inputs: _Inputs, scores: np.ndarray, scored: _Scored, name: str) -> dict:
    """The signals / trigger / mass-sculpting section of score ``name`` (its scores by class kept in ``scored``)."""
    section, background, signals = scorer_signal_report(scores, inputs.is_background, inputs.eval_labels,
                                                        inputs.signal_ids, inputs.eval_mass, ev.cfg.metrics,
                                                        ev.cfg.trigger)
    scored.by_class[name] = (background, signals)
    _log_aucs(name, section["signals"])
    return section


def _score_observables(ev: _Evaluation, inputs: _Inputs, scored: _Scored) -> None:
    """Metrics of each physics observable, a reference to beat (its orientation fixed, not fitted)."""
    if not inputs.observable_scores:
        return
    from jbot_edge.evaluate.observables import ORIENTATION

    for name, scores in inputs.observable_scores.items():
        background, signals = inputs.by_class(scores)
        scored.references[name] = (background, signals)
        scored.observables[name] = {
            "orientation": "higher = more anomalous" if ORIENTATION[name] > 0 else "lower = more anomalous",
            "signals": _metrics_per_signal(background, signals, ev.cfg.metrics)}
        _log_aucs(name, scored.observables[name]["signals"])
    ev.timer.lap("observable metrics")


def _score_untrained(ev: _Evaluation, inputs: _Inputs, scored: _Scored) -> None:
    """The score-head scorer re-fitted on the untrained network's embeddings: what pre-training adds."""
    cfg, emb = ev.cfg, inputs.emb
    if emb.untrained is None:
        return
    name = f"untrained {cfg.scorer}"
    scorer = fit_scorer(cfg.scorer, emb.untrained[0], getattr(cfg.scorers, cfg.scorer), emb.bank_labels,
                        emb.untrained_outliers, ev.teacher.network_dim)
    scored.references[name] = inputs.by_class(scorer.score(emb.untrained[1]))
    scored.untrained = untrained_reference(cfg.scorer, _metrics_per_signal(*scored.references[name], cfg.metrics),
                                           scored.reports[cfg.scorer]["signals"])
    log.info("%-11s " + "  ".join(f"{s}: AUC {r['auc']:.3f} ({scored.untrained['delta_auc'][s]:+.3f} from "
                                  "pre-training)" for s, r in scored.untrained["signals"].items()), name)
    ev.timer.lap("untrained reference")


def _report(ev: _Evaluation, inputs: _Inputs, scored: _Scored) -> dict[str, Any]:
    """evaluate.json up to its score sections (the score sections are added by :func:`_add_score_sections`)."""
    teacher = ev.teacher
    return {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "created_by": f"jbot-edge {__version__}",
        "teacher": {"path": str(teacher.path), "sha256": ev.teacher_sha, "data_preset": teacher.data_preset,
                    "embedding": inputs.emb.description,
                    "embed_dim": int(teacher.embed_dim), "input_spec": teacher.input_spec.model_dump(mode="json"),
                    "train_labels": teacher.data.get("train_labels")},
        "data": {"path": str(ev.data_path), "preset": inputs.data_preset, "n_jets": int(len(inputs.labels)),
                 "label_names": inputs.label_names, "bank_path": str(ev.bank_path)},
        "split": inputs.split_report,
    }


def _add_score_sections(ev: _Evaluation, inputs: _Inputs, scored: _Scored, report: dict[str, Any]) -> ScoreHead | None:
    """Add the score_head and score sections to ``report``; returns the head to save (None for a native score,
    which is reported as the headline score: qat needs a score of the embedding)."""
    from jbot_edge.evaluate.score_head import ScoreHead

    cfg, head = ev.cfg, None
    if cfg.native_scorer:
        report["score_head"] = {"name": cfg.scorer, "written": False, "path": None, "fpga_friendly": False,
                                "fpga_note": scored.reports[cfg.scorer]["fpga_note"],
                                "score_stats": _score_stats(scored.by_class[cfg.scorer][0])}
    else:
        head_scorer = scored.fitted[cfg.scorer]
        head = ScoreHead(head_scorer, bank_size=len(inputs.emb.bank), background_labels=inputs.split.background,
                         teacher_sha256=ev.teacher_sha, score_stats=_score_stats(scored.by_class[cfg.scorer][0]),
                         embedding=inputs.emb.description)
        report["score_head"] = {"name": cfg.scorer, "written": cfg.write_score_head,
                                "path": str(ev.run_dir / "score_head.json") if cfg.write_score_head else None,
                                "fpga_friendly": head.fpga_friendly, "fpga_note": head_scorer.fpga_note,
                                "score_stats": head.score_stats}
    if ev.oe_note:
        report["score_head"]["note"] = ev.oe_note
    report["signals"] = scored.reports[cfg.scorer]["signals"]
    report["trigger"] = scored.reports[cfg.scorer]["trigger"]
    report["scorers"] = scored.reports
    if scored.untrained is not None:
        report["reference"] = {"untrained": scored.untrained}
    if scored.observables:
        report["observables"] = scored.observables
        report["best_observable"] = best_observable(scored.observables)
    return head


def _label_aware_analyses(ev: _Evaluation, inputs: _Inputs, results: _Results) -> None:
    """Clustering, probes, the embedding tests and fine-tuning of the frozen embedding, each when enabled."""
    cfg = ev.cfg
    if cfg.clustering.enabled:
        _cluster(ev, inputs, results)
    if cfg.probes.enabled:
        _probe(ev, inputs, results.report)
    if cfg.lct.enabled or cfg.two_sample.enabled:
        eval_emb = inputs.emb.eval
        results.report.update(embedding_tests(cfg, inputs.emb.bank, eval_emb[inputs.is_background],
                                              {s: eval_emb[inputs.eval_labels == i]
                                               for s, i in inputs.signal_ids.items()}))
        ev.timer.lap("embedding_tests")
    if inputs.finetune_inputs is not None:
        _finetune(ev, inputs, results)


def _cluster(ev: _Evaluation, inputs: _Inputs, results: _Results) -> None:
    from jbot_edge.evaluate.clustering import cluster_metrics, project_2d

    c, seed, report = ev.cfg.clustering, ev.cfg.seed, results.report
    eval_emb, eval_labels = inputs.emb.eval, inputs.eval_labels
    report["clustering"] = cluster_metrics(eval_emb, eval_labels, c.normalize, c.max_points, seed=seed)
    results.projections.append(project_2d(eval_emb, eval_labels, "pca", c.pca_points, c.normalize, seed))
    if c.tsne:
        results.projections.append(project_2d(eval_emb, eval_labels, "tsne", c.tsne_points, c.normalize, seed,
                                              c.perplexity))
    report["projections"] = {p.method: {"n_jets": int(len(p.labels)), **p.info} for p in results.projections}
    log.info("clustering: NMI %.3f ARI %.3f purity %.3f", report["clustering"]["nmi"],
             report["clustering"]["ari"], report["clustering"]["purity"])
    ev.timer.lap("clustering")


def _probe(ev: _Evaluation, inputs: _Inputs, report: dict[str, Any]) -> None:
    from jbot_edge.evaluate.probes import run_probes

    p, seed = ev.cfg.probes, ev.cfg.seed
    pick = _subsample(len(inputs.emb.eval), p.max_jets, seed)
    report["probes"] = run_probes(inputs.emb.eval[pick], inputs.eval_labels[pick], p.train_fraction, p.knn_k,
                                  seed=seed)
    report["probes"]["classes"] = [inputs.label_names[i] for i in np.unique(inputs.eval_labels[pick])]
    log.info("probes: linear accuracy %.3f, kNN accuracy %.3f (majority class %.3f)",
             report["probes"]["linear"]["accuracy"], report["probes"]["knn"]["accuracy"],
             report["probes"]["majority_class_accuracy"])
    ev.timer.lap("probes")


def _finetune(ev: _Evaluation, inputs: _Inputs, results: _Results) -> None:
    """Fine-tuning of the teacher vs training from scratch per label fraction; keeps the largest fraction's
    fine-tuned model in ``results.kept`` when ``finetune.save_model``."""
    from jbot_edge.evaluate.finetune import FinetuneData, finetune_vs_scratch
    from jbot_edge.evaluate.probes import stratified_split

    f, seed = ev.cfg.finetune, ev.cfg.seed
    x, mask, y, class_names = finetune_classes(*inputs.finetune_inputs, inputs.label_names,
                                               inputs.split.background, f.signal_labels)
    train, test = stratified_split(y, f.train_fraction, seed)
    data = FinetuneData(x[train], mask[train], y[train], x[test], mask[test], y[test], class_names)

    def keep_last(fraction: float, arm: str, model: Any, metrics: dict) -> None:
        if arm == "finetune":  # fractions run in increasing order: the last is the largest
            results.kept.update(fraction=fraction, model=model, metrics=metrics)

    results.report["finetune"] = finetune_vs_scratch(
        ev.teacher, data, f.label_fractions, lr=f.lr, layer_decay=f.layer_decay,
        scratch_layer_decay=f.scratch_layer_decay, weight_decay=f.weight_decay, epochs=f.epochs,
        min_steps=f.min_steps, batch_size=f.batch_size, dropout=f.dropout, warmup_fraction=f.warmup_fraction,
        seed=seed, on_trained=keep_last if f.save_model else None)
    results.report["finetune"]["saved"] = None
    ev.timer.lap("finetune")


def _write_outputs(ev: _Evaluation, inputs: _Inputs, scored: _Scored, results: _Results) -> None:
    """EVAL_DIR whole (plots, fine-tuned model, config, evaluate.json) and the score head in RUN_DIR."""
    report = results.report
    with atomic_directory(ev.out_dir, owner="evaluate") as tmp:
        written = _plot(tmp, inputs, scored, results)
        ev.timer.lap("plots")
        report["plots"] = written
        report["timing"] = ev.timer.seconds
        assert_finite(report)
        if results.kept:
            from jbot_edge.evaluate.finetune import FINETUNED_FILE, save_classifier

            save_classifier(tmp / FINETUNED_FILE, results.kept["model"], ev.teacher, report["finetune"]["classes"],
                            ev.cfg.finetune.dropout, results.kept["fraction"], results.kept["metrics"])
            report["finetune"]["saved"] = FINETUNED_FILE
        save_config(ev.cfg, tmp / "config.yaml")
        write_json(tmp / "evaluate.json", report)
        if ev.cfg.write_score_head and results.head is not None:
            # inside the block: a failure here leaves no report claiming a head was written
            results.head.save(ev.run_dir)


def _plot(tmp: Path, inputs: _Inputs, scored: _Scored, results: _Results) -> list[str]:
    """Every plot into ``tmp``; returns their file names."""
    from jbot_edge.evaluate import plots

    written = []
    for name, (background, signals) in scored.by_class.items():
        written.append(plots.plot_rejection(tmp / f"roc_{name}.png", name, background, signals).name)
        thresholds = {f"{r['rate_budget_khz']:g} kHz" + ("" if r["resolved"] else "*"): r["threshold"]
                      for r in scored.reports[name]["trigger"]}
        written.append(plots.plot_score_distributions(tmp / f"scores_{name}.png", name, background, signals,
                                                      thresholds).name)
    written.append(plots.plot_roc_all(tmp / "roc_all_scorers.png", {n: v[0] for n, v in scored.by_class.items()},
                                      {n: v[1] for n, v in scored.by_class.items()},
                                      {n: v[0] for n, v in scored.references.items()},
                                      {n: v[1] for n, v in scored.references.items()}).name)
    for projection in results.projections:
        written.append(plots.plot_embedding(tmp / f"embedding_{projection.method}.png", projection,
                                            inputs.label_names).name)
    if "finetune" in results.report:
        written.append(plots.plot_finetune(tmp / "finetune.png", results.report["finetune"]).name)
    return written

"""``qat_report.json``: how faithfully the student reproduces the teacher where a trigger operates, and its cost.

Schema (all numbers finite)::

    {
      "schema": "jbot-edge.qat_report", "schema_version": 2,
      "student": {kind, parameters, total_weight_bits, bops, accumulator_bits, output_bits, output_lsb, rounding,
                  input_fixed_type, config: StudentConfig},
      "input_spec": L1InputSpec.describe(),
      "score_head": "mahalanobis", "target_transform": {...}, "target": {kind, tail_weight},
      "training": {best_epoch, best_val_loss, initial_val_loss (untrained student), n_train, n_val},
      "quantizer_stats": {collect_stats_steps, total_steps},   # activation-range initialisation vs the run
      "warnings": [str],                                         # e.g. a run too short for the statistics
      "embedding_matching": {enabled, weight},           # auxiliary [CLS] target (qat/embedding_match.py)
      "outlier_exposure": {enabled, mode, n_pseudo_anomalies},   # training-only pseudo-anomalies (qat/outliers.py)
      "n_test": {label: count},                      # held-out test split (never used for distillation), every label
      "spearman": {label: ρ}, "pearson": {label: r}, # student vs teacher per label, on the test split;
                                                     #   "all" over every test jet; pearson on the target scale
      "student_top_tie_fraction": share of test jets tied at the student's highest score (a saturated plateau),
      "auc_teacher": {signal: AUC}, "auc_student": {signal: AUC}, "auc_ratio": {signal: student/teacher},
      "auc_error": {signal: {"teacher", "student", "ratio"}},   # paired bootstrap standard deviations
      "tpr_teacher": {signal: {"1e-3": TPR, ...}}, "tpr_student": {...}, "tpr_ratio": {...},  # ROC-interpolated
      "trigger": {rate budgets, background_rate_mhz, jets_per_crossing},
      "operating_points": [...],                     # jbot_edge.qat.fidelity: thresholds, TPRs, ratios, overlap
      "goals": {"auc_ratio_min", "tpr_ratio_min", "tpr_fpr", "min_teacher_tpr", "overlap_min", "overlap_budget_khz",
                "checks": [{goal, signal, point, value, error, required, met}],
                "not_judged": [str], "signals": [...], "met": {signal: bool}, "all_met": bool,
                "missed": [plain-words sentence per failed check]}
    }

Student scores are the bit-exact fixed-point outputs (``score_codes × output_lsb``), the numbers firmware computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from jbot_edge.evaluate.metrics import fpr_key, point_metrics, resample_indices
from jbot_edge.models.students import output_lsb, score_codes, summary
from jbot_edge.qat.fidelity import operating_points, ratio


def _correlations(teacher: np.ndarray, student: np.ndarray) -> tuple[float, float]:
    from scipy.stats import pearsonr, spearmanr

    if len(teacher) < 3 or np.ptp(teacher) == 0 or np.ptp(student) == 0:
        return 0.0, 0.0  # undefined correlation reported as none, never NaN
    return float(spearmanr(teacher, student).statistic), float(pearsonr(teacher, student).statistic)


def _auc_errors(teacher_bkg, student_bkg, teacher_sig, student_sig, n_resamples: int, seed: int) -> dict[str, float]:
    """Paired bootstrap spread of the teacher's and student's AUC and of their ratio."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(len(teacher_bkg)), np.ones(len(teacher_sig))]
    t_all, s_all = np.r_[teacher_bkg, teacher_sig], np.r_[student_bkg, student_sig]
    draws = [np.r_[b, len(teacher_bkg) + g] for b, g in zip(
        resample_indices(len(teacher_bkg), "bootstrap", n_resamples, rng),
        resample_indices(len(teacher_sig), "bootstrap", n_resamples, rng))]
    t = np.array([roc_auc_score(y[d], t_all[d]) for d in draws])
    s = np.array([roc_auc_score(y[d], s_all[d]) for d in draws])
    return {"teacher": float(t.std(ddof=1)), "student": float(s.std(ddof=1)), "ratio": float((s / t).std(ddof=1))}


def _check(goal: str, signal: str, point: str, value: float, error: float, required: float) -> dict[str, Any]:
    return {"goal": goal, "signal": signal, "point": point, "value": value, "error": error, "required": required,
            "met": bool(value >= required)}


def judge_goals(rc, auc_ratio: dict[str, float], auc_error: dict[str, dict[str, float]],
                points: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue-13 goals: AUC ratio for every signal; TPR ratio at ``rc.goal_tpr_fpr`` and set overlap at
    ``rc.goal_overlap_budget_khz`` for every signal whose teacher TPR there reaches ``rc.goal_min_teacher_tpr``."""
    by_name = {p["name"]: p for p in points}
    checks, not_judged = [], []
    for sig, ratio in auc_ratio.items():
        checks.append(_check("auc_ratio", sig, "auc", ratio, auc_error[sig]["ratio"], rc.goal_auc_ratio))
    judged = [(f"fpr {fpr_key(f)}", "tpr_ratio", rc.goal_tpr_ratio) for f in rc.goal_tpr_fpr]
    judged.append((f"{rc.goal_overlap_budget_khz:g} kHz", "overlap", rc.goal_overlap))
    for point_name, key, required in judged:
        for sig, row in by_name[point_name]["signals"].items():
            if row["tpr_teacher"] < rc.goal_min_teacher_tpr:
                not_judged.append(f"{key} of {sig} at {point_name}: teacher TPR {row['tpr_teacher']:.4f} < "
                                  f"{rc.goal_min_teacher_tpr} (student {row['tpr_student']:.4f})")
                continue
            checks.append(_check(key, sig, point_name, row[key], row["error"][key], required))
    missed = [f"{c['goal']} of {c['signal']} at {c['point']} is {c['value']:.3f} ± {c['error']:.3f}, below the "
              f"required {c['required']} by {c['required'] - c['value']:.3f}" for c in checks if not c["met"]]
    met = {sig: all(c["met"] for c in checks if c["signal"] == sig) for sig in auc_ratio}
    return {"auc_ratio_min": rc.goal_auc_ratio, "tpr_ratio_min": rc.goal_tpr_ratio,
            "tpr_fpr": [fpr_key(f) for f in rc.goal_tpr_fpr], "min_teacher_tpr": rc.goal_min_teacher_tpr,
            "overlap_min": rc.goal_overlap, "overlap_budget_khz": rc.goal_overlap_budget_khz,
            "checks": checks, "not_judged": not_judged, "signals": sorted(auc_ratio), "met": met,
            "all_met": bool(checks) and not missed, "missed": missed}


def build_report(model: torch.nn.Module, cfg, prepared: dict[str, np.ndarray], transform, out_dir: Path, *,
                 run_dir: Path, data_path: Path, best_epoch: int, best_val_loss: float,
                 initial_val_loss: float | None = None, quantizer_stats: dict[str, int] | None = None,
                 warnings: list[str] | None = None) -> dict[str, Any]:
    from jbot_edge.evaluate.score_head import ScoreHead
    from jbot_edge.qat.distill import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, background_mask

    spec = cfg.input
    rc = cfg.report
    test = prepared["split"] == SPLIT_TEST
    x_test = torch.from_numpy(spec.to_model_input(prepared["codes"][test]))
    student_scores = score_codes(model, x_test).astype(np.float64) * output_lsb(model)
    teacher_scores = prepared["scores"][test]
    teacher_target = transform(teacher_scores)
    labels = prepared["labels"][test]
    names = [str(n) for n in prepared["label_names"]]
    bkg = background_mask(prepared)[test]
    train_labels = [str(n) for n in prepared["train_labels"]]

    spearman, pearson, n_test = {}, {}, {}
    for i, name in enumerate(names):
        sel = labels == i
        n_test[name] = int(sel.sum())
        if sel.sum() >= 3:
            spearman[name], pearson[name] = _correlations(teacher_target[sel], student_scores[sel])
    spearman["all"], pearson["all"] = _correlations(teacher_target, student_scores)

    fprs = list(rc.fpr)
    auc_t, auc_s, auc_r, auc_e, tpr_t, tpr_s, tpr_r, signals = {}, {}, {}, {}, {}, {}, {}, {}
    for i, name in enumerate(names):
        sel = labels == i
        if name in train_labels or sel.sum() == 0 or bkg.sum() == 0:
            continue
        signals[name] = (teacher_scores[sel], student_scores[sel])
        mt = point_metrics(teacher_scores[bkg], teacher_scores[sel], fpr_targets=fprs)
        ms = point_metrics(student_scores[bkg], student_scores[sel], fpr_targets=fprs)
        auc_t[name], auc_s[name] = mt["auc"], ms["auc"]
        auc_r[name] = ratio(ms["auc"], mt["auc"])
        auc_e[name] = _auc_errors(teacher_scores[bkg], student_scores[bkg], teacher_scores[sel], student_scores[sel],
                                  rc.n_bootstrap, cfg.seed)
        tpr_t[name], tpr_s[name] = mt["tpr_at_fpr"], ms["tpr_at_fpr"]
        tpr_r[name] = {k: ratio(ms["tpr_at_fpr"][k], mt["tpr_at_fpr"][k]) for k in mt["tpr_at_fpr"]}

    t = rc.trigger
    points = operating_points(teacher_scores[bkg], student_scores[bkg], signals, rate_budgets_khz=t.rate_budget_khz,
                              fprs=fprs, background_rate_mhz=t.background_rate_mhz,
                              jets_per_crossing=t.jets_per_crossing, n_bootstrap=rc.n_bootstrap, seed=cfg.seed)
    head_name = ScoreHead.load(run_dir, verify_teacher=False).name
    split = prepared["split"]
    all_bkg = background_mask(prepared)
    top = student_scores.max(initial=0.0)
    return {
        "schema": "jbot-edge.qat_report", "schema_version": 2,
        "teacher_run": str(run_dir), "data": str(data_path),
        "student": {**summary(model), "config": cfg.student.model_dump(mode="json")},
        "input_spec": spec.describe(),
        "score_head": head_name,
        "target_transform": transform.describe(),
        "target": cfg.target.model_dump(mode="json"),
        "training": {"best_epoch": best_epoch, "best_val_loss": best_val_loss,
                     "initial_val_loss": initial_val_loss,
                     "n_train": int((all_bkg & (split == SPLIT_TRAIN)).sum()),
                     "n_val": int((all_bkg & (split == SPLIT_VAL)).sum()),
                     "train_labels": train_labels},
        "quantizer_stats": quantizer_stats or {},
        "warnings": list(warnings or []),
        "embedding_matching": cfg.embedding_matching.model_dump(mode="json"),
        "outlier_exposure": {"enabled": bool(cfg.outlier_exposure.enabled), "mode": cfg.outlier_exposure.mode,
                             "n_pseudo_anomalies": int(len(prepared.get("oe_codes", [])))},
        "n_test": n_test,
        "spearman": spearman, "pearson": pearson,
        "student_top_tie_fraction": float((student_scores == top).mean()) if len(student_scores) else 0.0,
        "auc_teacher": auc_t, "auc_student": auc_s, "auc_ratio": auc_r, "auc_error": auc_e,
        "tpr_teacher": tpr_t, "tpr_student": tpr_s, "tpr_ratio": tpr_r,
        "trigger": t.model_dump(mode="json"),
        "operating_points": points,
        "goals": judge_goals(rc, auc_r, auc_e, points),
    }

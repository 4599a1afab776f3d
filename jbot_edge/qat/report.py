"""``qat_report.json``: how faithfully the student reproduces the teacher, and what it costs.

Schema (all numbers finite)::

    {
      "schema": "jbot-edge.qat_report", "schema_version": 1,
      "student": {kind, parameters, total_weight_bits, bops, accumulator_bits, output_bits, output_lsb, rounding,
                  input_fixed_type, config: StudentConfig},
      "input_spec": L1InputSpec.describe(),
      "score_head": "mahalanobis", "target_transform": {...},
      "training": {best_epoch, best_val_loss, initial_val_loss (untrained student), n_train, n_val},
      "embedding_matching": {enabled, weight},           # auxiliary [CLS] target (qat/embedding_match.py)
      "outlier_exposure": {enabled, n_pseudo_anomalies},   # training-only pseudo-anomalies (qat/outliers.py)
      "n_test": {label: count},                      # held-out test split, every label
      "spearman": {label: ρ}, "pearson": {label: r}, # student vs teacher per label, on the test split;
                                                     #   "all" over every test jet; pearson on the target scale
      "auc_teacher": {signal: AUC}, "auc_student": {signal: AUC}, "auc_ratio": {signal: student/teacher},
      "tpr_teacher": {signal: {"1e-3": TPR, ...}}, "tpr_student": {...}, "tpr_ratio": {...},
      "goals": {"auc_ratio_min": 0.97, "tpr_ratio_min": 0.9, "signals": [...], "met": {signal: bool}, "all_met": bool}
    }

Student scores are the bit-exact fixed-point outputs (``score_codes × output_lsb``), the numbers firmware computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from jbot_edge.evaluate.metrics import fpr_key, point_metrics
from jbot_edge.models.students import output_lsb, score_codes, summary

GOAL_AUC_RATIO = 0.97
GOAL_TPR_RATIO = 0.90
GOAL_SIGNALS = ("t", "w")


def _correlations(teacher: np.ndarray, student: np.ndarray) -> tuple[float, float]:
    from scipy.stats import pearsonr, spearmanr

    if len(teacher) < 3 or np.ptp(teacher) == 0 or np.ptp(student) == 0:
        return 0.0, 0.0  # undefined correlation reported as none, never NaN
    return float(spearmanr(teacher, student).statistic), float(pearsonr(teacher, student).statistic)


def _ratio(student: float, teacher: float) -> float:
    return float(student / teacher) if teacher > 0 else 0.0


def build_report(model: torch.nn.Module, cfg, prepared: dict[str, np.ndarray], transform, out_dir: Path, *,
                 run_dir: Path, data_path: Path, best_epoch: int, best_val_loss: float,
                 initial_val_loss: float | None = None) -> dict[str, Any]:
    from jbot_edge.evaluate.score_head import ScoreHead
    from jbot_edge.qat.distill import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL, background_mask

    spec = cfg.input
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

    fprs = list(cfg.report_fpr)
    auc_t, auc_s, auc_r, tpr_t, tpr_s, tpr_r = {}, {}, {}, {}, {}, {}
    for i, name in enumerate(names):
        sel = labels == i
        if name in train_labels or sel.sum() == 0 or bkg.sum() == 0:
            continue
        mt = point_metrics(teacher_scores[bkg], teacher_scores[sel], fpr_targets=fprs)
        ms = point_metrics(student_scores[bkg], student_scores[sel], fpr_targets=fprs)
        auc_t[name], auc_s[name] = mt["auc"], ms["auc"]
        auc_r[name] = _ratio(ms["auc"], mt["auc"])
        tpr_t[name], tpr_s[name] = mt["tpr_at_fpr"], ms["tpr_at_fpr"]
        tpr_r[name] = {k: _ratio(ms["tpr_at_fpr"][k], mt["tpr_at_fpr"][k]) for k in mt["tpr_at_fpr"]}

    key = fpr_key(1e-3)
    goal_signals = [s for s in GOAL_SIGNALS if s in auc_r]
    met = {s: bool(auc_r[s] >= GOAL_AUC_RATIO and tpr_r[s].get(key, 0.0) >= GOAL_TPR_RATIO) for s in goal_signals}
    head_name = ScoreHead.load(run_dir, verify_teacher=False).name
    split = prepared["split"]
    all_bkg = background_mask(prepared)
    return {
        "schema": "jbot-edge.qat_report", "schema_version": 1,
        "teacher_run": str(run_dir), "data": str(data_path),
        "student": {**summary(model), "config": cfg.student.model_dump(mode="json")},
        "input_spec": spec.describe(),
        "score_head": head_name,
        "target_transform": transform.describe(),
        "training": {"best_epoch": best_epoch, "best_val_loss": best_val_loss,
                     "initial_val_loss": initial_val_loss,
                     "n_train": int((all_bkg & (split == SPLIT_TRAIN)).sum()),
                     "n_val": int((all_bkg & (split == SPLIT_VAL)).sum()),
                     "train_labels": train_labels},
        "embedding_matching": cfg.embedding_matching.model_dump(mode="json"),
        "outlier_exposure": {"enabled": bool(cfg.outlier_exposure.enabled),
                             "n_pseudo_anomalies": int(len(prepared.get("oe_codes", [])))},
        "n_test": n_test,
        "spearman": spearman, "pearson": pearson,
        "auc_teacher": auc_t, "auc_student": auc_s, "auc_ratio": auc_r,
        "tpr_teacher": tpr_t, "tpr_student": tpr_s, "tpr_ratio": tpr_r,
        "goals": {"auc_ratio_min": GOAL_AUC_RATIO, "tpr_ratio_min": GOAL_TPR_RATIO, "tpr_fpr": key,
                  "signals": goal_signals, "met": met, "all_met": bool(met) and all(met.values())},
    }

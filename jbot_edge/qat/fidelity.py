"""Student-vs-teacher fidelity where a trigger operates: thresholds at rate budgets and FPR points.

For each operating point (a rate budget in kHz, turned into a per-jet FPR by the trigger view of
:mod:`jbot_edge.evaluate.metrics`, or a per-jet FPR given directly) teacher and student each get their own threshold
on the held-out background (:func:`~jbot_edge.evaluate.metrics.trigger_threshold`: at most ⌊f·N⌋ background jets
strictly above). Per signal we report the teacher's and the student's efficiency, their ratio, and the **overlap**:
the fraction of the signal jets the teacher triggers that the student triggers too (1: the student selects the same
events, not just as many). Errors are the spread over paired bootstrap resamples (the same resampled jets for teacher
and student, background and each signal resampled separately, thresholds recomputed each time), so a ratio of two
small efficiencies is not over-read.

Schema of one operating point (``qat_report.json`` → ``operating_points``)::

    {"name": "10 kHz" | "fpr 1e-3", "rate_budget_khz": 10.0 | null, "per_jet_fpr": f,
     "resolved": f·N_bkg >= 1, "n_background": N_bkg,
     "threshold": {"teacher": t, "student": s},        # teacher: raw score; student: fixed-point score
     "background_overlap": share of the teacher's triggered background jets the student also triggers,
     "background_overlap_error": its bootstrap std (background jets resampled, both thresholds recomputed),
     "n_background_triggered": how many background jets the teacher triggers (the rate's statistics),
     "signals": {name: {"tpr_teacher", "tpr_student", "tpr_ratio", "overlap", "n_teacher_triggered",
                        "error": {"tpr_teacher", "tpr_student", "tpr_ratio", "overlap"}}}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jbot_edge.evaluate.metrics import fpr_key, per_jet_fpr, resample_indices, trigger_threshold


BACKGROUND = "__background__"


def ratio(student: float, teacher: float) -> float:
    """student / teacher, 0 when the teacher value is 0 (never NaN/inf in a report)."""
    return float(student / teacher) if teacher > 0 else 0.0


def _selection(t_scores: np.ndarray, s_scores: np.ndarray, t_thr: float, s_thr: float) -> dict[str, float]:
    t_pass, s_pass = t_scores > t_thr, s_scores > s_thr
    n_t = int(t_pass.sum())
    tpr_t, tpr_s = float(t_pass.mean()), float(s_pass.mean())
    return {"tpr_teacher": tpr_t, "tpr_student": tpr_s, "tpr_ratio": ratio(tpr_s, tpr_t),
            "overlap": float((t_pass & s_pass).sum() / n_t) if n_t else 0.0, "n_teacher_triggered": n_t}


def _point(teacher_bkg: np.ndarray, student_bkg: np.ndarray, signals: Mapping[str, tuple[np.ndarray, np.ndarray]],
           fpr: float) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    t_thr, _ = trigger_threshold(teacher_bkg, fpr)
    s_thr, _ = trigger_threshold(student_bkg, fpr)
    # The background jets that make the rate: does the student fire on the same ones? (Not a goal; it needs no
    # signal model and stays measurable where a weak teacher triggers almost no signal.)
    out = {BACKGROUND: _selection(teacher_bkg, student_bkg, t_thr, s_thr)}
    for name, (t_sig, s_sig) in signals.items():
        out[name] = _selection(t_sig, s_sig, t_thr, s_thr)
    background = out.pop(BACKGROUND)
    return {"teacher": t_thr, "student": s_thr, "background": background}, out


def operating_points(teacher_bkg: np.ndarray, student_bkg: np.ndarray,
                     signals: Mapping[str, tuple[np.ndarray, np.ndarray]], *, rate_budgets_khz: Sequence[float],
                     fprs: Sequence[float], background_rate_mhz: float, jets_per_crossing: int,
                     n_bootstrap: int = 50, seed: int = 0) -> list[dict[str, Any]]:
    """Fidelity at every rate budget and FPR point; ``signals`` maps a name to (teacher, student) scores."""
    points = [(f"{r:g} kHz", float(r), per_jet_fpr(r, background_rate_mhz, jets_per_crossing))
              for r in rate_budgets_khz]
    points += [(f"fpr {fpr_key(f)}", None, float(f)) for f in fprs]
    teacher_bkg, student_bkg = np.asarray(teacher_bkg, np.float64), np.asarray(student_bkg, np.float64)
    signals = {k: (np.asarray(t, np.float64), np.asarray(s, np.float64)) for k, (t, s) in signals.items()}
    rng = np.random.default_rng(seed)
    bkg_draws = resample_indices(len(teacher_bkg), "bootstrap", n_bootstrap, rng)
    sig_draws = {k: resample_indices(len(t), "bootstrap", n_bootstrap, rng) for k, (t, _) in signals.items()}
    rows = []
    for name, budget, fpr in points:
        threshold, values = _point(teacher_bkg, student_bkg, signals, fpr)
        draws = [_point(teacher_bkg[b], student_bkg[b],
                        {k: (t[sig_draws[k][i]], s[sig_draws[k][i]]) for k, (t, s) in signals.items()}, fpr)
                 for i, b in enumerate(bkg_draws)]
        for sig, row in values.items():
            row["error"] = {key: float(np.std([m[sig][key] for _, m in draws], ddof=1))
                            for key in ("tpr_teacher", "tpr_student", "tpr_ratio", "overlap")}
        background = threshold.pop("background")
        rows.append({"name": name, "rate_budget_khz": budget, "per_jet_fpr": fpr,
                     "resolved": bool(fpr * len(teacher_bkg) >= 1.0), "n_background": int(len(teacher_bkg)),
                     "threshold": threshold, "background_overlap": background["overlap"],
                     "background_overlap_error": float(np.std([t["background"]["overlap"] for t, _ in draws],
                                                              ddof=1)),
                     "n_background_triggered": background["n_teacher_triggered"], "signals": values})
    return rows

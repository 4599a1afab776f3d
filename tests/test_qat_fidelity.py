"""Tail-aware distillation and trigger-point fidelity: targets, weights, operating points and quantizer-statistics
sizing on synthetic scores with known answers, the integer pT normalisation, and a student distilled from a toy
teacher whose score is a known function of the inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jbot_edge.config import packaged_config, resolve_config
from jbot_edge.data.l1quant import L1InputSpec, PtNormalisation
from jbot_edge.errors import JbotEdgeError
from jbot_edge.qat.distill import DistillData, QatConfig, fit_student, quantizer_stats_steps
from jbot_edge.qat.fidelity import operating_points
from jbot_edge.qat.targets import TailWeightConfig, TargetTransform, tail_weights


def _config(*overrides: str) -> QatConfig:
    return resolve_config(QatConfig, None, ["threads=1", *overrides], default_file=packaged_config("qat/default.yaml"))


def test_survival_target_of_an_exponential_score_is_the_score():
    """S(x) = exp(-x) for an Exp(1) background, so -ln S(x) = x: the target must reproduce the score itself."""
    background = np.random.default_rng(0).exponential(1.0, 50_000)
    t = TargetTransform.fit(background, kind="survival")
    levels = np.array([0.01, 0.1, 0.5, 0.9, 0.99, 0.999])
    x = np.quantile(background, levels)
    assert t(x) == pytest.approx(-np.log1p(-levels), abs=0.01)  # the empirical surprise of each quantile ...
    assert t(x) == pytest.approx(x, abs=0.1)  # ... which is the score itself, up to sampling
    assert t(np.array([np.median(background)]))[0] == pytest.approx(np.log(2), abs=0.02)
    # Above the highest training jet it keeps rising (thresholds beyond the training sample stay ordered) ...
    top = background.max()
    above = t(np.array([top, top * 1.5, top * 3]))
    assert np.all(np.diff(above) > 0) and above[0] == pytest.approx(np.log(2 * len(background)), abs=0.01)
    # ... below the lowest it is 0, and it is monotonic everywhere in between.
    grid = np.linspace(-1, top, 2000)
    assert t(np.array([-1.0]))[0] == 0 and np.all(np.diff(t(grid)) >= 0)
    assert TargetTransform.model_validate(t.model_dump())(x) == pytest.approx(t(x))  # survives the checkpoint


def test_survival_target_handles_negative_and_tied_scores():
    scores = np.r_[np.full(500, -3.0), np.linspace(-2.0, 5.0, 500)]  # GMM-NLL-like: negative, many ties
    t = TargetTransform.fit(scores, kind="survival")
    y = t(np.sort(scores))
    assert np.isfinite(y).all() and np.all(np.diff(y) >= 0)
    with pytest.raises(JbotEdgeError, match="all equal"):
        TargetTransform.fit(np.ones(100), kind="survival")
    with pytest.raises(JbotEdgeError, match="target.kind"):
        TargetTransform.fit(scores, kind="rank")


def test_tail_weights_known_values():
    w = tail_weights(np.array([0.0, 1.0, 3.0]), TailWeightConfig(power=1.0))
    assert w == pytest.approx(np.array([1, 2, 4]) / (7 / 3))
    capped = tail_weights(np.array([0.0, 1.0, 3.0]), TailWeightConfig(power=2.0, max=5.0))
    assert capped == pytest.approx(np.array([1, 4, 5]) / (10 / 3))
    assert tail_weights(np.array([0.0, 9.0]), TailWeightConfig()) == pytest.approx([1.0, 1.0])  # power 0


def test_operating_points_known_answers():
    rng = np.random.default_rng(1)
    background = np.arange(10_000, dtype=float)
    signal = np.arange(10_000, dtype=float) + 5_000  # 51 % above the 1e-2 threshold (9899)
    shuffled = rng.permutation(signal)  # same efficiency, but the student picks other jets
    rows = operating_points(background, background, {"same": (signal, signal), "shuffled": (signal, shuffled)},
                            rate_budgets_khz=[10.0], fprs=[1e-2], background_rate_mhz=28.61, jets_per_crossing=1,
                            n_bootstrap=20)
    kHz, fpr = rows
    assert kHz["per_jet_fpr"] == pytest.approx(10 / 28_610, rel=1e-3) and kHz["resolved"]
    same, other = fpr["signals"]["same"], fpr["signals"]["shuffled"]
    assert fpr["threshold"] == {"teacher": 9899.0, "student": 9899.0}
    assert fpr["background_overlap"] == 1 and fpr["n_background_triggered"] == 100  # the same 100 jets make the rate
    assert same["tpr_teacher"] == pytest.approx(0.51) and same["tpr_ratio"] == 1 and same["overlap"] == 1
    assert same["error"]["overlap"] == 0 and same["error"]["tpr_teacher"] > 0
    # A student selecting as many but unrelated jets: ratio 1, overlap = its own efficiency.
    assert other["tpr_ratio"] == 1 and other["overlap"] == pytest.approx(0.51, abs=0.03)
    assert fpr["background_overlap_error"] == 0  # identical scores: every resample agrees
    # Unrelated background scores: the student shares ~1 % of the teacher's triggered jets, with a binomial error.
    noise = operating_points(background, rng.permutation(background), {}, rate_budgets_khz=[], fprs=[1e-2],
                             background_rate_mhz=28.61, jets_per_crossing=1, n_bootstrap=50)[0]
    assert noise["background_overlap"] < 0.06 and 0.003 < noise["background_overlap_error"] < 0.04
    with pytest.raises(JbotEdgeError, match="rate budget"):
        operating_points(background, background, {}, rate_budgets_khz=[30_000.0], fprs=[], background_rate_mhz=28.61,
                         jets_per_crossing=1)


def test_quantizer_statistics_are_sized_to_the_run():
    cfg = _config()
    assert quantizer_stats_steps(cfg, 1000) == (200, [])  # 20 % of the run
    assert quantizer_stats_steps(cfg, 100) == (50, [])  # the floor
    steps, warnings = quantizer_stats_steps(cfg, 30)  # shorter than the floor: all of it, with a warning
    assert steps == 30 and "too short" in warnings[0] and "min_steps=50" in warnings[0]
    steps, warnings = quantizer_stats_steps(_config("student.collect_stats_steps=500"), 120)
    assert steps == 120 and "collect_stats_steps=500" in warnings[0]  # never silently longer than training


def test_report_config_refuses_a_budget_above_the_background_rate():
    with pytest.raises(Exception, match="rate budgets"):
        _config("report.trigger.rate_budget_khz=[10.0, 40000.0]", "report.goal_overlap_budget_khz=10")


def test_integer_pt_normalisation_is_pt_over_sum():
    norm = PtNormalisation(bits=8, mantissa_bits=5)
    pt = np.random.default_rng(2).integers(0, 4096, (3000, 16))
    pt[:, 12:] = 0
    pt[0] = 0  # an empty jet stays empty
    codes = norm.apply(pt)
    exact = 256 * pt[1:] / pt[1:].sum(1, keepdims=True)
    assert codes.dtype == np.int64 and codes.min() >= 0 and codes.max() <= 255 and not codes[0].any()
    # floor of pT · ROM / 2^shift: within the ROM's relative error 2^-(m+1) plus one code
    assert np.all(np.abs(codes[1:] - exact) <= exact * 2.0 ** -6 + 1)
    assert np.array_equal(norm.apply(pt * 2), codes)  # scale-free where no saturation occurs
    spec = L1InputSpec(pt_normalisation=norm)
    assert spec.code_bounds()[1][0] == 255
    with pytest.raises(ValueError, match="unsigned stored features"):
        L1InputSpec(pt_normalisation=PtNormalisation(feature="part_deta"))


def _toy_jets(rng: np.random.Generator, n: int, pt_scale: float, spread: np.ndarray | float = 20.0) -> np.ndarray:
    """Codes [n, 16, 3]: pT (exponential, mean ``pt_scale`` codes), Δη, Δφ (normal, per-jet width ``spread``)."""
    pt = np.minimum(np.rint(rng.exponential(pt_scale, (n, 16))), 4095)
    width = np.broadcast_to(np.asarray(spread, dtype=np.float64), (n,))[:, None, None]
    angles = np.clip(np.rint(rng.normal(0, 1, (n, 16, 2)) * width), -255, 255)
    return np.concatenate([pt[..., None], angles], axis=-1).astype(np.int64)


def _toy_fidelity(cfg: QatConfig, codes: np.ndarray, score: np.ndarray, n_background: int,
                  tmp_path) -> tuple[float, float, float, dict]:
    """Distil ``score`` (first ``n_background`` jets background: 1500 train, 300 val, the rest test) and return
    (Spearman on test background, AUC ratio, TPR ratio at FPR 1e-2, the point) against the other jets."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    spec = cfg.input
    train_idx, val_idx, test_bkg = np.arange(0, 1500), np.arange(1500, 1800), np.arange(1800, n_background)
    transform = TargetTransform.fit(score[train_idx], kind="survival")
    data = DistillData(x=torch.from_numpy(spec.to_model_input(codes)),
                       y=torch.from_numpy(transform(score).astype(np.float32)), w=torch.ones(len(score)),
                       train_idx=train_idx, val_idx=val_idx)
    model, student_cfg, best, stats = fit_student(cfg, data, tmp_path)
    with torch.no_grad():
        student = model(data.x).reshape(-1).numpy().astype(np.float64)
    signal = np.arange(n_background, len(score))
    rho = spearmanr(score[test_bkg], student[test_bkg]).statistic
    y = np.r_[np.zeros(len(test_bkg)), np.ones(len(signal))]
    auc_t = roc_auc_score(y, np.r_[score[test_bkg], score[signal]])
    auc_s = roc_auc_score(y, np.r_[student[test_bkg], student[signal]])
    (point,) = operating_points(score[test_bkg], student[test_bkg], {"hard": (score[signal], student[signal])},
                                rate_budgets_khz=[], fprs=[1e-2], background_rate_mhz=28.61, jets_per_crossing=1,
                                n_bootstrap=5)
    return rho, auc_s / auc_t, point["signals"]["hard"]["tpr_ratio"], {"point": point, "stats": stats,
                                                                        "student_config": student_cfg}


def test_student_distils_a_known_toy_teacher(tmp_path):
    """Toy teacher score = Σ pT over the particles (a Deep Sets student can represent it exactly; the survival
    target makes it learn a monotonic map of it). Stated fidelity on held-out toy jets: Spearman ≥ 0.9 on
    background, AUC ratio ≥ 0.98 and TPR ratio ≥ 0.8 at FPR 1e-2 against harder 'signal' jets. The network alone
    (no jet term): with the default jet term, whose table is fitted on the toy's 1500 jets although this teacher
    ignores the mass, this barely trained network (88 steps) kept a TPR ratio of only 0.14 at 1e-2 — the term's
    fluctuations reorder its flat top; see the next test for what the term is for."""
    rng = np.random.default_rng(3)
    codes = np.concatenate([_toy_jets(rng, 3000, 40.0), _toy_jets(rng, 600, 52.0)])
    score = codes[..., 0].sum(axis=1).astype(np.float64)
    cfg = _config("optim.epochs=8", "optim.batch_size=128", "optim.lr=1e-2", "quantizer_stats.min_steps=10",
                  "student.jet_term=null")
    rho, auc_ratio, tpr_ratio, details = _toy_fidelity(cfg, codes, score, 3000, tmp_path)
    expected_stats_steps = round(0.2 * 8 * (1500 // 128))  # 20 % of the run's steps
    stats = details["stats"]
    assert details["student_config"].collect_stats_steps == stats["collect_stats_steps"] == expected_stats_steps
    assert not stats["warnings"]
    print(f"toy fidelity: spearman {rho:.3f}, AUC ratio {auc_ratio:.4f}, TPR ratio @1e-2 {tpr_ratio:.3f}")
    assert rho >= 0.9 and auc_ratio >= 0.98 and tpr_ratio >= 0.8


def test_jet_term_carries_a_mass_driven_toy_teacher(tmp_path):
    """Toy teacher score = log of the jet's pT-weighted r² about the axis (its m²/pT², in floating point), jets of
    log-normal angular width; 'signal' = wider jets. The student with the default jet term (a fixed-point
    log2(Σ pT·r² / Σ pT) and its table) reaches Spearman ≥ 0.95 and TPR ratio ≥ 0.9 at FPR 1e-2; the same network
    without the term, which must compute the mass itself, stays below it."""
    rng = np.random.default_rng(5)
    widths = np.r_[rng.lognormal(np.log(15.0), 0.35, 3000), rng.lognormal(np.log(24.0), 0.35, 600)]
    codes = _toy_jets(rng, 3600, 40.0, widths)
    pt, r2 = codes[..., 0].astype(np.float64), (codes[..., 1:].astype(np.float64) ** 2).sum(-1)
    score = np.log((pt * r2).sum(1) / np.maximum(pt.sum(1), 1.0) + 1.0)
    results = {}
    for name, overrides in (("term", []), ("network", ["student.jet_term=null"])):
        cfg = _config("optim.epochs=8", "optim.batch_size=128", "optim.lr=1e-2", "quantizer_stats.min_steps=10",
                      *overrides)
        (tmp_path / name).mkdir()
        results[name] = _toy_fidelity(cfg, codes, score, 3000, tmp_path / name)[:3]
    print("mass toy (spearman, AUC ratio, TPR ratio @1e-2):", results)
    rho, auc_ratio, tpr_ratio = results["term"]
    assert rho >= 0.95 and auc_ratio >= 0.98 and tpr_ratio >= 0.9
    assert results["network"][0] < rho and results["network"][2] < tpr_ratio


def test_demo_summary_says_which_goal_is_missed_and_by_how_much():
    from jbot_edge.commands.demo import _qat_headline
    from jbot_edge.qat.report import judge_goals

    point = {"name": "fpr 1e-3", "signals": {"t": {"tpr_teacher": 0.2, "tpr_student": 0.17, "tpr_ratio": 0.85,
                                                   "overlap": 0.7, "error": {"tpr_ratio": 0.05, "overlap": 0.04}},
                                             "w": {"tpr_teacher": 0.01, "tpr_student": 0.0, "tpr_ratio": 0.0,
                                                   "overlap": 0.0, "error": {"tpr_ratio": 0.0, "overlap": 0.0}}}}
    rc = _config("report.fpr=[0.001]", "report.goal_tpr_fpr=[0.001]", "report.trigger.rate_budget_khz=[10]").report
    ten = {**point, "name": "10 kHz"}
    goals = judge_goals(rc, {"t": 0.99, "w": 0.97}, {"t": {"ratio": 0.01}, "w": {"ratio": 0.01}}, [ten, point])
    assert not goals["all_met"] and goals["met"] == {"t": False, "w": False}
    assert any("auc_ratio of w at auc is 0.970" in m and "by 0.010" in m for m in goals["missed"])
    assert any("tpr_ratio of t at fpr 1e-3 is 0.850 ± 0.050, below the required 0.9 by 0.050" == m
               for m in goals["missed"])
    assert any(m.startswith("overlap of t at 10 kHz is 0.700") for m in goals["missed"])
    assert len(goals["not_judged"]) == 2  # w's teacher TPR 0.01 < 0.02: reported, not judged
    headline = _qat_headline({"goals": goals, "auc_teacher": {}, "auc_student": {}, "auc_ratio": {}, "spearman": {},
                              "operating_points": [point], "warnings": [],
                              "student": {"kind": "deepsets", "parameters": 1, "bops": 1}})
    assert headline["goals"]["verdict"].startswith("goals missed: auc_ratio of w")
    assert headline["operating_points"]["fpr 1e-3"]["t"]["tpr_ratio"] == 0.85

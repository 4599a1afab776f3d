"""qat: distillation of the teacher's score into a Brevitas student, on real generated l1 jets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jbot_edge.config import packaged_config, resolve_config
from jbot_edge.data.reader import JetFile
from jbot_edge.models.students import load_student, output_lsb, score_codes
from jbot_edge.qat.distill import QatConfig, train_student
from jbot_edge.qat.targets import TargetTransform


@pytest.fixture(scope="module")
def teacher_run(l1_teacher_run) -> Path:
    return l1_teacher_run


def _config(*overrides: str) -> QatConfig:
    return resolve_config(QatConfig, None, ["optim.batch_size=64", "threads=1", *overrides],
                          default_file=packaged_config("qat/default.yaml"))


def test_target_transform_is_monotonic_and_standardised():
    scores = np.array([0.5, 1.0, 2.0, 4.0, 100.0])
    t = TargetTransform.fit(scores)
    y = t(scores)
    assert np.all(np.diff(y) > 0)
    assert abs(y.mean()) < 1e-9 and abs(y.std() - 1) < 1e-9
    negative = TargetTransform.fit(np.array([-3.0, -1.0, 2.0]))  # e.g. GMM NLL
    assert negative.offset < -3.0 and np.isfinite(negative(np.array([-10.0, 5.0]))).all()


def test_distillation_reduces_loss_and_reports(tmp_path, teacher_run, l1_file):
    report = train_student(_config("optim.epochs=40", "optim.lr=1e-2"), teacher_run, l1_file, tmp_path / "student")
    lines = [json.loads(x) for x in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 40
    assert lines[-1]["train_loss"] < 0.8 * lines[0]["train_loss"]
    # Held-out background: the distilled student is clearly better than the untrained one.
    assert report["training"]["best_val_loss"] < 0.85 * report["training"]["initial_val_loss"]
    # The student follows the teacher: clearly positive rank correlation on held-out background.
    assert report["spearman"]["all"] > 0.3
    for signal in ("w", "z", "t"):
        assert 0 <= report["auc_student"][signal] <= 1
        assert report["auc_ratio"][signal] == pytest.approx(
            report["auc_student"][signal] / report["auc_teacher"][signal])
    assert report["student"]["parameters"] > 0 and report["student"]["bops"] > 0
    saved = json.loads((tmp_path / "student" / "qat_report.json").read_text())
    assert saved["spearman"] == report["spearman"]

    # The checkpoint reproduces the reported student scores exactly (fixed-point codes).
    model, cfg, spec, extra = load_student(tmp_path / "student")
    assert extra["target_transform"]["kind"] == "survival"
    with JetFile(l1_file) as jets:
        batch = jets.read(slice(0, 200))
    codes = score_codes(model, torch.from_numpy(spec.model_input(batch)))
    assert codes.dtype == np.int64 and np.ptp(codes) > 0
    # No saturated plateau at the top, where a trigger threshold sits (activation ranges set too early clip the
    # hottest jets into one tied maximum score).
    assert (codes == codes.max()).mean() < 0.02
    assert output_lsb(model) > 0


def test_prepared_teacher_scores_follow_the_score_head_parameters(tmp_path, teacher_run, l1_file):
    """The teacher-score cache (prepared.npz) is keyed on the head's parameters too: editing one that leaves every
    array as it was (here mahalanobis' normalize) must re-score the jets, not reuse the old scores."""
    import json
    import shutil

    from jbot_edge.qat.distill import prepare

    run = tmp_path / "run"
    shutil.copytree(teacher_run, run)
    cfg = _config("data.max_jets=600")
    first = prepare(cfg, run, l1_file, tmp_path / "out")["scores"]
    np.testing.assert_array_equal(prepare(cfg, run, l1_file, tmp_path / "out")["scores"], first)  # cache reused
    meta = json.loads((run / "score_head.json").read_text())
    assert meta["name"] == "mahalanobis"
    meta["params"]["normalize"] = not meta["params"]["normalize"]
    (run / "score_head.json").write_text(json.dumps(meta))
    second = prepare(cfg, run, l1_file, tmp_path / "out")["scores"]
    assert np.abs(second - first).max() > 1e-3


def test_resume_reproduces_uninterrupted_training(tmp_path, teacher_run, l1_file):
    """2 epochs, then --resume up to 4, equals 4 epochs straight (constant lr: the schedule does not depend on the
    total, so both runs see the same learning rates). Brevitas initialises activation scales from the statistics of
    the first ``collect_stats_steps`` steps and does not checkpoint that running state, so the interruption comes
    after them (the documented limitation of resuming)."""
    stats = ["student.collect_stats_steps=4"]
    train_student(_config("optim.epochs=4", "optim.schedule=constant", *stats), teacher_run, l1_file,
                  tmp_path / "straight")
    train_student(_config("optim.epochs=2", "optim.schedule=constant", *stats), teacher_run, l1_file,
                  tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    train_student(_config("optim.epochs=4", "optim.schedule=constant", *stats), teacher_run, l1_file,
                  tmp_path / "resumed", resume=True)

    def losses(run: str) -> list[tuple[float, float]]:
        rows = [json.loads(r) for r in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["train_loss"], r["val_loss"]) for r in rows]

    # Bit for bit, every epoch (outlier exposure on, the default). This caught an optimizer built before the
    # checkpoint was loaded: loading replaces Brevitas's activation-scale Parameters, which then stopped training.
    assert losses("resumed") == losses("straight")


def test_cli_and_bad_inputs(tmp_path, teacher_run, l1_file, jetnet_file, run_cli):
    out = tmp_path / "cli-student"
    ok = run_cli("qat", "--run", teacher_run, "--data", l1_file, "--student", "mlp", "--bits", "4", "--out", out,
                 "--epochs", "2", "optim.batch_size=64")
    assert ok.returncode == 0, ok.stderr
    report = json.loads((out / "qat_report.json").read_text())
    assert report["student"]["kind"] == "mlp" and report["student"]["config"]["weight_bits"] == 4
    for key in ("spearman", "auc_teacher", "auc_student"):
        assert set(report[key]) >= {"w", "z", "t"}
    # 2 short epochs: fewer steps than the statistics floor, said in the report, never silently longer than training
    stats = report["quantizer_stats"]
    assert stats["collect_stats_steps"] == stats["total_steps"] < 50
    assert any("too short" in w for w in report["warnings"])
    assert "too short" in ok.stderr
    # Fidelity at the trigger's operating points: every budget and FPR point, each signal, with bootstrap errors.
    names = [p["name"] for p in report["operating_points"]]
    assert names == ["1 kHz", "5 kHz", "10 kHz", "50 kHz", "fpr 1e-2", "fpr 1e-3"]
    row = report["operating_points"][4]["signals"]["t"]
    assert 0 <= row["overlap"] <= 1 and row["error"]["tpr_ratio"] >= 0
    goals = report["goals"]
    assert goals["all_met"] == (not goals["missed"]) and len(goals["checks"]) >= 3

    def fails(*args: object, match: str) -> None:
        result = run_cli("qat", *args)
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error:") and match in last, result.stderr

    fails("--run", teacher_run, "--data", l1_file, "--bits", "40", "--out", tmp_path / "x", match="--bits")
    fails("--run", teacher_run, "--data", l1_file, "--student", "cnn", "--out", tmp_path / "x", match="--student")
    no_head = tmp_path / "no-head"
    no_head.mkdir()
    shutil.copy(teacher_run / "teacher.pt", no_head / "teacher.pt")
    fails("--run", no_head, "--data", l1_file, "--out", tmp_path / "x", match="no score head")
    # A jetnet file next to an l1 teacher: refused for the preset (it also has more particles than needed).
    fails("--run", teacher_run, "--data", jetnet_file, "--out", tmp_path / "x", match="preset")
    fails("--run", teacher_run, "--data", l1_file, "--out", tmp_path / "x", "student.scaling=float",
          match="power")
    fails("--run", teacher_run, "--data", l1_file, "--out", tmp_path / "x",
          "report.trigger.rate_budget_khz=[10, 30000]", match="rate budgets")
    fails("--run", teacher_run, "--data", l1_file, "--out", tmp_path / "x",
          "input.features=[{name: part_energy_x, lsb: 1, bits: 8}]", match="part_energy_x")
    assert not (tmp_path / "x" / "student.pt").exists()


def test_overlaid_jets_are_valid_jets():
    from jbot_edge.data.format import JetBatch
    from jbot_edge.qat.outliers import OutlierExposureConfig, overlay_jets

    rng = np.random.default_rng(0)
    n, p = 50, 8
    mask = np.arange(p)[None, :] < rng.integers(1, p + 1, n)[:, None]

    def jets() -> JetBatch:
        pt = np.where(mask, rng.uniform(1, 50, (n, p)), 0.0)
        return JetBatch({"part_pt": pt, "part_deta": np.where(mask, rng.normal(0, 0.1, (n, p)), 0.0),
                         "part_dphi": np.where(mask, rng.normal(0, 0.1, (n, p)), 0.0),
                         "part_pt_rel": pt / pt.sum(1, keepdims=True)}, mask, {}, np.zeros(n, dtype=int))

    out = overlay_jets(jets(), jets(), OutlierExposureConfig(enabled=True), rng)
    pt = out.particles["part_pt"]
    assert out.mask.shape == (n, p) and (out.mask.sum(1) >= mask.sum(1)).all()
    assert np.all(np.diff(np.where(out.mask, pt, -1.0), axis=1) <= 0), "pT-ordered, padding last"
    assert np.all(pt[~out.mask] == 0) and np.all(out.particles["part_deta"][~out.mask] == 0)
    assert np.all(out.particles["part_pt_rel"].sum(1) <= 1 + 1e-6)


@pytest.mark.parametrize("mode", ["overlay", "prongs"])
def test_outlier_exposure_adds_pseudo_anomalies_to_training(mode, tmp_path, teacher_run, l1_file):
    report = train_student(_config("optim.epochs=3", "outlier_exposure.enabled=true", "outlier_exposure.fraction=0.5",
                                   f"outlier_exposure.mode={mode}"), teacher_run, l1_file, tmp_path / "oe")
    with np.load(tmp_path / "oe" / "prepared.npz") as prepared:
        oe_scores, oe_codes = prepared["oe_scores"], prepared["oe_codes"]
        prepared_labels, prepared_split, prepared_scores = prepared["labels"], prepared["split"], prepared["scores"]
        n_background_train = int((np.isin(prepared["labels"], [0, 1]) & (prepared["split"] == 0)).sum())
    assert report["outlier_exposure"] == {"enabled": True, "mode": mode, "n_pseudo_anomalies": len(oe_scores)}
    assert len(oe_scores) == round(0.5 * n_background_train) and np.isfinite(oe_scores).all()
    _, _, spec, _ = load_student(tmp_path / "oe")
    assert oe_codes.shape == (len(oe_scores), spec.n_particles, spec.n_features)
    assert (oe_codes[:, :, 0] > 0).sum(1).mean() > 1  # pseudo-anomalies carry particles of two or three jets
    background_train = (np.isin(prepared_labels, [0, 1]) & (prepared_split == 0))
    assert np.median(oe_scores) > np.median(prepared_scores[background_train]), "the teacher finds them anomalous"


def test_embedding_matching_trains_the_hidden_layer_towards_the_teacher(tmp_path, teacher_run, l1_file):
    from jbot_edge.qat.embedding_match import EmbeddingMatcher

    cfg = _config("optim.epochs=6", "optim.lr=1e-2", "embedding_matching.enabled=true",
                  "embedding_matching.weight=1.0", "outlier_exposure.enabled=true")
    report = train_student(cfg, teacher_run, l1_file, tmp_path / "match")
    assert report["embedding_matching"] == {"enabled": True, "weight": 1.0}
    with np.load(tmp_path / "match" / "prepared.npz") as prepared:
        embeddings, codes = prepared["embeddings"], prepared["codes"]
        assert prepared["oe_embeddings"].shape == (len(prepared["oe_codes"]), embeddings.shape[1])
    ckpt = torch.load(tmp_path / "match" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["matcher"]["proj.weight"].shape[0] == embeddings.shape[1]
    # The trained projection explains the teacher's embedding of training jets better than a fresh one; the student
    # checkpoint itself carries no auxiliary weights.
    model, _, spec, _ = load_student(tmp_path / "match")
    assert not any(k.startswith("proj") for k in torch.load(tmp_path / "match" / "student.pt",
                                                            weights_only=True)["state_dict"])
    with np.load(tmp_path / "match" / "prepared.npz") as prepared:
        rows = np.flatnonzero((prepared["split"] == 0) & np.isin(prepared["labels"], [0, 1]))[:300]
    torch.manual_seed(0)
    fresh = EmbeddingMatcher(model, ckpt["matcher"]["mean"], ckpt["matcher"]["std"])
    trained = EmbeddingMatcher(model, ckpt["matcher"]["mean"], ckpt["matcher"]["std"])
    trained.load_state_dict(ckpt["matcher"])
    with torch.no_grad():
        model(torch.from_numpy(spec.to_model_input(codes[rows])))
        target = torch.from_numpy(embeddings[rows])
        assert float(trained.loss(target)) < float(fresh.loss(target))

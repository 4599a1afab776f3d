"""Short real trainings of every baseline method on generated jets: the objective improves, the run has the jBOT
layout, load_teacher rebuilds the encoder, resume is exact, and evaluate runs unchanged on a baseline teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jbot_edge.baselines.registry import run_method
from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError
from jbot_edge.pretrain.artifact import load_teacher

FAST = ["train.progress=false", "train.log_every=5", "train.num_threads=1"]


def _train(method, data, out, steps, *overrides, labels=None, **cli):
    values = {"data.file": str(data), "optim.max_steps": steps, "data.train_labels": labels, **cli}
    return run_method(method, None, [*FAST, *overrides], values, out)


def _embed(run, data, n=64):
    teacher = load_teacher(run)
    with JetFile(data) as f:
        batch = f.read(slice(0, n))
    return teacher, teacher.embed(batch)


@pytest.mark.parametrize("method, overrides, dim", [
    ("jetclr", ["optim.batch_size=128", "optim.base_lr=1e-3", "model.embed_dim=32"], 32),
    ("simclr", ["optim.batch_size=128", "optim.base_lr=1e-3", "model.embed_dim=32"], 8),
    ("vicreg", ["optim.batch_size=128", "optim.base_lr=1e-3", "model.embed_dim=32"], 8),
    ("vae", ["optim.batch_size=128"], 10),
])
def test_short_training_improves_objective(tmp_path, qcd_jetnet_file, method, overrides, dim):
    torch.set_num_threads(1)
    summary = _train(method, qcd_jetnet_file, tmp_path / method, 30, *overrides)
    assert summary["method"] == method and summary["steps"] == 30
    assert summary["final"]["loss"] < summary["first"]["loss"], (summary["first"], summary["final"])
    for name in ("teacher.pt", "summary.json", "config.yaml", "metrics.jsonl", "checkpoints/last.pt"):
        assert (tmp_path / method / name).is_file(), name
    lines = [json.loads(s) for s in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines][-1] == 30 and all(np.isfinite(r["loss"]) for r in lines)
    teacher, emb = _embed(tmp_path / method, qcd_jetnet_file)
    assert teacher.method == method and emb.shape == (64, dim) and np.isfinite(emb).all()
    assert emb.std(axis=0).mean() > 1e-4  # jets are not all mapped to one point


def test_oe_vae_pushes_outliers_above_inliers(tmp_path, jetnet_file):
    torch.set_num_threads(1)
    summary = _train("oe-vae", jetnet_file, tmp_path / "oe", 50, "optim.batch_size=64", "optim.base_lr=3e-3",
                     "loss.outlier.labels=[t]", labels=["q", "g"])
    first, final = summary["first"], summary["final"]
    assert final["loss"] < first["loss"]
    assert final["oe"] < 0.5 * first["oe"], (first, final)   # outliers now score ≳ margin above the inliers
    assert final["outlier_score"] > final["elbo"]
    teacher, emb = _embed(tmp_path / "oe", jetnet_file)
    assert teacher.method == "oe-vae" and emb.shape == (64, 10)
    scores = teacher.encoder.anomaly_scores(*map(torch.from_numpy, _inputs(teacher, jetnet_file)))
    assert set(scores) == {"recon", "kl"} and all(torch.isfinite(v).all() for v in scores.values())


def test_disco_penalty_decorrelates_score_from_mass(tmp_path, jetnet_file):
    torch.set_num_threads(1)
    summary = _train("vae", jetnet_file, tmp_path / "disco", 50, "optim.batch_size=64", "loss.disco_weight=10",
                     labels=["q", "g"])
    assert summary["final"]["disco"] < 0.8 * summary["first"]["disco"], (summary["first"], summary["final"])


def _inputs(teacher, data):
    from jbot_edge.data.preprocessing import build_inputs

    with JetFile(data) as f:
        return build_inputs(f.read(slice(0, 32)), teacher.input_spec)


def test_oe_vae_refuses_missing_or_overlapping_outliers(tmp_path, jetnet_file):
    with pytest.raises(JbotEdgeError, match="loss.outlier.labels"):
        _train("oe-vae", jetnet_file, tmp_path / "a", 2, labels=["q", "g"])
    with pytest.raises(JbotEdgeError, match="overlap"):
        _train("oe-vae", jetnet_file, tmp_path / "b", 2, "loss.outlier.labels=[q]", labels=["q", "g"])
    with pytest.raises(JbotEdgeError, match="--train-labels"):
        _train("oe-vae", jetnet_file, tmp_path / "c", 2, "loss.outlier.labels=[t]")


def test_resume_reproduces_uninterrupted_run(tmp_path, qcd_jetnet_file):
    torch.set_num_threads(1)
    args = ("optim.batch_size=128", "train.log_every=1")
    full = _train("vae", qcd_jetnet_file, tmp_path / "full", 8, *args)
    _train("vae", qcd_jetnet_file, tmp_path / "part", 8, *args, "train.stop_at_step=4")
    resumed = run_method("vae", None, [*FAST, *args],
                         {"data.file": str(qcd_jetnet_file), "optim.max_steps": 8}, tmp_path / "part", resume=True)
    assert resumed["final"]["loss"] == pytest.approx(full["final"]["loss"], rel=1e-6)
    a = torch.load(tmp_path / "full" / "teacher.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "part" / "teacher.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_cli_pretrain_method_then_evaluate(tmp_path, jetnet_file, run_cli):
    """`pretrain --method jetclr` then `evaluate` unchanged: signals, score head and mass sculpting reported."""
    run = tmp_path / "jetclr"
    result = run_cli("pretrain", "--method", "jetclr", "--data", jetnet_file, "--out", run, "--train-labels", "q,g",
                     "--max-steps", "6", "optim.batch_size=64", "model.embed_dim=16", "train.progress=false")
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "summary.json").read_text())["method"] == "jetclr"
    result = run_cli("evaluate", "--run", run, "--data", jetnet_file, "--out", tmp_path / "eval",
                     "finetune.enabled=false", "clustering.tsne=false", "compare=[mahalanobis,knn]",
                     "metrics.n_resamples=2", "threads=1")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval" / "evaluate.json").read_text())
    assert set(report["signals"]) == {"w", "z", "t"}
    sculpt = report["scorers"]["mahalanobis"]["mass_sculpting"]["by_bkg_eff"]["0.1"]
    assert 0.0 <= sculpt["jsd"] <= 1.0 and sculpt["jsd_random"] > 0
    assert (run / "score_head.json").is_file()
    bad = run_cli("pretrain", "--method", "nope", "--data", jetnet_file, "--out", tmp_path / "x")
    assert bad.returncode != 0 and "--method 'nope'" in bad.stderr

"""End-to-end jBOT pre-training on real generated jets: learning, artifact contract, resume, DDP, CLI errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jbot_edge.config import packaged_config, resolve_config
from jbot_edge.data.reader import JetFile
from jbot_edge.pretrain.artifact import load_teacher
from jbot_edge.pretrain.stream import JetStream, StreamPosition
from jbot_edge.pretrain.train import PretrainConfig, run_pretrain

SMALL = packaged_config("pretrain/small.yaml")
#: A short, CPU-sized schedule: small batches, 1 thread, no progress bar.
TINY = ["optim.batch_size=128", "train.num_threads=1", "train.progress=false", "optim.warmup_epochs=0.5"]


def _config(data: Path, *overrides: str) -> PretrainConfig:
    return resolve_config(PretrainConfig, config_file=SMALL, overrides=[*TINY, *overrides],
                          cli_values={"data.file": str(data)}, default_file=packaged_config("pretrain/default.yaml"))


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained_run(qcd_jetnet_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("pretrain") / "run"
    run_pretrain(_config(qcd_jetnet_file, "optim.max_steps=60", "train.log_every=10", "data.train_labels=[q,g]"),
                 run)
    return run


def test_short_run_learns_without_nans_and_monitors_collapse(trained_run: Path) -> None:
    metrics = _metrics(trained_run)
    assert [m["step"] for m in metrics] == [10, 20, 30, 40, 50, 60]
    assert all(math.isfinite(v) for m in metrics for v in m.values())
    losses = [m["loss"] for m in metrics]
    assert losses[-1] < max(losses), "the loss must come down from its peak"
    summary = json.loads((trained_run / "summary.json").read_text())
    log_k = math.log(16)
    final = summary["final"]
    assert summary["steps"] == 60 and summary["complete"]
    # Centring must prevent the one-dimension ("dominant") collapse: the batch-mean teacher distribution stays
    # spread over the 16 dimensions, and the particle-level centre is active too.
    assert final["teacher_marginal_entropy"] > 0.5 * log_k
    assert "dominant" not in summary["collapse"]["final"]
    assert 0.0 < final["teacher_entropy"] <= log_k + 1e-4 and 0.0 < final["student_entropy"] <= log_k + 1e-4
    assert final["center_norm"] > 0 and final["patch_center_norm"] > 0
    # the detector reports exactly what the logged entropies say
    assert ("uniform" in summary["collapse"]["final"]) == (final["teacher_entropy"] >= 0.95 * log_k)
    # ...and the teacher does not drift to the uniform fixed point either (it did with raw inputs and a 0.996
    # teacher momentum in short runs): each jet's centred teacher distribution stays well below log K, at every
    # logged step after the first
    assert not summary["collapse"]["flags"], summary["collapse"]
    assert all(m["teacher_entropy"] < 0.8 * log_k for m in metrics[1:]), [m["teacher_entropy"] for m in metrics]
    # the short run caps the teacher's EMA time constant at 5% of the 60 steps: momentum starts at 1 − 1/3
    assert math.isclose(summary["teacher_momentum_start"], 1 - 1 / 3)
    assert 0.1 < final["masked_fraction"] < 0.6
    # the held-out protocol: only the file's 'train' split (~60 % of the 1500 q + 1500 g) is learnt on
    assert summary["data"]["counts_used"] == summary["data"]["split"]["counts"]["train"]
    assert 800 < summary["data"]["counts_used"]["q"] < 1000
    assert summary["data"]["preset"] == "jetnet"
    assert (trained_run / "config.yaml").is_file()
    assert (trained_run / "checkpoints" / "last.pt").is_file()


def test_teacher_artifact_contract(trained_run: Path, qcd_jetnet_file: Path) -> None:
    raw = torch.load(trained_run / "teacher.pt", weights_only=True)
    assert raw["format"] == "jbot-edge.teacher" and raw["version"] == 1 and raw["method"] == "jbot"
    assert raw["data"]["train_labels"] == ["q", "g"]
    teacher = load_teacher(trained_run)
    assert teacher.method == "jbot" and teacher.data_preset == "jetnet"
    assert teacher.input_spec.features == ["part_deta", "part_dphi", "part_pt_rel", "part_pt", "mask"]
    assert teacher.input_spec.n_particles == 30
    # the fitted input normalisation travels in both the weights and the model config (for rebuilt encoders)
    stats = raw["model_config"]["input_norm_stats"]
    assert raw["model_config"]["input_norm"] == "standardize" and stats["log"] == [False, False, True, True, False]
    assert stats["scale"][0] == stats["scale"][1] > 1 and stats["shift"][2] < -2  # log pT fraction ≈ −4
    torch.testing.assert_close(raw["state_dict"]["input_norm.shift"], torch.tensor(stats["shift"]))
    with JetFile(qcd_jetnet_file) as f:
        batch = f.read(slice(0, 300))
    emb = teacher.embed(batch, batch_size=128)
    assert emb.shape == (300, teacher.embed_dim) == (300, 32) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    # deterministic (eval mode) and distinct jets get distinct embeddings
    np.testing.assert_array_equal(emb, load_teacher(trained_run / "teacher.pt").embed(batch))
    assert np.linalg.matrix_rank(emb[:64]) > 4
    # the teacher weights are the EMA teacher's, not the student's
    ckpt = torch.load(trained_run / "checkpoints" / "last.pt", weights_only=True)
    for k, v in teacher.encoder.state_dict().items():
        torch.testing.assert_close(v, ckpt["model"][f"teacher.backbone.{k}"])


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(qcd_jetnet_file: Path, tmp_path: Path) -> None:
    # small shuffle windows so that the interruption falls inside a window
    common = ["optim.max_steps=7", "train.log_every=1", "data.shuffle_buffer_jets=384", "data.block_jets=1024",
              "optim.batch_size=64"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_pretrain(_config(qcd_jetnet_file, *common), straight)
    run_pretrain(_config(qcd_jetnet_file, *common, "train.stop_at_step=4"), split)
    assert torch.load(split / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    run_pretrain(_config(qcd_jetnet_file, *common), split, resume=True)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(split / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 7 and a["position"] == b["position"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    la, lb = _metrics(straight), _metrics(split)
    assert [m["step"] for m in lb] == list(range(1, 8))
    assert [m["loss"] for m in la] == [m["loss"] for m in lb]


def test_bf16_autocast_on_cpu_when_asked(qcd_jetnet_file: Path, tmp_path: Path) -> None:
    """train.precision=bf16 runs the step under CPU bf16 autocast (auto stays fp32 on CPU)."""
    common = ["optim.max_steps=4", "train.log_every=1", "optim.batch_size=64", "data.train_labels=[q,g]"]
    runs = {p: tmp_path / p for p in ("auto", "bf16")}
    for precision, run in runs.items():
        run_pretrain(_config(qcd_jetnet_file, *common, f"train.precision={precision}"), run)
    summaries = {p: json.loads((run / "summary.json").read_text()) for p, run in runs.items()}
    assert summaries["auto"]["precision"] == "fp32" and summaries["bf16"]["precision"] == "bf16"
    losses = {p: [m["loss"] for m in _metrics(run)] for p, run in runs.items()}
    assert all(math.isfinite(v) for v in losses["bf16"])
    # same seed, same jets: only the arithmetic differs, so the losses agree closely but not exactly
    assert losses["auto"] != losses["bf16"]
    np.testing.assert_allclose(losses["bf16"], losses["auto"], rtol=0.05)


def test_stream_shards_are_disjoint_and_epochs_reshuffle(qcd_jetnet_file: Path) -> None:
    from jbot_edge.data.preprocessing import InputSpec

    spec = InputSpec(n_particles=30)
    shards = [JetStream(qcd_jetnet_file, spec, 100, ["q"], seed=3, rank=r, world_size=2, block_jets=512,
                        shuffle_buffer_jets=400) for r in range(2)]
    assert shards[0].batches_per_epoch == shards[1].batches_per_epoch > 0
    orders = [s.epoch_order(0) for s in shards]
    assert not set(orders[0]) & set(orders[1])
    with JetFile(qcd_jetnet_file) as f:
        labels = f.labels()
        q = f.label_names.index("q")
    assert (labels[np.concatenate(orders)] == q).all()
    assert not np.array_equal(shards[0].epoch_order(0), shards[0].epoch_order(1))
    # batches delivered from a mid-epoch position equal the plan
    it = shards[0].batches(StreamPosition(0, 2), torch.device("cpu"))
    pos, x, m = next(it)
    it.close()
    assert (pos.epoch, pos.batch) == (0, 2) and x.shape == (100, 30, 4)
    with JetFile(qcd_jetnet_file) as f:
        expected = f.read(np.sort(orders[0][200:300]))
    assert math.isclose(float(x[..., 2].sum()), float(expected.particles["part_pt_rel"].sum()), rel_tol=1e-5)


def test_cli_run_and_outputs(run_cli, qcd_jetnet_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    res = run_cli("pretrain", "--config", SMALL, "--data", qcd_jetnet_file, "--out", out, "--train-labels", "q,g",
                  "--max-steps", "3", *TINY)
    assert res.returncode == 0, res.stderr
    assert "3 steps" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["data"]["train_labels"] == ["q", "g"]
    # a second run into the same directory without --resume is refused, nothing overwritten
    before = (out / "teacher.pt").stat().st_mtime_ns
    res = run_cli("pretrain", "--config", SMALL, "--data", qcd_jetnet_file, "--out", out, "--max-steps", "3", *TINY)
    assert res.returncode == 2 and "--resume" in res.stderr
    assert (out / "teacher.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize(("args", "message"), [
    (["model.embed_dimm=8"], "unknown key 'model.embed_dimm'"),
    (["model.num_heads=5"], "divisible"),
    (["optim.base_lr=-1"], "optim.base_lr"),
    (["data.features=[part_deta,part_dphi,part_pt_rel,part_foo]"], "part_foo"),
    (["data.n_particles=64"], "too few particles"),
    (["--train-labels", ","], "label filter is empty"),
    (["--train-labels", "q,top"], "'top'"),
    (["data.features=[part_pt_rel,part_pt,mask]", "augment.rotation=false", "augment.smearing=false",
      "outlier_exposure.enabled=false"], "model.pair_bias / data.features: model.pair_bias needs part_deta, part_dphi"),
])
def test_cli_bad_inputs_one_line_nonzero_exit(run_cli, qcd_jetnet_file: Path, tmp_path: Path,
                                              args: list[str], message: str) -> None:
    out = tmp_path / "bad"
    res = run_cli("pretrain", "--config", SMALL, "--data", qcd_jetnet_file, "--out", out, "--max-steps", "2",
                  *TINY, *args)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.stderr
    assert not (out / "teacher.pt").exists()


def test_missing_data_file_is_one_line(run_cli, tmp_path: Path) -> None:
    res = run_cli("pretrain", "--config", SMALL, "--data", tmp_path / "nope.h5", "--out", tmp_path / "o")
    assert res.returncode == 2 and "does not exist" in res.stderr


def _torchrun_pretrain(data: Path, out: Path, port: int, *extra: str) -> None:
    """``pretrain`` under ``torch.distributed.run`` with two CPU processes (gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
           "-m", "jbot_edge", "pretrain", "--config", str(SMALL), "--data", str(data), "--out", str(out),
           *TINY, "train.log_every=1", "train.device=cpu", *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]


def test_ddp_two_cpu_processes_with_gloo(qcd_jetnet_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    _torchrun_pretrain(qcd_jetnet_file, out, 29631, "--max-steps", "3")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert summary["jets_seen"] == 3 * 128
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert len(ckpt["rng"]["augment_per_rank"]) == 2
    assert len(_metrics(out)) == 3  # rank 0 logs alone
    load_teacher(out)


def test_ddp_resume_reproduces_the_uninterrupted_run(qcd_jetnet_file: Path, tmp_path: Path) -> None:
    """Stopped after 2 of 5 steps and resumed under DDP, both ranks restore their own data/augmentation state: the
    final student, EMA teacher and per-step losses equal those of the uninterrupted DDP run."""
    common = ["optim.max_steps=5", "data.shuffle_buffer_jets=384", "data.block_jets=1024"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    _torchrun_pretrain(qcd_jetnet_file, straight, 29633, *common)
    _torchrun_pretrain(qcd_jetnet_file, split, 29634, *common, "train.stop_at_step=2")
    assert torch.load(split / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    _torchrun_pretrain(qcd_jetnet_file, split, 29635, "--resume", *common)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(split / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 5
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    losses = [m["loss"] for m in _metrics(straight)]
    assert len(losses) == 5 and losses == [m["loss"] for m in _metrics(split)]

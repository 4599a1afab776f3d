"""Every pre-training method through one `evaluate`: each ``--method`` is trained for a few steps on the session
fixture jets and evaluated with the default config (every section on; only the slow knobs shortened), and the
method-specific outputs are there: the LCT block for any teacher, the VAE's own recon/KL scores with mass
sculpting, the signal-agnostic two-sample test. Also: the one-way dependency rule for the encoder registry and
the refusal of baselines under torchrun."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.registry import TEACHER_METHODS

#: Every section of the default config runs; these only shorten the slow loops (two shared cores).
SHORT_EVAL = ["threads=1", "metrics.n_resamples=2", "clustering.tsne_points=100", "finetune.epochs=1",
              "finetune.min_steps=3", "two_sample.n_toys=10", "data.bank_size=200"]
#: method → extra overrides for a few-step training (oe-vae needs its outlier sample).
TRAIN = {"jbot": [], "jetclr": [], "simclr": [], "vicreg": [], "supcon": [], "vae": [],
         "oe-vae": ["loss.outlier.labels=[t]"]}


def _pretrain(method: str, data, out) -> None:
    from jbot_edge.baselines.registry import pretrain_method
    from jbot_edge.config import packaged_config

    config = packaged_config("pretrain/small.yaml") if method == "jbot" else None
    # supcon is supervised: every labelled process is a class
    labels = None if method == "supcon" else ["q", "g"]
    pretrain_method(method, config, ["optim.batch_size=64", "train.progress=false", "train.num_threads=1",
                                     *TRAIN[method]], {"data.file": str(data), "data.train_labels": labels,
                                                       "optim.max_steps": 3}, out)


@pytest.fixture(scope="module")
def method_runs(tmp_path_factory, jetnet_file):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("methods")
    for method in TEACHER_METHODS:
        _pretrain(method, jetnet_file, root / method)
    return root


def test_registry_covers_every_pretrain_method():
    from jbot_edge.baselines.registry import BASELINE_METHODS

    assert set(TEACHER_METHODS) == {"jbot", *BASELINE_METHODS}


@pytest.mark.parametrize("method", TEACHER_METHODS)
def test_default_evaluate_runs_for_every_method(method, method_runs, jetnet_file, tmp_path):
    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.evaluate.config import EvaluateConfig
    from jbot_edge.evaluate.pipeline import run_evaluate

    cfg = resolve_config(EvaluateConfig, overrides=SHORT_EVAL, default_file=packaged_config("evaluate/default.yaml"))
    report = run_evaluate(cfg, method_runs / method, jetnet_file, tmp_path / "eval")
    assert report["teacher"]["sha256"] and set(report["signals"]) == {"w", "z", "t"}
    assert set(report["scorers"]) >= {"knn", "cosine", "mahalanobis", "gmm", "kmeans"}
    assert all("mass_sculpting" in r and r["trigger"] for r in report["scorers"].values())
    for section in ("clustering", "probes", "finetune", "lct", "two_sample"):
        assert section in report, section
    runs = report["finetune"]["runs"]
    assert [r["label_fraction"] for r in runs] == [0.01, 0.1, 1.0]
    assert all(0 <= r[arm]["accuracy"] <= 1 for r in runs for arm in ("finetune", "scratch"))
    lct = report["lct"]["signals"]["t"]
    assert 0 <= lct["auc"] <= 1 and lct["inv_bkg_eff_at_sig_eff"]["0.5"] >= 1 and lct["n_test"] > 100
    two = report["two_sample"]
    assert two["null"]["n_toys"] == 10 and set(two["signals"]) == {"w", "z", "t"}
    native = {"recon", "kl"} if method in ("vae", "oe-vae") else set()
    assert {n for n, r in report["scorers"].items() if r.get("native")} == native
    assert (method_runs / method / "score_head.json").is_file()
    assert report["finetune"]["saved"] == "finetuned.pt" and (tmp_path / "eval" / "finetuned.pt").is_file()


def test_binary_finetune_saves_a_reloadable_classifier(method_runs, jetnet_file, tmp_path):
    """finetune.signal_labels=[t]: t vs q+g only; the saved classifier reloads with the teacher's encoder."""
    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.data.preprocessing import build_inputs
    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.config import EvaluateConfig
    from jbot_edge.evaluate.finetune import load_classifier
    from jbot_edge.evaluate.pipeline import run_evaluate
    from jbot_edge.models.set_encoder import SetEncoder

    cfg = resolve_config(EvaluateConfig, overrides=[*SHORT_EVAL, "finetune.signal_labels=[t]", "lct.enabled=false",
                                                    "two_sample.enabled=false", "clustering.enabled=false",
                                                    "probes.enabled=false", "write_score_head=false"],
                         default_file=packaged_config("evaluate/default.yaml"))
    report = run_evaluate(cfg, method_runs / "jetclr", jetnet_file, tmp_path / "eval")
    assert report["finetune"]["classes"] == ["q+g", "t"]
    model, spec, classes = load_classifier(tmp_path / "eval" / "finetuned.pt")
    assert classes == ["q+g", "t"] and isinstance(model.encoder, SetEncoder) and not model.training
    with JetFile(jetnet_file) as f:
        x, m = build_inputs(f.read(slice(0, 16)), spec)
    with torch.no_grad():
        logits = model(torch.from_numpy(x), torch.from_numpy(m))
    assert logits.shape == (16, 2) and torch.isfinite(logits).all()
    with pytest.raises(JbotEdgeError, match=r"finetune.signal_labels: \['q'\]"):
        run_evaluate(cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"signal_labels": ["q"]})}),
                     method_runs / "jetclr", jetnet_file, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_cli_vae_recon_scorer_reports_native_scores(method_runs, jetnet_file, run_cli, tmp_path):
    """`evaluate --scorer recon` on a VAE: recon is the headline score (with sculpting), no score head is written;
    the same on a JetCLR teacher is refused in one line."""
    run = tmp_path / "vae"
    import shutil

    shutil.copytree(method_runs / "vae", run)
    (run / "score_head.json").unlink(missing_ok=True)
    (run / "score_head.npz").unlink(missing_ok=True)
    result = run_cli("evaluate", "--run", run, "--data", jetnet_file, "--scorer", "recon", "--out", tmp_path / "e",
                     *SHORT_EVAL, "finetune.enabled=false", "clustering.enabled=false", "two_sample.enabled=false")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "e" / "evaluate.json").read_text())
    assert report["score_head"] == {**report["score_head"], "name": "recon", "written": False}
    assert report["signals"] == report["scorers"]["recon"]["signals"]
    for name in ("recon", "kl"):
        sculpt = report["scorers"][name]["mass_sculpting"]["by_bkg_eff"]["0.1"]
        assert 0 <= sculpt["jsd"] <= 1 and sculpt["jsd_random"] > 0
    assert not (run / "score_head.json").exists()
    refused = run_cli("evaluate", "--run", method_runs / "jetclr", "--data", jetnet_file, "--scorer", "kl",
                      "--out", tmp_path / "x")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith("error: --scorer kl")
    assert not (tmp_path / "x").exists()


def test_fine_tunable_module_trains_and_fresh_encoder_differs(method_runs):
    from jbot_edge.pretrain.artifact import load_teacher

    for method in TEACHER_METHODS:
        teacher = load_teacher(method_runs / method)
        module = teacher.fine_tunable()
        assert all(p.requires_grad for p in module.parameters())
        assert not any(p.requires_grad for p in teacher.encoder.parameters())  # the teacher stays frozen
        fresh = teacher.fresh_encoder()
        trained = dict(teacher.encoder.state_dict())
        assert fresh.embed_dim == teacher.embed_dim
        assert any(not torch.equal(v, trained[k]) for k, v in fresh.state_dict().items() if v.is_floating_point())


def test_loading_a_teacher_does_not_import_baselines(method_runs):
    """models/ and pretrain/ never import baselines/ (the one-way dependency rule)."""
    code = ("import sys; from jbot_edge.pretrain.artifact import load_teacher; "
            f"t = load_teacher({str(method_runs / 'vae')!r}); "
            "assert not [m for m in sys.modules if m.startswith('jbot_edge.baselines')], 'baselines imported'; "
            "print(t.method, t.native_score_names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "vae"


def test_baseline_refuses_under_torchrun(jetnet_file, run_cli, tmp_path):
    """torchrun sets WORLD_SIZE/RANK: every rank refuses in one line, nothing is written."""
    out = tmp_path / "ddp"
    result = run_cli("pretrain", "--method", "jetclr", "--data", jetnet_file, "--out", out, "--max-steps", 2,
                     env={"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pretrain --method jetclr") and "torchrun" in last
    assert not out.exists()


def test_two_sample_null_is_calibrated_and_signal_rejects():
    """NPLM-style test on a Gaussian 'embedding': 60 background-only toys give uniform χ² p-values (KS), an
    injected shifted population is rejected."""
    from jbot_edge.evaluate.two_sample import TwoSampleSettings, two_sample_report

    rng = np.random.default_rng(3)
    bank, background = rng.normal(size=(1200, 4)), rng.normal(size=(1200, 4))
    signal = rng.normal(size=(400, 4)) + np.array([1.5, 0.0, 0.0, 0.0])
    settings = TwoSampleSettings(n_reference=500, n_data=500, n_toys=60, signal_fraction=0.3)
    report = two_sample_report(bank, background, {"s": signal}, settings, seed=0)
    assert report["dof"] == 8 and report["null"]["n_toys"] == 60
    assert report["null"]["ks_pvalue"] > 0.01
    assert abs(report["null"]["t_mean"] - 8) < 2.0  # E[χ²_8] = 8
    s = report["signals"]["s"]
    assert s["p_value"] == pytest.approx(1 / 61) and s["p_value_asymptotic"] < 1e-4 and s["n_signal"] == 150
    # The calibration check can fail: a strongly penalised classifier no longer gives χ²-distributed toys.
    shrunk = two_sample_report(bank, background, {}, settings.model_copy(update={"c": 1e-3}), seed=0)
    assert shrunk["null"]["ks_pvalue"] < 0.01


def test_mlp_backbone_rebuilds_from_its_model_config():
    """model.backbone=mlp (Metzger et al.'s MLP encoder): flattened inputs → [B, D], no tokens, same contract."""
    from jbot_edge.evaluate.finetune import JetClassifier, layer_decay_groups
    from jbot_edge.models.registry import build_teacher_encoder
    from jbot_edge.models.set_encoder import SetEncoderConfig, set_encoder_config_dict

    cfg = SetEncoderConfig(backbone="mlp", embed_dim=16, num_layers=2, head_dims=[16, 4], embed_output="projection")
    model_config = set_encoder_config_dict(cfg, ["part_deta", "part_dphi", "part_pt"], n_particles=5)
    encoder = build_teacher_encoder("simclr", model_config)
    x, mask = torch.randn(3, 5, 3), torch.tensor([[1, 1, 1, 0, 0]] * 3, dtype=torch.bool)
    emb, tokens = encoder(x, mask)
    assert emb.shape == (3, 4) and tokens.shape == (3, 5, 0) and encoder.embed_dim == 4
    # padded slots do not leak into the embedding
    x2 = x.clone()
    x2[:, 3:] = 100.0
    assert torch.allclose(encoder(x2, mask)[0], emb)
    groups = layer_decay_groups(JetClassifier(encoder, 2), lr=1.0, decay=0.5, weight_decay=0.0)
    assert sorted({g["layer"] for g in groups}) == [1, 2, 3]  # blocks 0, 1 and the head

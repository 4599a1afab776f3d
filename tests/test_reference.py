"""What teacher.pt can embed with: the EMA teacher, the stored student backbone, the untrained encoder (same seeded
initialisation as the run), [CLS] alone or with the mean particle token; and the score head remembers which."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError
from jbot_edge.pretrain.artifact import load_teacher


def test_sources_and_features(l1_teacher_run, l1_file):
    from jbot_edge.models.transformer import ModelConfig
    from jbot_edge.pretrain.augmentations import AugmentationConfig
    from jbot_edge.pretrain.meta_arch import JBOTMetaArch, LossConfig, MaskingConfig

    teacher = load_teacher(l1_teacher_run)
    student = load_teacher(l1_teacher_run, source="student")
    untrained = load_teacher(l1_teacher_run, source="untrained")
    # the untrained encoder is exactly the network the run started from: the pretrain loop seeds torch with
    # train.seed and builds the student first (the teacher is its copy)
    fields = {k: v for k, v in teacher.model_config.items() if k != "in_features"}
    torch.manual_seed(int(teacher.training["seed"]))
    meta = JBOTMetaArch(teacher.input_spec, ModelConfig.model_validate(fields), LossConfig(), AugmentationConfig(),
                        MaskingConfig())
    start = meta.student.backbone.state_dict()
    for name, value in untrained.encoder.state_dict().items():
        assert torch.equal(value, start[name]), name
    trained_state, student_state = teacher.encoder.state_dict(), student.encoder.state_dict()
    assert not torch.equal(trained_state["embed.weight"], start["embed.weight"])
    assert not torch.equal(trained_state["embed.weight"], student_state["embed.weight"])

    with JetFile(l1_file) as f:
        batch = f.read(np.arange(64))
    both = load_teacher(l1_teacher_run, features="cls+mean")
    assert both.embed_dim == 2 * teacher.embed_dim
    emb, cls = both.embed(batch), teacher.embed(batch)
    np.testing.assert_allclose(emb[:, : teacher.embed_dim], cls, rtol=1e-5, atol=1e-6)
    # the second half is the mean over the real particles' output tokens
    from jbot_edge.data.preprocessing import build_inputs

    x, mask = build_inputs(batch, teacher.input_spec)
    with torch.no_grad():
        _, tokens = teacher.encoder(torch.from_numpy(x), torch.from_numpy(mask))
    expected = (tokens.numpy() * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(emb[:, teacher.embed_dim:], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(JbotEdgeError, match="embedding.source"):
        load_teacher(l1_teacher_run, source="ema")


def test_evaluate_reports_untrained_reference_and_student_embedding(l1_teacher_run, l1_file, tmp_path):
    import shutil

    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.evaluate.config import EvaluateConfig
    from jbot_edge.evaluate.pipeline import run_evaluate
    from jbot_edge.evaluate.score_head import ScoreHead

    run = tmp_path / "run"
    shutil.copytree(l1_teacher_run, run)
    cfg = resolve_config(EvaluateConfig, overrides=[
        "data.bank_size=300", "threads=1", "metrics.n_resamples=4", "finetune.enabled=false",
        "clustering.enabled=false", "probes.enabled=false", "compare=[mahalanobis_cc]", "scorer=mahalanobis_cc",
        "observables.enabled=false", "embedding.source=student", "embedding.features=cls+mean"],
        default_file=packaged_config("evaluate/default.yaml"))
    report = run_evaluate(cfg, run, l1_file, tmp_path / "eval")
    ref = report["reference"]["untrained"]
    assert ref["scorer"] == "mahalanobis_cc" and set(ref["signals"]) == {"w", "z", "t"}
    for s, m in ref["signals"].items():
        trained = report["scorers"]["mahalanobis_cc"]["signals"][s]["auc"]
        assert ref["delta_auc"][s] == pytest.approx(trained - m["auc"]) and ref["delta_auc_error"][s] > 0
    embedding = report["teacher"]["embedding"]
    shape = embedding.pop("observables")
    assert embedding == {"source": "student", "features": "cls+mean"}
    # jet-shape observables (the default, auto) standardised on the bank: for an l1 teacher log m/pT only, which a
    # level-1 student can form (embedding.observables_by_preset); the l1 file's jet radius recorded
    assert shape["names"] == ["log_m_over_pt"] and shape["r0"] == 0.4
    head = ScoreHead.load(run)
    assert head.embedding == {**embedding, "observables": shape}
    teacher = load_teacher(run, **head.embedding)
    assert head.embedding_dim == teacher.embed_dim == 2 * teacher.encoder.embed_dim + 1
    with JetFile(l1_file) as f:
        assert np.isfinite(head.score(teacher.embed(f.read(np.arange(32))))).all()

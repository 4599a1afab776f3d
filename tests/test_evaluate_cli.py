"""``jbot-edge evaluate`` end to end: a tiny real pretrain run on generated jets, then the CLI in a subprocess."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

#: Small enough for two shared cores, large enough that every analysis runs for real.
FAST = ["data.bank_size=200", "threads=1", "metrics.n_resamples=5", "clustering.tsne_points=200",
        "finetune.epochs=1", "finetune.min_steps=4", "finetune.label_fractions=[0.1,1.0]"]


@pytest.fixture(scope="module")
def teacher_run(jetnet_file, run_cli, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("evaluate") / "run"
    result = run_cli("pretrain", "--data", jetnet_file, "--out", run, "--train-labels", "q,g", "--max-steps", 30,
                     "optim.batch_size=128", "train.num_threads=1", "train.progress=false")
    assert result.returncode == 0, result.stderr
    assert (run / "teacher.pt").is_file()
    return run


def _floats(value, path="evaluate.json"):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _floats(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _floats(v, f"{path}[{i}]")
    elif isinstance(value, float):
        yield path, value


def test_evaluate_writes_report_plots_and_score_head(teacher_run, jetnet_file, run_cli, tmp_path):
    from jbot_edge.data.reader import JetFile
    from jbot_edge.evaluate.embed import split_jets
    from jbot_edge.evaluate.score_head import ScoreHead, file_sha256
    from jbot_edge.pretrain.artifact import load_teacher

    out = tmp_path / "eval"
    result = run_cli("evaluate", "--run", teacher_run, "--data", jetnet_file, "--background", "q,g",
                     "--signals", "w,z,t", "--scorer", "knn", "--out", out, *FAST)
    assert result.returncode == 0, result.stderr
    assert "w: AUC" in result.stdout
    report = json.loads((out / "evaluate.json").read_text())
    bad = [(p, v) for p, v in _floats(report) if not math.isfinite(v)]
    assert not bad

    # held-out split: a bank of background 'train' jets, every 'test' jet of the file scored, nothing else
    split = report["split"]
    assert split["bank_splits"] == ["train"] and split["eval_splits"] == ["test"]
    assert split["bank_size"] == 200 and set(split["bank_counts"]) <= {"q", "g"}
    file_split = split["file_split"]
    assert file_split["stored"] and split["eval_counts"] == file_split["counts"]["test"]
    assert "bank: 200 background jets from the train split of" in result.stderr
    # physics observables scored on the same jets, with the best one named per signal
    assert set(report["observables"]) == {"mass", "m_over_pt", "multiplicity", "tau21", "tau32"}
    assert report["observables"]["tau21"]["orientation"] == "lower = more anomalous"
    for signal in "wzt":
        best = report["best_observable"][signal]
        assert best["auc"] == max(o["signals"][signal]["auc"] for o in report["observables"].values())
        assert report["observables"]["mass"]["signals"][signal]["n_signal"] == split["eval_counts"][signal]
    assert report["observables"]["mass"]["signals"]["t"]["auc"] > 0.7  # real Pythia tops are heavy

    fpr_keys = {"1e-1", "1e-2", "1e-3", "1e-4"}
    assert set(report["scorers"]) == {"oe", "knn", "knn_oe", "cosine", "mahalanobis", "mahalanobis_cc",
                                      "relative_mahalanobis", "gmm", "kmeans"}
    assert report["scorers"]["knn_oe"]["fit_info"]["n_calibration"] == 50  # a quarter of the 200-jet bank
    assert report["scorers"]["knn_oe"]["params"]["oe_weight"] == 2.0  # auto, resolved for a jetnet teacher
    assert report["scorers"]["oe"]["fit_info"]["n_outliers"] == report["scorers"]["oe"]["fit_info"]["n_bank"]
    # the untrained encoder, same scorer and jets, reported beside the trained one
    untrained = report["reference"]["untrained"]
    assert untrained["scorer"] == "knn" and set(untrained["signals"]) == {"w", "z", "t"}
    for scorer in report["scorers"].values():
        assert set(scorer["signals"]) == {"w", "z", "t"}
        for metrics in scorer["signals"].values():
            assert 0 <= metrics["auc"] <= 1
            assert set(metrics["tpr_at_fpr"]) == fpr_keys
            assert metrics["tpr_at_fpr_resolved"] == {"1e-1": True, "1e-2": True, "1e-3": False, "1e-4": False}
            assert set(metrics["inv_bkg_eff_at_sig_eff"]) == {"0.3", "0.5"}
            assert metrics["uncertainty"]["auc"] > 0
        assert [row["rate_budget_khz"] for row in scorer["trigger"]] == [1.0, 3.0, 10.0]
    assert report["signals"] == report["scorers"]["knn"]["signals"]
    assert report["score_head"]["name"] == "knn" and report["score_head"]["fpga_friendly"] is False
    assert 0 <= report["clustering"]["nmi"] <= 1 and 0 < report["clustering"]["purity"] <= 1
    assert report["probes"]["n_classes"] == 5
    runs = report["finetune"]["runs"]
    assert [r["label_fraction"] for r in runs] == [0.1, 1.0]
    assert all(0 <= r[arm]["accuracy"] <= 1 for r in runs for arm in ("finetune", "scratch"))
    for png in report["plots"]:
        assert (out / png).stat().st_size > 5000, png
    assert {"roc_all_scorers.png", "embedding_pca.png", "embedding_tsne.png", "finetune.png"} <= set(report["plots"])
    assert (out / "config.yaml").is_file()

    # The head in RUN_DIR is the evaluated one: it reproduces the held-out background score statistics.
    head = ScoreHead.load(teacher_run)
    meta = json.loads((teacher_run / "score_head.json").read_text())
    assert head.name == "knn" and meta["bank_size"] == 200 and meta["background_labels"] == ["q", "g"]
    assert meta["teacher_sha256"] == file_sha256(teacher_run / "teacher.pt")
    # The head records how its inputs are embedded: the teacher's [CLS] then the standardised jet-shape observables.
    assert meta["embedding"]["observables"]["names"] == ["log_m_over_pt", "tau21", "tau32"]
    teacher = load_teacher(teacher_run, **head.embedding)
    assert head.embedding_dim == teacher.embed_dim == teacher.encoder.embed_dim + 3
    with JetFile(jetnet_file) as f:
        labels = f.labels()
        s = split_jets(labels, f.label_names, ["q", "g"], ["w", "z", "t"], 200, 50000, 20000, seed=0,
                       split=f.splits())
        assert np.all(f.splits()[s.bank_index] == 0) and np.all(f.splits()[s.eval_index] == 2)
        background = s.eval_index[np.isin(labels[s.eval_index], [0, 1])]
        scores = head.score(teacher.embed(f.read(background)))
    assert scores.mean() == pytest.approx(meta["score_stats"]["mean"], rel=1e-4)
    assert scores.max() == pytest.approx(report["trigger"][0]["threshold"], rel=1e-4)  # 1 kHz: unresolved → max


def test_evaluate_bad_inputs_fail_with_one_line(teacher_run, jetnet_file, run_cli, tmp_path):
    def fails(*args, match: str) -> None:
        result = run_cli("evaluate", "--run", teacher_run, "--data", jetnet_file, "--out", tmp_path / "e", *FAST,
                         "finetune.enabled=false", "clustering.enabled=false", "probes.enabled=false",
                         "write_score_head=false", *args)
        assert result.returncode == 2, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and match in last, last
        assert not (tmp_path / "e").exists()

    fails("--signals", "h", match="'h'")
    fails("--background", "q,x", match="--background")
    fails("data.bank_size=20", match="k=30 needs a background bank of at least 30 jets, got 20")
    fails("scorers.knn.kk=3", match="unknown key 'scorers.knn.kk'")
    fails("embedding.observables=[]", "scorer=knn_oe",
          match="scorers.knn_oe.oe.inputs=observables needs the jet-shape observables")

    # a teacher pre-trained on the jetnet preset must not silently score l1-preset jets
    l1 = tmp_path / "l1.h5"
    shutil.copy(jetnet_file, l1)
    with h5py.File(l1, "r+") as h5:
        provenance = json.loads(h5.attrs["provenance"])
        provenance["preset"] = "l1"
        h5.attrs["provenance"] = json.dumps(provenance)
    result = run_cli("evaluate", "--run", teacher_run, "--data", l1, "--out", tmp_path / "e", *FAST)
    assert result.returncode == 2 and "allow_preset_mismatch=true" in result.stderr


def test_layer_decay_groups_cover_every_parameter_once():
    from jbot_edge.evaluate.finetune import JetClassifier, layer_decay_groups
    from jbot_edge.models.transformer import ModelConfig, build_encoder

    model = JetClassifier(build_encoder(ModelConfig(num_layers=2), in_features=4), n_classes=3)
    groups = layer_decay_groups(model, lr=1.0, decay=0.5, weight_decay=0.1)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["encoder.embed.weight"])] == 0.125  # lr · decay^(L+1), L = 2
    assert lr_of[id(params["encoder.cls_token"])] == 0.125 and wd_of[id(params["encoder.cls_token"])] == 0.0
    assert lr_of[id(params["encoder.blocks.0.qkv.weight"])] == 0.25
    assert lr_of[id(params["encoder.blocks.1.ffn.0.weight"])] == 0.5
    assert lr_of[id(params["head.0.weight"])] == 1.0 and wd_of[id(params["head.0.weight"])] == 0.1
    assert wd_of[id(params["head.0.bias"])] == 0.0


def test_evaluate_held_out_errors_and_two_files(teacher_run, jetnet_file, tmp_path, caplog):
    from test_split import _copy

    from jbot_edge.config import packaged_config, resolve_config
    from jbot_edge.data.reader import JetFile
    from jbot_edge.errors import JbotEdgeError
    from jbot_edge.evaluate.config import EvaluateConfig
    from jbot_edge.evaluate.pipeline import run_evaluate

    quick = [*FAST, "finetune.enabled=false", "clustering.enabled=false", "probes.enabled=false",
             "write_score_head=false", "compare=[mahalanobis]", "observables.enabled=false"]
    cfg = resolve_config(EvaluateConfig, overrides=quick, default_file=packaged_config("evaluate/default.yaml"))
    with JetFile(jetnet_file) as f:
        split, labels, names = f.splits(), f.labels(), f.label_names
    # a file whose test part has no top jets: asking for t says so
    no_test_top = tmp_path / "no_test_top.h5"
    _copy(jetnet_file, no_test_top, np.flatnonzero(~((labels == names.index("t")) & (split == 2))))
    with pytest.raises(JbotEdgeError, match=r"--signals: label\(s\) \['t'\] have no jets in the test split of"):
        run_evaluate(cfg.model_copy(update={"data": cfg.data.model_copy(update={"signals": ["w", "t"]})}),
                     teacher_run, no_test_top, tmp_path / "e1")
    # a file whose train part has no background: no bank, one line
    no_train_bkg = tmp_path / "no_train_bkg.h5"
    _copy(jetnet_file, no_train_bkg, np.flatnonzero(~(np.isin(labels, [0, 1]) & (split == 0))))
    with pytest.raises(JbotEdgeError, match=r"--background: .* have no jets in the train split of"):
        run_evaluate(cfg, teacher_run, no_train_bkg, tmp_path / "e2")
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()
    # two different files: the bank from --bank-data, the scored jets from all of --data, as the log states
    with caplog.at_level("INFO"):
        report = run_evaluate(cfg, teacher_run, no_test_top, tmp_path / "e3", bank_path=jetnet_file)
    assert report["split"]["bank_file"] == str(jetnet_file) and report["split"]["eval_splits"] is None
    assert sum(report["split"]["eval_counts"].values()) == len(np.flatnonzero(
        ~((labels == names.index("t")) & (split == 2))))
    assert f"bank: 200 background jets from {jetnet_file}; evaluation:" in caplog.text

"""The held-out split: deterministic, disjoint, stable across runs and converters, carried with copied jets, derived
for older files; pretrain learns on 'train' only and logs a 'val' loss."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from jbot_edge.data.format import DEFAULT_SPLIT, SPLIT_TEST, SPLIT_TRAIN, JetFileWriter, SplitSpec
from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError


def test_split_spec_is_a_pure_function_of_seed_and_position():
    spec = SplitSpec((0.6, 0.1, 0.3), seed=7)
    full = spec.assign(np.arange(200_000))
    assert full.dtype == np.int8 and set(np.unique(full)) == {0, 1, 2}
    np.testing.assert_allclose(np.bincount(full) / len(full), [0.6, 0.1, 0.3], atol=0.005)
    some = np.array([199_999, 5, 123_456])
    np.testing.assert_array_equal(spec.assign(some), full[some])  # any subset, any order
    assert not np.array_equal(SplitSpec(seed=8).assign(np.arange(1000)), SplitSpec(seed=7).assign(np.arange(1000)))
    with pytest.raises(JbotEdgeError, match="summing to 1"):
        SplitSpec((0.5, 0.1, 0.1))


def _copy(src: Path, dst: Path, index: np.ndarray, split_spec=DEFAULT_SPLIT) -> None:
    with JetFile(src) as f:
        batch = f.read(index)
        with JetFileWriter(dst, f.n_particles, f.particle_features, f.jet_features, f.label_names, source="test",
                           split_spec=split_spec) as writer:
            writer.append(batch)


def test_generated_file_carries_split_and_copies_keep_it(jetnet_file, tmp_path):
    with JetFile(jetnet_file) as f:
        assert f.has_split and f.split_spec == DEFAULT_SPLIT
        split = f.splits()
        counts = f.split_counts()
    # assigned by position in the written file: stable across runs (the generator's output is byte-identical)
    np.testing.assert_array_equal(split, DEFAULT_SPLIT.assign(np.arange(len(split))))
    assert sum(counts["train"].values()) > 0 and sum(counts["test"].values()) > 0
    # a subset copied into a new file keeps each jet's split (it travels with the jet, not its new position)
    index = np.arange(len(split))[::-1][:200]
    _copy(jetnet_file, tmp_path / "copy.h5", index)
    with JetFile(tmp_path / "copy.h5") as copy:
        np.testing.assert_array_equal(copy.splits(), split[index])
        assert copy.read(np.arange(10)).split is not None


def test_older_file_without_split_derives_it(jetnet_file, tmp_path, caplog):
    old = tmp_path / "old.h5"
    _copy(jetnet_file, old, np.arange(300), split_spec=None)
    with h5py.File(old, "r") as h5:
        assert "split" not in h5 and "split_seed" not in h5.attrs
    with JetFile(jetnet_file) as f:
        expected = f.splits()[:300]
    with caplog.at_level("INFO"), JetFile(old) as f:
        assert not f.has_split
        np.testing.assert_array_equal(f.splits(), expected)  # same positions, same default spec → same split
        train = np.concatenate([b.labels for b in f.iter_batches(64, splits=["train"])])
        assert len(train) == int((expected == SPLIT_TRAIN).sum())
    assert "has no /split" in caplog.text


def test_split_stable_across_converter_runs(tmp_path, run_cli):
    from test_converters import make_truth, write_jetnet

    source = write_jetnet(tmp_path / "q.hdf5", make_truth(300, 20, seed=3))
    outs = []
    for i, chunk in enumerate(("7", "4096")):
        out = tmp_path / f"out{i}.h5"
        res = run_cli("convert", "--from", "jetnet", source, "--out", out, f"chunk_size={chunk}",
                      "split_fractions=[0.5,0.2,0.3]", "split_seed=11")
        assert res.returncode == 0, res.stderr
        outs.append(out)
    with JetFile(outs[0]) as a, JetFile(outs[1]) as b:
        np.testing.assert_array_equal(a.splits(), b.splits())
        assert a.split_spec == SplitSpec((0.5, 0.2, 0.3), 11)
        np.testing.assert_array_equal(a.splits(), SplitSpec((0.5, 0.2, 0.3), 11).assign(np.arange(300)))
    summary = json.loads((tmp_path / "out0.summary.json").read_text())
    assert sum(summary["split_counts"]["test"].values()) == int((a_split := SplitSpec((0.5, 0.2, 0.3), 11)
                                                                 .assign(np.arange(300)) == SPLIT_TEST).sum())
    assert a_split.sum() > 0
    bad = run_cli("convert", "--from", "jetnet", source, "--out", tmp_path / "bad.h5", "split_fractions=[0.5,0.5,0.5]")
    assert bad.returncode == 2 and "split_fractions" in bad.stderr.strip().splitlines()[-1]


def test_pretrain_reads_only_train_jets_and_logs_val_loss(qcd_jetnet_file, tmp_path, monkeypatch):
    from test_pretrain_train import _config, _metrics

    import jbot_edge.data.preprocessing as preprocessing
    import jbot_edge.pretrain.stream as stream_module
    from jbot_edge.pretrain.train import run_pretrain

    with JetFile(qcd_jetnet_file) as f:
        split = f.splits()
    seen_splits: list[np.ndarray] = []
    window_indices: list[np.ndarray] = []
    real_build, real_window = preprocessing.build_inputs, stream_module.JetStream._load_window

    def spy_build(batch, spec):
        seen_splits.append(np.asarray(batch.split))
        return real_build(batch, spec)

    def spy_window(self, f, indices, cache, keep):
        window_indices.append(np.asarray(indices).copy())
        return real_window(self, f, indices, cache, keep)

    monkeypatch.setattr(stream_module, "build_inputs", spy_build)
    monkeypatch.setattr(preprocessing, "build_inputs", spy_build)
    monkeypatch.setattr(stream_module.JetStream, "_load_window", spy_window)
    run = tmp_path / "run"
    summary = run_pretrain(_config(qcd_jetnet_file, "optim.max_steps=6", "train.log_every=3",
                                   "data.train_labels=[q,g]", "data.val_jets=128"), run)
    used = np.concatenate(window_indices)
    assert len(used) >= 6 * 128 and np.all(split[used] == SPLIT_TRAIN)
    # every batch turned into model inputs (stream windows, input-norm fit) holds train jets only — except the
    # one validation batch, which holds val jets only
    kinds = [set(np.unique(s).tolist()) for s in seen_splits]
    assert {1} in kinds and all(k in ({0}, {1}) for k in kinds)
    assert sum(len(s) for s in seen_splits if set(np.unique(s)) == {1}) == 128
    metrics = _metrics(run)
    assert all(np.isfinite(m["val_loss"]) for m in metrics) and len(metrics) == 2
    assert summary["data"]["n_used"] == int((split == SPLIT_TRAIN).sum())
    assert summary["data"]["split"]["stored"] and summary["data"]["n_val"] == 128
    assert "val_loss" in summary["final"]


def test_pretrain_split_without_background_is_one_line_error(jetnet_file, tmp_path, run_cli):
    from jbot_edge.config import packaged_config

    # only test-split jets in the file: nothing to train on
    only_test = tmp_path / "only_test.h5"
    with JetFile(jetnet_file) as f:
        index = np.flatnonzero(f.splits() == SPLIT_TEST)
    _copy(jetnet_file, only_test, index)
    res = run_cli("pretrain", "--config", packaged_config("pretrain/small.yaml"), "--data", only_test, "--out",
                  tmp_path / "run", "--train-labels", "q,g", "--max-steps", "2", "optim.batch_size=16")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("error:") and "no jets of the train split" in lines[0]
    assert not (tmp_path / "run" / "teacher.pt").exists()

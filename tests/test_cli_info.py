"""`jbot-edge info` on real files, through the installed CLI in a subprocess."""

from __future__ import annotations

import json

import h5py
import numpy as np

from jbot_edge.data.reader import JetFile


def test_info_json_matches_the_generated_file(jetnet_file, run_cli):
    proc = run_cli("info", jetnet_file, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # stdout is pure JSON: logs and progress go to stderr
    with JetFile(jetnet_file) as f:
        assert summary["n_jets"] == len(f) and summary["n_particles"] == f.n_particles == 30
        assert summary["counts"] == f.counts_per_label()
        assert summary["particle_features"] == f.particle_features
        assert summary["jet_features"] == f.jet_features
        counts = np.bincount(f.labels(), minlength=len(f.label_names))
    assert list(summary["counts"]) == ["q", "g", "w", "z", "t"]
    assert list(summary["counts"].values()) == counts.tolist() and min(counts) > 0
    assert {"part_deta", "part_dphi", "part_pt_rel"} <= set(summary["particle_features"])
    attrs = summary["attrs"]
    assert attrs["schema"] == "jbot-edge.jets" and attrs["schema_version"] == 1
    assert isinstance(attrs["provenance"], dict) and attrs["provenance"]  # parsed, not a JSON string


def test_info_text_lists_counts_features_and_provenance(jetnet_file, run_cli):
    proc = run_cli("info", jetnet_file)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    with JetFile(jetnet_file) as f:
        assert lines[0] == f"{jetnet_file}: {len(f)} jets, 30 particle slots"
        assert lines[1] == "labels:   " + ", ".join(f"{k}={v}" for k, v in f.counts_per_label().items())
    assert lines[2].startswith("particle: ") and "part_pt_rel" in lines[2]
    assert any(line.startswith("provenance: {") for line in lines)


def test_info_errors_are_one_line(tmp_path, run_cli):
    proc = run_cli("info", tmp_path / "missing.h5")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: jet file {tmp_path / 'missing.h5'} does not exist"
    foreign = tmp_path / "q.hdf5"
    with h5py.File(foreign, "w") as h5:
        h5["particle_features"] = np.zeros((2, 30, 4), np.float32)
    proc = run_cli("info", foreign)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "jbot-edge convert" in proc.stderr

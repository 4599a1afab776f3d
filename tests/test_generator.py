"""The Pythia 8 + FastJet generator: physics sanity, cuts, format, reproducibility and the CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from jbot_edge.config import resolve_config
from jbot_edge.data.generator import GeneratorConfig, derive_seed, generate, output_paths, preset_file
from jbot_edge.data.reader import JetFile


def _read_all(path: Path):
    with JetFile(path) as f:
        return f.read(slice(0, len(f))), f.label_names, f.provenance, f.n_particles


def _config(preset: str = "jetnet", **values) -> GeneratorConfig:
    values.setdefault("mpi", False)
    return resolve_config(GeneratorConfig, cli_values=values, default_file=preset_file(preset))


def _mass(batch, labels, name):
    return batch.jets["jet_mass"][batch.labels == labels.index(name)]


# -- physics --------------------------------------------------------------------------------------------------------
def test_jetnet_mass_peaks_and_labels(jetnet_file):
    batch, labels, _, _ = _read_all(jetnet_file)
    assert labels == ["q", "g", "w", "z", "t"]
    assert np.bincount(batch.labels, minlength=5).tolist() == [300] * 5
    top = _mass(batch, labels, "t")
    assert np.mean((top > 150) & (top < 200)) > 0.6, np.percentile(top, [25, 50, 75])
    for boson in ("w", "z"):
        m = _mass(batch, labels, boson)
        assert np.mean((m > 65) & (m < 105)) > 0.7, (boson, np.percentile(m, [25, 50, 75]))
    assert 75 < np.median(_mass(batch, labels, "w")) < np.median(_mass(batch, labels, "z")) < 100
    # QCD jet mass falls off above its peak (Sudakov peak at m ~ pT R / few), and there is no resonance bump.
    qcd = np.concatenate([_mass(batch, labels, "q"), _mass(batch, labels, "g")])
    counts, _ = np.histogram(qcd, bins=[50, 100, 150, 200, 300])
    assert counts[0] > counts[1] > counts[2] > counts[3] / 2, counts
    assert np.mean((qcd > 150) & (qcd < 200)) < 0.3


def test_quark_jets_have_fewer_constituents_than_gluon_jets(qcd_jetnet_file):
    batch, labels, _, _ = _read_all(qcd_jetnet_file)
    n = batch.jets["jet_n_constituents"]
    n_q, n_g = n[batch.labels == labels.index("q")], n[batch.labels == labels.index("g")]
    assert len(n_q) == len(n_g) == 1500
    # Casimir scaling: C_A / C_F = 9/4 in the emission rate; the multiplicity ratio is ~1.3-1.6 at these pT.
    assert n_g.mean() > 1.2 * n_q.mean(), (n_q.mean(), n_g.mean())


# -- cuts and format ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture, r, pt_window, eta_max, n_slots", [
    ("jetnet_file", 0.8, (500, 1000), 2.0, 30),
    ("l1_file", 0.4, (30, 500), 2.4, 16),
])
def test_kinematic_cuts_ordering_and_padding(request, fixture, r, pt_window, eta_max, n_slots):
    batch, labels, provenance, n_particles = _read_all(request.getfixturevalue(fixture))
    assert n_particles == n_slots and labels == ["q", "g", "w", "z", "t"]
    jets, parts, mask = batch.jets, batch.particles, batch.mask
    assert np.all((jets["jet_pt"] > pt_window[0]) & (jets["jet_pt"] < pt_window[1]))
    assert np.all(np.abs(jets["jet_eta"]) < eta_max)
    # Constituents lie inside the jet. FastJet measures distance in rapidity, the file stores pseudorapidity, so
    # slow massive hadrons (n, p, K_L at < 1 GeV) may sit well past R in (η, φ): allow a per-mille tail of them.
    dr = np.hypot(parts["part_deta"], parts["part_dphi"])[mask]
    assert np.quantile(dr, 0.99) < 1.1 * r and np.mean(dr > 1.2 * r) < 0.01
    # pT-ordered, mask is a prefix, padding is zero, stored count never exceeds the total.
    pt = np.where(mask, parts["part_pt"], -1.0)
    assert np.all(np.diff(pt, axis=1) <= 1e-4)
    assert not np.any(mask[:, 1:] & ~mask[:, :-1])
    for name, values in parts.items():
        assert np.all(values[~mask] == 0), name
    assert np.all(mask.sum(1) == np.minimum(jets["jet_n_constituents"], n_slots))
    # Relative and absolute features agree.
    np.testing.assert_allclose(parts["part_pt_rel"][mask], (parts["part_pt"] / jets["jet_pt"][:, None])[mask],
                               rtol=1e-4)
    np.testing.assert_allclose(parts["part_deta"][mask], (parts["part_eta"] - jets["jet_eta"][:, None])[mask],
                               atol=1e-4)
    assert set(np.unique(parts["part_charge"][mask])) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert np.all(parts["part_pid"][mask] != 0) and not np.any(np.isin(np.abs(parts["part_pid"]), [12, 14, 16]))
    # The leading constituents carry most of the jet pT (fewer slots at R=0.4, but also fewer particles).
    assert np.median(parts["part_pt_rel"].sum(1)) > 0.85
    assert provenance["preset"] == ("jetnet" if n_slots == 30 else "l1")
    assert provenance["settings"]["jet_r"] == r and provenance["seed"] == 1234
    assert provenance["pythia_version"].startswith("8.3") and provenance["schema_version"] == 1
    assert len(provenance["shard_seeds"]["qcd"]) == provenance["settings"]["shards"] == 2


def test_classes_are_mixed_along_the_file(jetnet_file):
    batch, _, _, _ = _read_all(jetnet_file)
    first_block = batch.labels[:300]
    assert len(np.unique(first_block)) == 5, "shuffle should interleave classes"


# -- reproducibility ------------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_different_seed_different_jets(tmp_path):
    base = {"processes": ["q", "w"], "n_jets": 15, "shards": 2}
    a, b, c, d = (tmp_path / f"{x}.h5" for x in "abcd")
    generate(_config(seed=7, workers=1, **base), a, show_progress=False)
    generate(_config(seed=7, workers=1, **base), b, show_progress=False)
    generate(_config(seed=7, workers=2, **base), c, show_progress=False)
    generate(_config(seed=8, workers=1, **base), d, show_progress=False)
    assert a.read_bytes() == b.read_bytes()
    # With the shard count fixed the worker count only changes the speed.
    assert a.read_bytes() == c.read_bytes()
    jets_a, jets_d = _read_all(a)[0], _read_all(d)[0]
    assert not np.array_equal(np.sort(jets_a.jets["jet_pt"]), np.sort(jets_d.jets["jet_pt"]))
    summary = json.loads(output_paths(a)["summary"].read_text())
    assert summary["counts"] == {"q": 15, "w": 15} and summary["n_shards"] == 2
    assert 0 < summary["processes"]["w"]["efficiency"] <= 2


def test_default_shards_follow_workers_so_worker_count_changes_seeds():
    one, two = _config(workers=1), _config(workers=2)
    assert one.n_shards == 1 and two.n_shards == 2
    assert derive_seed(0, "qcd", 0) != derive_seed(0, "qcd", 1) != derive_seed(1, "qcd", 1)
    assert 1 <= derive_seed(123, "t", 5) <= 900_000_000


# -- CLI ------------------------------------------------------------------------------------------------------------
def test_cli_generate_with_config_file_and_overrides(run_cli, tmp_path):
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("preset: l1\nn_particles: 12\nprocesses: [g, t]\n")
    out = tmp_path / "run" / "jets.h5"
    proc = run_cli("generate", "--config", cfg, "--n-jets", 20, "--seed", 3, "--no-mpi", "--no-progress",
                   "--out", out, "jet_pt_max=300")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"] == {"g": 20, "t": 20}
    batch, labels, provenance, n_particles = _read_all(out)
    assert labels == ["g", "t"] and n_particles == 12
    assert batch.jets["jet_pt"].max() < 300 and provenance["settings"]["jet_r"] == 0.4
    resolved = yaml.safe_load((tmp_path / "run" / "jets.config.yaml").read_text())
    assert resolved["jet_pt_max"] == 300 and resolved["preset"] == "l1" and resolved["mpi"] is False
    summary = json.loads((tmp_path / "run" / "jets.summary.json").read_text())
    assert summary["n_jets"] == 40 and set(summary["streams"]) == {"qcd", "t"}
    info = run_cli("info", out)
    assert info.returncode == 0 and "g=20, t=20" in info.stdout


@pytest.mark.parametrize("args, message", [
    (["--processes", "q,x"], "--processes: unknown process 'x' (valid: q, g, w, z, t, h)"),
    (["--preset", "cms"], "--preset: unknown preset 'cms' (valid: jetnet, l1)"),
    (["--n-jets", "0"], "n_jets"),
    (["jet_radius=0.4"], "unknown key 'jet_radius'"),
])
def test_cli_bad_options_give_one_line(run_cli, tmp_path, args, message):
    proc = run_cli("generate", "--out", tmp_path / "x.h5", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_unwritable_output_leaves_nothing(run_cli, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    proc = run_cli("generate", "--n-jets", 5, "--out", blocker / "sub" / "jets.h5")
    # Answered before any Pythia work: the output's parent is a file.
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: --out "), proc.stderr
    assert "not-a-dir is an existing file, not a directory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-dir"]


def test_run_that_cannot_fill_its_cuts_fails_cleanly(run_cli, tmp_path):
    # Cheap events (pT-hat > 20 GeV) can never give a 3 TeV jet: the run must stop with a clear error and leave
    # neither the output nor its shard files behind.
    proc = run_cli("generate", "--processes", "q", "--n-jets", 5, "--no-mpi", "--no-progress", "--out",
                   tmp_path / "jets.h5", "pthat_min=20", "jet_pt_min=3000", "jet_pt_max=4000", "hadronization=false")
    assert proc.returncode == 2
    assert "process 'q': no jet passed the cuts" in proc.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []

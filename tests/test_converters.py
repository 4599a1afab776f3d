"""Converters: fixture files written in exactly the published schemas, round-tripped through `jbot-edge convert`.

Each fixture is built from known constituents (pT, η, φ per particle), so the test can recompute every canonical
feature independently: Δη/Δφ to the jet axis, pT fractions, and the jet mass from the stored constituents.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml
import pytest

from jbot_edge.data.converters import FORMATS, convert_files
from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError

# ----------------------------------------------------------------------------------------------------------------
# physics truth shared by the fixtures


def wrap(phi):
    return (phi + np.pi) % (2 * np.pi) - np.pi


@dataclass
class TruthJets:
    """Massless constituents of N jets, pT-descending, with their summed jet four-vector."""

    pt: list[np.ndarray]
    eta: list[np.ndarray]
    phi: list[np.ndarray]
    jet_pt: np.ndarray
    jet_eta: np.ndarray
    jet_phi: np.ndarray
    jet_mass: np.ndarray


def four_vectors(pt, eta, phi):
    return pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)


def mass_of(pt, eta, phi):
    e, px, py, pz = (np.sum(a, axis=-1) for a in four_vectors(pt, eta, phi))
    return np.sqrt(np.clip(e**2 - px**2 - py**2 - pz**2, 0, None))


def make_truth(n_jets: int, max_constituents: int, seed: int, min_constituents: int = 3) -> TruthJets:
    rng = np.random.default_rng(seed)
    pts, etas, phis = [], [], []
    jets = []
    for _ in range(n_jets):
        k = int(rng.integers(min_constituents, max_constituents + 1))
        pt = np.sort(rng.exponential(30.0, k) + 0.5)[::-1]
        eta0, phi0 = rng.uniform(-1.8, 1.8), rng.uniform(-np.pi, np.pi)
        eta = eta0 + rng.normal(0, 0.15, k)
        phi = wrap(phi0 + rng.normal(0, 0.15, k))
        pts.append(pt), etas.append(eta), phis.append(phi)
        e, px, py, pz = (np.sum(a) for a in four_vectors(pt, eta, phi))
        jpt = np.hypot(px, py)
        jets.append((jpt, np.arcsinh(pz / jpt), np.arctan2(py, px), np.sqrt(max(e**2 - px**2 - py**2 - pz**2, 0))))
    jets = np.array(jets)
    return TruthJets(pts, etas, phis, jets[:, 0], jets[:, 1], jets[:, 2], jets[:, 3])


# ----------------------------------------------------------------------------------------------------------------
# writers in the published schemas


def write_jetnet(path: Path, truth: TruthJets, slots: int = 30) -> Path:
    """JetNet: particle_features [N, 30, 4] = (etarel, phirel, ptrel, mask), jet_features [N, 4] (float32)."""
    n = len(truth.jet_pt)
    pf = np.zeros((n, slots, 4), np.float32)
    jf = np.zeros((n, 4), np.float32)
    for i in range(n):
        k = min(len(truth.pt[i]), slots)
        pf[i, :k, 0] = truth.eta[i][:k] - truth.jet_eta[i]
        pf[i, :k, 1] = wrap(truth.phi[i][:k] - truth.jet_phi[i])
        pf[i, :k, 2] = truth.pt[i][:k] / truth.jet_pt[i]
        pf[i, :k, 3] = 1
        jf[i] = truth.jet_pt[i], truth.jet_eta[i], truth.jet_mass[i], k
    with h5py.File(path, "w") as f:
        f["particle_features"] = pf
        f["jet_features"] = jf
    return path


def write_toptagging(path: Path, truth: TruthJets, signal: np.ndarray, fmt: str) -> Path:
    """Top Tagging: pandas frame under key 'table', E_i/PX_i/PY_i/PZ_i (i < 200), truth*, ttv, is_signal_new."""
    import pandas as pd

    n = len(truth.jet_pt)
    columns: dict[str, np.ndarray] = {}
    arrays = {v: np.zeros((n, 200), np.float32) for v in ("E", "PX", "PY", "PZ")}
    for i in range(n):
        k = len(truth.pt[i])
        for v, a in zip(("E", "PX", "PY", "PZ"), four_vectors(truth.pt[i], truth.eta[i], truth.phi[i])):
            arrays[v][i, :k] = a
    for j in range(200):
        for v in ("E", "PX", "PY", "PZ"):
            columns[f"{v}_{j}"] = arrays[v][:, j]
    for v in ("truthE", "truthPX", "truthPY", "truthPZ"):
        columns[v] = np.where(signal == 1, 500.0, 0.0).astype(np.float32)
    columns["ttv"] = np.zeros(n, np.int64)
    columns["is_signal_new"] = signal.astype(np.int64)
    pd.DataFrame(columns).to_hdf(path, key="table", format=fmt)
    return path


JETCLASS_LABELS = ("QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl")
#: (flag, charge) per particle type as JetClass stores them
JETCLASS_TYPES = [("part_isChargedHadron", 1), ("part_isChargedHadron", -1), ("part_isNeutralHadron", 0),
                  ("part_isPhoton", 0), ("part_isElectron", -1), ("part_isElectron", 1), ("part_isMuon", -1),
                  ("part_isMuon", 1)]
JETCLASS_PID = [211, -211, 130, 22, 11, -11, 13, -13]


def write_jetclass(path: Path, truth: TruthJets, classes: np.ndarray, seed: int = 0,
                   override: dict[str, np.ndarray] | None = None) -> tuple[Path, list]:
    """JetClass: TTree 'tree', jagged part_* (float32, int flags), jet_* and one-hot label_* of mixed types."""
    import awkward as ak
    import uproot

    rng = np.random.default_rng(seed)
    types = [rng.integers(0, len(JETCLASS_TYPES), len(p)) for p in truth.pt]
    # JetClass keeps particles in pT order; shuffle a copy so the converter's ordering is exercised too
    order = [rng.permutation(len(p)) for p in truth.pt]

    def jag(values, dtype=np.float32):
        return ak.values_astype(ak.Array([np.asarray(v)[o] for v, o in zip(values, order)]), dtype)

    e, px, py, pz = zip(*(four_vectors(p, h, f) for p, h, f in zip(truth.pt, truth.eta, truth.phi)))
    data = {
        "part_px": jag(px), "part_py": jag(py), "part_pz": jag(pz), "part_energy": jag(e),
        "part_deta": jag([h - je for h, je in zip(truth.eta, truth.jet_eta)]),
        "part_dphi": jag([wrap(f - jf) for f, jf in zip(truth.phi, truth.jet_phi)]),
        "part_charge": jag([[JETCLASS_TYPES[t][1] for t in ts] for ts in types]),
    }
    for name in ("part_d0val", "part_d0err", "part_dzval", "part_dzerr"):
        data[name] = jag([rng.normal(0, 0.1, len(p)) for p in truth.pt])
    for flag in ("part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon"):
        data[flag] = jag([[int(JETCLASS_TYPES[t][0] == flag) for t in ts] for ts in types], np.int32)
    energy = np.array([np.sum(x) for x in e])
    n = len(truth.jet_pt)
    data.update({
        "jet_pt": truth.jet_pt.astype(np.float32), "jet_eta": truth.jet_eta.astype(np.float32),
        "jet_phi": truth.jet_phi.astype(np.float32), "jet_energy": energy.astype(np.float32),
        "jet_nparticles": np.array([len(p) for p in truth.pt], np.float32),
        "jet_sdmass": (truth.jet_mass * 0.9).astype(np.float32),
    })
    for i in range(1, 5):
        data[f"jet_tau{i}"] = rng.uniform(0, 1, n).astype(np.float32)
    for c, name in enumerate(JETCLASS_LABELS):
        onehot = classes == c
        # the published files mix bool, int and float label branches
        data[f"label_{name}"] = onehot if c % 3 == 0 else onehot.astype(np.int32 if c % 3 == 1 else np.float32)
    data.update(override or {})
    with uproot.recreate(path) as f:
        tree = f.mktree("tree", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()},
                        counter_name=lambda name: "n_part")
        tree.extend(data)
    pids = [np.array([JETCLASS_PID[t] for t in ts]) for ts in types]
    return path, pids


def write_adc(path: Path, n_events: int, seed: int) -> tuple[Path, np.ndarray]:
    """ADC2021: Particles float64 [N, 19, 4] = (pT, η, φ, class); 0 MET, 1-4 e, 5-8 μ, 9-18 jets; 0 = empty."""
    rng = np.random.default_rng(seed)
    particles = np.zeros((n_events, 19, 4))
    for i in range(n_events):
        particles[i, 0] = rng.exponential(40), 0.0, rng.uniform(-np.pi, np.pi), 1
        for lo, hi, code in ((1, 5, 2), (5, 9, 3), (9, 19, 4)):
            k = int(rng.integers(0, hi - lo + 1))
            pt = np.sort(rng.exponential(30, k) + 23)[::-1]
            particles[i, lo:lo + k, 0] = pt
            particles[i, lo:lo + k, 1] = rng.uniform(-2.5, 2.5, k)
            particles[i, lo:lo + k, 2] = rng.uniform(-np.pi, np.pi, k)
            particles[i, lo:lo + k, 3] = code
        if not np.isin(particles[i, 1:9, 3], (2, 3)).any():  # the published samples require a lepton
            particles[i, 1] = 30.0, 0.5, 1.0, 2
    with h5py.File(path, "w") as f:
        f["Particles"] = particles
        f["Particles_Names"] = np.array([b"Pt", b"Eta", b"Phi", b"Class"])
        f["Particles_Classes"] = np.array([b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3",
                                           b"Ten_Jet_class_4"])
    return path, particles


def assert_canonical_invariants(f: JetFile) -> None:
    """pT-ordered, padding a suffix, zero in padded slots — what every canonical file promises."""
    batch = f.read(slice(0, len(f)))
    mask = batch.mask
    assert not np.any(mask[:, 1:] & ~mask[:, :-1])
    for name, values in batch.particles.items():
        assert np.all(values[~mask] == 0), name
    rel = batch.particles["part_pt_rel"]
    assert np.all(np.diff(np.where(mask, rel, -1.0), axis=1)[mask[:, 1:]] <= 0)


# ----------------------------------------------------------------------------------------------------------------
# JetNet


def test_jetnet_cli_merges_one_file_per_class(tmp_path, run_cli):
    truths = {name: make_truth(40 + 10 * i, 30, seed=i) for i, name in enumerate(("q", "g", "t"))}
    sources = [write_jetnet(tmp_path / f"{name}.hdf5", t) for name, t in truths.items()]
    out = tmp_path / "all.h5"
    proc = run_cli("convert", "--from", "jetnet", *map(str, sources), "--out", str(out))
    assert proc.returncode == 0, proc.stderr

    with JetFile(out) as f:
        assert f.label_names == ["q", "g", "t"]
        assert f.counts_per_label() == {"q": 40, "g": 50, "t": 60}
        assert f.n_particles == 30
        assert set(f.particle_features) == {"part_deta", "part_dphi", "part_pt_rel", "part_pt", "part_eta"}
        prov = f.provenance
        assert prov["source_format"] == "jetnet" and prov["source_labels"] == ["q", "g", "t"]
        assert "arXiv:2106.11535" in prov["source_reference"]
        assert_canonical_invariants(f)
        batch = f.read(slice(0, len(f)))
    # sources are interleaved chunk-wise, so find each class's jets in file order
    for c, truth in enumerate(truths.values()):
        sel = batch.select(batch.labels == c)
        np.testing.assert_allclose(sel.jets["jet_pt"], truth.jet_pt, rtol=1e-6)
        np.testing.assert_array_equal(sel.jets["jet_phi"], 0.0)
        for i in range(len(sel)):
            k = len(truth.pt[i])
            assert sel.mask[i].sum() == k
            np.testing.assert_allclose(sel.particles["part_pt_rel"][i, :k], truth.pt[i] / truth.jet_pt[i], rtol=1e-5)
            np.testing.assert_allclose(sel.particles["part_deta"][i, :k], truth.eta[i] - truth.jet_eta[i], atol=1e-5)
            np.testing.assert_allclose(sel.particles["part_pt"][i, :k], truth.pt[i], rtol=1e-5)
        # the jet mass rebuilt from the stored constituents (φ is only known relative to the jet) is the truth
        pt, eta, dphi = (np.where(sel.mask, sel.particles[k], 0.0).astype(np.float64)
                         for k in ("part_pt", "part_eta", "part_dphi"))
        np.testing.assert_allclose(mass_of(pt, eta, dphi), truth.jet_mass, rtol=2e-3, atol=0.05)
        np.testing.assert_allclose(sel.jets["jet_mass"], truth.jet_mass, rtol=1e-6)

    summary = json.loads((tmp_path / "all.summary.json").read_text())
    assert summary["counts"] == {"q": 40, "g": 50, "t": 60} and summary["n_jets"] == 150
    assert yaml.safe_load((tmp_path / "all.config.yaml").read_text())["format"] == "jetnet"

    info = run_cli("info", str(out), "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["counts"] == {"q": 40, "g": 50, "t": 60}


def test_jetnet_interleaves_sources_and_truncates(tmp_path):
    q = write_jetnet(tmp_path / "q.hdf5", make_truth(30, 30, seed=1, min_constituents=12))
    g = write_jetnet(tmp_path / "g150.hdf5", make_truth(30, 30, seed=2, min_constituents=12))
    out = tmp_path / "small.h5"
    convert_files("jetnet", [q, g], out, n_particles=8, chunk_size=10)
    with JetFile(out) as f:
        labels = f.labels()
        assert f.label_names == ["q", "g"] and f.n_particles == 8
        # chunks of 10 alternate between the two sources
        assert labels[:10].tolist() == [0] * 10 and labels[10:20].tolist() == [1] * 10
        batch = f.read(slice(0, len(f)))
        assert batch.mask.all()  # ≥ 12 constituents, 8 slots kept
        # truncation keeps the leading particles and keeps the original multiplicity
        assert np.all(batch.jets["jet_n_constituents"] >= 12)
        assert_canonical_invariants(f)


def test_jetnet_sorts_unordered_particles_and_explicit_labels(tmp_path):
    truth = make_truth(20, 30, seed=3)
    src = write_jetnet(tmp_path / "mine.h5", truth)
    with h5py.File(src, "r+") as f:  # reverse the valid particles of every jet: the converter must re-sort
        pf = f["particle_features"][:]
        for i in range(len(pf)):
            k = int(pf[i, :, 3].sum())
            pf[i, :k] = pf[i, :k][::-1]
        f["particle_features"][...] = pf
    with pytest.raises(JbotEdgeError, match="cannot infer the class"):
        convert_files("jetnet", [src], tmp_path / "x.h5")
    convert_files("jetnet", [src], tmp_path / "x.h5", labels=["w"])
    with JetFile(tmp_path / "x.h5") as f:
        assert f.label_names == ["w"]
        batch = f.read(slice(0, len(f)))
    k = len(truth.pt[0])
    np.testing.assert_allclose(batch.particles["part_pt_rel"][0, :k], truth.pt[0] / truth.jet_pt[0], rtol=1e-5)


@pytest.mark.parametrize("breakage, message", [
    ("drop_particles", "key 'particle_features' missing"),
    ("three_features", r"shape \(12, 30, 3\), expected \(N, 30, 4\)"),
    ("nan", "particle_features holds NaN/inf"),
    ("empty_jet", "jet 5 has no particles"),
    ("bad_mask", "mask"),
    ("truncated", "not a readable HDF5 file"),
])
def test_jetnet_bad_input_is_one_line_and_leaves_no_output(tmp_path, run_cli, breakage, message):
    src = write_jetnet(tmp_path / "t.hdf5", make_truth(12, 30, seed=4))
    if breakage == "truncated":
        data = src.read_bytes()
        src.write_bytes(data[: len(data) // 2])
    else:
        with h5py.File(src, "r+") as f:
            pf = f["particle_features"][:]
            del f["particle_features"]
            if breakage == "three_features":
                pf = pf[:, :, :3]
            elif breakage == "nan":
                pf[7, 0, 0] = np.nan
            elif breakage == "empty_jet":
                pf[5] = 0
            elif breakage == "bad_mask":
                pf[2, 0, 3] = 0.5
            if breakage != "drop_particles":
                f["particle_features"] = pf
    out = tmp_path / "out.h5"
    proc = run_cli("convert", "--from", "jetnet", str(src), "--out", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: jetnet file") and str(src) in lines[0], proc.stderr
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not out.exists() and not (tmp_path / "out.summary.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["t.hdf5"]  # no temp file left either


def test_cli_option_errors(tmp_path, run_cli):
    src = write_jetnet(tmp_path / "q.hdf5", make_truth(5, 30, seed=5))
    proc = run_cli("convert", "--from", "cms", str(src), "--out", str(tmp_path / "o.h5"))
    assert proc.returncode == 2 and "unknown format 'cms'" in proc.stderr
    assert all(name in proc.stderr for name in FORMATS)
    proc = run_cli("convert", "--from", "jetnet", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "o.h5"))
    assert proc.returncode == 2 and "missing.hdf5 does not exist" in proc.stderr
    proc = run_cli("convert", "--from", "jetnet", str(src), str(src), "--label", "q", "--label", "g", "--label", "t",
                   "--out", str(tmp_path / "o.h5"))
    assert proc.returncode == 2 and "3 labels for 2 files" in proc.stderr
    proc = run_cli("convert", "--from", "jetnet", str(src), "--out", str(tmp_path / "o.h5"), "n_particle=4")
    assert proc.returncode == 2 and "unknown key 'n_particle'" in proc.stderr
    assert not (tmp_path / "o.h5").exists()
    # a key=value override among the sources is applied
    proc = run_cli("convert", "--from", "jetnet", str(src), "--out", str(tmp_path / "o.h5"), "n_particles=4")
    assert proc.returncode == 0, proc.stderr
    with JetFile(tmp_path / "o.h5") as f:
        assert f.n_particles == 4 and f.provenance["conversion"]["n_particles"] == 4


def test_cli_config_file_supplies_settings(tmp_path, run_cli):
    src = write_adc(tmp_path / "events.h5", 12, seed=13)[0]
    config = tmp_path / "convert.yaml"
    config.write_text(f"format: adc2021\nsources: [{src}]\nlabels: [signal]\nn_particles: 6\nmax_jets: 10\n")
    proc = run_cli("convert", "--config", config, "--out", tmp_path / "o.h5", "compression=lzf")
    assert proc.returncode == 0, proc.stderr
    with JetFile(tmp_path / "o.h5") as f:
        assert f.counts_per_label() == {"signal": 10} and f.n_particles == 6
    saved = (tmp_path / "o.config.yaml").read_text()
    assert "format: adc2021" in saved and "compression: lzf" in saved and "max_jets: 10" in saved


# ----------------------------------------------------------------------------------------------------------------
# Top Tagging


@pytest.mark.parametrize("fmt", ["table", "fixed"])
def test_toptagging_round_trip(tmp_path, fmt):
    truth = make_truth(45, 60, seed=6)
    signal = (np.arange(45) % 3 == 0).astype(int)
    src = write_toptagging(tmp_path / "val.h5", truth, signal, fmt)
    out = tmp_path / "tt.h5"
    summary = convert_files("toptagging", [src], out, chunk_size=16, n_particles=50)
    assert summary["sources"][0]["pandas_format"] == fmt and summary["counts"] == {"qcd": 30, "t": 15}
    with JetFile(out) as f:
        assert f.label_names == ["qcd", "t"] and f.n_particles == 50
        assert_canonical_invariants(f)
        batch = f.read(slice(0, len(f)))
    np.testing.assert_array_equal(batch.labels, signal)
    np.testing.assert_allclose(batch.jets["jet_pt"], truth.jet_pt, rtol=1e-5)
    np.testing.assert_allclose(batch.jets["jet_mass"], truth.jet_mass, rtol=1e-3, atol=0.05)
    np.testing.assert_allclose(wrap(batch.jets["jet_phi"] - truth.jet_phi), 0, atol=1e-5)
    for i in range(len(batch)):
        n_all = len(truth.pt[i])
        k = min(n_all, 50)
        assert batch.mask[i].sum() == k and batch.jets["jet_n_constituents"][i] == n_all
        np.testing.assert_allclose(batch.particles["part_pt"][i, :k], truth.pt[i][:k], rtol=1e-4)
        np.testing.assert_allclose(batch.particles["part_eta"][i, :k], truth.eta[i][:k], atol=1e-4)
        np.testing.assert_allclose(batch.particles["part_deta"][i, :k], truth.eta[i][:k] - truth.jet_eta[i],
                                   atol=1e-4)
        np.testing.assert_allclose(wrap(batch.particles["part_dphi"][i, :k] - (truth.phi[i][:k] - truth.jet_phi[i])),
                                   0, atol=1e-4)
        np.testing.assert_allclose(batch.particles["part_pt_rel"][i, :k], truth.pt[i][:k] / truth.jet_pt[i],
                                   rtol=1e-4)
    # jets with ≤ 50 constituents: mass from the stored constituents equals the source's four-vector sum
    whole = np.array([len(p) <= 50 for p in truth.pt])
    pt, eta, phi = (np.where(batch.mask, batch.particles[k], 0.0).astype(np.float64)
                    for k in ("part_pt", "part_eta", "part_phi"))
    np.testing.assert_allclose(mass_of(pt, eta, phi)[whole], truth.jet_mass[whole], rtol=1e-3, atol=0.05)


def test_toptagging_bad_inputs(tmp_path):
    import pandas as pd

    truth = make_truth(6, 10, seed=7)
    src = write_toptagging(tmp_path / "a.h5", truth, np.zeros(6, int), "table")
    frame = pd.read_hdf(src, "table")
    frame.drop(columns=["PZ_3"]).to_hdf(tmp_path / "b.h5", key="table", format="table")
    with pytest.raises(JbotEdgeError, match=r"b.h5: key 'table' lacks column\(s\) \['PZ_3'\]"):
        convert_files("toptagging", [tmp_path / "b.h5"], tmp_path / "o.h5")
    frame.to_hdf(tmp_path / "c.h5", key="jets", format="table")
    with pytest.raises(JbotEdgeError, match="c.h5: key 'table' missing"):
        convert_files("toptagging", [tmp_path / "c.h5"], tmp_path / "o.h5")
    bad = frame.copy()
    bad.loc[4, "PX_0"] = np.inf
    bad.to_hdf(tmp_path / "d.h5", key="table", format="fixed")
    with pytest.raises(JbotEdgeError, match="d.h5: columns PX_i holds NaN/inf \\(first at jet 4\\)"):
        convert_files("toptagging", [tmp_path / "d.h5"], tmp_path / "o.h5")
    with pytest.raises(JbotEdgeError, match="do not pass --label"):
        convert_files("toptagging", [src], tmp_path / "o.h5", labels=["t"])
    assert not (tmp_path / "o.h5").exists()


# ----------------------------------------------------------------------------------------------------------------
# JetClass


def test_jetclass_round_trip_cli(tmp_path, run_cli):
    pytest.importorskip("uproot")
    truth = make_truth(40, 25, seed=8)
    classes = np.arange(40) % 10
    src, pids = write_jetclass(tmp_path / "HToBB_000.root", truth, classes)
    out = tmp_path / "jc.h5"
    proc = run_cli("convert", "--from", "jetclass", str(src), "--out", str(out), "--n-particles", "20",
                   "chunk_size=16")
    assert proc.returncode == 0, proc.stderr
    with JetFile(out) as f:
        assert f.label_names == list(JETCLASS_LABELS)
        assert f.counts_per_label() == {name: 4 for name in JETCLASS_LABELS}
        assert {"part_charge", "part_pid", "part_d0val"} <= set(f.particle_features)
        assert {"jet_sdmass", "jet_tau1"} <= set(f.jet_features)
        assert_canonical_invariants(f)
        batch = f.read(slice(0, len(f)))
    np.testing.assert_array_equal(batch.labels, classes)
    np.testing.assert_allclose(batch.jets["jet_mass"], truth.jet_mass, rtol=2e-3, atol=0.5)
    for i in range(len(batch)):
        k = min(len(truth.pt[i]), 20)
        assert batch.jets["jet_n_constituents"][i] == len(truth.pt[i])
        np.testing.assert_allclose(batch.particles["part_pt"][i, :k], truth.pt[i][:k], rtol=1e-5)
        np.testing.assert_allclose(batch.particles["part_deta"][i, :k], truth.eta[i][:k] - truth.jet_eta[i],
                                   atol=1e-5)
        np.testing.assert_allclose(batch.particles["part_pt_rel"][i, :k], truth.pt[i][:k] / truth.jet_pt[i],
                                   rtol=1e-5)
        np.testing.assert_array_equal(batch.particles["part_pid"][i, :k], pids[i][:k])
        np.testing.assert_array_equal(batch.particles["part_charge"][i, :k],
                                      np.sign(np.where(np.abs(pids[i][:k]) == 211, pids[i][:k], -pids[i][:k]))
                                      * (np.isin(np.abs(pids[i][:k]), (11, 13, 211))))


def test_jetclass_bad_inputs(tmp_path):
    pytest.importorskip("uproot")
    import uproot

    truth = make_truth(5, 8, seed=9)
    two_labels = np.array([0, 1, 1, 0, 0], np.int32)  # jet 2 (Hcc) is flagged Hbb as well
    write_jetclass(tmp_path / "bad.root", truth, np.array([0, 1, 2, 3, 4]), override={"label_Hbb": two_labels})
    with pytest.raises(JbotEdgeError, match="bad.root: jet 2 has 2 label_\\* branches set; expected exactly one"):
        convert_files("jetclass", [tmp_path / "bad.root"], tmp_path / "o.h5")
    (tmp_path / "junk.root").write_bytes(b"not a root file at all" * 10)
    with pytest.raises(JbotEdgeError, match="junk.root is not a readable ROOT file"):
        convert_files("jetclass", [tmp_path / "junk.root"], tmp_path / "o.h5")
    with uproot.recreate(tmp_path / "nolabel.root") as f:
        t = f.mktree("tree", {"jet_pt": np.float32})
        t.extend({"jet_pt": np.ones(3, np.float32)})
    with pytest.raises(JbotEdgeError, match=r"nolabel.root: branch\(es\) \['part_px'"):
        convert_files("jetclass", [tmp_path / "nolabel.root"], tmp_path / "o.h5")
    with uproot.recreate(tmp_path / "events.root") as f:
        t = f.mktree("events", {"jet_pt": np.float32})
        t.extend({"jet_pt": np.ones(3, np.float32)})
    with pytest.raises(JbotEdgeError, match=r"events.root: key 'tree' missing \(has \['events;1'\]\)"):
        convert_files("jetclass", [tmp_path / "events.root"], tmp_path / "o.h5")
    data = (tmp_path / "bad.root").read_bytes()
    (tmp_path / "cut.root").write_bytes(data[: len(data) // 2])
    with pytest.raises(JbotEdgeError, match="cut.root: cannot read entries from 0 on \\(truncated or corrupt\\?\\)"):
        convert_files("jetclass", [tmp_path / "cut.root"], tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()


# ----------------------------------------------------------------------------------------------------------------
# CMS ADC 2021


def test_adc2021_events_as_object_sets(tmp_path, run_cli):
    bkg, particles = write_adc(tmp_path / "background_for_training.h5", 60, seed=10)
    sig, _ = write_adc(tmp_path / "Ato4l_lepFilter_13TeV.h5", 20, seed=11)
    out = tmp_path / "adc.h5"
    proc = run_cli("convert", "--from", "adc2021", str(bkg), str(sig), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with JetFile(out) as f:
        assert f.label_names == ["background", "Ato4l"] and f.counts_per_label() == {"background": 60, "Ato4l": 20}
        assert f.n_particles == 19 and f.provenance["object_set"] == "adc2021"
        assert_canonical_invariants(f)
        batch = f.read(slice(0, len(f)))
    sel = batch.select(batch.labels == 0)
    for i in range(len(sel)):
        src = particles[i]
        valid = src[:, 3] != 0
        k = int(valid.sum())
        assert sel.mask[i].sum() == k
        # pT-ordered objects; the ADC slot layout comes back from a stable sort on (class, −pT)
        np.testing.assert_allclose(sel.particles["part_pt"][i, :k], np.sort(src[valid, 0])[::-1], rtol=1e-6)
        cls = sel.particles["part_pid"][i, :k]
        slot_order = np.lexsort((-sel.particles["part_pt"][i, :k], cls))
        np.testing.assert_allclose(sel.particles["part_pt"][i, :k][slot_order], src[valid, 0], rtol=1e-6)
        np.testing.assert_array_equal(cls[slot_order], src[valid, 3])
        np.testing.assert_allclose(sel.particles["part_pt_rel"][i, :k].sum(), 1.0, rtol=1e-5)
        # axis = leading non-MET object: its Δη, Δφ are zero; MET's Δη is zero by convention
        lead = int(np.argmax(np.where(cls != 1, sel.particles["part_pt"][i, :k], -1)))
        assert sel.particles["part_deta"][i, lead] == 0 and sel.particles["part_dphi"][i, lead] == 0
        assert sel.particles["part_deta"][i, :k][cls == 1] == 0
        visible = valid & (src[:, 3] != 1)
        np.testing.assert_allclose(sel.jets["jet_mass"][i], mass_of(src[visible, 0], src[visible, 1], src[visible, 2]),
                                   rtol=1e-6)
        np.testing.assert_allclose(sel.jets["jet_pt"][i], src[valid, 0].sum(), rtol=1e-9)


def test_adc2021_bad_inputs(tmp_path):
    path, particles = write_adc(tmp_path / "background_for_training.h5", 10, seed=12)
    with h5py.File(path, "r+") as f:
        del f["Particles"]
        f["Particles"] = particles[:, :, :3]
    with pytest.raises(JbotEdgeError, match=r"Particles has shape \(10, 19, 3\), expected \(N, 19, 4\)"):
        convert_files("adc2021", [path], tmp_path / "o.h5")
    with h5py.File(path, "r+") as f:
        del f["Particles"]
        bad = particles.copy()
        bad[3, 9, 3] = 7
        f["Particles"] = bad
    with pytest.raises(JbotEdgeError, match="class codes other than 0-4"):
        convert_files("adc2021", [path], tmp_path / "o.h5")
    other = tmp_path / "my_events.h5"
    path.rename(other)
    with pytest.raises(JbotEdgeError, match="my_events.h5: cannot infer the class from the file name"):
        convert_files("adc2021", [other], tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()


# ----------------------------------------------------------------------------------------------------------------
# Real Pythia jets (session fixture) exported to the published schemas and converted back


def test_generated_jets_round_trip_through_jetnet_schema(tmp_path, jetnet_file):
    with JetFile(jetnet_file) as f:
        original = f.read(slice(0, len(f)))
        names = f.label_names
    sources = []
    for c, name in enumerate(names):
        sel = original.select(original.labels == c)
        pf = np.stack([sel.particles["part_deta"], sel.particles["part_dphi"], sel.particles["part_pt_rel"],
                       sel.mask.astype(np.float32)], axis=-1).astype(np.float32)
        jf = np.stack([sel.jets["jet_pt"], sel.jets["jet_eta"], sel.jets["jet_mass"],
                       sel.jets["jet_n_constituents"]], axis=-1).astype(np.float32)
        path = tmp_path / f"{name}.hdf5"
        with h5py.File(path, "w") as h5:
            h5["particle_features"], h5["jet_features"] = pf, jf
        sources.append(path)
    out = tmp_path / "back.h5"
    convert_files("jetnet", sources, out, chunk_size=128)
    with JetFile(out) as f:
        assert f.label_names == names and f.counts_per_label() == {n: int((original.labels == c).sum())
                                                                   for c, n in enumerate(names)}
        back = f.read(slice(0, len(f)))
    for c in range(len(names)):
        a, b = original.select(original.labels == c), back.select(back.labels == c)
        np.testing.assert_array_equal(a.mask, b.mask)
        for name in ("part_deta", "part_dphi", "part_pt_rel"):
            np.testing.assert_array_equal(a.particles[name], b.particles[name])
        np.testing.assert_allclose(b.particles["part_pt"], a.particles["part_pt"], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(b.particles["part_eta"], a.particles["part_eta"], atol=1e-5)
        np.testing.assert_allclose(b.jets["jet_mass"], a.jets["jet_mass"], rtol=1e-6)


def test_generated_jets_round_trip_through_toptagging_schema(tmp_path, jetnet_file):
    import pandas as pd

    with JetFile(jetnet_file) as f:
        jets = f.read(slice(0, len(f)))
        names = f.label_names
    e, pt, eta, phi = (np.where(jets.mask, jets.particles[k], 0).astype(np.float64)
                       for k in ("part_energy", "part_pt", "part_eta", "part_phi"))
    columns = {}
    for j in range(200):
        inside = j < jets.n_particles
        for v, values in (("E", e), ("PX", pt * np.cos(phi)), ("PY", pt * np.sin(phi)), ("PZ", pt * np.sinh(eta))):
            columns[f"{v}_{j}"] = (values[:, j] if inside else np.zeros(len(jets))).astype(np.float32)
    top = names.index("t")
    columns["is_signal_new"] = (jets.labels == top).astype(np.int64)
    pd.DataFrame(columns).to_hdf(tmp_path / "test.h5", key="table", format="table")
    convert_files("toptagging", [tmp_path / "test.h5"], tmp_path / "tt.h5", n_particles=jets.n_particles)
    with JetFile(tmp_path / "tt.h5") as f:
        back = f.read(slice(0, len(f)))
    np.testing.assert_array_equal(back.labels, (jets.labels == top).astype(int))
    np.testing.assert_array_equal(back.mask, jets.mask)
    np.testing.assert_allclose(back.particles["part_pt"], jets.particles["part_pt"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(back.particles["part_eta"], jets.particles["part_eta"], atol=2e-4)
    # physics survives the trip: top jets (30 leading constituents) still peak near the top mass
    top_mass = back.jets["jet_mass"][back.labels == 1]
    assert 0.5 < np.mean((top_mass > 130) & (top_mass < 210))


@pytest.mark.parametrize("fmt, module, extra", [("jetclass", "uproot", "root"), ("toptagging", "pandas", "toptagging")])
def test_missing_optional_dependency_names_the_extra(tmp_path, monkeypatch, fmt, module, extra):
    src = tmp_path / "input.file"
    src.write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, module, None)  # what an environment without the extra looks like to import
    with pytest.raises(JbotEdgeError, match=rf"needs the Python package '{module}': pip install 'jbot-edge\[{extra}\]'"):
        convert_files(fmt, [src], tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()

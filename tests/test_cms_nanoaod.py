"""`convert --from cms-nanoaod`: a small PFNano-layout ROOT file written here with uproot from fixture jets (shuffled
candidates, unlinked candidates, several jets per event) converts back to exactly those jets; another layout is
refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")

N_JETS = 12
JETS_PER_EVENT = [2, 1, 3, 0, 2, 1, 3]  # a 0-jet event is legal in NanoAOD


def _write_events(path, tables):
    """TTree 'Events' in NanoAOD naming: ``n<Table>`` counters and ``<Table>_<column>`` branches."""
    with uproot.recreate(path) as f:
        tree = f.mktree("Events", {k: v.type for k, v in tables.items()}, counter_name=lambda table: "n" + table,
                        field_name=lambda table, column: f"{table}_{column}")
        tree.extend(tables)


def _write_pfnano(path, batch, seed=0):
    """Events with FatJet / PFCands / FatJetPFCands tables in the PFNano naming (uproot writes n<Table> counters)."""
    rng = np.random.default_rng(seed)
    jets = {k: [] for k in ("pt", "eta", "phi", "mass", "msoftdrop")}
    cands = {k: [] for k in ("pt", "eta", "phi", "mass", "charge", "pdgId")}
    links = {"jetIdx": [], "pFCandsIdx": []}
    j = 0
    for n in JETS_PER_EVENT:
        ev_cands = []
        for local in range(n):
            part = {k: v[j].astype(np.float64) for k, v in batch.particles.items()}
            mass = np.sqrt(np.clip(part["part_energy"] ** 2 - (part["part_pt"] * np.cosh(part["part_eta"])) ** 2, 0,
                                   None))
            for i in np.flatnonzero(batch.mask[j]):
                ev_cands.append((local, part["part_pt"][i], part["part_eta"][i], part["part_phi"][i],
                                 part["part_charge"][i], part["part_pid"][i], mass[i]))
            j += 1
        for _ in range(3):  # candidates in no AK8 jet
            ev_cands.append((-1, rng.uniform(1, 5), rng.uniform(-2, 2), rng.uniform(-3, 3), 0.0, 22.0, 0.0))
        order = rng.permutation(len(ev_cands))
        ev_cands = [ev_cands[o] for o in order]
        cands["pt"].append([c[1] for c in ev_cands])
        cands["eta"].append([c[2] for c in ev_cands])
        cands["phi"].append([c[3] for c in ev_cands])
        cands["mass"].append([c[6] for c in ev_cands])
        cands["charge"].append([int(c[4]) for c in ev_cands])
        cands["pdgId"].append([int(c[5]) for c in ev_cands])
        linked = [(c[0], k) for k, c in enumerate(ev_cands) if c[0] >= 0]
        links["jetIdx"].append([a for a, _ in linked])
        links["pFCandsIdx"].append([b for _, b in linked])
        first = j - n
        for key, src in (("pt", "jet_pt"), ("eta", "jet_eta"), ("phi", "jet_phi"), ("mass", "jet_mass")):
            jets[key].append([float(batch.jets[src][first + k]) for k in range(n)])
        jets["msoftdrop"].append([0.9 * float(batch.jets["jet_mass"][first + k]) for k in range(n)])
    _write_events(path, {
        "FatJet": ak.zip({k: ak.values_astype(ak.Array(v), np.float32) for k, v in jets.items()}),
        "PFCands": ak.zip({k: ak.values_astype(ak.Array(v), np.float32 if k in ("pt", "eta", "phi", "mass")
                                               else np.int32) for k, v in cands.items()}),
        "FatJetPFCands": ak.zip({k: ak.values_astype(ak.Array(v), np.int32) for k, v in links.items()}),
    })
    with uproot.open(path) as f:
        assert {"nFatJet", "FatJet_pt", "nPFCands", "PFCands_pdgId", "FatJetPFCands_pFCandsIdx"} <= set(
            f["Events"].keys())


@pytest.fixture(scope="module")
def fixture_jets(jetnet_file):
    from jbot_edge.data.reader import JetFile

    with JetFile(jetnet_file) as f:
        return f.read(slice(0, N_JETS))


def test_pfnano_file_converts_to_the_fixture_jets(fixture_jets, tmp_path, run_cli):
    from jbot_edge.data.reader import JetFile

    src = tmp_path / "pfnano.root"
    _write_pfnano(src, fixture_jets)
    out = tmp_path / "cms.h5"
    result = run_cli("convert", "--from", "cms-nanoaod", src, "--label", "data", "--out", out, "n_particles=30")
    assert result.returncode == 0, result.stderr
    with JetFile(out) as f:
        got = f.read(slice(0, len(f)))
        assert f.label_names == ["data"] and len(f) == N_JETS
    want = fixture_jets
    assert np.array_equal(got.mask, want.mask)
    for name in ("part_pt", "part_eta", "part_phi", "part_charge", "part_pid"):
        np.testing.assert_array_equal(got.particles[name], want.particles[name], err_msg=name)
    np.testing.assert_allclose(got.particles["part_deta"],
                               np.where(want.mask, want.particles["part_eta"] - want.jets["jet_eta"][:, None], 0),
                               atol=1e-5)
    np.testing.assert_allclose(got.particles["part_pt_rel"],
                               np.where(want.mask, want.particles["part_pt"] / want.jets["jet_pt"][:, None], 0),
                               rtol=1e-5)
    np.testing.assert_allclose(got.particles["part_energy"], want.particles["part_energy"], rtol=1e-4, atol=1e-4)
    for name in ("jet_pt", "jet_eta", "jet_phi", "jet_mass"):  # NanoAOD stores float32
        np.testing.assert_allclose(got.jets[name], want.jets[name].astype(np.float32), rtol=1e-6, err_msg=name)
    np.testing.assert_array_equal(got.jets["jet_n_constituents"], want.mask.sum(axis=1))
    np.testing.assert_allclose(got.jets["jet_sdmass"], 0.9 * want.jets["jet_mass"], rtol=1e-6)
    assert len(np.unique(got.jets["jet_pt"])) == N_JETS  # every jet once, in file order
    assert np.all(got.labels == 0)


def test_other_layouts_are_refused_in_one_line(fixture_jets, tmp_path, run_cli):
    other = tmp_path / "jetclass.root"
    with uproot.recreate(other) as f:
        f["tree"] = {"part_px": ak.Array([[1.0, 2.0]])}
    result = run_cli("convert", "--from", "cms-nanoaod", other, "--label", "x", "--out", tmp_path / "a.h5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: cms-nanoaod file") and "'Events'" in result.stderr
    plain = tmp_path / "nano.root"  # NanoAOD without the PFNano constituent tables
    _write_events(plain, {"FatJet": ak.zip({"pt": ak.Array([[500.0]]), "eta": ak.Array([[0.1]])})})
    result = run_cli("convert", "--from", "cms-nanoaod", plain, "--label", "x", "--out", tmp_path / "b.h5")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "FatJetPFCands_jetIdx" in last and "missing" in last
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()

"""``generate --preset l1-event``: ADC2021-like event-level object sets from Pythia, and the AD chain on them.

Real Pythia events through the real CLI (MPI off for speed); one generated file is shared by the module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jbot_edge.data.converters.adc2021 import ADC2021Converter
from jbot_edge.data.events import ELECTRON_SLOT, JET_SLOT, MUON_SLOT, N_ELECTRONS, N_JETS, N_MUONS
from jbot_edge.data.reader import JetFile

PROCESSES = ["qcd", "w", "z", "tt", "zprime", "htautau"]
N_EVENTS = 50  # per process
MET, ELECTRON, MUON, JET = 1, 2, 3, 4


@pytest.fixture(scope="module")
def event_file(tmp_path_factory, run_cli) -> Path:
    out = tmp_path_factory.mktemp("l1-event") / "events.h5"
    result = run_cli("generate", "--preset", "l1-event", "--processes", ",".join(PROCESSES), "--n-jets", N_EVENTS,
                     "--no-mpi", "--no-progress", "--seed", 3, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def events(event_file):
    with JetFile(event_file) as f:
        return f.read(slice(0, len(f))), list(f.label_names), dict(f.provenance), f.n_particles


def test_file_follows_the_adc2021_converter_convention(event_file, events):
    batch, labels, provenance, n_particles = events
    assert labels == PROCESSES and n_particles == 19
    assert np.bincount(batch.labels, minlength=len(PROCESSES)).tolist() == [N_EVENTS] * len(PROCESSES)
    assert set(ADC2021Converter.particle_features) <= set(batch.particles)
    assert set(ADC2021Converter.jet_features) <= set(batch.jets)
    assert provenance["object_set"] == "adc2021" and provenance["preset"] == "l1-event"
    summary = json.loads(event_file.with_name("events.summary.json").read_text())
    assert set(summary["streams"]) == set(PROCESSES)

    mask, pid, pt = batch.mask, batch.particles["part_pid"], batch.particles["part_pt"]
    # Exactly one MET per event (also when it is 0); at most the ADC multiplicities of the other classes.
    assert (((pid == MET) & mask).sum(axis=1) == 1).all()
    for code, limit in ((ELECTRON, N_ELECTRONS), (MUON, N_MUONS), (JET, N_JETS)):
        assert ((pid == code) & mask).sum(axis=1).max() <= limit
    assert (((pid != MET) & mask).sum(axis=1) >= 1).all(), "every event has a visible object"
    # Canonical ordering: valid slots first, pT-descending over all objects (MET included).
    assert (np.diff(mask.astype(int), axis=1) <= 0).all()
    assert (np.diff(np.where(mask, pt, -1.0), axis=1) <= 1e-3).all()
    jets = (pid == JET) & mask
    assert pt[jets].min() > 15.0 and np.abs(batch.particles["part_eta"][jets]).max() < 4.0
    leptons = ((pid == ELECTRON) | (pid == MUON)) & mask
    assert pt[leptons].min() > 3.0 and np.abs(batch.particles["part_eta"][leptons]).max() < 2.5
    # Event axis = leading non-MET object; jet_pt = scalar sum incl. MET; MET has no eta.
    np.testing.assert_allclose(np.where(mask, batch.particles["part_pt_rel"], 0).sum(axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(np.where(mask, pt, 0).sum(axis=1), batch.jets["jet_pt"], rtol=1e-4)
    assert (batch.particles["part_deta"][(pid == MET) & mask] == 0).all()
    lead = np.argmax(np.where(mask & (pid != MET), pt, -1.0), axis=1)
    rows = np.arange(len(pid))
    np.testing.assert_allclose(batch.particles["part_eta"][rows, lead], batch.jets["jet_eta"], atol=1e-5)
    assert np.abs(batch.particles["part_deta"][rows, lead]).max() < 1e-5


def test_adc_slot_layout_round_trips_through_the_converter(events):
    # The published fixed-slot layout (0 MET, 1-4 e, 5-8 mu, 9-18 jets) is recovered by a stable sort on
    # (class, -pT); converting it back with the ADC2021 converter must give the same event.
    batch, _, _, _ = events
    pid, mask = batch.particles["part_pid"].astype(int), batch.mask
    block = np.zeros((len(pid), 19, 4))
    first = {MET: 0, ELECTRON: ELECTRON_SLOT, MUON: MUON_SLOT, JET: JET_SLOT}
    for i in range(len(pid)):
        seen = dict.fromkeys(first, 0)
        for j in np.flatnonzero(mask[i]):
            code = pid[i, j]
            pt_eta_phi = [batch.particles[k][i, j] for k in ("part_pt", "part_eta", "part_phi")]
            block[i, first[code] + seen[code]] = [*pt_eta_phi, code]
            seen[code] += 1
    again = ADC2021Converter.convert_chunk(block, 0, 19, Path("round-trip"), 0)
    np.testing.assert_array_equal(again.mask, mask)
    for name in ("part_pt", "part_eta", "part_phi", "part_pid", "part_deta", "part_pt_rel"):
        np.testing.assert_allclose(again.particles[name], batch.particles[name], atol=1e-4, err_msg=name)


def test_physics_of_the_streams(events):
    batch, labels, _, _ = events
    pid, mask, pt = batch.particles["part_pid"], batch.mask, batch.particles["part_pt"]
    n_leptons = (((pid == ELECTRON) | (pid == MUON)) & mask).sum(axis=1)
    met = np.where((pid == MET) & mask, pt, 0).sum(axis=1)
    n_jets = ((pid == JET) & mask).sum(axis=1)

    def mean(values, process):
        return values[batch.labels == labels.index(process)].mean()

    # Isolated leptons: W/Z/Z' decays give them, QCD (heavy-flavour decays inside jets) almost never.
    assert mean(n_leptons, "qcd") < 0.2
    assert mean(n_leptons, "w") > mean(n_leptons, "qcd") + 0.3
    assert mean(n_leptons, "z") > mean(n_leptons, "w")
    assert mean(n_leptons, "zprime") > 1.2
    # Neutrinos: W → lν and H → ττ carry real MET, QCD and Z' → ll do not.
    assert mean(met, "w") > 15.0 and mean(met, "htautau") > 15.0 and mean(met, "qcd") < 5.0
    assert mean(met, "zprime") < 5.0
    # tt̄ is jet-rich.
    assert mean(n_jets, "tt") > mean(n_jets, "qcd") + 2.0


@pytest.mark.parametrize("args, message", [
    (["--preset", "l1-event", "--processes", "q,g"], "is not a process of preset l1-event"),
    (["--preset", "jetnet", "--processes", "qcd,tt"], "is not a process of preset jetnet"),
    (["--preset", "l1-event", "--processes", "qcd,nope"], "unknown process 'nope'"),
])
def test_processes_must_fit_the_preset(run_cli, tmp_path, args, message):
    result = run_cli("generate", "--out", tmp_path / "x.h5", "--n-jets", 5, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_simclr_pretrain_and_evaluate_run_on_events(run_cli, event_file, tmp_path):
    run = tmp_path / "simclr"
    result = run_cli("pretrain", "--method", "simclr", "--data", event_file, "--out", run,
                     "--train-labels", "qcd,w,z,tt", "--max-steps", "3", "optim.batch_size=64", "model.embed_dim=16",
                     "train.progress=false", "train.num_threads=1",
                     "data.features=[part_deta,part_dphi,part_pt,part_pid]")
    assert result.returncode == 0, result.stderr
    result = run_cli("evaluate", "--run", run, "--data", event_file, "--background", "qcd,w,z,tt",
                     "--signals", "zprime,htautau", "--out", tmp_path / "eval", "finetune.enabled=false",
                     "clustering.tsne=false", "compare=[mahalanobis,knn]", "metrics.n_resamples=2", "threads=1",
                     "data.bank_size=100")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval" / "evaluate.json").read_text())
    text = json.dumps(report)
    assert "zprime" in text and "htautau" in text
    assert "zprime: AUC" in result.stdout

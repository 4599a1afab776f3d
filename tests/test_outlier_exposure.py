"""Pseudo-anomalies (numpy and torch), the outlier-exposure pre-training term and the ``oe`` scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jbot_edge.data.format import JetBatch
from jbot_edge.data.preprocessing import InputSpec, build_inputs
from jbot_edge.data.pseudo_anomalies import PseudoAnomalyConfig, _prong_layout, make_pseudo_anomalies
from jbot_edge.data.reader import JetFile
from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate.observables import observable_scores
from jbot_edge.evaluate.score_head import ScoreHead
from jbot_edge.evaluate.scores import fit_scorer
from jbot_edge.pretrain.loss import OutlierExposureLossConfig, PseudoAnomalyMaker

FEATURES = ["part_deta", "part_dphi", "part_pt_rel", "part_pt", "mask"]


def single_particle_jets(pts: list[float], n_particles: int = 4) -> JetBatch:
    """Jets of one particle at the axis each (the simplest prong)."""
    n = len(pts)
    pt = np.zeros((n, n_particles), np.float32)
    pt[:, 0] = pts
    mask = pt > 0
    zeros = np.zeros_like(pt)
    return JetBatch(particles={"part_pt": pt, "part_deta": zeros, "part_dphi": zeros.copy(),
                               "part_pt_rel": mask.astype(np.float32)}, mask=mask, jets={})


def test_prong_layout_has_the_requested_mass_over_pt():
    rng = np.random.default_rng(1)
    z = rng.dirichlet([2.0, 2.0, 2.0], size=500)
    rho = rng.uniform(0.1, 0.4, 500)
    x, y = _prong_layout(z, rho, rng)
    d2 = (x[:, :, None] - x[:, None, :]) ** 2 + (y[:, :, None] - y[:, None, :]) ** 2
    np.testing.assert_allclose(np.sqrt(0.5 * np.einsum("ni,nj,nij->n", z, z, d2)), rho, rtol=1e-10)


def test_two_prong_pseudo_anomaly_of_point_prongs_has_mass_rho_pt():
    """Two one-particle prongs: the jet mass is ρ·pT up to small-angle corrections, pT is the first jet's."""
    jets = single_particle_jets([500.0] * 400)
    cfg = PseudoAnomalyConfig(prongs=[2], rho_min=0.1, rho_max=0.1)
    pa = make_pseudo_anomalies(jets, 400, cfg, jet_radius=0.8, rng=np.random.default_rng(0))
    assert pa.mask.sum(axis=1).tolist() == [2] * 400
    np.testing.assert_allclose(pa.particles["part_pt"].sum(axis=1), 500.0, rtol=1e-5)
    np.testing.assert_allclose(pa.particles["part_pt_rel"].sum(axis=1), 1.0, rtol=1e-6)
    weighted = (pa.particles["part_pt"] * pa.particles["part_deta"]).sum(axis=1)
    np.testing.assert_allclose(weighted, 0.0, atol=1e-3)  # re-centred on the pT-weighted axis
    mass = observable_scores(pa, r0=0.8)["mass"]
    np.testing.assert_allclose(np.median(mass), 50.0, rtol=0.005)  # ρ·pT = 0.1 × 500 GeV (small-angle)
    np.testing.assert_allclose(mass, 50.0, rtol=0.05)


@pytest.mark.parametrize("sampling", ["uniform", "log"])
def test_rho_sampling_gives_the_requested_mass_over_pt_distribution(sampling):
    # point-like prongs: the small-angle m/pT of the two particles, sqrt(z1 z2) dR, is the drawn rho
    cfg = PseudoAnomalyConfig(prongs=[2], rho_min=0.05, rho_max=0.4, rho_sampling=sampling)
    rng = np.random.default_rng(1)
    n = 4000
    pa = make_pseudo_anomalies(single_particle_jets(list(rng.uniform(50, 500, n))), n, cfg, 0.8, rng)
    pt, eta, phi = (pa.particles[k][:, :2] for k in ("part_pt", "part_deta", "part_dphi"))
    z = pt / pt.sum(axis=1, keepdims=True)
    rho = np.sqrt(z[:, 0] * z[:, 1]) * np.hypot(eta[:, 0] - eta[:, 1], phi[:, 0] - phi[:, 1])
    assert rho.min() > 0.0499 and rho.max() < 0.4001
    # uniform: median at the midpoint; log-uniform: at the geometric mean, and log rho spread evenly
    want = 0.225 if sampling == "uniform" else np.sqrt(0.05 * 0.4)
    assert abs(np.median(rho) - want) < 0.01
    if sampling == "log":
        counts = np.histogram(np.log(rho), bins=3, range=(np.log(0.05), np.log(0.4)))[0]
        assert counts.min() > 0.9 * n / 3
    # the pre-training maker draws rho through the same quantile function
    u = torch.tensor([0.0, 0.5])
    torch.testing.assert_close(cfg.rho_quantile(u, 0.8), torch.tensor([0.05, want], dtype=torch.float32),
                               rtol=1e-5, atol=1e-6)


def test_prongs_default_rho_range_follows_the_jet_radius(qcd_jetnet_file):
    with JetFile(qcd_jetnet_file) as f:
        background = f.read(slice(0, 600))
    pa = make_pseudo_anomalies(background, 600, PseudoAnomalyConfig(), 0.8, np.random.default_rng(0))
    assert len(pa) == 600 and pa.mask.any(axis=1).all()
    assert not np.any(pa.mask[:, :-1] < pa.mask[:, 1:]), "padding must stay a suffix"
    obs_bkg = observable_scores(JetBatch(particles=background.particles, mask=background.mask, jets={}), r0=0.8)
    obs_pa = observable_scores(pa, r0=0.8)
    # k hard prongs: markedly lower N-subjettiness ratios (scores are -tau) and heavier than the QCD jets
    assert np.median(obs_pa["tau21"]) > np.median(obs_bkg["tau21"]) + 0.2
    assert np.median(obs_pa["mass"]) > np.median(obs_bkg["mass"])


def test_torch_maker_matches_the_recipe_and_is_reproducible(qcd_jetnet_file):
    spec = InputSpec(features=FEATURES, n_particles=30)
    with JetFile(qcd_jetnet_file) as f:
        x, m = build_inputs(f.read(slice(0, 256)), spec)
    maker = PseudoAnomalyMaker(spec, OutlierExposureLossConfig(enabled=True, jet_radius=0.8, fraction=0.5))

    def make(seed):
        g = torch.Generator().manual_seed(seed)
        return maker.make(torch.from_numpy(x), torch.from_numpy(m), g)

    xa, ma = make(3)
    xb, _ = make(3)
    assert xa.shape == (128, 30, 5) and torch.equal(xa, xb)
    assert torch.isfinite(xa).all() and ma.any(dim=1).all()
    pt_rel, pt = xa[..., FEATURES.index("part_pt_rel")], xa[..., FEATURES.index("part_pt")]
    # fractions of the whole merged jet: at most 1 after truncation, proportional to pT within a jet
    assert (pt_rel.sum(dim=1) <= 1 + 1e-5).all() and (pt_rel.sum(dim=1) > 0.3).all()
    ratio = torch.where(ma, pt_rel / pt.clamp(min=1e-12), torch.zeros_like(pt))
    torch.testing.assert_close(ratio.amax(dim=1), ratio[:, 0], rtol=1e-4, atol=0)
    assert torch.equal(xa[..., FEATURES.index("mask")].bool(), ma)
    assert (xa[~ma] == 0).all(), "padding must stay all-zero"
    batch = JetBatch(particles={f: xa[..., i].numpy() for i, f in enumerate(FEATURES[:-1])}, mask=ma.numpy(), jets={})
    assert np.median(observable_scores(batch, r0=0.8)["tau21"]) > -0.4  # two/three-prong-like


def test_torch_maker_refuses_inputs_it_cannot_rebuild():
    spec = InputSpec(features=["part_deta", "part_dphi", "part_pt_rel", "part_charge"], n_particles=30)
    with pytest.raises(JbotEdgeError, match="part_charge"):
        PseudoAnomalyMaker(spec, OutlierExposureLossConfig(enabled=True))


@pytest.mark.parametrize("classifier", ["logistic", "mlp"])
def test_oe_scorer_learns_the_outlier_direction_and_round_trips(tmp_path, classifier):
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(2000, 8))
    outliers = rng.normal(size=(2000, 8)) + np.array([2.0] + [0.0] * 7)
    scorer = fit_scorer("oe", bank, {"classifier": classifier}, outliers=outliers)
    probe = np.zeros((2, 8))
    probe[1, 0] = 3.0
    s = scorer.score(probe)
    assert s[1] > s[0] + 2.0
    head = ScoreHead(scorer, bank_size=len(bank), background_labels=["q"])
    head.save(tmp_path)
    again = ScoreHead.load(tmp_path)
    queries = rng.normal(size=(100, 8))
    np.testing.assert_array_equal(again.score(queries), head.score(queries))
    assert json.loads((tmp_path / "score_head.json").read_text())["name"] == "oe"


@pytest.mark.parametrize("name", ["oe", "knn_oe"])
def test_oe_scorers_need_outliers(name):
    with pytest.raises(JbotEdgeError, match="pseudo-anomalous"):
        fit_scorer(name, np.zeros((10, 4)), {})


def test_knn_oe_is_fishers_combination_of_held_out_p_values():
    """Numpy reference: the same calibration split, a brute-force kNN, the oe part, and p-values counted by hand."""
    from jbot_edge.evaluate.scores import OutlierExposureScorer

    rng = np.random.default_rng(3)
    bank = rng.normal(size=(400, 5))
    outliers = rng.normal(size=(400, 5)) + np.array([2.0, 0, 0, 0, 0])
    params = {"knn": {"k": 7, "normalize": False}, "oe": {"classifier": "logistic"}, "calibration_fraction": 0.25,
              "seed": 11}
    scorer = fit_scorer("knn_oe", bank, params, outliers=outliers)
    order = np.random.default_rng(11).permutation(400)
    calibration, fit_bank = bank[np.sort(order[:100])], bank[np.sort(order[100:])]
    oe = OutlierExposureScorer.fit(fit_bank, scorer.params.oe, outliers=outliers)

    def knn(x):
        d = np.linalg.norm(x[:, None, :] - fit_bank[None, :, :], axis=2)
        return np.sort(d, axis=1)[:, :7].mean(axis=1)

    def minus_log_p(reference, scores):
        """−log((count at or above + 1) / (n + 1)) at each calibration score, linear in between, and beyond the
        last one the straight line through the 11th-highest and the highest calibration points."""
        ref, n = np.sort(reference), len(reference)
        level = [-np.log(((ref >= r).sum() + 1) / (n + 1)) for r in ref]
        out = []
        for s in scores:
            if s <= ref[0]:
                out.append(level[0])
            elif s > ref[-1]:
                out.append(level[-1] + (level[-1] - level[-11]) / (ref[-1] - ref[-11]) * (s - ref[-1]))
            else:
                j = int(np.searchsorted(ref, s))
                out.append(level[j - 1] + (level[j] - level[j - 1]) * (s - ref[j - 1]) / (ref[j] - ref[j - 1]))
        return np.array(out)

    queries = np.concatenate([rng.normal(size=(50, 5)), rng.normal(size=(5, 5)) * 4.0, np.full((1, 5), 0.0)])
    expected = minus_log_p(knn(calibration), knn(queries)) + minus_log_p(oe.score(calibration), oe.score(queries))
    np.testing.assert_allclose(scorer.score(queries), expected, rtol=1e-12, atol=1e-12)
    assert scorer.info["n_calibration"] == 100 and scorer.info["n_fit"] == 300
    weighted = fit_scorer("knn_oe", bank, {**params, "oe_weight": 2.5}, outliers=outliers)
    np.testing.assert_allclose(weighted.score(queries), minus_log_p(knn(calibration), knn(queries))
                               + 2.5 * minus_log_p(oe.score(calibration), oe.score(queries)), rtol=1e-12, atol=1e-12)
    far = scorer.score(np.array([[0.0, 8.0, 8.0, 0, 0], [0.0, 9.0, 9.0, 0, 0]]))
    assert far[1] > far[0]  # beyond every calibration jet the order is kept, not tied
    # both parts count: a rare jet off the outlier direction and a common one along it both score high
    rare, along = np.array([[0.0, 6.0, 6.0, 0, 0]]), np.array([[2.5, 0, 0, 0, 0]])
    typical = float(np.median(scorer.score(rng.normal(size=(500, 5)))))
    assert scorer.score(rare)[0] > typical + 2.0 and scorer.score(along)[0] > typical + 1.0


def test_pretrain_with_outlier_exposure_logs_the_term(tmp_path, qcd_jetnet_file, run_cli):
    from jbot_edge.config import packaged_config

    out = tmp_path / "run"
    result = run_cli("pretrain", "--config", packaged_config("pretrain/small.yaml"), "--data", qcd_jetnet_file,
                     "--out", out, "--max-steps", "6", "optim.batch_size=64", "train.log_every=3",
                     "outlier_exposure.enabled=true", "train.progress=false")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("oe_loss" in r and 0.0 <= r["oe_accuracy"] <= 1.0 for r in rows)
    assert (out / "teacher.pt").is_file()

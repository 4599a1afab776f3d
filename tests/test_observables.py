"""Physics-observable anomaly scores: hand-computed values on tiny jets, orientation, streaming from a real file."""

from __future__ import annotations

import numpy as np
import pytest

from jbot_edge.data.format import JetBatch
from jbot_edge.errors import JbotEdgeError
from jbot_edge.evaluate.observables import ORIENTATION, jet_radius, observable_scores, observable_values

R0 = 0.8


def _jet(pt, eta, phi, width=6, jets=None) -> JetBatch:
    """One jet of massless particles at (η, φ) relative to the axis, pT-ordered and zero-padded to ``width``."""
    n = len(pt)
    pad = lambda v: np.pad(np.asarray(v, dtype=np.float32), (0, width - n))[None]  # noqa: E731
    return JetBatch(particles={"part_pt_rel": pad(pt), "part_deta": pad(eta), "part_dphi": pad(phi)},
                    mask=(np.arange(width) < n)[None], jets=jets or {}, labels=np.zeros(1, dtype=np.int64))


def test_two_particles_tau1_closed_form_and_mass():
    a = 0.3  # equal pT at η = ±a: the one-axis (sum) sits at y = 0, so τ1 = a / R0 and τ2 = 0
    values = observable_values(_jet([1.0, 1.0], [a, -a], [0.0, 0.0]), R0)
    assert values["tau21"][0] == pytest.approx(0.0)
    # massless pair: m² = 2 pT1 pT2 (cosh Δη − cos Δφ); pT of the sum = 2 (pz cancels, px adds)
    m = np.sqrt(2 * (np.cosh(2 * a) - 1))
    assert values["m_over_pt"][0] == pytest.approx(m / 2, rel=1e-6)
    assert values["multiplicity"][0] == 2
    from jbot_edge.data.substructure import nsubjettiness

    batch = _jet([1.0, 1.0], [a, -a], [0.0, 0.0])
    tau1 = nsubjettiness(batch.particles["part_pt_rel"].astype(float), batch.particles["part_deta"].astype(float),
                         batch.particles["part_dphi"].astype(float), batch.mask, 1, R0)
    assert tau1[0] == pytest.approx(a / R0, rel=1e-6)


def test_four_particles_exclusive_kt_axes_by_hand():
    # Equal pT on a line in φ at 0, 0.1, 0.5, 1.0 (η = 0). kT merges the closest pair first ({0, 0.1} → axis at
    # φ = 0.05), then that pair with 0.5 (d = 0.45² < 0.5²), so:
    #   3 axes: {0, 0.1}, {0.5}, {1.0}     → τ3 = (0.05 + 0.05) / (4 R0)
    #   2 axes: {0, 0.1, 0.5}, {1.0}       → τ2 = Σ |φ_i − φ_B| / (4 R0), φ_B the azimuth of the three-particle sum
    #   1 axis: all four                   → τ1 = Σ |φ_i − φ_all| / (4 R0)
    phis = np.array([0.0, 0.1, 0.5, 1.0])
    values = observable_values(_jet([1.0] * 4, [0.0] * 4, phis), R0)
    phi_b = np.arctan2(np.sin(phis[:3]).sum(), np.cos(phis[:3]).sum())
    phi_all = np.arctan2(np.sin(phis).sum(), np.cos(phis).sum())
    tau3 = 0.1 / (4 * R0)
    tau2 = np.abs(phis[:3] - phi_b).sum() / (4 * R0)
    tau1 = np.abs(phis - phi_all).sum() / (4 * R0)
    assert values["tau32"][0] == pytest.approx(tau3 / tau2, rel=1e-5)
    assert values["tau21"][0] == pytest.approx(tau2 / tau1, rel=1e-5)
    # massless, η = 0: m² = E² − |p|² with E = Σ pT
    px, py = np.cos(phis).sum(), np.sin(phis).sum()
    assert values["m_over_pt"][0] == pytest.approx(np.sqrt(16 - px**2 - py**2) / np.hypot(px, py), rel=1e-5)


def test_stored_jet_features_win_and_orientation_is_fixed():
    jets = {"jet_mass": np.array([80.0]), "jet_pt": np.array([400.0]), "jet_n_constituents": np.array([42.0])}
    batch = _jet([0.6, 0.4], [0.1, -0.1], [0.0, 0.2], jets=jets)
    scores = observable_scores(batch, r0=R0)
    assert scores["mass"][0] == 80.0 and scores["m_over_pt"][0] == pytest.approx(0.2)
    assert scores["multiplicity"][0] == 42.0
    values = observable_values(batch, R0)
    for name in ("tau21", "tau32"):
        assert ORIENTATION[name] == -1 and scores[name][0] == -values[name][0]
    # a one-particle jet has no substructure evidence: ratios are 1 by convention, never NaN
    single = observable_values(_jet([1.0], [0.0], [0.0]), R0)
    assert single["tau21"][0] == 1.0 and single["tau32"][0] == 1.0


def test_radius_from_provenance():
    assert jet_radius({"settings": {"jet_r": 0.4}})[0] == 0.4
    assert jet_radius({"jet_definition": "anti-kT R=1.0"})[0] == 1.0
    assert jet_radius({"source_format": "jetnet"})[0] == 0.8
    # a merged file: its inputs' common radius, else (inputs disagree) the default with its origin named
    merged = {"merged_from": [{"provenance": {"settings": {"jet_r": 0.4}}}, {"provenance": {"settings": {"jet_r": 0.4}}}]}
    assert jet_radius(merged)[0] == 0.4
    merged["merged_from"][1]["provenance"]["settings"]["jet_r"] = 0.8
    assert jet_radius(merged) == (0.8, "default (not recorded in the file)")


def test_streamed_file_matches_batch_and_separates_signals(jetnet_file):
    from jbot_edge.data.reader import JetFile

    with JetFile(jetnet_file) as f:
        labels, names = f.labels(), f.label_names
        index = np.flatnonzero(np.arange(len(f)) % 3 == 0)
        streamed = observable_scores(f, index, block=500)
        direct = observable_scores(f.read(index), r0=0.8)
    assert set(streamed) == set(ORIENTATION)
    for name in streamed:
        assert len(streamed[name]) == len(index) and np.isfinite(streamed[name]).all()
        np.testing.assert_allclose(streamed[name], direct[name])
    y = labels[index]
    qcd = np.isin(y, [names.index("q"), names.index("g")])
    # the fixed orientations point the right way on real Pythia jets: W has lower τ21, top higher mass than QCD
    assert np.median(streamed["tau21"][y == names.index("w")]) > np.median(streamed["tau21"][qcd])
    assert np.median(streamed["mass"][y == names.index("t")]) > np.median(streamed["mass"][qcd])


def test_embedding_observables_from_constituents_and_their_standardisation(l1_teacher_run):
    """The jet-shape features a teacher appends to its embedding (evaluate's embedding.observables): the same
    four-particle jet as above, by hand, computed from the constituents even when jet-level values are stored;
    standardised with the recorded mean and scale; a damaged record is one error line."""
    from jbot_edge.data.substructure import constituent_observables
    from jbot_edge.errors import JbotEdgeError
    from jbot_edge.pretrain.artifact import ObservableFeatures, load_teacher

    phis = np.array([0.0, 0.1, 0.5, 1.0])
    jet = _jet([1.0] * 4, [0.0] * 4, phis, jets={"jet_mass": np.array([999.0]), "jet_pt": np.array([1.0])})
    reference = observable_values(_jet([1.0] * 4, [0.0] * 4, phis), R0)
    got = constituent_observables(jet, ["tau32", "log_m_over_pt", "tau21"], R0)
    expected = [reference["tau32"][0], np.log(reference["m_over_pt"][0]), reference["tau21"][0]]
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)
    one = _jet([1.0], [0.0], [0.0])  # m = 0: the floor, and ratios of empty τ's are 1 ("no substructure")
    np.testing.assert_allclose(constituent_observables(one, ["log_m_over_pt", "tau21"], R0)[0], [np.log(1e-4), 1.0])

    two = JetBatch.concatenate([_jet([1.0] * 4, [0.0] * 4, phis), _jet([1.0, 1.0], [0.3, -0.3], [0.0, 0.0])])
    spec = ObservableFeatures.fit(two, ["log_m_over_pt", "tau21"], R0)
    values = constituent_observables(two, spec.names, R0)
    np.testing.assert_allclose(spec(two), (values - values.mean(0)) / values.std(0), rtol=1e-5, atol=1e-6)
    teacher = load_teacher(l1_teacher_run, observables=spec.model_dump())
    assert teacher.embed_dim == teacher.encoder.embed_dim + 2
    # a file without part_pt_rel: the observables read part_pt (ratios and m/pT do not depend on the pT scale)
    assert {"part_pt", "part_deta", "part_dphi"} <= set(teacher.stored_features(["part_pt", "part_deta",
                                                                                 "part_dphi"]))
    with pytest.raises(JbotEdgeError, match="embedding.observables") as err:
        load_teacher(l1_teacher_run, observables={**spec.model_dump(), "names": ["mass", "tau21"]})
    assert "\n" not in str(err.value)


def test_embedding_observables_auto_follow_the_teacher_preset():
    from jbot_edge.evaluate.config import EmbeddingSettings, EvaluateConfig
    from jbot_edge.evaluate.pipeline import with_preset_observables

    auto = EmbeddingSettings()
    assert auto.observables == "auto"
    assert auto.resolved_observables("l1") == ["log_m_over_pt"]  # what a level-1 student can form
    assert auto.resolved_observables("jetnet") == auto.resolved_observables(None) == ["log_m_over_pt", "tau21",
                                                                                       "tau32"]
    assert EmbeddingSettings(observables=["tau32"]).resolved_observables("l1") == ["tau32"]  # explicit wins
    with pytest.raises(ValueError, match="'other' entry"):
        EmbeddingSettings(observables_by_preset={"l1": []})
    resolved = with_preset_observables(EvaluateConfig(), "l1")
    assert resolved.embedding.observables == ["log_m_over_pt"]
    # a preset whose list is empty cannot feed an oe part that reads observables: one error naming both keys
    empty = EvaluateConfig.model_validate({"embedding": {"observables_by_preset": {"l1": [], "other": ["tau21"]}},
                                           "scorers": {"knn_oe": {"oe": {"inputs": "observables"}}}})
    with pytest.raises(JbotEdgeError, match=r"embedding.observables=auto \(l1 preset\).*knn_oe.oe.inputs"):
        with_preset_observables(empty, "l1")


def test_knn_oe_weight_auto_follows_the_teacher_preset():
    """auto is resolved once, from the teacher's preset, so the score head records a number; the l1 preset keeps
    plain Fisher (its direction reads log m/pT alone), every other preset weights the direction 2×."""
    from jbot_edge.evaluate.config import EvaluateConfig
    from jbot_edge.evaluate.pipeline import with_preset_oe_weight
    from jbot_edge.evaluate.scores import fit_scorer

    auto = EvaluateConfig.model_validate({"scorers": {"knn_oe": {"oe_weight": "auto"}}})
    assert with_preset_oe_weight(auto, "l1").scorers.knn_oe.oe_weight == 1.0
    assert with_preset_oe_weight(auto, "jetnet").scorers.knn_oe.oe_weight == 2.0
    assert with_preset_oe_weight(auto, None).scorers.knn_oe.oe_weight == 2.0
    explicit = EvaluateConfig.model_validate({"scorers": {"knn_oe": {"oe_weight": 3.0}}})
    assert with_preset_oe_weight(explicit, "l1").scorers.knn_oe.oe_weight == 3.0  # explicit wins
    with pytest.raises(ValueError, match="'other' entry"):
        EvaluateConfig.model_validate({"scorers": {"oe_weight_by_preset": {"l1": 1.0}}})
    with pytest.raises(ValueError, match="must be > 0"):
        EvaluateConfig.model_validate({"scorers": {"knn_oe": {"oe_weight": 0}}})
    rng = np.random.default_rng(0)
    with pytest.raises(JbotEdgeError, match="oe_weight=auto is resolved by evaluate"):
        fit_scorer("knn_oe", rng.normal(size=(40, 3)), {"oe_weight": "auto"}, outliers=rng.normal(size=(40, 3)))

"""The trigger-precision input spec rounds, saturates, wraps and pads exactly as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jbot_edge.data.format import JetBatch
from jbot_edge.data.l1quant import FeatureQuantizer, L1InputSpec
from jbot_edge.errors import JbotEdgeError

ETA_LSB = math.pi / 720


def test_default_spec_is_the_documented_trigger_precision():
    spec = L1InputSpec()
    assert spec.n_particles == 16
    assert spec.feature_names == ["part_pt", "part_deta", "part_dphi"]
    assert spec.features[0].lsb == 0.25
    assert spec.features[1].lsb == ETA_LSB and spec.features[2].lsb == ETA_LSB
    # pT: 12 unsigned bits need 13 signed bits in the shared tensor; 6 fractional bits → ap_fixed<13,7>.
    assert (spec.input_width, spec.input_integer_bits, spec.input_fixed_type()) == (13, 7, "fixed<13,7>")


def test_rounding_is_nearest_with_ties_to_even():
    spec = L1InputSpec()
    pt = np.array([0.0, 0.1, 0.125, 0.375, 0.37, 1.0, 2.625])  # 0.125 = 0.5 LSB → 0; 0.375 = 1.5 LSB → 2
    values = np.stack([pt, np.zeros_like(pt), np.zeros_like(pt)], axis=-1)
    assert spec.quantize_values(values)[:, 0].tolist() == [0, 0, 0, 2, 1, 4, 10]
    eta = np.array([0.5, -0.5, 1.5, -1.5, 2.4]) * ETA_LSB
    values = np.stack([np.zeros_like(eta), eta, -eta], axis=-1)
    codes = spec.quantize_values(values)
    assert codes[:, 1].tolist() == [0, 0, 2, -2, 2]
    assert codes[:, 2].tolist() == [0, 0, -2, 2, -2]


def test_saturation_at_the_code_range():
    spec = L1InputSpec()
    values = np.array([[5000.0, 10.0, -10.0], [-3.0, -1e6, 1e6], [1023.75, 255 * ETA_LSB, -256 * ETA_LSB]])
    codes = spec.quantize_values(values)
    assert codes.tolist() == [[4095, 255, -256], [0, -256, 255], [4095, 255, -256]]


def test_wrap_mode_wraps_twos_complement():
    spec = L1InputSpec(overflow="wrap")
    values = np.array([[4096 * 0.25, 256 * ETA_LSB, -257 * ETA_LSB], [4097 * 0.25, 0.0, 0.0]])
    assert spec.quantize_values(values).tolist() == [[0, -256, 255], [1, 0, 0]]


def test_padding_is_zero_and_model_input_is_codes_times_power_of_two():
    spec = L1InputSpec(n_particles=4)
    mask = np.array([[True, True, False, False, False]])
    particles = {"part_pt": np.array([[10.0, 2.3, 0, 0, 0]], dtype=np.float32),
                 "part_deta": np.array([[0.01, -0.2, 0, 0, 0]], dtype=np.float32),
                 "part_dphi": np.array([[-0.03, 0.1, 0, 0, 0]], dtype=np.float32)}
    particles["part_deta"][0, 2] = 0.0
    codes = spec.quantize(JetBatch(particles=particles, mask=mask))
    assert codes.shape == (1, 4, 3) and codes.dtype == np.int32
    assert codes[0, 0].tolist() == [40, 2, -7] and codes[0, 1].tolist() == [9, -46, 23]
    assert not codes[0, 2:].any()
    x = spec.to_model_input(codes)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x.astype(np.float64) * 2**6, codes)


def test_lsb_accepts_pi_expressions_and_refuses_nonsense():
    assert FeatureQuantizer(name="part_deta", lsb="pi/720", bits=9).lsb == ETA_LSB
    assert FeatureQuantizer(name="part_deta", lsb="2*pi/1440", bits=9).lsb == ETA_LSB
    with pytest.raises(ValueError):
        FeatureQuantizer(name="part_deta", lsb="-1", bits=9)
    with pytest.raises(ValueError):
        L1InputSpec(input_frac_bits=13)


def test_missing_feature_and_bad_codes_are_one_line_errors():
    spec = L1InputSpec(n_particles=2)
    batch = JetBatch(particles={"part_pt": np.ones((1, 2), np.float32)}, mask=np.ones((1, 2), bool))
    with pytest.raises(JbotEdgeError, match="part_deta"):
        spec.quantize(batch)
    with pytest.raises(JbotEdgeError, match="outside"):
        spec.check_codes(np.full((1, 2, 3), 5000))


def test_describe_round_trips_through_json():
    import json

    spec = L1InputSpec(n_particles=8, input_frac_bits=4)
    data = json.loads(json.dumps(spec.describe()))
    assert data["input_fixed_type"] == "fixed<13,9>"
    rebuilt = L1InputSpec.model_validate({k: data[k] for k in L1InputSpec.model_fields})
    assert rebuilt == spec


MASS_SPEC = {"features": [{"name": "part_pt", "lsb": 0.25, "bits": 12, "signed": False},
                          {"name": "part_deta", "lsb": "pi/720", "bits": 9},
                          {"name": "part_dphi", "lsb": "pi/720", "bits": 9},
                          {"name": "part_m2_moment", "lsb": ETA_LSB**2, "bits": 12, "signed": False,
                           "derived": {"kind": "mass_moment"}}]}


def _jet(pt: list[float], deta: list[float], dphi: list[float], n_particles: int = 4) -> JetBatch:
    pad = n_particles - len(pt)
    arrays = {name: np.array([values + [0.0] * pad], dtype=np.float32)
              for name, values in (("part_pt", pt), ("part_deta", deta), ("part_dphi", dphi))}
    return JetBatch(particles=arrays, mask=np.array([[True] * len(pt) + [False] * pad]))


def test_mass_moment_column_by_hand():
    spec = L1InputSpec.model_validate({**MASS_SPEC, "n_particles": 4})
    assert spec.stored_feature_names == ["part_pt", "part_deta", "part_dphi"] and spec.n_features == 4
    # pT codes 400, 200 (S = 600 = 2^9 · 1.171875: ROM address 5, ROM[5] = round(1024 / (1 + 5.5/32)) = 874);
    # z = floor(pT · 874 / 2^11) = 170, 85; r² = 10² + 0² = 100 and (-20)² + 5² = 425;
    # code = floor(z · r² / 2^8) = floor(66.4) = 66 and floor(141.1) = 141.
    codes = spec.quantize(_jet([100.0, 50.0], [10 * ETA_LSB, -20 * ETA_LSB], [0.0, 5 * ETA_LSB]))
    assert codes[0, :, 3].tolist() == [66, 141, 0, 0]
    assert codes[0, :2, :3].tolist() == [[400, 10, 0], [200, -20, 5]]  # the stored columns are unchanged
    # Two equal particles at Δη = ±0.1: m²/pT² = (pT1 pT2 ΔR²) / (pT1 + pT2)² = 0.01; the column's sum, in its
    # lsb, gives it back (r = 0.1 rad is 22.9 codes, rounded to 23: 1 % high in r², as the inputs are).
    codes = spec.quantize(_jet([100.0, 100.0], [0.1, -0.1], [0.0, 0.0]))
    assert codes[0, :, 3].sum() * ETA_LSB**2 == pytest.approx(0.01, rel=0.02)


def test_normalised_pt_saturates_the_raw_code_at_its_own_range():
    """A normalised pT keeps the raw 12-bit range before normalising: 100 and 50 GeV stay 2:1, not both 255."""
    from jbot_edge.data.l1quant import PtNormalisation

    spec = L1InputSpec(n_particles=4, pt_normalisation=PtNormalisation())
    codes = spec.quantize(_jet([100.0, 50.0], [0.0, 0.0], [0.0, 0.0]))
    assert codes[0, :2, 0].tolist() == [170, 85]  # floor(400 · 874 / 2^11), floor(200 · 874 / 2^11)


def test_derived_column_needs_its_inputs_and_is_unsigned():
    features = MASS_SPEC["features"]
    with pytest.raises(ValueError, match="missing \\['part_dphi'\\]"):
        L1InputSpec.model_validate({"features": [features[0], features[1], features[3]]})
    with pytest.raises(ValueError, match="unsigned"):
        L1InputSpec.model_validate({"features": [*features[:3], {**features[3], "signed": True}]})
    with pytest.raises(ValueError, match="stored"):
        L1InputSpec.model_validate({**MASS_SPEC, "pt_normalisation": {"feature": "part_m2_moment"}})

"""Brevitas students: fixed-point construction, training, size figures, save/load and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from student_factory import l1_codes, train_student

from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.students import (
    StudentConfig,
    accumulator_bits,
    bops,
    build_student,
    load_student,
    output_lsb,
    parameter_count,
    quantizer_scales,
    save_student,
    score_codes,
    total_weight_bits,
)


@pytest.fixture(scope="module")
def codes(l1_file):
    return l1_codes(l1_file, 1024)


@pytest.mark.parametrize("kind", ["deepsets", "mlp"])
def test_training_reduces_loss_and_keeps_power_of_two_scales(kind, codes):
    spec = L1InputSpec()
    x = torch.tensor(spec.to_model_input(codes))
    model, cfg, _ = train_student(kind, codes, steps=0)
    model.train()
    with torch.no_grad():
        before = float(model(x).float().std())
    trained, _, _ = train_student(kind, codes, steps=60)
    with torch.no_grad():
        out = trained(x)
    assert out.shape == (len(codes), 1)
    assert torch.isfinite(out).all() and float(out.std()) > 0 and before >= 0
    for name, scale in quantizer_scales(trained).items():
        mantissa, _ = math.frexp(scale)
        assert mantissa == 0.5, f"{name} scale {scale} is not a power of two"
    # Outputs are exact multiples of the output LSB (integer codes).
    lsb = output_lsb(trained)
    ratio = out.double().numpy() / lsb
    np.testing.assert_array_equal(ratio, np.rint(ratio))


def test_training_fits_the_target(codes):
    from student_factory import _target

    spec = L1InputSpec()
    x = torch.tensor(spec.to_model_input(codes))
    y = _target(codes, spec)
    losses = []
    for steps in (0, 120):
        model, _, _ = train_student("deepsets", codes, steps=steps)
        with torch.no_grad():
            losses.append(float(torch.nn.functional.huber_loss(model(x), y)))
    assert losses[1] < 0.7 * losses[0], losses


def test_floor_and_round_half_even_are_different_quantizers(codes):
    spec = L1InputSpec()
    x = torch.tensor(spec.to_model_input(codes[:256]))
    floor, _, _ = train_student("mlp", codes, steps=40, rounding="floor")
    rnd, _, _ = train_student("mlp", codes, steps=40, rounding="round_half_even")
    rnd.load_state_dict(floor.state_dict())
    assert not np.array_equal(score_codes(floor, x), score_codes(rnd, x))


def test_size_figures_follow_the_architecture():
    spec = L1InputSpec()
    cfg = StudentConfig(kind="deepsets", phi_widths=[8], rho_widths=[4], weight_bits=4, bias_bits=8, act_bits=6)
    model = build_student(cfg, spec)
    assert parameter_count(model) == (3 * 8 + 8) + (8 * 4 + 4) + (4 + 1)
    assert total_weight_bits(model, cfg) == (3 * 8 + 8 * 4 + 4) * 4 + (8 + 4 + 1) * 8
    # phi once per particle with 13-bit inputs; rho on the pooled 6+4-bit values; head on 6-bit activations.
    expected = (16 * 3 * 8 * (13 * 4 + 13 + 4 + math.log2(3)) + 8 * 4 * (10 * 4 + 10 + 4 + 3)
                + 4 * 1 * (6 * 4 + 6 + 4 + 2))
    assert bops(cfg, spec) == round(expected)
    assert accumulator_bits(cfg, spec) == {"linear0": 13 + 4 + 2 + 1, "linear1": 10 + 4 + 3 + 1,
                                           "linear2": 6 + 4 + 2 + 1}


@pytest.mark.parametrize("kind", ["deepsets", "mlp"])
def test_save_load_round_trip_is_weights_only_and_exact(kind, codes, tmp_path):
    model, cfg, spec = train_student(kind, codes, steps=40)
    path = save_student(tmp_path, model, cfg, spec, {"target": "log", "teacher": {"run": "x"}})
    assert path == tmp_path / "student.pt"
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "jbot-edge.student" and payload["input_spec"]["n_particles"] == 16
    loaded, cfg2, spec2, extra = load_student(tmp_path)
    assert cfg2 == cfg and spec2 == spec and extra == {"target": "log", "teacher": {"run": "x"}}
    x = torch.tensor(spec.to_model_input(codes[:300]))
    np.testing.assert_array_equal(score_codes(model, x), score_codes(loaded, x))


def test_refusals_are_one_line_errors(codes, tmp_path):
    with pytest.raises(ValueError, match="power-of-two"):
        StudentConfig(scaling="float")
    with pytest.raises(JbotEdgeError, match="power-of-two shift"):
        build_student(StudentConfig(pooling="mean"), L1InputSpec(n_particles=10))
    build_student(StudentConfig(pooling="sum"), L1InputSpec(n_particles=10))
    with pytest.raises(JbotEdgeError, match="accumulators"):
        build_student(StudentConfig(kind="mlp", weight_bits=16, act_bits=16, max_accumulator_bits=24), L1InputSpec())
    model, cfg, spec = train_student("mlp", codes, steps=35)
    path = save_student(tmp_path / "ok", model, cfg, spec)
    payload = torch.load(path, weights_only=True)
    # Brevitas stores fixed-point scales as log2 values, so a checkpoint cannot smuggle in a non-power-of-two
    # scale; a model whose layer uses a float-scaled quantizer is refused before anything is written.
    from brevitas.nn import QuantLinear
    from brevitas.quant import Int8WeightPerTensorFloat

    model.head = QuantLinear(cfg.mlp_widths[-1], 1, bias=False, weight_quant=Int8WeightPerTensorFloat)
    with torch.no_grad():
        model.head.weight.fill_(0.3)
    with pytest.raises(JbotEdgeError, match="not a power of two"):
        save_student(tmp_path / "bad", model, cfg, spec)
    assert not (tmp_path / "bad" / "student.pt").exists()
    del payload["input_spec"]
    torch.save(payload, tmp_path / "nospec.pt")
    with pytest.raises(JbotEdgeError, match="quantizer spec"):
        load_student(tmp_path / "nospec.pt")
    with pytest.raises(JbotEdgeError, match="does not exist"):
        load_student(tmp_path / "missing")

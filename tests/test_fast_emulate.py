"""The fast integer emulator against the Brevitas student, without firmware: both roundings, the float64 path,
chunking/threads, and the refusal of layers too wide for exact float arithmetic. The end-to-end comparison with
QONNX, C simulation and Verilator is in test_emulate.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from student_factory import l1_codes, train_student

from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.fast_emulate import FastEmulator, make_layer
from jbot_edge.firmware.fuzz import fuzz_codes, layer_rounding_codes
from jbot_edge.models.students import score_codes


@pytest.mark.parametrize(("kind", "rounding"), [("deepsets", "round_half_even"), ("mlp", "round_half_even"),
                                                ("deepsets", "floor")])
def test_fast_emulator_matches_brevitas(kind, rounding, l1_file):
    codes = l1_codes(l1_file)
    model, cfg, spec = train_student(kind, codes, steps=30, rounding=rounding)
    fast = FastEmulator.from_model(model, cfg, spec)
    fuzz, _ = fuzz_codes(spec)
    # Jets with an exact tie (round-half-even: both parities) or grid boundary at every layer's quantizer.
    ties, names, coverage = layer_rounding_codes(fast)
    if rounding == "round_half_even":
        assert {"half_even", "half_odd"} <= {name.split("_", 2)[-1].rsplit("_", 1)[0] for name in names}, coverage
    # Every target is met unless no input can reach it (the bias's low bits) or the layer never rounds.
    assert not [t for t, why in coverage["missing"].items() if "not met" in why], coverage["missing"]
    assert len(names) >= 3 * (len(fast.layers) - 1), coverage["missing"]
    every = np.concatenate([codes, fuzz, ties])
    reference = score_codes(model, torch.from_numpy(spec.to_model_input(every)))
    assert len(np.unique(reference)) > 100  # not a vacuous comparison
    np.testing.assert_array_equal(fast.score_codes(every), reference)
    np.testing.assert_array_equal(fast.score_codes(every, threads=2, chunk=37), reference)


def test_wide_mlp_layer_takes_the_float64_path(l1_file):
    """48 inputs of up to 2^12 with 16-bit weights do not fit float32's mantissa: the exact float64 GEMM is used."""
    codes = l1_codes(l1_file)
    model, cfg, spec = train_student("mlp", codes, steps=10, weight_bits=12)
    fast = FastEmulator.from_model(model, cfg, spec)
    assert fast.per_jet[0].weight.dtype == torch.float64 and fast.dtype == torch.float64
    reference = score_codes(model, torch.from_numpy(spec.to_model_input(codes)))
    np.testing.assert_array_equal(fast.score_codes(codes), reference)


def test_a_layer_beyond_float64_is_refused():
    w = np.full((1, 64), 2 ** 30, dtype=np.int64)
    with pytest.raises(JbotEdgeError, match="more than float64"):
        make_layer(w, 1.0, 1.0, np.zeros(1, dtype=np.int64), 1.0, 1.0, (0, 255), 2 ** 24, "floor", "wide")

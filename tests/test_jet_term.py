"""The student's jet term (models/jet_term.py): its integer arithmetic by hand, its fitted table, the student's score
as network + term through Brevitas, QONNX, the fast emulator and the RTL, and its Verilog against Verilator."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from student_factory import l1_codes, make_student_dir

from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.errors import JbotEdgeError
from jbot_edge.models.jet_term import JetTermConfig, fit_jet_term, jet_term_codes, jet_term_ratio, piecewise_linear
from jbot_edge.models.students import StudentConfig, build_student, load_student, network_only, score_codes

N_JETS = 600
LSB = 2.0 ** -12  # the default student's output LSB (threshold 8, 16 bits)


def test_log2_fixed_by_hand_and_within_one_step_of_log2():
    term = JetTermConfig(frac_bits=4)
    # LUT[f] = rint(16 log2(1 + (f + 1/2) / 16)), the middle of each mantissa interval: LUT[0] = rint(0.71) = 1;
    # 3 = 2^1 · 1.5 → k = 1, f = 8, LUT[8] = rint(16 · 0.6159) = 10
    assert term.log2_lut()[0] == 1 and term.log2_lut()[8] == 10
    assert term.log2_fixed(np.array([0, 1, 2, 3, 4096])).tolist() == [1, 1, 17, 26, 193]
    x = np.arange(1, 1 << 20)
    error = np.abs(term.log2_fixed(x) - 16 * np.log2(x))
    # half the widest mantissa interval (16 log2(17/16) / 2 = 0.70) plus half a step of the table's rounding
    assert error.max() <= 0.70 + 0.5 and error[1 << 10:].mean() < 0.4


def test_log2_ratio_of_a_two_prong_jet_by_hand():
    """Two particles of 100 GeV (code 400) at Δη = ±16 LSB. pT cut to 4 leading bits: 400 = 0b110010000 → 384;
    |Δη| >> 3 = 2 → r² = 4: A = 2 · 384 · 4 = 3072 = 1.5 · 2^11 → L = 176 + LUT[8] = 186; B = 800 = 1.5625 · 2^9 →
    L = 144 + LUT[9] = 155 (LUT[9] = rint(16 log2(1.59375)) = 11); s = 31, i.e. log2(A / B) ≈ 31 / 16 = 1.94."""
    term = JetTermConfig()
    pt, deta, dphi = np.array([[400, 400]]), np.array([[16, -16]]), np.array([[0, 0]])
    assert term.pt_mantissa(np.array([400, 15, 0, 4095])).tolist() == [384, 15, 0, 3840]
    assert term.log2_ratio(pt, deta, dphi).tolist() == [31]
    assert abs(31 / 16 - math.log2(3072 / 800)) < 1 / 16


def test_table_follows_a_known_function_and_is_clamped():
    """Targets that are a piecewise-linear function of s are recovered by the table (to a few output LSBs in the
    bulk), continued linearly for ``extrapolate`` codes past the largest s, flat beyond; and the lookup clamps."""
    rng = np.random.default_rng(0)
    s = rng.integers(-40, 200, size=20000)
    kink = np.quantile(s, 0.5)  # a knot: the fit can follow the kink exactly
    truth = lambda v: np.where(v < kink, 0.5 - 0.01 * (v - kink), 0.5 + 0.05 * (v - kink))  # noqa: E731
    term = fit_jet_term(JetTermConfig(knot_quantiles=[0, 0.5, 1], extrapolate=16), s, truth(s), np.ones(len(s)), LSB)
    grid = np.arange(term.table_min, term.table_min + len(term.table))
    assert term.table_min == s.min() and len(term.table) == s.max() - s.min() + 1 + 16
    inside = grid <= s.max()
    assert np.abs(np.array(term.table)[inside] * LSB - truth(grid[inside])).max() < 0.01
    assert term.codes_from_ratio(np.array([-10_000]))[0] == term.table[0]
    assert term.codes_from_ratio(np.array([10_000]))[0] == term.table[-1] > term.table[-17]
    assert piecewise_linear(np.array([3.0]), np.array([0.0, 1.0]), np.array([0.0, 2.0]))[0] == 6.0  # extrapolated


def test_config_errors_are_one_line():
    with pytest.raises(ValueError, match="set knots, values, table and table_min together"):
        JetTermConfig(table=[1, 2])
    with pytest.raises(ValueError, match="one per entry of values"):
        JetTermConfig(knots=[0.0, 1.0], values=[1.0], table=[0], table_min=0)
    with pytest.raises(ValueError, match="knot_quantiles"):
        JetTermConfig(knot_quantiles=[0.5, 0.1])
    with pytest.raises(JbotEdgeError, match="no table yet"):
        JetTermConfig().codes_from_ratio(np.array([1]))
    spec = L1InputSpec.model_validate({"features": [{"name": "part_pt", "lsb": 0.25, "bits": 12, "signed": False}]})
    term = JetTermConfig(knots=[0.0, 1.0], values=[0.0, 1.0], table=[0], table_min=0)
    with pytest.raises(JbotEdgeError, match=r"lacks \['part_deta', 'part_dphi'\]"):
        build_student(StudentConfig(jet_term=term), spec)


def fitted_term(codes: np.ndarray, spec: L1InputSpec) -> JetTermConfig:
    """A table fitted to a target that rises with the jet's log2(A/B) (as the l1 teacher's tail does)."""
    term = JetTermConfig()
    s = jet_term_ratio(term, spec.feature_names, codes)
    return fit_jet_term(term, s, np.exp((s - np.median(s)) / 32.0), np.ones(len(s)), LSB)


@pytest.fixture(scope="module")
def student(tmp_path_factory, l1_file):
    spec = L1InputSpec()
    codes = l1_codes(l1_file, N_JETS, spec)
    term = fitted_term(codes, spec)
    directory = make_student_dir(tmp_path_factory.mktemp("jet-term") / "student", "deepsets", codes, spec=spec,
                                 phi_widths=[8], rho_widths=[8], jet_term=term)
    return directory, codes


def test_score_is_network_plus_term_in_every_software_leg(student, tmp_path):
    """score_codes = the network's codes + the term's; the QONNX graph holds the network only; the fast emulator
    gives the whole score; the term varies across real jets (it is not a constant)."""
    from jbot_edge.firmware.export import QonnxExecutor, export_student, to_codes
    from jbot_edge.firmware.fast_emulate import FastEmulator

    directory, codes = student
    model, cfg, spec, _ = load_student(directory)
    x = torch.from_numpy(spec.to_model_input(codes))
    total = score_codes(model, x)
    with network_only(model):
        network = score_codes(model, x)
    term = jet_term_codes(cfg.jet_term, spec.feature_names, codes)
    assert len(np.unique(term)) > 50
    np.testing.assert_array_equal(total, network + term)
    graph = export_student(model, spec, tmp_path / "model.qonnx.onnx")
    np.testing.assert_array_equal(to_codes(QonnxExecutor(graph, batch_size=300)(x.numpy()), 2.0 ** -12), network)
    np.testing.assert_array_equal(FastEmulator.from_student(directory).score_codes(codes), total)


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not on PATH (apt-get install -y {tool})")


@pytest.mark.rtl
def test_jet_term_verilog_is_bit_exact(student, tmp_path):
    """The term's Verilog equals jet_term_codes on real jets, random codes over the whole input range, empty and
    saturated jets (both ends of the table reached)."""
    from jbot_edge.firmware.rtl.jet_term import simulate_jet_term

    need("verilator")
    directory, codes = student
    _, cfg, spec, _ = load_student(directory)
    lo, hi = spec.code_bounds()
    rng = np.random.default_rng(1)
    extremes = np.stack([np.broadcast_to(hi, codes.shape[1:]), np.zeros(codes.shape[1:], np.int64),
                         np.broadcast_to(lo, codes.shape[1:])])
    single = np.zeros((1, *codes.shape[1:]), np.int64)
    single[0, 0] = [4095, 0, 0]  # one particle on the axis: A = 0 reads as 1, the table's low end
    cases = np.concatenate([codes, rng.integers(lo, hi + 1, size=(300, *codes.shape[1:])), extremes, single])
    expected = jet_term_codes(cfg.jet_term, spec.feature_names, cases)
    assert {cfg.jet_term.table[0], cfg.jet_term.table[-1]} <= set(expected.tolist())
    np.testing.assert_array_equal(simulate_jet_term(spec, cfg.jet_term, cases, tmp_path / "sim"), expected)


@pytest.mark.rtl
@pytest.mark.slow
def test_jet_term_student_through_synth_and_emulate(student, tmp_path, l1_file, run_cli):
    """synth --backend rtl writes the term's Verilog and judges network + term against the budget; emulate compares
    Brevitas, QONNX and the Verilator RTL on the whole score (network + term) bit for bit."""
    need("verilator")
    directory, _ = student
    fw = tmp_path / "fw"
    result = run_cli("synth", "--student", directory, "--board", "vu13p", "--backend", "rtl", "--out", fw)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((fw / "synth_report.json").read_text())
    assert (fw / "jet_term" / "l1_jet_term.v").is_file()
    checks = {c["check"]: c for c in report["budget"]["checks"]}
    if shutil.which("yosys"):
        latency = checks["score_latency_ns"]
        stages = max(report["latency_cycles"]["value"], int(latency["message"].split("(")[2].split(" ")[0]))
        assert latency["value"] == pytest.approx((stages + 1) * report["clock_ns"], abs=1e-3)
        lut = checks["score_LUT_fraction"]
        assert lut["value"] > report["resources"]["LUT"]["value"] / 1_728_000  # the term's LUTs are counted
    emulated = run_cli("emulate", "--firmware", fw, "--data", l1_file, "--n", "300")
    assert emulated.returncode == 0, emulated.stderr[-2000:]
    summary = json.loads((fw / "emulate.json").read_text())
    assert summary["legs"] == ["brevitas", "qonnx", "rtl"] and summary["exact"] is True
    # The RTL leg simulates the term's Verilog that synth wrote: one more LSB in every table entry of that file and
    # the RTL leg's scores move by exactly one LSB on every jet, while the others do not.
    import re

    from jbot_edge.firmware.emulate import load_firmware

    verilog = fw / "jet_term" / "l1_jet_term.v"
    verilog.write_text(re.sub(r"(rom\[\d+\] = )(-?)(\d+)'sd(\d+);", lambda m: m.group(1) + _plus_one(m), verilog.read_text()))
    firmware = load_firmware(fw)
    codes = l1_codes(l1_file, 50)
    np.testing.assert_array_equal(firmware.score_lsb("rtl", codes) - firmware.score_lsb("brevitas", codes), 1)
    np.testing.assert_array_equal(firmware.score_lsb("qonnx", codes), firmware.score_lsb("brevitas", codes))


def _plus_one(match) -> str:
    """A Verilog signed literal ``[-]W'sdV`` of a ROM entry, plus one."""
    value = (-1 if match.group(2) else 1) * int(match.group(4)) + 1
    return f"{'-' if value < 0 else ''}{match.group(3)}'sd{abs(value)};"


def test_budget_judges_network_plus_term_and_input_block_luts():
    """score_latency_ns = (max(network cycles, term stages) + 1) × clock; score_LUT_fraction and
    input_block_LUT_fraction add the block's LUTs to the network's; a term too slow or too large exceeds."""
    from jbot_edge.firmware.boards import load_board
    from jbot_edge.firmware.reports import evaluate_budget

    board = load_board("vu13p")
    clock = 4.1667
    network = {"value": 20_000.0, "source": "estimate:da4ml", "percent_of_board": 100 * 20_000 / 1_728_000}
    resources = {"LUT": network, **{k: {"value": 0.0, "source": "estimate:da4ml", "percent_of_board": 0.0}
                                    for k in ("FF", "DSP", "BRAM", "URAM")}}
    cycles, latency = {"value": 9, "source": "estimate:da4ml"}, {"value": 9 * clock, "source": "estimate:da4ml"}
    ii, timing = {"value": 1, "source": "estimate:da4ml"}, {}

    def checks(**blocks):
        budget = evaluate_budget(board, latency, cycles, ii, resources, timing, clock, **blocks)
        return {c["check"]: c for c in budget["checks"]}, budget["verdict"]

    term = {"source": "estimate:yosys-sta", "stages": 5, "resources": {"LUT": 6_000.0}}
    got, verdict = checks(jet_term=term)
    assert got["score_latency_ns"]["value"] == pytest.approx(10 * clock, abs=1e-3) and verdict == "fits"
    assert got["score_LUT_fraction"]["value"] == pytest.approx(26_000 / 1_728_000, abs=1e-6)
    got, verdict = checks(jet_term={**term, "stages": 12})  # slower than the network: it sets the latency
    assert got["score_latency_ns"]["value"] == pytest.approx(13 * clock, abs=1e-3)
    assert got["score_latency_ns"]["status"] == "exceeds" and verdict == "exceeds"
    got, verdict = checks(jet_term={**term, "resources": {"LUT": 20_000.0}})  # 40k LUT = 2.3 %
    assert got["score_LUT_fraction"]["status"] == "exceeds" and verdict == "exceeds"
    block = {"source": "estimate:yosys", "path_ns_lower_bound": 2.0, "min_stages": 1, "resources": {"LUT": 3_500.0}}
    got, _ = checks(input_block=block)
    assert got["input_block_LUT_fraction"]["value"] == pytest.approx(23_500 / 1_728_000, abs=1e-6)
    assert got["input_block_LUT_fraction"]["status"] == "ok"

"""End to end through the real CLI: synth (Brevitas → QONNX → hls4ml → C simulation) and emulate, bit for bit.

One synth per student kind for the whole module (each compiles an hls4ml C simulation once).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import numpy as np
import pytest
import torch
from report_helpers import core
from student_factory import l1_codes, make_student_dir, saturating_variant

from jbot_edge.sweep import figure_columns

from jbot_edge.firmware.emulate import (
    all_exact,
    compare,
    compare_raw,
    emulation_verdict,
    fuzz_set,
    load_firmware,
)
from jbot_edge.firmware.fast_emulate import FastEmulator
from jbot_edge.firmware.fuzz import ROUNDING_PATTERNS, fuzz_codes, fuzz_raw_inputs
from jbot_edge.models.students import load_student, output_lsb, save_student


@pytest.fixture(scope="module")
def firmware_dirs(l1_file, run_cli, tmp_path_factory):
    root = tmp_path_factory.mktemp("fw")
    codes = l1_codes(l1_file)
    out = {}
    for kind in ("deepsets", "mlp"):
        student_dir = make_student_dir(root / f"student-{kind}", kind, codes)
        fw_dir = root / f"fw-{kind}"
        # The RTL leg (da4ml + Verilator) is exercised on the small MLP here and in depth in test_rtl.py; the wide Deep
        # Sets student skips it to keep its Verilator build out of this module's time.
        rtl = "rtl.estimate=auto" if kind == "mlp" else "rtl.estimate=never"
        result = run_cli("synth", "--student", student_dir, "--board", "vu13p", "--out", fw_dir, rtl, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().endswith(str(fw_dir))
        out[kind] = fw_dir
    return out


@pytest.mark.parametrize("kind", ["deepsets", "mlp"])
def test_firmware_directory_is_complete(kind, firmware_dirs):
    fw_dir = firmware_dirs[kind]
    for name in ("README.md", "config.yaml", "firmware.json", "model.qonnx.onnx", "student.pt",
                 "quantizer_spec.json", "synth_report.json", "hls/build_prj.tcl", "hls/firmware/jbot_student.cpp"):
        assert (fw_dir / name).is_file(), name
    report = json.loads((fw_dir / "synth_report.json").read_text())
    assert report["board"] == "vu13p" and report["part"] == "xcvu13p-flga2577-2-e"
    assert report["strategy"] == "Latency" and report["reuse_factor"] == 1
    assert any("PointwiseConv" in name for name in report["layer_precisions"]) == (kind == "deepsets")
    spec = json.loads((fw_dir / "quantizer_spec.json").read_text())
    assert spec["input_fixed_type"] == "fixed<13,7>"
    assert "vitis-run" in (fw_dir / "README.md").read_text()
    assert not list(fw_dir.parent.glob(f".{fw_dir.name}.*.tmp"))


@pytest.mark.parametrize("kind", ["deepsets", "mlp"])
def test_emulate_cli_is_bit_exact_on_data_and_fuzz(kind, firmware_dirs, l1_file, run_cli):
    fw_dir = firmware_dirs[kind]
    result = run_cli("emulate", "--firmware", fw_dir, "--data", l1_file, "--n", 2000, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((fw_dir / "emulate.json").read_text())
    assert summary["exact"] is True and summary["n"] >= 1000 and summary["n_fuzz"] > 50
    assert summary["fuzz_rounding"]["found"] and not any("not met" in why
                                                         for why in summary["fuzz_rounding"]["missing"].values())
    assert summary["csim_source"] == "compiled library from synth"
    legs = json.loads((fw_dir / "firmware.json").read_text())["legs"]
    assert legs[:3] == ["brevitas", "qonnx", "csim"]
    if kind == "deepsets":
        assert legs == ["brevitas", "qonnx", "csim"]
    elif shutil.which("verilator"):  # next to an HLS project the RTL leg runs whenever verilator is installed
        assert summary["legs"] == ["brevitas", "qonnx", "csim", "rtl"]
    expected = {f"{a}_vs_{b}" for i, a in enumerate(summary["legs"]) for b in summary["legs"][i + 1:]}
    for dataset in ("data", "fuzz"):
        comparisons = summary["datasets"][dataset]["comparisons"]
        assert set(comparisons) == expected
        for pair in comparisons.values():
            assert pair["exact"] == summary["datasets"][dataset]["n"] and pair["max_abs_diff_lsb"] == 0


def test_scores_are_not_trivially_equal(firmware_dirs, l1_file):
    """Guard against a vacuous pass: the student's scores vary and are not saturated."""
    fw = load_firmware(firmware_dirs["deepsets"])
    codes = l1_codes(l1_file, 1000)
    scores = fw.score_lsb("csim", codes)
    assert len(np.unique(scores)) > 100
    assert np.abs(scores).max() < 2 ** 15 - 1


def test_a_different_student_is_detected(firmware_dirs, l1_file, tmp_path):
    """Swap in a student with perturbed weights: emulation must report mismatches with the jets' inputs."""
    fw_dir = tmp_path / "fw"
    shutil.copytree(firmware_dirs["mlp"], fw_dir)
    model, cfg, spec, extra = load_student(fw_dir / "student.pt")
    with torch.no_grad():
        model.head.bias += 3 * output_lsb(model)  # three output LSBs: every score moves
    save_student(fw_dir / "student.pt", model, cfg, spec, extra)
    fw = load_firmware(fw_dir)
    assert "recompiled" in fw.csim_source  # the copy moved: the saved project is recompiled, not reconverted
    codes, names = fuzz_codes(spec)
    result = compare(fw, codes, names)
    assert not all_exact(result)
    assert result["comparisons"]["qonnx_vs_csim"]["mismatched"] == 0
    assert result["comparisons"]["brevitas_vs_csim"]["mismatched"] > 0
    first = result["first_mismatches"][0]
    assert len(first["codes"]) == spec.n_particles and first["name"] == names[first["index"]]


def test_raw_inputs_at_and_beyond_saturation_are_quantised_identically(firmware_dirs):
    """Inputs at, half an LSB / one LSB / far beyond each input boundary, rounding ties and off-grid values go raw
    into Brevitas, QONNX and the C simulation; each quantises them itself and all agree."""
    fw = load_firmware(firmware_dirs["deepsets"])
    x, names = fuzz_raw_inputs(fw.spec)
    result = compare_raw(fw, x, names)
    assert result["legs"] == ["brevitas", "qonnx", "csim"] and all_exact(result), result["first_mismatches"][:2]
    assert result["all_legs_equal"] == len(x)
    scores = dict(zip(names, fw.score_raw("csim", x)))
    # Saturation: anything beyond the top of the input type scores like the top itself.
    assert scores["beyond_max_part_pt_2"] == scores["beyond_max_part_pt_1"] == scores["at_max_part_pt"]
    # Not vacuous: the raw values are not all the same jet to the network.
    assert len(set(scores.values())) > len(names) // 3


def test_a_corrupted_hls_weight_is_caught_by_the_fuzz_set(firmware_dirs, tmp_path):
    """One weight of the HLS project flipped (the student and its QONNX graph untouched): the fuzz set alone shows
    the C simulation disagreeing with both software legs."""
    fw_dir = tmp_path / "fw"
    shutil.copytree(firmware_dirs["deepsets"], fw_dir)
    weights = sorted((fw_dir / "hls" / "firmware" / "weights").glob("w*.txt"),
                     key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))[-1]  # the output layer's
    values = weights.read_text().strip().split(",")
    index = next(i for i, v in enumerate(values) if float(v) != 0)
    values[index] = repr(-float(values[index]))
    weights.write_text(",".join(values))
    fw = load_firmware(fw_dir)
    codes, names = fuzz_codes(fw.spec)
    result = compare(fw, codes, names)
    assert result["comparisons"]["brevitas_vs_qonnx"]["mismatched"] == 0
    assert result["comparisons"]["brevitas_vs_csim"]["mismatched"] > 0
    assert result["comparisons"]["qonnx_vs_csim"]["mismatched"] > 0
    assert not emulation_verdict(fw, result, result)["exact"]


#: One da4ml adder ``shift_adder #(bw0, bw1, signed0, signed1, bw_out, shift, is_sub) op_k (in0[...], in1[...], ...)``.
_SHIFT_ADDER = re.compile(r"shift_adder #\((\d+), (\d+), ([01]), ([01]), (\d+), (-?\d+), ([01])\) (op_\d+) "
                          r"\((v\d+)\[[^\]]*\], (v\d+)\[")


def corrupt_one_verilog_weight(src_dir) -> str:
    """In the da4ml Verilog a constant weight is a shift-and-add network: ``x*3`` is ``shift_adder(x, x, shift -2,
    sub)`` = 4x - x. Move the shift of the first such constant multiple by one (4x - x becomes 2x - x: a weight factor
    3 turned into 1, every bit width still valid) and return the changed line."""
    for path in sorted(src_dir.glob("*_stage*.v"), key=lambda p: int(re.sub(r"\D", "", p.stem.split("stage")[-1]))):
        text = path.read_text()
        for match in _SHIFT_ADDER.finditer(text):
            shift, sub, op, in0, in1 = int(match[6]), match[7], match[8], match[9], match[10]
            if in0 == in1 and abs(shift) >= 2:
                new_shift = shift + (1 if shift < 0 else -1)
                bad = match[0].replace(f", {shift}, {sub}) {op} ", f", {new_shift}, {sub}) {op} ")
                path.write_text(text.replace(match[0], bad, 1))
                return f"{path.name}: {bad}"
    raise AssertionError(f"no constant multiple (shift_adder of one wire with itself) in {src_dir}")


@pytest.mark.rtl
def test_a_corrupted_verilog_weight_is_caught_by_the_fuzz_set(firmware_dirs, l1_file, run_cli, tmp_path):
    """One constant multiplier of the da4ml Verilog changed (the student, its QONNX graph and the HLS project
    untouched): `emulate` runs the Verilator RTL leg on the corrupted design, the fuzz set alone shows it disagreeing
    with every other leg while Brevitas, QONNX and the C simulation still agree, and the command exits non-zero."""
    src = firmware_dirs["mlp"]
    if "rtl" not in json.loads((src / "firmware.json").read_text())["legs"]:
        pytest.skip("da4ml not installed: this firmware has no RTL leg")
    if shutil.which("verilator") is None:
        if os.environ.get("JBOT_EDGE_REQUIRE_RTL_TOOLS") == "1":
            pytest.fail("verilator not on PATH, but JBOT_EDGE_REQUIRE_RTL_TOOLS=1")
        pytest.skip("verilator not on PATH (apt-get install -y verilator)")
    fw_dir = tmp_path / "fw"
    # The HLS project is shared, not copied: its compiled C simulation then stays valid (no 45 s recompile).
    shutil.copytree(src, fw_dir, ignore=shutil.ignore_patterns("hls", "emulate.json"))
    (fw_dir / "hls").symlink_to(src / "hls")
    changed = corrupt_one_verilog_weight(fw_dir / "rtl" / "src")
    result = run_cli("emulate", "--firmware", fw_dir, "--data", l1_file, "--n", 100, timeout=600)
    assert result.returncode == 1 and "error:" in result.stderr, (changed, result.stderr[-2000:])
    summary = json.loads((fw_dir / "emulate.json").read_text())
    assert summary["legs_run"] == ["brevitas", "qonnx", "csim", "rtl"] and summary["exact"] is False
    assert summary["csim_source"] == "compiled library from synth"
    fuzz = summary["datasets"]["fuzz"]["comparisons"]
    assert fuzz["brevitas_vs_qonnx"]["mismatched"] == fuzz["brevitas_vs_csim"]["mismatched"] == 0
    for pair in ("brevitas_vs_rtl", "qonnx_vs_rtl", "csim_vs_rtl"):
        assert fuzz[pair]["mismatched"] > 0, (changed, pair, fuzz)
    assert any(r.startswith("fuzz: mismatches") and "csim_vs_rtl" in r for r in summary["reasons"])
    first = summary["datasets"]["fuzz"]["first_mismatches"][0]
    assert first["scores_lsb"]["rtl"] != first["scores_lsb"]["csim"] == first["scores_lsb"]["brevitas"]


def brevitas_pre_activations(model, spec, codes: np.ndarray) -> dict[str, np.ndarray]:
    """Each QuantLinear's output on ``codes`` as Brevitas computes it, in units of the quantizer that follows it
    (``[rows, n_out]``, rows = jets or jet·P + particle), keyed like the fast emulator's layer names."""
    modules = dict(model.named_modules())
    pre, hooks = {}, []
    for name, module in modules.items():
        if type(module).__name__ != "QuantLinear":
            continue
        parent, _, index = name.rpartition(".")
        quant = model.output_quant if name == "head" else modules[f"{parent}.{int(index) + 1}"]
        key = "head" if name == "head" else f"{'mlp' if parent == 'body' else parent}.{index}"

        def hook(_module, _inputs, out, key=key, quant=quant):
            value = getattr(out, "value", out).detach().to(torch.float64)
            pre[key] = (value / float(quant.act_quant.scale())).reshape(-1, value.shape[-1]).numpy()

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.from_numpy(spec.to_model_input(codes)))
    finally:
        for handle in hooks:
            handle.remove()
    return pre


@pytest.mark.parametrize("kind", ["deepsets", "mlp"])
def test_every_layer_gets_a_rounding_tie_and_every_leg_agrees_on_it(kind, firmware_dirs):
    """The fuzz set holds, for every layer whose quantizer drops bits, jets whose pre-activation lands exactly on the
    output grid, on a half LSB (the tie) and one accumulator unit below the grid, for each sign the layer keeps.
    Brevitas' own pre-activations (hooks, independent of the integer emulator that searched them) confirm each
    pattern, and every leg (C simulation, and the Verilator RTL of the MLP when installed) agrees on them."""
    fw = load_firmware(firmware_dirs[kind])
    codes, names, coverage = fuzz_set(fw)
    picked = [i for i, name in enumerate(names) if name.startswith("round_")]
    assert [names[i] for i in picked] == coverage["found"]
    model, _, spec, _ = load_student(firmware_dirs[kind] / "student.pt")
    layers = FastEmulator.from_student(firmware_dirs[kind] / "student.pt").layers
    rounding_layers = [layer for layer in layers if layer.dropped_bits > 0]
    assert len(rounding_layers) >= len(layers) - 1  # at most the head adds no input-dependent fraction
    pre = brevitas_pre_activations(model, spec, codes[picked])
    for layer in layers:
        signs = ("pos", "neg") if layer.lo < 0 else ("pos",)
        if layer.dropped_bits == 0:
            assert f"round_{layer.name}" in coverage["missing"]
            assert not any(name.startswith(f"round_{layer.name}_") for name in coverage["found"])
            continue
        rows_per_jet = len(pre[layer.name]) // len(picked)
        assert layer.rounding == "floor"  # these students; round-half-even splits "half" into half_even/half_odd
        for pattern in ROUNDING_PATTERNS:
            for sign in signs:
                target = f"round_{layer.name}_{pattern}_{sign}"
                assert target in coverage["found"], coverage["missing"]
                k = coverage["found"].index(target)
                rows = pre[layer.name][k * rows_per_jet:(k + 1) * rows_per_jet]
                bits = np.mod(np.floor(rows * 2 ** layer.dropped_bits), 2 ** layer.dropped_bits)
                side = rows > 0 if sign == "pos" else rows < 0
                hit = (bits == ROUNDING_PATTERNS[pattern](layer.dropped_bits)) & side & (np.floor(rows) < layer.hi)
                assert hit.any(), (target, rows)
    result = compare(fw, codes[picked], coverage["found"])
    assert all_exact(result) and result["all_legs_equal"] == len(picked), result["first_mismatches"][:2]
    assert {"brevitas", "qonnx", "csim"} <= set(fw.legs)


def test_the_verdict_cannot_pass_vacuously(firmware_dirs):
    """No jets, or no hardware leg, or a single leg: never exact, whatever the (empty) comparisons say."""
    fw = load_firmware(firmware_dirs["deepsets"])
    codes, names = fuzz_codes(fw.spec)
    full = compare(fw, codes, names)
    verdict = emulation_verdict(fw, full, full)
    assert verdict["exact"] and verdict["legs_run"] == ["brevitas", "qonnx", "csim"] and verdict["legs_skipped"] == []
    assert verdict["counts"] == {"data": f"{len(codes)}/{len(codes)}", "fuzz": f"{len(codes)}/{len(codes)}"}
    empty = compare(fw, codes[:0])
    assert all_exact(empty)  # the pairwise check alone is vacuously true ...
    assert not emulation_verdict(fw, empty, full)["exact"]  # ... the verdict is not
    fw.legs = ("brevitas", "qonnx")
    only_software = compare(fw, codes, names)
    verdict = emulation_verdict(fw, only_software, only_software)
    assert not verdict["exact"] and "no hardware leg" in verdict["reasons"][0]
    fw.legs = ("csim",)
    verdict = emulation_verdict(fw, compare(fw, codes, names), compare(fw, codes, names))
    assert not verdict["exact"] and any("only 1 leg" in r for r in verdict["reasons"])


def test_missing_verilator_skips_the_rtl_leg_and_fails_under_ci(firmware_dirs, l1_file, run_cli, tmp_path):
    """No verilator on PATH: the RTL leg is listed as skipped with its reason; with JBOT_EDGE_REQUIRE_RTL_TOOLS=1
    (CI) the same run fails instead of passing on fewer legs."""
    fw_dir = firmware_dirs["mlp"]
    if "rtl" not in json.loads((fw_dir / "firmware.json").read_text())["legs"]:
        pytest.skip("da4ml not installed: this firmware has no RTL leg")
    bare_path = os.path.dirname(sys.executable)  # python only: no verilator
    for required, code in (("0", 0), ("1", 1)):
        out = tmp_path / f"required-{required}"
        result = run_cli("emulate", "--firmware", fw_dir, "--data", l1_file, "--n", 100, "--out", out,
                         env={"PATH": bare_path, "JBOT_EDGE_REQUIRE_RTL_TOOLS": required})
        assert result.returncode == code, result.stderr[-2000:]
        summary = json.loads((out / "emulate.json").read_text())
        assert summary["legs_run"] == ["brevitas", "qonnx", "csim"]
        assert [s["leg"] for s in summary["legs_skipped"]] == ["rtl"]
        assert "verilator is not on PATH" in summary["legs_skipped"][0]["reason"]
        assert summary["counts"] == {"data": "100/100", "fuzz": f"{summary['n_fuzz']}/{summary['n_fuzz']}",
                                     "fuzz_raw": f"{summary['n_fuzz_raw']}/{summary['n_fuzz_raw']}"}
        assert summary["exact"] is (required == "0")
    assert "required leg rtl was skipped" in summary["reasons"][0] and "error:" in result.stderr


@pytest.mark.slow
def test_an_output_saturating_at_both_ends_is_exact_on_every_leg(firmware_dirs, l1_file, run_cli, tmp_path):
    """The MLP with its output layer scaled until the 16-bit output saturates at both ends on real jets: every leg
    (Brevitas, QONNX, C simulation, and the Verilator RTL when installed) agrees on data, fuzz and raw fuzz."""
    codes = l1_codes(l1_file)
    student = saturating_variant(firmware_dirs["mlp"], tmp_path / "saturating", codes)
    fw_dir = tmp_path / "fw"
    result = run_cli("synth", "--student", student, "--out", fw_dir, "rtl.estimate=auto", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    emulated = run_cli("emulate", "--firmware", fw_dir, "--data", l1_file, "--n", len(codes), timeout=900)
    summary = json.loads((fw_dir / "emulate.json").read_text())
    assert emulated.returncode == 0 and summary["exact"] is True, (summary.get("reasons"), emulated.stderr[-2000:])
    fw = load_firmware(fw_dir)
    scores = fw.score_lsb("csim", codes)
    assert (scores == 2 ** 15 - 1).sum() >= 5 and (scores == -(2 ** 15)).sum() >= 5
    assert summary["counts"]["data"] == f"{len(codes)}/{len(codes)}"


@pytest.mark.parametrize("option", [["--reuse-factor", "4"], ["--strategy", "resource"]])
def test_shared_multipliers_never_report_fully_parallel_figures(option, firmware_dirs, run_cli, tmp_path):
    """Reuse factor 4 / Resource strategy: the da4ml RTL is still built (an emulation leg) but its fully parallel
    latency and II are not this design's: II comes from hls4ml's own schedule (>= the reuse factor), latency and
    resources are unknown with a reason, and the sweep's CSV columns show exactly that."""
    fw_dir = tmp_path / "fw"
    result = run_cli("synth", "--student", firmware_dirs["mlp"], "--out", fw_dir, *option, "rtl.estimate=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((fw_dir / "synth_report.json").read_text())
    reuse = int(option[1]) if option[0] == "--reuse-factor" else 1
    assert report["design"]["reuse_factor"] == reuse
    assert report["design"]["strategy"] == ("Resource" if option[0] == "--strategy" else "Latency")
    ii = core(report["ii"])
    # hls4ml may move a reuse factor to the nearest valid one; either way the layers are time-shared.
    assert ii["source"] == "estimate:hls4ml-schedule" and (ii["value"] > 1 if reuse > 1 else ii["value"] == 1)
    assert report["ii"]["design"] == report["design"]["label"]
    for name in ("latency_cycles", "latency_ns"):
        assert report[name]["value"] is None and "C synthesis" in report[name]["reason"]
    assert report["resources"]["LUT"]["value"] is None and report["resources"]["LUT"]["reason"]
    assert not any(e["tool"] == "da4ml" for e in report["estimates"])
    assert report["budget"]["verdict"] in ("unknown", "exceeds") and report["budget"]["verdict_basis"] != "vendor"
    row = figure_columns(report)
    assert row["ii_source"] == "estimate:hls4ml-schedule" and row["latency_ns"] is None
    assert row["latency_source"] == "unknown" and row["figures_design"] == report["design"]["label"]


def test_bad_inputs_are_one_line_errors(firmware_dirs, l1_file, run_cli, tmp_path):
    student = firmware_dirs["mlp"]
    result = run_cli("synth", "--student", student, "--board", "nosuchboard", "--out", tmp_path / "x")
    assert result.returncode == 2 and "unknown board 'nosuchboard'" in result.stderr
    assert not (tmp_path / "x").exists()
    payload = torch.load(student / "student.pt", weights_only=True)
    del payload["input_spec"]
    (tmp_path / "nospec").mkdir()
    torch.save(payload, tmp_path / "nospec" / "student.pt")
    result = run_cli("synth", "--student", tmp_path / "nospec", "--out", tmp_path / "y")
    assert result.returncode == 2 and "no quantizer spec" in result.stderr and not (tmp_path / "y").exists()
    result = run_cli("emulate", "--firmware", tmp_path / "nospec", "--data", l1_file)
    assert result.returncode == 2 and "firmware.json" in result.stderr
    result = run_cli("emulate", "--firmware", student, "--data", tmp_path / "missing.h5")
    assert result.returncode == 2 and "does not exist" in result.stderr


@pytest.mark.parametrize("kind", ["deepsets", "mlp"])
def test_fast_leg_is_bit_exact_and_scores_a_whole_file(kind, firmware_dirs, l1_file, run_cli, tmp_path):
    """`emulate --fast`: the vectorised integer emulator agrees with every other leg on data and fuzz; with
    --score-all it streams the whole file and writes the same integers."""
    import h5py

    fw_dir = firmware_dirs[kind]
    scores_path = tmp_path / "scores.h5"
    result = run_cli("emulate", "--firmware", fw_dir, "--data", l1_file, "--n", 2000, "--out", tmp_path,
                     "--score-all", scores_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "emulate.json").read_text())
    assert summary["exact"] is True and summary["legs"][-1] == "fast" and "csim" in summary["legs"]
    for dataset in ("data", "fuzz"):
        pairs = {p: c for p, c in summary["datasets"][dataset]["comparisons"].items() if "fast" in p}
        assert len(pairs) == len(summary["legs"]) - 1
        assert all(c["exact"] == summary["datasets"][dataset]["n"] for c in pairs.values())
    with h5py.File(scores_path) as h5:
        scores = h5["scores_lsb"][:]
    assert summary["score_all"]["n"] == len(scores) == 2000
    fw = load_firmware(fw_dir)
    np.testing.assert_array_equal(scores, fw.score_lsb("csim", l1_codes(l1_file, 2000)))

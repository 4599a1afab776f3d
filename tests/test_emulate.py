"""End to end through the real CLI: synth (Brevitas → QONNX → hls4ml → C simulation) and emulate, bit for bit.

One synth per student kind for the whole module (each compiles an hls4ml C simulation once).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from student_factory import l1_codes, make_student_dir

from jbot_edge.firmware.emulate import all_exact, compare, load_firmware
from jbot_edge.firmware.fuzz import fuzz_codes
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

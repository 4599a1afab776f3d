"""Finding and driving the vendor tools, with small stand-in executables on PATH (real subprocesses).

The stand-ins replace AMD's programs, not our code: run_vendor_build really runs them through hls4ml's build() or
its own subprocess and must turn their failures into one-line errors naming the tool and its log.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.vendor import VENDOR_TOOLS, find_vendor_tools, run_vendor_build

RECORDED_VITIS = Path(__file__).parent / "data" / "vendor_reports" / "vitis_vu13p"


def fake_tool(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A PATH holding only our stand-ins and the system's basics (so a real AMD install cannot interfere)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    for tool in VENDOR_TOOLS:
        assert shutil.which(tool) is None or Path(shutil.which(tool)).parent == bin_dir
    return bin_dir


def tiny_hls_model(output_dir: Path, backend: str):
    import hls4ml
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    config = hls4ml.utils.config_from_pytorch_model(model, input_shape=(4,), granularity="name", backend=backend)
    hls_model = hls4ml.converters.convert_from_pytorch_model(
        model, hls_config=config, output_dir=str(output_dir), backend=backend, part="xcvu13p-flga2577-2-e",
        clock_period=4.167, io_type="io_parallel")
    hls_model.write()
    return hls_model


def test_find_vendor_tools_reports_paths_and_versions(tmp_path, fake_bin):
    install_bin = tmp_path / "Xilinx" / "Vivado" / "2023.2" / "bin"
    fake_tool(install_bin, "vivado", "exit 1")  # version read from the install path, never run
    (fake_bin / "vivado").symlink_to(install_bin / "vivado")
    fake_tool(fake_bin, "vitis-run", 'echo "vitis-run v2024.1 (64-bit)"')
    found = find_vendor_tools()
    assert list(found) == list(VENDOR_TOOLS)
    assert found["vivado"] == {"path": str(fake_bin / "vivado"), "version": "2023.2"}
    assert found["vitis-run"] == {"path": str(fake_bin / "vitis-run"), "version": "2024.1"}
    assert found["vivado_hls"] is None and found["v++"] is None and found["vitis_hls"] is None


def test_missing_hls_tool_says_so_before_running_anything(tmp_path, fake_bin):
    hls_model = tiny_hls_model(tmp_path / "prj", "Vitis")
    with pytest.raises(JbotEdgeError) as info:
        run_vendor_build(hls_model, synth=True)
    message = str(info.value)
    assert "'vitis-run' on PATH" in message and "--backend rtl" in message
    fake_tool(fake_bin, "vitis-run", "exit 0")
    with pytest.raises(JbotEdgeError, match="logic synthesis needs 'vivado' on PATH"):
        run_vendor_build(hls_model, synth=True, vsynth=True)
    assert not (tmp_path / "prj" / "build_stdout.log").exists()  # nothing ran


def test_failing_vitis_run_names_the_tool_and_its_logs(tmp_path, fake_bin):
    fake_tool(fake_bin, "vitis-run", 'echo "ERROR: [HLS 207-812] synthetic failure" >&2\nexit 1')
    hls_model = tiny_hls_model(tmp_path / "prj", "Vitis")
    with pytest.raises(JbotEdgeError) as info:
        run_vendor_build(hls_model, synth=True)
    message = str(info.value)
    assert message.startswith("vitis-run (C synthesis) failed")
    assert str(tmp_path / "prj" / "build_stderr.log") in message
    assert "synthetic failure" in (tmp_path / "prj" / "build_stderr.log").read_text()


def test_failing_vivado_hls_names_the_tool_and_its_log(tmp_path, fake_bin):
    fake_tool(fake_bin, "vivado_hls", 'echo "args: $*"\nexit 3')
    hls_model = tiny_hls_model(tmp_path / "prj", "Vivado")
    with pytest.raises(JbotEdgeError) as info:
        run_vendor_build(hls_model, csim=True, synth=True)
    log = tmp_path / "prj" / "vivado_hls_build.log"
    assert str(info.value) == f"vivado_hls (C simulation + C synthesis) failed with exit status 3; see {log}"
    assert "args: -f build_prj.tcl reset=0 csim=1 synth=1" in log.read_text()


def test_failing_vivado_logic_synthesis_names_vivado_and_its_log(tmp_path, fake_bin):
    fake_tool(fake_bin, "vivado", 'echo "ERROR: [Synth 8-439] module not found"\nexit 1')
    hls_model = tiny_hls_model(tmp_path / "prj", "Vitis")
    # the state C synthesis leaves behind, so logic synthesis can start on its own
    (tmp_path / "prj" / "myproject_prj" / "solution1" / "syn" / "verilog").mkdir(parents=True)
    with pytest.raises(JbotEdgeError) as info:
        run_vendor_build(hls_model, synth=False, vsynth=True)
    log = tmp_path / "prj" / "vivado_synth.log"
    assert str(info.value) == f"vivado (logic synthesis) failed with exit status 1; see {log}"
    assert "Synth 8-439" in log.read_text()


def test_tool_that_succeeds_without_a_report_is_an_error(tmp_path, fake_bin):
    fake_tool(fake_bin, "vitis-run", "exit 0")
    hls_model = tiny_hls_model(tmp_path / "prj", "Vitis")
    with pytest.raises(JbotEdgeError, match=r"vitis-run \(C synthesis\) finished but wrote no report"):
        run_vendor_build(hls_model, synth=True)


def test_successful_build_returns_the_parsed_reports(tmp_path, fake_bin):
    # Stand-ins that leave the recorded Vitis 2023.2 / Vivado 2023.2 reports where the real tools write them.
    fake_tool(fake_bin, "vitis-run",
              f'grep -q "synth      1" build_opt.tcl || exit 9\ncp -r "{RECORDED_VITIS}/myproject_prj" .\n'
              "mkdir -p myproject_prj/solution1/syn/verilog")
    fake_tool(fake_bin, "vivado", f'cp "{RECORDED_VITIS}/vivado_synth.rpt" .')
    hls_model = tiny_hls_model(tmp_path / "prj", "Vitis")
    parsed = run_vendor_build(hls_model, synth=True, vsynth=True)
    assert parsed["csynth"]["latency_cycles_worst"] == 11
    assert parsed["vsynth"]["resources"]["LUT"] == 31520
    assert os.path.samefile(parsed["project_dir"], tmp_path / "prj")

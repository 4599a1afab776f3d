"""Vendor report parsing (hls4ml's reader on recorded-format reports) and synth_report.json with its budget verdict.

The report files are in tests/data/vendor_reports (see the README there for what they are).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from report_helpers import core

from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.boards import load_board
from jbot_edge.firmware.reports import (
    SCHEMA,
    Estimate,
    build_synth_report,
    parse_vendor_reports,
    summary_lines,
    write_synth_report,
)

REPORTS = Path(__file__).parent / "data" / "vendor_reports"
VITIS_VU13P = REPORTS / "vitis_vu13p"
VIVADO_VU9P = REPORTS / "vivado_hls_vu9p"
NO_TOOLS = {tool: None for tool in ("vitis-run", "v++", "vitis_hls", "vivado_hls", "vivado")}
PRECISIONS = {"dense1": {"dense1_weight_t": "fixed<8,3,TRN,WRAP,0>", "result_t": "fixed<16,6,RND_CONV,SAT,0>"}}


def report_for(board_name, vendor=None, estimates=None, clock_ns=None, **kwargs):
    board = load_board(board_name)
    return build_synth_report(board, clock_ns or board.clock_ns, "Vitis", "Latency", 1, PRECISIONS, vendor=vendor,
                              estimates=estimates, vendor_tools=kwargs.pop("vendor_tools", NO_TOOLS), **kwargs)


def copy_project(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


# -- parsing ------------------------------------------------------------------------------------------------------


def test_parse_vitis_csynth_and_vivado_utilisation():
    parsed = parse_vendor_reports(VITIS_VU13P, "Vitis")
    assert parsed["project_name"] == "myproject"
    assert parsed["part"] == "xcvu13p-flga2577-2-e"
    csynth = parsed["csynth"]
    assert csynth["report"] == "myproject_prj/solution1/syn/report/myproject_csynth.xml"
    assert (csynth["target_clock_ns"], csynth["estimated_clock_ns"]) == (4.167, 2.894)
    assert (csynth["latency_cycles_best"], csynth["latency_cycles_worst"]) == (11, 11)
    assert (csynth["ii_min"], csynth["ii_max"]) == (1, 1)
    # BRAM is normalised to 36 Kb tiles: 3 BRAM_18K -> 1.5
    assert csynth["resources"] == {"LUT": 48213, "FF": 9876, "DSP": 212, "BRAM": 1.5, "URAM": 0}
    assert csynth["available"] == {"LUT": 1728000, "FF": 3456000, "DSP": 12288, "BRAM": 2688, "URAM": 1280}
    # Vivado's "Block RAM Tile" row is already in 36 Kb tiles
    assert parsed["vsynth"] == {"report": "vivado_synth.rpt",
                                "resources": {"LUT": 31520, "FF": 8455, "DSP": 208, "BRAM": 1.5, "URAM": 0}}


def test_parse_vivado_hls_csynth_only():
    parsed = parse_vendor_reports(VIVADO_VU9P, "vivado")
    assert parsed["backend"] == "Vivado"
    assert parsed["part"] == "xcvu9p-flga2104-2-e"
    csynth = parsed["csynth"]
    assert csynth["target_clock_ns"] == 5
    assert csynth["latency_cycles_worst"] == 14
    assert csynth["resources"] == {"LUT": 15234, "FF": 6120, "DSP": 93, "BRAM": 2, "URAM": 0}  # DSP48E tag -> DSP
    assert parsed["vsynth"] is None


def test_board_totals_agree_with_what_the_tools_report():
    # The tools print the device totals they synthesised for; our board files must say the same.
    for folder, board in ((VITIS_VU13P, "vu13p"), (VIVADO_VU9P, "vu9p")):
        available = parse_vendor_reports(folder, "Vitis")["csynth"]["available"]
        resources = load_board(board).resources
        assert available == {kind: resources.total(kind) for kind in available}


def test_unbuilt_hls4ml_project_has_no_reports(tmp_path):
    import hls4ml
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    config = hls4ml.utils.config_from_pytorch_model(model, input_shape=(4,), granularity="name", backend="Vitis")
    hls_model = hls4ml.converters.convert_from_pytorch_model(
        model, hls_config=config, output_dir=str(tmp_path / "prj"), backend="Vitis",
        part="xcvu13p-flga2577-2-e", io_type="io_parallel")
    hls_model.write()
    parsed = parse_vendor_reports(tmp_path / "prj", "Vitis")
    assert parsed["part"] == "xcvu13p-flga2577-2-e"
    assert parsed["csynth"] is None and parsed["vsynth"] is None


def test_not_a_project_and_unreadable_report_are_clear_errors(tmp_path):
    with pytest.raises(JbotEdgeError, match="no project.tcl"):
        parse_vendor_reports(tmp_path, "Vitis")
    with pytest.raises(JbotEdgeError, match="no AMD vendor flow"):
        parse_vendor_reports(VITIS_VU13P, "Quartus")
    project = copy_project(VITIS_VU13P, tmp_path)
    xml = project / "myproject_prj/solution1/syn/report/myproject_csynth.xml"
    xml.write_text(xml.read_text()[:500])  # truncated, as after a killed run
    with pytest.raises(JbotEdgeError, match="cannot read the vendor reports"):
        parse_vendor_reports(project, "Vitis")


# -- synth_report.json and the verdict -------------------------------------------------------------------------


def test_fits_with_vendor_figures_and_percentages(tmp_path):
    report = report_for("vu13p", vendor=parse_vendor_reports(VITIS_VU13P, "Vitis"))
    assert report["schema"] == SCHEMA
    assert (report["board"], report["part"], report["clock_ns"]) == ("vu13p", "xcvu13p-flga2577-2-e", 4.167)
    assert core(report["latency_cycles"]) == {"value": 11, "best": 11, "worst": 11, "source": "vendor:csynth"}
    assert core(report["latency_ns"]) == {"value": pytest.approx(45.837), "source": "vendor:csynth"}
    assert core(report["ii"]) == {"value": 1, "source": "vendor:csynth"}
    resources = report["resources"]
    # post-synthesis figures win over C-synthesis estimates
    assert core(resources["LUT"]) == {"value": 31520, "percent_of_board": pytest.approx(100 * 31520 / 1728000, abs=1e-4),
                                "source": "vendor:vsynth"}
    assert resources["DSP"]["percent_of_board"] == pytest.approx(100 * 208 / 12288, abs=1e-4)
    assert resources["BRAM"]["percent_of_board"] == pytest.approx(100 * 1.5 / 2688, abs=1e-4)
    assert resources["FF"]["percent_of_board"] == pytest.approx(100 * 8455 / 3456000, abs=1e-4)
    assert report["budget"]["verdict"] == "fits"
    assert report["budget"]["lut_fraction_max"] == 0.02
    assert report["layer_precisions"] == PRECISIONS

    path = write_synth_report(tmp_path / "synth_report.json", report)
    def refuse(constant):
        raise AssertionError(f"{constant} in synth_report.json")
    assert json.loads(path.read_text(), parse_constant=refuse) == json.loads(json.dumps(report))


def test_csynth_lut_estimate_exceeds_the_lut_share(tmp_path):
    project = copy_project(VITIS_VU13P, tmp_path)
    (project / "vivado_synth.rpt").unlink()
    report = report_for("vu13p", vendor=parse_vendor_reports(project, "Vitis"))
    assert report["resources"]["LUT"]["source"] == "vendor:csynth"
    assert report["resources"]["LUT"]["percent_of_board"] == pytest.approx(100 * 48213 / 1728000, abs=1e-4)
    budget = report["budget"]
    assert budget["verdict"] == "exceeds"
    assert len(budget["reasons"]) == 1 and budget["reasons"][0].startswith("LUT 48213 = 2.79% of vu13p")
    assert any("logic synthesis" in note for note in report["notes"])


def test_latency_over_budget_exceeds():
    report = report_for("vu9p", vendor=parse_vendor_reports(VIVADO_VU9P, "Vivado"), clock_ns=5.0)
    assert report["latency_ns"]["value"] == 70.0
    assert report["resources"]["LUT"]["percent_of_board"] == pytest.approx(100 * 15234 / 1182240, abs=1e-4)
    assert report["budget"]["verdict"] == "exceeds"
    assert [c["check"] for c in report["budget"]["checks"] if c["status"] == "exceeds"] == ["latency_ns"]
    assert "70 ns" in report["budget"]["reasons"][0] and "budget 50 ns" in report["budget"]["reasons"][0]


def test_missed_clock_exceeds(tmp_path):
    project = copy_project(VITIS_VU13P, tmp_path)
    xml = project / "myproject_prj/solution1/syn/report/myproject_csynth.xml"
    xml.write_text(xml.read_text().replace("<EstimatedClockPeriod>2.894<", "<EstimatedClockPeriod>4.902<"))
    report = report_for("vu13p", vendor=parse_vendor_reports(project, "Vitis"))
    assert report["budget"]["verdict"] == "exceeds"
    assert report["budget"]["reasons"] == ["estimated clock period 4.902 ns (vendor:csynth) misses target 4.167 ns"]


def test_estimates_hook_feeds_figures_and_ii_over_one_exceeds():
    estimate = Estimate(tool="da4ml", latency_cycles=6, ii=2, resources={"LUT": 12000, "FF": 3000, "DSP": 0},
                        notes=["floor rounding"])
    report = report_for("vu13p", estimates=[estimate])
    assert core(report["latency_ns"]) == {"value": pytest.approx(6 * 4.167), "source": "estimate:da4ml"}
    assert core(report["ii"]) == {"value": 2, "source": "estimate:da4ml"}
    assert report["resources"]["LUT"]["source"] == "estimate:da4ml"
    assert core(report["resources"]["BRAM"]) == {"value": None, "percent_of_board": None, "source": "unknown"}
    assert report["budget"]["verdict"] == "exceeds"
    assert report["budget"]["reasons"] == ["II 2 (estimate:da4ml) > required 1"]
    assert "da4ml: floor rounding" in report["notes"]
    assert report["estimates"][0]["tool"] == "da4ml"


def test_figures_name_their_design_and_the_verdict_its_basis(tmp_path):
    """Vendor figures describe the report's own design and give "fits (vendor)"; an estimate of another design (the
    fully parallel RTL) is named as such and gives "fits (estimate)"; an unknown figure says why."""
    vendor = report_for("vu13p", vendor=parse_vendor_reports(VITIS_VU13P, "Vitis"))
    assert vendor["design"] == {"label": vendor["latency_cycles"]["design"], "backend": "Vitis", "strategy": "Latency",
                                "reuse_factor": 1, "clock_ns": 4.167, "io_type": "io_parallel"}
    assert "reuse factor 1" in vendor["ii"]["design"] and vendor["ii"]["basis"] == "vendor:csynth"
    assert vendor["budget"]["verdict_basis"] == "vendor" and vendor["budget"]["verdict_text"] == "fits (vendor)"
    assert "budget verdict: fits (vendor)" in summary_lines(vendor)

    rtl = Estimate(tool="da4ml", design="da4ml RTL, fully parallel (II 1)", latency_cycles=6, ii=1,
                   resources={"LUT": 1000, "FF": 100, "DSP": 0})
    estimated = report_for("vu13p", estimates=[rtl])
    assert estimated["latency_ns"]["design"] == estimated["ii"]["design"] == "da4ml RTL, fully parallel (II 1)"
    assert estimated["budget"]["verdict_text"] == "fits (estimate)"
    assert estimated["resources"]["BRAM"]["reason"].startswith("no vendor report")

    board = load_board("vu13p")
    shared = build_synth_report(board, board.clock_ns, "Vitis", "Resource", 4, PRECISIONS, vendor_tools=NO_TOOLS,
                                estimates=[Estimate(tool="hls4ml-schedule", ii=4)],
                                unknown_reasons={"latency": "only C synthesis schedules shared multipliers"})
    assert core(shared["ii"]) == {"value": 4, "source": "estimate:hls4ml-schedule"}
    assert "Resource strategy, reuse factor 4" in shared["ii"]["design"]
    assert shared["latency_ns"]["value"] is None
    assert shared["latency_ns"]["reason"] == "only C synthesis schedules shared multipliers"
    assert shared["budget"]["verdict_text"] == "exceeds (estimate)"


def test_a_stage_slower_than_the_clock_exceeds():
    timing = Estimate(tool="yosys-sta", estimated_clock_ns=5.2, timing={"critical_stage": 3})
    da4ml = Estimate(tool="da4ml", latency_cycles=6, ii=1, resources={"LUT": 1000})
    report = report_for("vu13p", estimates=[timing, da4ml])
    assert report["timing"]["estimated_clock_ns"] == 5.2 and report["timing"]["fmax_mhz"] == pytest.approx(192.3)
    assert report["timing"]["source"] == "estimate:yosys-sta" and report["timing"]["critical_stage"] == 3
    assert report["budget"]["verdict_text"] == "exceeds (estimate)"
    assert report["budget"]["reasons"] == ["estimated clock period 5.2 ns (estimate:yosys-sta) misses target 4.167 ns"]
    assert report_for("vu13p", estimates=[timing, da4ml], clock_ns=5.5)["budget"]["verdict"] == "fits"


def test_vendor_free_report_does_not_send_the_user_to_the_flow_they_used():
    estimate = Estimate(tool="da4ml", latency_cycles=4, ii=1, resources={"LUT": 1000})
    notes = report_for("vu13p", estimates=[estimate])["notes"]
    assert notes[0] == "no Vivado/Vitis on PATH: every figure is a vendor-free estimate (estimate:da4ml)"
    assert not any("--backend rtl" in note for note in notes)


def test_earlier_estimates_win_and_mappings_are_accepted():
    yosys = {"tool": "yosys", "resources": {"LUT": 30000, "FF": 9000}}
    da4ml = {"tool": "da4ml", "latency_cycles": 8, "ii": 1, "resources": {"LUT": 31000, "FF": 9500, "DSP": 0}}
    report = report_for("vu13p", estimates=[yosys, da4ml])
    assert core(report["resources"]["LUT"]) == {"value": 30000, "percent_of_board": pytest.approx(1.7361, abs=1e-4),
                                                "source": "estimate:yosys"}
    assert report["resources"]["DSP"]["source"] == "estimate:da4ml"
    assert report["latency_cycles"]["source"] == "estimate:da4ml"
    assert report["budget"]["verdict"] == "fits"


@pytest.mark.parametrize(("cycles", "verdict"), [(12, "fits"), (13, "exceeds")])
def test_rounded_clock_period_does_not_flip_the_verdict(cycles, verdict):
    # 12 cycles at 240 MHz are 50 ns exactly; 12 x 4.167 ns = 50.004 ns must still fit.
    estimate = Estimate(tool="da4ml", latency_cycles=cycles, ii=1, resources={"LUT": 1000})
    assert report_for("vu13p", estimates=[estimate])["budget"]["verdict"] == verdict


def test_resource_beyond_the_device_exceeds_even_without_a_cap():
    estimate = Estimate(tool="da4ml", latency_cycles=4, ii=1, resources={"LUT": 1000, "DSP": 20000})
    budget = report_for("vu13p", estimates=[estimate])["budget"]
    assert budget["verdict"] == "exceeds"
    assert budget["reasons"] == ["DSP 20000 = 163% of vu13p (estimate:da4ml): does not fit the device"]


def test_unknown_when_a_needed_figure_is_missing():
    estimate = Estimate(tool="da4ml", latency_cycles=4, ii=1)  # no LUT figure
    budget = report_for("vu13p", estimates=[estimate])["budget"]
    assert budget["verdict"] == "unknown"
    assert budget["reasons"] == ["LUT unknown (cap 2% of vu13p)"]


def test_no_vendor_tools_no_estimates_says_so_plainly(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no vendor tool can be found
    board = load_board("vu13p")
    report = build_synth_report(board, board.clock_ns, "Vitis", "Latency", 1, PRECISIONS)
    assert report["vendor_tools"] == NO_TOOLS
    assert report["latency_cycles"]["value"] is None and report["latency_cycles"]["source"] == "unknown"
    assert core(report["latency_ns"]) == {"value": None, "source": "unknown"}
    assert all(r["value"] is None and r["percent_of_board"] is None for r in report["resources"].values())
    assert report["budget"]["verdict"] == "unknown"
    assert report["notes"][0].startswith("no Vivado/Vitis on PATH")
    assert "use --backend rtl for vendor-free estimates" in report["notes"][0]
    lines = summary_lines(report)
    assert "budget verdict: unknown" in lines
    write_synth_report(tmp_path / "synth_report.json", report)  # nulls, never NaN


def test_report_from_another_part_and_clock_is_noted():
    report = report_for("vu13p", vendor=parse_vendor_reports(VIVADO_VU9P, "Vivado"))
    assert any("targets xcvu9p-flga2104-2-e, not vu13p" in note for note in report["notes"])
    assert any("C synthesis ran at 5 ns" in note for note in report["notes"])
    assert report["latency_ns"]["value"] == pytest.approx(14 * 4.167)


def test_bad_inputs_are_refused():
    board = load_board("vu13p")
    with pytest.raises(JbotEdgeError, match="clock-ns"):
        build_synth_report(board, float("nan"), "Vitis", "Latency", 1, {}, vendor_tools=NO_TOOLS)
    with pytest.raises(JbotEdgeError, match="reuse factor"):
        build_synth_report(board, 4.0, "Vitis", "Latency", 0, {}, vendor_tools=NO_TOOLS)
    with pytest.raises(ValueError, match="finite"):
        report_for("vu13p", estimates=[{"tool": "yosys", "resources": {"LUT": float("nan")}}])
    with pytest.raises(ValueError, match="never holds NaN"):
        build_synth_report(board, 4.0, "Vitis", "Latency", 1, {"dense": {"scale": float("nan")}},
                           vendor_tools=NO_TOOLS)
    with pytest.raises(ValueError, match="not a synth report"):
        write_synth_report("/nonexistent/synth_report.json", {"schema": "other"})

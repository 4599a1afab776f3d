"""The vendor-free RTL path: the quantized student as pipelined Verilog through da4ml, simulated with Verilator,
sized with Yosys — latency and resources without Vivado/Vitis.

::

    from jbot_edge.firmware.rtl import build_rtl, RtlSimulator, rtl_estimates

    design = build_rtl("students/ds", "firmware/ds/rtl", board="vu13p")   # Verilog + rtl.json (design.py)
    design.interpret_codes(codes)                  # da4ml's C++ interpreter → int64 output codes
    RtlSimulator(design).predict_codes(codes)      # Verilator, cycle accurate → int64 output codes
    estimates = rtl_estimates(design.directory)    # [Estimate(yosys), Estimate(da4ml)] for build_synth_report

Modules: ``trace`` (QONNX graph → da4ml), ``design`` (Verilog, rtl.json, da4ml estimate), ``verilator``
(simulation), ``yosys`` (logic-synthesis estimate), ``tools`` (finding the tools, install hints).
"""

from jbot_edge.firmware.rtl.design import RtlConfig, RtlDesign, build_rtl, load_rtl
from jbot_edge.firmware.rtl.tools import find_verilator, find_yosys, require_da4ml
from jbot_edge.firmware.rtl.verilator import RtlSimulator
from jbot_edge.firmware.rtl.yosys import estimate_with_yosys, rtl_estimates, rtl_synth_report, yosys_estimate

__all__ = ["RtlConfig", "RtlDesign", "RtlSimulator", "build_rtl", "estimate_with_yosys", "find_verilator",
           "find_yosys", "load_rtl", "require_da4ml", "rtl_estimates", "rtl_synth_report", "yosys_estimate"]

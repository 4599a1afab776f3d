"""Small combinational Verilog blocks beside the network (the input block, the jet term): Yosys estimate and
Verilator simulation, shared so that each block only writes its Verilog.

Buses are LSB-first concatenations of integer fields: field 0 occupies the lowest bits. Signed fields are two's
complement.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.rtl.tools import require_verilator, require_yosys

#: (bits, signed) of one field of a bus
Field = tuple[int, bool]


def estimate_block(verilog: str, top: str, out_dir: str | os.PathLike[str], family: str = "xcup",
                   use_dsp: bool = True) -> dict[str, Any]:
    """Yosys ``synth_xilinx`` of ``top``: ``{"tool", "version", "family", "resources": {LUT, FF, DSP, BRAM},
    "cells", "path_ns", "dsp_on_path_modelled"}`` (an estimate: Yosys' mapping is not Vivado's). ``path_ns`` is the
    deepest path under rtl/timing.py's delay model; with DSPs it counts each DSP48E2 as one LUT level, a lower
    bound (``use_dsp=False`` maps multiplies to LUTs, so every cell on the path is modelled)."""
    from jbot_edge.firmware.rtl.timing import longest_path
    from jbot_edge.firmware.rtl.yosys import _count, _top_cells

    yosys = require_yosys()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{top}.v").write_text(verilog)
    script = f"read_verilog {top}.v; synth_xilinx -family {family} -top {top} -flatten -noiopad" \
             f"{'' if use_dsp else ' -nodsp'}; write_json netlist.json; tee -q -o stat.json stat -json"
    result = subprocess.run([yosys.path, "-q", "-p", script], cwd=out, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise JbotEdgeError(f"yosys failed on {top} (exit {result.returncode}): {result.stderr[-300:]}")
    cells = _top_cells(json.loads((out / "stat.json").read_text()), top)
    path = longest_path(json.loads((out / "netlist.json").read_text())["modules"][top])
    return {"tool": "yosys", "version": yosys.version, "family": family, "resources": _count(cells), "cells": cells,
            "path_ns": path["path_ns"], "dsp_on_path_modelled": not use_dsp}


def stages_for(path_ns: float, clock_ns: float) -> int | None:
    """Pipeline stages a combinational path of ``path_ns`` needs at ``clock_ns`` (None if the clock leaves no time
    after the register overhead)."""
    from jbot_edge.firmware.rtl.timing import ULTRASCALE_PLUS_M2

    usable = clock_ns - ULTRASCALE_PLUS_M2.register_overhead_ns
    return max(1, math.ceil(path_ns / usable - 1e-9)) if usable > 0 else None


_HARNESS = r"""
#include "V{top}.h"
#include <cstdio>
#include <cstdint>
// stdin: per case {n_in} input field values; stdout: {n_out} output field values per case.
static void put(uint32_t* w, int pos, int bits, long long v) {{
  for (int b = 0; b < bits; ++b) {{ int q = pos + b; uint32_t bit = (v >> b) & 1;
    w[q / 32] = (w[q / 32] & ~(1u << (q % 32))) | (bit << (q % 32)); }}
}}
static long long get(const uint32_t* w, int pos, int bits, bool is_signed) {{
  long long v = 0;
  for (int b = 0; b < bits; ++b) {{ int q = pos + b; v |= (long long)((w[q / 32] >> (q % 32)) & 1) << b; }}
  if (is_signed && (v >> (bits - 1)) & 1) v -= (1LL << bits); return v;
}}
int main() {{
  V{top} top; const int in_bits[] = {{{in_bits}}}; const int out_bits[] = {{{out_bits}}};
  const int out_signed[] = {{{out_signed}}};
  uint32_t in_words[{in_words}] = {{0}}; uint32_t out_words[{out_words}] = {{0}};
  long long v;
  while (true) {{
    int pos = 0;
    for (int i = 0; i < {n_in}; ++i) {{ if (scanf("%lld", &v) != 1) return 0;
      put(in_words, pos, in_bits[i], v); pos += in_bits[i]; }}
    {store_in}
    top.eval();
    {load_out}
    pos = 0;
    for (int i = 0; i < {n_out}; ++i) {{
      printf("%lld ", get(out_words, pos, out_bits[i], out_signed[i])); pos += out_bits[i]; }}
    printf("\n");
  }}
}}
"""


def _port_copy(port: str, width: int, words: str, to_port: bool) -> str:
    """C++ copying between a local uint32 array and a Verilator port (VlWide above 64 bits, an integer below)."""
    n_words = (width + 31) // 32
    if width > 64:
        pairs = [(f"top.{port}[{k}]", f"{words}[{k}]") for k in range(n_words)]
        return " ".join(f"{a} = {b};" if to_port else f"{b} = {a};" for a, b in pairs)
    if to_port:
        value = " | ".join(f"((uint64_t){words}[{k}] << {32 * k})" for k in range(n_words))
        return f"top.{port} = {value};"
    return " ".join(f"{words}[{k}] = (uint32_t)((uint64_t)top.{port} >> {32 * k});" for k in range(n_words))


class BlockSimulator:
    """A built Verilator simulation of a combinational module: ``simulator(values [N, n_in]) -> [N, n_out]``."""

    def __init__(self, verilog: str, top: str, in_port: str, in_fields: list[Field], out_port: str,
                 out_fields: list[Field], work_dir: str | os.PathLike[str]):
        verilator = require_verilator()
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{top}.v").write_text(verilog)
        in_width, out_width = sum(b for b, _ in in_fields), sum(b for b, _ in out_fields)
        (work / "harness.cpp").write_text(_HARNESS.format(
            top=top, n_in=len(in_fields), n_out=len(out_fields),
            in_bits=", ".join(str(b) for b, _ in in_fields), out_bits=", ".join(str(b) for b, _ in out_fields),
            out_signed=", ".join(str(int(s)) for _, s in out_fields),
            in_words=(in_width + 31) // 32, out_words=(out_width + 31) // 32,
            store_in=_port_copy(in_port, in_width, "in_words", to_port=True),
            load_out=_port_copy(out_port, out_width, "out_words", to_port=False)))
        build = subprocess.run([verilator.path, "--cc", "--exe", "--build", "-O2", "-Wno-fatal", f"{top}.v",
                                "harness.cpp", "--top-module", top, "-o", "sim"], cwd=work, capture_output=True,
                               text=True, check=False)
        if build.returncode != 0:
            raise JbotEdgeError(f"verilator could not build {top}: {build.stderr[-500:]}")
        self.binary, self.n_out = work / "obj_dir" / "sim", len(out_fields)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.int64).reshape(len(values), -1)
        text = "\n".join(" ".join(map(str, row)) for row in values) + "\n"
        run = subprocess.run([str(self.binary)], input=text, capture_output=True, text=True, check=True)
        return np.array(run.stdout.split(), dtype=np.int64).reshape(len(values), self.n_out)


def simulate_block(verilog: str, top: str, in_port: str, in_fields: list[Field], out_port: str,
                   out_fields: list[Field], values: np.ndarray, work_dir: str | os.PathLike[str]) -> np.ndarray:
    """Verilator simulation of the combinational module ``top``: rows of input field values ``[N, len(in_fields)]``
    → output field values ``[N, len(out_fields)]`` (int64)."""
    return BlockSimulator(verilog, top, in_port, in_fields, out_port, out_fields, work_dir)(values)

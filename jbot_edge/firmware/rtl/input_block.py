"""The integer input block ahead of the network, as Verilog: raw L1 codes in, the model-visible codes out.

:meth:`jbot_edge.data.l1quant.L1InputSpec.codes_from_raw` defines, in integer arithmetic, what reaches the network
when the spec normalises pT (``pt_normalisation``) or derives columns (``mass_moment``). hls4ml and da4ml build the
network only, so this module writes the same function as one combinational Verilog module, for three uses:

* :func:`estimate_input_block`: Yosys ``synth_xilinx`` LUT / DSP counts of the block (``estimate:yosys``; the
  network's figures in ``synth_report.json`` do not include it);
* :func:`simulate_input_block`: a Verilator simulation of the module on given raw codes, to check it against
  ``codes_from_raw`` bit for bit;
* :func:`write_input_block`: what ``synth`` calls: the Verilog into ``firmware/input_block/``, the Yosys estimate when
  Yosys is installed, and the note ``synth_report.json`` carries (the block is combinational and outside the
  network's latency and resource figures, which the note says).

Buses are particle-major and LSB-first: particle 0's first stored feature occupies the lowest bits of ``raw``;
``codes`` holds every model column of particle 0, then particle 1, ... Signed fields are two's complement.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from jbot_edge.data.l1quant import MASS_MOMENT_INPUTS, L1InputSpec, PtNormalisation
from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.rtl.combinational import estimate_block, simulate_block, stages_for

TOP = "l1_input_block"


def _bus_fields(spec: L1InputSpec) -> tuple[list[tuple[str, int, bool]], list[tuple[str, int, bool]]]:
    """``(stored fields, output fields)`` per particle: (name, bits, signed)."""
    stored = [(f.name, f.bits, f.signed) for f in spec.features if f.derived is None]
    outputs = [(f.name, bits, f.signed) for f, bits in zip(spec.features, spec.code_bits())]
    return stored, outputs


def _normaliser(tag: str, norm: PtNormalisation, n_particles: int, pt_bits: int, sum_bits: int) -> list[str]:
    """Verilog computing ``z_<tag>_<i>`` = norm.apply(pt) for every particle (wires ``pt_<i>`` and ``ptsum``)."""
    m, rom = norm.mantissa_bits, norm.reciprocal_rom()
    rom_bits = int(rom.max()).bit_length()
    k_bits = max(1, (sum_bits - 1).bit_length())
    lines = [f"  // {tag}: 2^{norm.bits} pT / sum pT through a {1 << m}-entry reciprocal ROM (l1quant.PtNormalisation)",
             f"  reg [{k_bits - 1}:0] k_{tag}; integer b_{tag};",
             f"  always @* begin k_{tag} = 0; for (b_{tag} = 0; b_{tag} < {sum_bits}; b_{tag} = b_{tag} + 1) "
             f"if (ptsum[b_{tag}]) k_{tag} = b_{tag}; end",
             f"  wire [{sum_bits + m - 1}:0] lead_{tag} = ({{{{{m}{{1'b0}}}}, ptsum}} << {m}) >> k_{tag};",
             f"  wire [{m - 1}:0] addr_{tag} = lead_{tag}[{m - 1}:0];",
             f"  reg [{rom_bits - 1}:0] rom_{tag};",
             f"  always @* case (addr_{tag})"]
    lines += [f"    {m}'d{a}: rom_{tag} = {rom_bits}'d{int(v)};" for a, v in enumerate(rom)]
    lines += [f"    default: rom_{tag} = {rom_bits}'d0;", "  endcase"]
    # shift = k + L - bits, negative for small sums when L < bits: shift the other way
    offset = norm.reciprocal_bits - norm.bits
    prod_bits = pt_bits + rom_bits + max(0, -offset)
    lines.append(f"  wire signed [{k_bits + 2}:0] shift_{tag} = $signed({{2'b0, k_{tag}}}) + {offset};")
    for i in range(n_particles):
        lines += [
            f"  wire [{prod_bits - 1}:0] prod_{tag}_{i} = pt_{i} * rom_{tag};",
            f"  wire [{prod_bits - 1}:0] scaled_{tag}_{i} = shift_{tag} >= 0 ? prod_{tag}_{i} >> shift_{tag} "
            f": prod_{tag}_{i} << (-shift_{tag});",
            f"  wire [{norm.bits - 1}:0] z_{tag}_{i} = (ptsum == 0) ? {norm.bits}'d0 : "
            f"(scaled_{tag}_{i} > {(1 << norm.bits) - 1} ? {norm.bits}'d{(1 << norm.bits) - 1} "
            f": scaled_{tag}_{i}[{norm.bits - 1}:0]);"]
    return lines


def _mass_moment(tag: str, feature, stored_bits: dict[str, int], n_particles: int, sum_bits: int) -> list[str]:
    """Verilog of one mass-moment column: ``<name>_<i>`` = min((z · (Δη² + Δφ²)) >> shift, max code)."""
    pt_name, eta, phi = MASS_MOMENT_INPUTS
    pt_bits = stored_bits[pt_name]
    derived = feature.derived
    if derived.normalisation is not None:
        lines = _normaliser(tag, derived.normalisation, n_particles, pt_bits, sum_bits)
        z_bits = derived.normalisation.bits
    else:  # the raw pT code
        lines = [f"  wire [{pt_bits - 1}:0] z_{tag}_{i} = pt_{i};" for i in range(n_particles)]
        z_bits = pt_bits
    r2_bits = 2 * max(stored_bits[eta], stored_bits[phi]) + 1
    for i in range(n_particles):
        lines += [
            f"  wire signed [{2 * stored_bits[eta] - 1}:0] eta2_{tag}_{i} = {eta}_{i} * {eta}_{i};",
            f"  wire signed [{2 * stored_bits[phi] - 1}:0] phi2_{tag}_{i} = {phi}_{i} * {phi}_{i};",
            f"  wire [{r2_bits - 1}:0] r2_{tag}_{i} = eta2_{tag}_{i} + phi2_{tag}_{i};",
            f"  wire [{z_bits + r2_bits - 1}:0] zr2_{tag}_{i} = z_{tag}_{i} * r2_{tag}_{i};",
            f"  wire [{z_bits + r2_bits - 1}:0] sh_{tag}_{i} = zr2_{tag}_{i} >> {derived.shift};",
            f"  wire [{feature.bits - 1}:0] {feature.name}_{i} = sh_{tag}_{i} > {feature.max_code} ? "
            f"{feature.bits}'d{feature.max_code} : sh_{tag}_{i}[{feature.bits - 1}:0];"]
    return lines


def input_block_verilog(spec: L1InputSpec, top: str = TOP) -> str:
    """One combinational module ``top(raw, codes)`` computing ``spec.codes_from_raw`` (module docstring)."""
    stored, outputs = _bus_fields(spec)
    if spec.pt_normalisation is None and all(f.derived is None for f in spec.features):
        raise JbotEdgeError("the input spec has no input block: its codes reach the network as quantised")
    p = spec.n_particles
    in_width, out_width = sum(b for _, b, _ in stored), sum(b for _, b, _ in outputs)
    stored_bits = {name: bits for name, bits, _ in stored}
    pt_name = MASS_MOMENT_INPUTS[0] if spec.pt_normalisation is None else spec.pt_normalisation.feature
    if pt_name != MASS_MOMENT_INPUTS[0] and any(f.derived is not None for f in spec.features):
        raise JbotEdgeError(f"input block: pt_normalisation.feature {pt_name!r} and a mass-moment column "
                            f"(which reads {MASS_MOMENT_INPUTS[0]!r}) would need two pT sums; not supported")
    pt_bits = stored_bits[pt_name]
    sum_bits = pt_bits + max(1, (p - 1).bit_length())
    lines = ["// Generated by jbot_edge.firmware.rtl.input_block from the L1 input spec; do not edit.",
             f"module {top} (input wire [{p * in_width - 1}:0] raw, output wire [{p * out_width - 1}:0] codes);"]
    for i in range(p):
        offset = i * in_width
        for name, bits, signed in stored:
            kind = "signed " if signed else ""
            lines.append(f"  wire {kind}[{bits - 1}:0] {name}_{i} = raw[{offset + bits - 1}:{offset}];")
            offset += bits
        lines.append(f"  wire [{pt_bits - 1}:0] pt_{i} = {pt_name}_{i};")
    lines.append(f"  wire [{sum_bits - 1}:0] ptsum = " + " + ".join(f"pt_{i}" for i in range(p)) + ";")
    if spec.pt_normalisation is not None:
        lines += _normaliser("norm", spec.pt_normalisation, p, pt_bits, sum_bits)
    for j, feature in enumerate(spec.features):
        if feature.derived is not None:
            lines += _mass_moment(f"d{j}", feature, stored_bits, p, sum_bits)
    for i in range(p):
        offset = i * out_width
        for name, bits, _ in outputs:
            normalised = spec.pt_normalisation is not None and name == spec.pt_normalisation.feature
            source = f"z_norm_{i}" if normalised else f"{name}_{i}"
            lines.append(f"  assign codes[{offset + bits - 1}:{offset}] = {source};")
            offset += bits
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def estimate_input_block(spec: L1InputSpec, out_dir: str | os.PathLike[str], family: str = "xcup") -> dict[str, Any]:
    """Yosys ``synth_xilinx`` of the block (:func:`~jbot_edge.firmware.rtl.combinational.estimate_block`, DSPs
    allowed), with ``path_ns_lower_bound``: its path counts each DSP48E2 as one LUT level."""
    estimate = estimate_block(input_block_verilog(spec), TOP, out_dir, family)
    return {**estimate, "path_ns_lower_bound": estimate.pop("path_ns")}


def simulate_input_block(spec: L1InputSpec, raw: np.ndarray, work_dir: str | os.PathLike[str]) -> np.ndarray:
    """Verilator simulation of the block: raw codes ``[N, P, F_stored]`` → model-visible codes ``[N, P, F]``."""
    stored, outputs = _bus_fields(spec)
    p = spec.n_particles
    raw = np.asarray(raw, dtype=np.int64)
    values = simulate_block(input_block_verilog(spec), TOP, "raw", [(b, s) for _, b, s in stored] * p, "codes",
                            [(b, s) for _, b, s in outputs] * p, raw.reshape(len(raw), -1), work_dir)
    return values.reshape(len(raw), p, len(outputs))


def write_input_block(spec: L1InputSpec, out_dir: str | os.PathLike[str],
                      clock_ns: float) -> tuple[list[str], dict[str, Any] | None]:
    """For a spec with an input block: write its Verilog to ``out_dir/l1_input_block.v``, estimate it with Yosys
    when installed, and return ``(notes for synth_report.json, the block's figures for its budget check)``;
    ``([], None)`` without a block. Figures: ``{"source", "path_ns_lower_bound", "min_stages", "resources"}`` (the
    last three null when Yosys is missing); ``min_stages`` is the pipeline stages that path needs at ``clock_ns``."""
    from jbot_edge.firmware.rtl.tools import find_yosys

    what = spec.input_block_note()
    if what is None:
        return [], None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{TOP}.v").write_text(input_block_verilog(spec))
    if find_yosys() is None:
        return ([f"{what}. Its Verilog is {out.name}/{TOP}.v; not estimated (yosys not on PATH)"],
                {"source": "unknown", "path_ns_lower_bound": None, "min_stages": None, "resources": None})
    estimate = estimate_input_block(spec, out / "yosys")
    path = estimate["path_ns_lower_bound"]
    min_stages = stages_for(path, clock_ns)
    figures = ", ".join(f"{k} {v:g}" for k, v in estimate["resources"].items())
    note = (f"{what}. Its Verilog is {out.name}/{TOP}.v (combinational); estimate:yosys {estimate['version']} "
            f"(synth_xilinx -family {estimate['family']}): {figures}, on top of the figures above; its deepest path "
            f"is at least {path:g} ns (rtl/timing.py's delay model, each DSP48E2 on it counted as one LUT level: DSP "
            f"delays are not modelled), i.e. at least {min_stages} pipeline stage(s) at {clock_ns:g} ns, also on top "
            "of the latency above (budget check input_block_latency_ns)")
    return [note], {"source": "estimate:yosys", "path_ns_lower_bound": path, "min_stages": min_stages,
                    "resources": estimate["resources"]}

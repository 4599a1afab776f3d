"""Our hls4ml fixes: each upstream defect is still there (else revisit the fix) and each fix does its job.

The upstream probes run in a fresh interpreter (``tests/data/hls4ml_stock_probe.py``) because
:func:`apply_fixes` changes hls4ml's process-wide registries.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import hls4ml
import pytest

from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.firmware.convert import HlsConfig, build_hls_config
from jbot_edge.firmware.export import export_student
from jbot_edge.firmware.hls4ml_fixes import (
    HLS4ML_VERSION,
    apply_fixes,
    pooling_precisions,
)
from jbot_edge.models.students import StudentConfig, build_student

PROBE = Path(__file__).parent / "data" / "hls4ml_stock_probe.py"


def test_hls4ml_is_the_pinned_version():
    assert hls4ml.__version__ == HLS4ML_VERSION


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stock")
    result = subprocess.run([sys.executable, str(PROBE), str(tmp / "g.onnx"), str(tmp / "hls")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_upstream_still_lacks_reduce_mean(stock):
    """Fix 1 is needed: hls4ml 1.3.0 has no ReduceMean handler."""
    assert stock["reduce_mean_supported"] is False
    assert "Unsupported operation type: ReduceMean" in stock["stock_error"]


def test_upstream_matmul_on_particles_is_still_broken(stock):
    """Fix 3 is needed: with ReduceMean handled, hls4ml's own MatMul→Dense path still fails on [P, F] inputs."""
    assert "fixed12_error" in stock, f"hls4ml now converts per-particle MatMul: revisit Fix 3 ({stock})"
    assert "broadcast" in stock["fixed12_error"]


@pytest.fixture(scope="module")
def fixed_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fixed")
    spec = L1InputSpec()
    cfg = StudentConfig(kind="deepsets", phi_widths=[8], rho_widths=[4], weight_bits=5, bias_bits=12)
    graph = export_student(build_student(cfg, spec), spec, tmp / "g.onnx")
    apply_fixes()
    apply_fixes()  # idempotent
    return graph, spec, tmp


def _convert(graph, output_dir, hls_config):
    with contextlib.redirect_stdout(io.StringIO()):
        return hls4ml.converters.convert_from_onnx_model(graph, output_dir=str(output_dir), backend="Vitis",
                                                         io_type="io_parallel", hls_config=hls_config)


def test_upstream_does_not_infer_global_pooling_accumulators(fixed_model):
    """Fix 4 is needed: without our precision config the pooling accumulator is the model default type."""
    graph, _, tmp = fixed_model
    config = hls4ml.utils.config_from_onnx_model(graph, granularity="name", backend="Vitis",
                                                 default_precision="fixed<11,3>")
    model = _convert(graph, tmp / "default", config)
    pool = next(layer for layer in model.get_layers() if layer.class_name == "GlobalPooling1D")
    assert str(pool.types["accum_t"].precision).startswith("fixed<11,3")


def test_fixes_give_pointwise_layers_with_quantized_weights_and_exact_pooling(fixed_model):
    graph, spec, tmp = fixed_model
    hls_config = build_hls_config(graph, spec, HlsConfig())
    model = _convert(graph, tmp / "fixed", hls_config)
    layers = list(model.get_layers())
    pointwise = [layer for layer in layers if "Conv1D" in layer.class_name]
    assert [(layer.get_attr("n_chan"), layer.get_attr("n_filt"), layer.get_attr("in_width")) for layer in pointwise] \
        == [(3, 8, 16)]
    conv = pointwise[0]
    assert conv.types["weight_t"].precision.width == 5  # the Brevitas weight quantizer survived
    assert conv.types["bias_t"].precision.width == 12  # the bias Add was fused with its quantizer
    assert conv.get_weights("bias").data.shape == (8,)
    pool = next(layer for layer in layers if layer.class_name == "GlobalPooling1D")
    assert (pool.get_attr("n_in"), pool.get_attr("n_filt")) == (16, 8)
    in_type = pool.get_input_variable().type.precision
    expected = pooling_precisions(in_type.width, in_type.integer, in_type.signed, 16)["accum"]
    assert str(pool.types["accum_t"].precision).startswith(expected[:-1] + ","), (str(in_type), expected)
    first = layers[0]
    assert str(first.get_output_variable().type.precision).startswith(spec.input_fixed_type()[:-1] + ",")


def test_pooling_precision_rule():
    # ufixed<8,2> averaged over 16: integer 2 + 4 + 1, fractional 6 + 4.
    assert pooling_precisions(8, 2, False, 16) == {"accum": "fixed<17,7>", "result": "fixed<17,7>"}
    assert pooling_precisions(8, 3, True, 32) == {"accum": "fixed<19,9>", "result": "fixed<19,9>"}

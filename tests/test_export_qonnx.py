"""Brevitas → QONNX export: the graph executed by qonnx equals the Brevitas student bit for bit."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from student_factory import l1_codes, train_student

from jbot_edge.errors import JbotEdgeError
from jbot_edge.firmware.export import (
    QonnxExecutor,
    export_student,
    input_quant_from_graph,
    load_qonnx,
    output_scale_from_graph,
    to_codes,
)
from jbot_edge.firmware.fuzz import fuzz_codes
from jbot_edge.models.students import output_lsb, score_codes


@pytest.fixture(scope="module")
def codes(l1_file):
    return l1_codes(l1_file)


@pytest.mark.parametrize("kind", ["deepsets", "mlp"])
def test_qonnx_execution_equals_brevitas_bit_for_bit(kind, codes, tmp_path):
    model, _, spec = train_student(kind, codes)
    graph = export_student(model, spec, tmp_path / "model.qonnx.onnx")
    ops = {node.op_type for node in graph.graph.node}
    assert "Gemm" not in ops and "MatMul" in ops and "Quant" in ops
    assert ("ReduceMean" in ops) == (kind == "deepsets")
    # The file on disk is the prepared graph and loads with the opset onnxruntime accepts.
    on_disk = load_qonnx(tmp_path / "model.qonnx.onnx")
    assert onnx.load(tmp_path / "model.qonnx.onnx").ir_version <= 10
    quant = input_quant_from_graph(on_disk)
    assert (quant["bits"], quant["frac_bits"], quant["signed"]) == (spec.input_width, spec.input_frac_bits, True)
    assert output_scale_from_graph(on_disk) == output_lsb(model)

    fuzz, _ = fuzz_codes(spec)
    all_codes = np.concatenate([codes, fuzz])
    assert len(codes) >= 1000
    x = spec.to_model_input(all_codes)
    expected = score_codes(model, torch.from_numpy(x))
    got = to_codes(QonnxExecutor(on_disk, batch_size=700)(x), output_lsb(model))
    assert len(np.unique(expected)) > 50, "the student should not be constant"
    np.testing.assert_array_equal(got, expected)


def test_output_codes_must_be_multiples_of_the_lsb():
    with pytest.raises(JbotEdgeError, match="multiples"):
        to_codes(np.array([0.5, 0.75]), 0.5)

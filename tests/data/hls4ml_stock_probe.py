import json, sys, contextlib, io
import torch
from jbot_edge.data.l1quant import L1InputSpec
from jbot_edge.models.students import StudentConfig, build_student
from jbot_edge.firmware.export import export_student
import hls4ml
from hls4ml.converters.onnx_to_hls import get_supported_onnx_layers, register_onnx_layer_handler
out = {}
spec = L1InputSpec()
model = build_student(StudentConfig(kind="deepsets", phi_widths=[8], rho_widths=[4]), spec)
graph = export_student(model, spec, sys.argv[1])
out["reduce_mean_supported"] = "ReduceMean" in get_supported_onnx_layers()
try:
    with contextlib.redirect_stdout(io.StringIO()):
        hls4ml.converters.convert_from_onnx_model(graph, output_dir=sys.argv[2], backend="Vitis")
    out["stock_error"] = None
except Exception as exc:
    out["stock_error"] = str(exc)
# Fix 1 + 2 only: hls4ml's own MatMul handling of the per-particle layer.
from jbot_edge.firmware import hls4ml_fixes as fixes
register_onnx_layer_handler("ReduceMean", fixes.parse_reduce_mean_over_particles)
passes = fixes._make_passes()
from hls4ml.model.optimizer import register_pass
from hls4ml.model.flow.flow import get_flow
register_pass("jbot_reduce_axes_constant", passes["jbot_reduce_axes_constant"])
flow = get_flow("parse_qonnx").optimizers
flow.insert(flow.index("quant_constant_parameters"), "jbot_reduce_axes_constant")
cfg = hls4ml.utils.config_from_onnx_model(graph, granularity="name", backend="Vitis")
try:
    with contextlib.redirect_stdout(io.StringIO()):
        hm = hls4ml.converters.convert_from_onnx_model(graph, output_dir=sys.argv[2], backend="Vitis", hls_config=cfg)
    layers = {l.name: (l.class_name, {k: str(v.precision) for k, v in l.types.items()},
                       {a: l.get_attr(a) for a in ("n_in", "n_out", "n_chan", "n_filt")}) for l in hm.get_layers()}
    out["layers"] = layers
except Exception as exc:
    out["fixed12_error"] = repr(exc)
print(json.dumps(out, default=str))

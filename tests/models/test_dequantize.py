"""Dequantizing the real dynamic-int8 320 model: a valid fp32 graph that computes what the int8 model does."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_agent.perception.detector.preprocess import letterbox
from models.tooling import ToolingError
from models.tooling.dequantize import dequantize_dynamic
from models.tooling.graph import metadata, run, session
from models.tooling.verify import compare_outputs
from tests.models.conftest import IMAGES, read_image

FIRST_ACTIVATION = "/model.0/act/Mul_output_0"  # same tensor name in both graphs


def test_graph_is_float_and_checked(int8_320, dequantized_320):
    fp32, stats = dequantized_320
    onnx.checker.check_model(fp32, full_check=True)
    ops = {n.op_type for n in fp32.graph.node}
    assert not ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "Cast"}
    assert stats.convs == sum(n.op_type == "ConvInteger" for n in int8_320.graph.node) == 88
    assert stats.biases_folded == 87  # every Conv but the DFL ramp has a bias
    assert all(
        t.data_type == onnx.TensorProto.FLOAT for t in fp32.graph.initializer if t.dims and len(t.dims) == 4
    )
    meta = metadata(fp32)
    assert meta["imgsz"] == "[320, 320]" and "'person'" in meta["names"]  # what the detector reads
    assert "onnx.infer" not in meta and meta["streetwatch.transforms"] == "dequantize_dynamic"


def test_first_layer_is_exact(int8_320, dequantized_320, coco128):
    """A letterboxed image quantizes losslessly (k/255), so layer 0 isolates the weight arithmetic."""
    fp32, _ = dequantized_320
    probes = []
    for model in (int8_320, fp32):
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        probe.graph.output.append(
            onnx.helper.make_tensor_value_info(FIRST_ACTIVATION, onnx.TensorProto.FLOAT, None)
        )
        probes.append(session(probe))
    tensor = letterbox(read_image(coco128, IMAGES[0]), 320)[0][None]
    a, b = (np.asarray(s.run([FIRST_ACTIVATION], {"images": tensor})[0]) for s in probes)
    assert np.abs(a - b).max() < 1e-4


def test_raw_outputs_close_to_int8(int8_320, dequantized_320, coco128):
    fp32, _ = dequantized_320
    tensors = [letterbox(read_image(coco128, stem), 320)[0][None] for stem in IMAGES[:3]]
    dev = compare_outputs(int8_320, fp32, tensors)
    # int8 activations are rounded to 8 bits per layer, so differences are rounding noise, not zero: class
    # scores move by at most a few hundredths, boxes of confident anchors by about a pixel of the 320 input.
    assert dev.confident_anchors >= 20
    assert dev.max_abs_scores < 0.15
    assert dev.median_abs_box_confident < 0.5
    assert dev.max_abs_box_confident < 4.0
    out = run(session(fp32), tensors[0])
    assert out.shape == (1, 84, 2100) and np.isfinite(out).all()


def test_refuses_a_float_graph(dequantized_320):
    fp32, _ = dequantized_320
    with pytest.raises(ToolingError, match="not a dynamically quantized model"):
        dequantize_dynamic(fp32)


def _float_model() -> onnx.ModelProto:
    """Conv + bias -> Reshape -> MatMul + bias: both op kinds quantize_dynamic rewrites."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([1, 256], np.int64), "flat"),
        numpy_helper.from_array(rng.normal(0, 0.1, (256, 10)).astype(np.float32), "m"),
        numpy_helper.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "mb"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "flat"], ["r"], name="/flat"),
        helper.make_node("MatMul", ["r", "m"], ["mm"], name="/fc/MatMul"),
        helper.make_node("Add", ["mm", "mb"], ["y"], name="/fc/Add"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("per_channel", [False, True])
def test_matmul_integer_and_per_channel_weights(tmp_path, per_channel):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    original = _float_model()
    onnx.save(original, str(tmp_path / "f.onnx"))
    quantize_dynamic(
        str(tmp_path / "f.onnx"),
        str(tmp_path / "q.onnx"),
        per_channel=per_channel,
        weight_type=QuantType.QUInt8,
    )
    quantized = onnx.load(str(tmp_path / "q.onnx"))
    assert {"ConvInteger", "MatMulInteger"} <= {n.op_type for n in quantized.graph.node}
    fp32, stats = dequantize_dynamic(quantized)
    assert (stats.convs, stats.matmuls, stats.biases_folded) == (1, 1, 1)
    assert [n.op_type for n in fp32.graph.node] == ["Conv", "Reshape", "MatMul", "Add"]
    weights = {t.name: numpy_helper.to_array(t) for t in fp32.graph.initializer}
    w_orig = numpy_helper.to_array(original.graph.initializer[0])
    w_back = next(v for k, v in weights.items() if v.shape == w_orig.shape)
    assert np.abs(w_back - w_orig).max() <= np.abs(w_orig).max() / 100  # within uint8 rounding of the weights
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)
    expected = run(session(original), x)
    np.testing.assert_allclose(run(session(fp32), x), expected, atol=0.05 * np.abs(expected).max())

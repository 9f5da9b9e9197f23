"""Dynamic batch on the dequantized 320 model: a batch of real images gives exactly the single-image outputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge_agent.config import ModelConfig
from edge_agent.perception.detector.onnx_detector import OnnxDetector
from edge_agent.perception.detector.preprocess import letterbox_batch
from models.tooling import ToolingError
from models.tooling.batch import batch_is_dynamic, make_batch_dynamic, max_batch_deviation
from models.tooling.graph import run, save_model, session
from tests.models.conftest import IMAGES, read_image


@pytest.fixture(scope="module")
def dynamic_320(dequantized_320):
    return make_batch_dynamic(dequantized_320[0])


def test_batch_of_three_equals_three_single_runs(dynamic_320, coco128):
    model, rewritten = dynamic_320
    assert batch_is_dynamic(model)
    assert "/model.23/dfl/Reshape" in rewritten and "/model.10/m/m.0/attn/Reshape" in rewritten
    batch, _ = letterbox_batch([read_image(coco128, s) for s in IMAGES[:3]], 320)
    sess = session(model)
    together = run(sess, batch)
    assert together.shape == (3, 84, 2100)
    singles = np.concatenate([run(sess, batch[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, singles, rtol=1e-5, atol=1e-4)
    assert max_batch_deviation(model, batch) <= 1e-4


def test_detector_batches_the_dynamic_model(dynamic_320, coco128, tmp_path):
    path = tmp_path / "dyn.onnx"
    save_model(dynamic_320[0], path)
    det = OnnxDetector(ModelConfig(path=path, backend="onnxruntime", conf_threshold=0.25))
    assert det.dynamic_batch and det.input_size == 320
    images = [read_image(coco128, s) for s in IMAGES[:3]]
    together = det.detect(images)
    for image, batched in zip(images, together, strict=True):
        single = det.detect([image])[0]
        np.testing.assert_allclose(batched.xyxy, single.xyxy, atol=1e-3)
        np.testing.assert_array_equal(batched.class_ids, single.class_ids)


def test_refuses_dynamic_int8(int8_320):
    with pytest.raises(ToolingError, match="dequantize it first"):
        make_batch_dynamic(int8_320)


def _reshape_model(target: list[int]) -> onnx.ModelProto:
    shape = helper.make_tensor("shape", TensorProto.INT64, [len(target)], target)
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_reshape_that_folds_the_batch_is_refused():
    with pytest.raises(ToolingError, match="folds the batch"):
        make_batch_dynamic(_reshape_model([4, 4]))
    model, rewritten = make_batch_dynamic(_reshape_model([1, 16]))
    assert rewritten == ["r"]
    out = run(session(model), np.ones((2, 4, 2, 2), np.float32))
    assert out.shape == (2, 16)

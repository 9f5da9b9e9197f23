"""A real ONNX detector that loads, has the YOLO layout and COCO class names, and is very slow: the stall case of
remote model updates. Built at test time with the ``onnx`` helpers (no weights are committed).

Its output is all zeros (no detections); its time goes into a ``Loop`` of 1024x1024 matrix products seeded from
the input image, so onnxruntime cannot fold it away at load time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIDE = 640
ROWS = 84  # 4 box rows + 80 COCO classes
ANCHORS = 8400
N = 1024


def build_stall_model(path: Path, names: str, iterations: int) -> Path:
    """Write the model to ``path``; each inference runs ``iterations`` products of two 1024x1024 matrices."""
    rng = np.random.default_rng(7)
    weight = numpy_helper.from_array((rng.standard_normal((N, N)) / np.sqrt(N)).astype(np.float32), "W")
    consts = [
        numpy_helper.from_array(np.array([N * N], dtype=np.int64), "count"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
        numpy_helper.from_array(np.array([N, N], dtype=np.int64), "square"),
        numpy_helper.from_array(np.array(iterations, dtype=np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "go"),
        numpy_helper.from_array(np.array([1, ROWS, ANCHORS], dtype=np.int64), "out_shape"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "nothing"),
    ]
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["x_in", "W"], ["product"]),
            helper.make_node("Tanh", ["product"], ["x_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "spin",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [N, N]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [N, N]),
        ],
    )
    nodes = [
        helper.make_node("Reshape", ["images", "flat"], ["pixels"]),
        helper.make_node("Slice", ["pixels", "zero", "count"], ["seed_flat"]),
        helper.make_node("Reshape", ["seed_flat", "square"], ["seed"]),
        helper.make_node("Loop", ["trips", "go", "seed"], ["spun"], body=body),
        helper.make_node("ReduceSum", ["spun"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "nothing"], ["zero_scalar"]),
        helper.make_node("Expand", ["zero_scalar", "out_shape"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "stall",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, ROWS, ANCHORS])],
        initializer=[weight, *consts],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": names, "imgsz": f"[{SIDE}, {SIDE}]"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path

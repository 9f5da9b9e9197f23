"""The shipped dynamic-int8 YOLO11n dequantized to fp32 with a dynamic batch: the graph the OpenVINO backend
deploys (scripts/quantize_openvino.py makes the same file). Built in a test's temporary folder; needs onnx."""

from __future__ import annotations

from pathlib import Path

from tests.paths import MODEL_640


def make_fp32_dynbatch(folder: Path) -> Path:
    from models.tooling.batch import make_batch_dynamic
    from models.tooling.dequantize import dequantize_dynamic
    from models.tooling.graph import finalize, load_model, save_model

    fp32, _ = dequantize_dynamic(load_model(MODEL_640))
    dyn, _ = make_batch_dynamic(fp32)
    path = folder / "yolo11n_coco_640_fp32_dynbatch.onnx"
    save_model(finalize(dyn, "batch-dynamic"), path)
    return path

"""OpenVINO models for the x86 edge: the fp32 graph as OpenVINO IR, and NNCF post-training INT8 of it.

Why NNCF rather than the onnxruntime QDQ of ``qdq.py``: NNCF's default recipe (per-channel symmetric weights,
per-tensor activations, fast bias correction) with the Detect head's box decode kept in float loses far less
accuracy on YOLO than min-max QDQ (measured in docs/benchmarks.md), and OpenVINO runs the result with its own
INT8 kernels. The IR keeps the Ultralytics metadata (names, imgsz) in its ``rt_info`` under ``framework``,
where OpenVINO's ONNX reader puts it, so the detector reads both formats the same way.

Tooling only (needs ``nncf``, the ``openvino-tools`` extra); never imported by the agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edge_agent.perception.detector.preprocess import letterbox
from edge_agent.types import Image
from models.tooling import ToolingError

Log = Callable[[str], None]

# The Detect head (``/model.23`` in YOLO11n/YOLOv8n exports): its box decode (DFL softmax, anchor
# arithmetic) and the class sigmoid must stay float or boxes lose whole pixels.
HEAD_PATTERNS = (
    r".*/model\.\d+/dfl/.*",
    r".*/model\.\d+/Add.*",
    r".*/model\.\d+/Sub.*",
    r".*/model\.\d+/Mul.*",
    r".*/model\.\d+/Div.*",
)
# ``last-conv``: also the head's final 1x1 convs (box distribution and class logits), like qdq.py's
# decode+last-conv scope; they are a sliver of the compute and carry most of the quantization error.
LAST_CONV_PATTERNS = (
    r".*/model\.\d+/cv2\.\d+/cv2\.\d+\.2/Conv",
    r".*/model\.\d+/cv3\.\d+/cv3\.\d+\.2/Conv",
)


def _head_index(names: Sequence[str]) -> str | None:
    """The Detect head's module index: the largest ``model.N`` in the node names."""
    best: int | None = None
    for n in names:
        for part in n.split("/"):
            if part.startswith("model.") and part[6:].isdigit():
                idx = int(part[6:])
                best = idx if best is None else max(best, idx)
    return None if best is None else str(best)


def quantize_ir(
    fp32_onnx: Path,
    out_xml: Path,
    frames: Sequence[Image],
    *,
    preset: str = "mixed",
    last_conv: bool = True,
    first_conv: bool = False,
    fast_bias_correction: bool = True,
    log: Log = print,
) -> Path:
    """Quantize ``fp32_onnx`` with NNCF on ``frames`` (letterboxed like the detector) and save INT8 IR."""
    try:
        import nncf
        import openvino as ov
    except ImportError as err:
        raise ToolingError(
            f"{err.name} is missing: pip install -e '.[openvino-tools]' (openvino + nncf)"
        ) from err
    core = ov.Core()
    model = core.read_model(str(fp32_onnx))
    size = int(model.inputs[0].get_partial_shape()[2].get_length())
    head = _head_index([op.get_friendly_name() for op in model.get_ops()])
    if head is None:
        raise ToolingError(f"{fp32_onnx}: no '/model.N/' node names: not an Ultralytics YOLO export?")
    scope = HEAD_PATTERNS + (LAST_CONV_PATTERNS if last_conv else ())
    patterns = [p.replace(r"model\.\d+", f"model\\.{head}", 1) for p in scope]
    if first_conv:  # the stem conv sees raw pixels; keeping it float is cheap insurance
        patterns.append(r".*/model\.0/conv/Conv")
    log(f"  NNCF {nncf.__version__}: {len(frames)} calibration frames, head model.{head} kept in float")
    tensors = [letterbox(img, size)[0][None] for img in frames]
    dataset = nncf.Dataset(tensors)
    quantized = nncf.quantize(
        model,
        dataset,
        preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(tensors),
        fast_bias_correction=fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(patterns=patterns, types=["Sigmoid"], validate=False),
    )
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return out_xml


def save_fp32_ir(fp32_onnx: Path, out_xml: Path) -> Path:
    """The fp32 ONNX graph as IR (same numbers; loads faster and needs no ONNX reader at run time)."""
    import openvino as ov

    model = ov.Core().read_model(str(fp32_onnx))
    ov.save_model(model, str(out_xml), compress_to_fp16=False)
    return out_xml


def random_check(xml: Path) -> float:
    """Run the IR once on a grey image: the smallest proof that it loads and produces finite numbers."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU")
    size = int(compiled.inputs[0].get_partial_shape()[2].get_length())
    grey = np.full((1, 3, size, size), 114 / 255, np.float32)
    out = compiled(grey)[0]
    return float(np.abs(out).max())

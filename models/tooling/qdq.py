"""Static INT8 quantization (QDQ, per-channel weights) of an fp32 YOLO graph with onnxruntime.

Unlike the dynamic int8 models, whose activations are re-scaled at run time by ``DynamicQuantizeLinear``,
a static model carries fixed activation ranges measured on calibration frames, so the CPU runs fused
QLinearConv kernels without per-frame range scans. The risk is the Detect head: the last layers mix values
of very different ranges (box distances in pixels, DFL bin logits, class logits, 0-1 scores) into one
output, and a single 8-bit scale across them destroys box precision. Ultralytics therefore keeps the head's
arithmetic in float when it exports INT8 (its OpenVINO export ignores the head's Add/Sub/Mul/Div, DFL and
Sigmoid). :class:`HeadScope` names the choices measured by ``scripts/quantize_model.py --compare-scopes``.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import onnx
from onnx import version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from models.tooling import ToolingError
from models.tooling.graph import GraphIndex, ai_onnx_opset, finalize, load_model, metadata, set_metadata

QDQ_MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (the ``axis`` attribute) needs opset 13
_HEAD_RE = re.compile(r"^(/model\.\d+/)")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class HeadScope(StrEnum):
    """Which part of the Detect head stays in float."""

    NONE = "none"  # quantize every supported op, head included
    DECODE = "decode"  # after the head's last convs: concat/split, DFL, box decode, sigmoid, output concat
    DECODE_LAST_CONV = "decode+last-conv"  # also the final 1x1 convs that emit box and class logits
    HEAD = "head"  # every non-Conv op of the head (Ultralytics' OpenVINO INT8 scope), plus the decode


@dataclass(frozen=True, slots=True)
class QdqSettings:
    """Everything that decides the quantized graph, recorded in its metadata for reproducibility.

    Defaults follow onnxruntime's CPU guidance for x86 with VNNI (uint8 activations, int8 weights, full
    range); ``reduce_range`` (7-bit weights) is the fallback for AVX2-only CPUs that saturate.
    """

    head_scope: HeadScope = HeadScope.DECODE_LAST_CONV
    per_channel: bool = True
    reduce_range: bool = False
    activation_type: QuantType = QuantType.QUInt8
    weight_type: QuantType = QuantType.QInt8
    exclude_patterns: tuple[str, ...] = ()  # extra node-name regexes kept in float (re.search)

    def describe(self) -> str:
        extra = f", exclude={list(self.exclude_patterns)}" if self.exclude_patterns else ""
        return (
            f"QDQ, head_scope={self.head_scope.value}, per_channel={self.per_channel}, "
            f"calibration=minmax, activations={self.activation_type.name}, "
            f"weights={self.weight_type.name}, reduce_range={self.reduce_range}{extra}"
        )


def head_prefix(model: onnx.ModelProto) -> str:
    """Node-name prefix of the module that writes the graph output (``/model.23/`` for YOLO11n)."""
    index = GraphIndex.build(model.graph)
    producer = index.producer.get(model.graph.output[0].name)
    match = _HEAD_RE.match(producer.name) if producer is not None else None
    if match is None:
        raise ToolingError(
            "cannot locate the Detect head: the output's producer is not named like an Ultralytics export "
            "('/model.N/...'); use --head-scope none"
        )
    return match.group(1)


def excluded_nodes(model: onnx.ModelProto, scope: HeadScope) -> list[str]:
    """Names of the nodes kept in float for ``scope``.

    Structure, not names, decides "after the last convs": a head node is part of a branch when it feeds one
    of the head's weighted convs (the DFL conv, a fixed 0..15 ramp, does not count); the rest is the decode.
    """
    if scope is HeadScope.NONE:
        return []
    prefix = head_prefix(model)
    head = [n for n in model.graph.node if n.name.startswith(prefix)]
    index = GraphIndex.build(model.graph)
    convs = [n for n in head if n.op_type == "Conv" and "/dfl/" not in n.name]
    if not convs:
        raise ToolingError(f"the head {prefix} has no Conv: not an Ultralytics Detect head")
    head_ids = {id(n) for n in head}
    branch: dict[int, onnx.NodeProto] = {}
    stack = list(convs)
    while stack:
        node = stack.pop()
        if id(node) in branch:
            continue
        branch[id(node)] = node
        for name in node.input:
            producer = index.producer.get(name)
            if producer is not None and id(producer) in head_ids:
                stack.append(producer)
    decode = [n for n in head if id(n) not in branch]
    decode_ids = {id(n) for n in decode}
    chosen = list(decode)
    if scope is HeadScope.DECODE_LAST_CONV:
        chosen += [c for c in convs if any(id(u) in decode_ids for u in index.consumers.get(c.output[0], []))]
    elif scope is HeadScope.HEAD:
        chosen += [n for n in head if id(n) in branch and n.op_type != "Conv"]
    return [n.name for n in chosen]


def ensure_qdq_opset(model: onnx.ModelProto, log: Log = _stderr) -> onnx.ModelProto:
    """Convert to opset 13 when older: per-channel DequantizeLinear does not exist before it."""
    opset = ai_onnx_opset(model)
    if opset >= QDQ_MIN_OPSET:
        return model
    log(f"  opset {opset} -> {QDQ_MIN_OPSET} (per-channel QDQ needs it)")
    try:
        converted = version_converter.convert_version(model, QDQ_MIN_OPSET)
    except Exception as err:  # the converter raises bare RuntimeErrors from C++
        raise ToolingError(f"cannot convert the model from opset {opset} to {QDQ_MIN_OPSET}: {err}") from err
    for prop in model.metadata_props:  # the converter keeps the graph, not always the metadata
        set_metadata(converted, prop.key, prop.value)
    return finalize(converted, f"opset{QDQ_MIN_OPSET}")


def quantize_qdq(
    fp32: onnx.ModelProto,
    out_path: Path,
    reader: CalibrationDataReader,
    settings: QdqSettings,
    *,
    cache_path: Path | None = None,
    log: Log = _stderr,
) -> list[str]:
    """Quantize ``fp32`` (already at a QDQ-capable opset) into ``out_path``; returns the nodes kept float.

    ``cache_path`` stores the calibrated tensor ranges: scopes differ only in which nodes are excluded, so
    comparing them needs one calibration, not one per scope.
    """
    if ai_onnx_opset(fp32) < QDQ_MIN_OPSET:
        raise ToolingError(f"opset {ai_onnx_opset(fp32)} < {QDQ_MIN_OPSET}: call ensure_qdq_opset first")
    exclude = excluded_nodes(fp32, settings.head_scope)
    for pattern in settings.exclude_patterns:
        regex = re.compile(pattern)
        hits = [n.name for n in fp32.graph.node if regex.search(n.name) and n.name not in exclude]
        if not hits and not any(regex.search(n) for n in exclude):
            raise ToolingError(f"--exclude {pattern!r} matches no node")
        exclude += hits
    log(f"  quantize: {settings.describe()}; {len(exclude)} head nodes kept in float")
    # MinMax keeps only a per-tensor min/max per frame. The histogram methods (percentile, entropy) keep every
    # activation of every frame in memory, about 0.28 GB per 640 frame for YOLO11n (18 GB for 64 frames), so
    # they are not offered. CalibMaxIntermediateOutputs is not used either: in onnxruntime 1.31 it discards
    # each full chunk of frames without computing its ranges.
    extra: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="streetwatch-qdq-") as tmp:
        src = Path(tmp) / "fp32.onnx"
        onnx.save(fp32, str(src))
        try:
            quantize_static(
                str(src),
                str(out_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=settings.activation_type,
                weight_type=settings.weight_type,
                nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options=extra,
                calibration_cache_path=cache_path,
            )
        except Exception as err:  # onnxruntime raises assorted types for calibration/graph problems
            raise ToolingError(f"quantize_static failed: {err}") from err
    stamp_metadata(out_path, fp32, settings)
    return exclude


def stamp_metadata(path: Path, source: onnx.ModelProto, settings: QdqSettings) -> None:
    """Carry the Ultralytics metadata (class names, imgsz: the detector reads them) and record the recipe."""
    model = load_model(path)
    for key, value in metadata(source).items():
        set_metadata(model, key, value)
    set_metadata(model, "streetwatch.quantization", settings.describe())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def describe_exclusions(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > limit else shown or "none"

"""Turn an onnxruntime *dynamic* int8 model back into an fp32 graph with the same (dequantized) weights.

Why: the only YOLO weights on the development machines are ``quantize_dynamic`` outputs (ConvInteger with
uint8 weights); no fp32 export exists offline. Static INT8 quantization and a dynamic batch axis both need a
float graph, so this recovers one. The weights are exactly ``(w_uint8 - zero_point) * scale``, the values the
int8 model already computes with, so the fp32 graph is the int8 model minus activation quantization (its
outputs differ from the int8 model's only by that rounding), not the original Ultralytics fp32 model.

The pattern ``quantize_dynamic`` writes for every weighted Conv/MatMul is::

    DynamicQuantizeLinear(x) -> x_q, x_scale, x_zp
    Mul(x_scale, w_scale) -> s
    ConvInteger(x_q, w_q, x_zp, w_zp) | MatMulInteger(...) -> y_int32
    Cast(y_int32, to=FLOAT) -> y;  Mul(y, s) -> out;  [Add(out, bias)]

and becomes ``Conv(x, W[, B])`` / ``MatMul(x, W)`` (+ the bias ``Add`` kept for MatMul). Anything else raises
:class:`~models.tooling.ToolingError` naming the node, because a half-converted graph would be worse than none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, numpy_helper

from models.tooling import ToolingError
from models.tooling.graph import GraphIndex, attribute, drop_metadata, finalize, prune

INTEGER_OPS = ("ConvInteger", "MatMulInteger")
CONV_ATTRIBUTES = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


@dataclass(frozen=True, slots=True)
class DequantizeStats:
    """What the rewrite did, for the console report and the tests."""

    convs: int
    matmuls: int
    biases_folded: int
    nodes_before: int
    nodes_after: int


@dataclass(frozen=True, slots=True)
class _Match:
    """One matched integer op and the float tensors it is rewritten to."""

    remove: tuple[onnx.NodeProto, ...]
    anchor: onnx.NodeProto  # the last removed node: the float op takes its place in topological order
    new_node: onnx.NodeProto
    new_inits: tuple[TensorProto, ...]
    bias_folded: bool


def _dequantized_weight(
    w_q: npt.NDArray[np.generic],
    zero_point: npt.NDArray[np.generic],
    scale: npt.NDArray[np.generic],
    conv: bool,
) -> npt.NDArray[np.float32]:
    """``(w_q - zp) * scale`` with per-tensor or per-channel parameters.

    Per-channel parameters run along the output channels: axis 0 of a Conv weight [M, C/g, kH, kW], the last
    axis of a MatMul weight [K, N].
    """
    w = w_q.astype(np.float64)
    zp, sc = zero_point.astype(np.float64), scale.astype(np.float64)
    if conv and zp.ndim == 1 and zp.size > 1:
        zp = zp.reshape(-1, *([1] * (w.ndim - 1)))
    if conv and sc.ndim == 1 and sc.size > 1:
        sc = sc.reshape(-1, *([1] * (w.ndim - 1)))
    return ((w - zp) * sc).astype(np.float32)


def _conv_bias(
    index: GraphIndex, name: str, channels: int
) -> tuple[npt.NDArray[np.float32], str | None] | None:
    """The per-channel bias behind an ``Add`` operand, and the name of a [C] initializer holding it if any.

    Only a value that broadcasts as [1, C, 1, 1] over NCHW is a bias: a constant of that shape (or [C, 1, 1]),
    or a Reshape of a constant to it (what ``quantize_dynamic`` writes). A bare [C] constant would broadcast
    over the width axis instead, so it is not folded. None means "not a foldable bias"; the Add then stays.
    """
    value = index.constant(name)
    source: str | None = None
    if value is not None:
        if value.shape not in ((1, channels, 1, 1), (channels, 1, 1)):
            return None
    else:
        producer = index.producer.get(name)
        if producer is None or producer.op_type != "Reshape":
            return None
        value = index.constant(producer.input[0])
        shape = index.constant(producer.input[1])
        dims = [] if shape is None else [int(v) for v in shape.ravel()]
        if (
            value is None
            or len(dims) != 4
            or dims[0] != 1
            or dims[2:] != [1, 1]
            or dims[1] not in (channels, -1)
        ):
            return None
        if producer.input[0] in index.initializers and value.shape == (channels,):
            source = producer.input[0]  # reuse the original bias tensor (and its name)
    if value.size != channels or value.dtype != np.float32:
        return None
    return np.asarray(value, dtype=np.float32).reshape(channels), source


def _match(index: GraphIndex, node: onnx.NodeProto, used_names: set[str]) -> _Match:
    """Match the full dynamic-quantization pattern around one ConvInteger/MatMulInteger, or raise."""
    where = f"{node.op_type} {node.name!r}"
    if len(node.input) < 2:
        raise ToolingError(f"{where}: expected at least two inputs")
    a_q, w_q_name = node.input[0], node.input[1]
    a_zp = node.input[2] if len(node.input) > 2 else ""
    w_zp_name = node.input[3] if len(node.input) > 3 else ""
    dql = index.producer.get(a_q)
    if dql is None or dql.op_type != "DynamicQuantizeLinear" or dql.output[0] != a_q:
        raise ToolingError(f"{where}: its activation does not come from a DynamicQuantizeLinear")
    if a_zp and a_zp != dql.output[2]:
        raise ToolingError(f"{where}: activation zero point is not the DynamicQuantizeLinear's")
    w_q = index.constant(w_q_name)
    if w_q is None:
        raise ToolingError(f"{where}: weight {w_q_name!r} is not a constant, cannot dequantize it")
    w_zp = index.constant(w_zp_name) if w_zp_name else np.zeros((), dtype=w_q.dtype)
    if w_zp is None:
        raise ToolingError(f"{where}: weight zero point {w_zp_name!r} is not a constant")

    cast = index.only_consumer(node.output[0])
    if cast is None or cast.op_type != "Cast" or attribute(cast, "to") != TensorProto.FLOAT:
        raise ToolingError(f"{where}: its int32 output is not only cast to float")
    out_mul = index.only_consumer(cast.output[0])
    if out_mul is None or out_mul.op_type != "Mul":
        raise ToolingError(f"{where}: the cast output is not only scaled by a Mul")
    scales = next(i for i in out_mul.input if i != cast.output[0])
    scales_mul = index.producer.get(scales)
    if scales_mul is None or scales_mul.op_type != "Mul" or dql.output[1] not in scales_mul.input:
        raise ToolingError(f"{where}: output scale is not activation_scale * weight_scale")
    w_scale_name = next(i for i in scales_mul.input if i != dql.output[1])
    w_scale = index.constant(w_scale_name)
    if w_scale is None:
        raise ToolingError(f"{where}: weight scale {w_scale_name!r} is not a constant")

    conv = node.op_type == "ConvInteger"
    weight = _dequantized_weight(w_q, w_zp, w_scale, conv)
    base = node.name.removesuffix("_quant") or f"{node.op_type}_{len(used_names)}"
    w_name = _unique(w_q_name.removesuffix("_quantized"), used_names)
    inits = [numpy_helper.from_array(weight, w_name)]
    remove = [node, cast, out_mul]
    if index.only_consumer(scales) is out_mul:
        remove.append(scales_mul)
    inputs = [dql.input[0], w_name]
    output, anchor, folded = out_mul.output[0], out_mul, False
    add = index.only_consumer(out_mul.output[0])
    if conv and add is not None and add.op_type == "Add":
        other = next(i for i in add.input if i != out_mul.output[0])
        bias = _conv_bias(index, other, weight.shape[0])
        if bias is not None:
            vector, b_name = bias
            if b_name is None:
                b_name = _unique(f"{w_name.removesuffix('.weight')}.bias", used_names)
                inits.append(numpy_helper.from_array(vector, b_name))
            inputs.append(b_name)
            remove.append(add)
            output, anchor, folded = add.output[0], add, True
    if conv:
        new = onnx.helper.make_node("Conv", inputs, [output], name=base)
        new.attribute.extend(a for a in node.attribute if a.name in CONV_ATTRIBUTES)  # same meaning in Conv
    else:
        new = onnx.helper.make_node("MatMul", inputs, [output], name=base)
    return _Match(tuple(remove), anchor, new, tuple(inits), folded)


def _unique(name: str, used: set[str]) -> str:
    candidate, k = name, 1
    while candidate in used:
        candidate, k = f"{name}_{k}", k + 1
    used.add(candidate)
    return candidate


def dequantize_dynamic(model: onnx.ModelProto) -> tuple[onnx.ModelProto, DequantizeStats]:
    """Return an fp32 copy of a ``quantize_dynamic`` model (the input is not modified) and what changed."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    nodes_before = len(graph.node)
    index = GraphIndex.build(graph)
    used = {t.name for t in graph.initializer} | {v for n in graph.node for v in (*n.input, *n.output)}
    matches = [_match(index, n, used) for n in graph.node if n.op_type in INTEGER_OPS]
    if not matches:
        raise ToolingError("no ConvInteger/MatMulInteger found: this is not a dynamically quantized model")

    removed = {id(n) for m in matches for n in m.remove}
    replacement = {id(m.anchor): m.new_node for m in matches}
    new_nodes = [
        replacement.get(id(n), n) for n in graph.node if id(n) not in removed or id(n) in replacement
    ]
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(t for m in matches for t in m.new_inits)
    prune(graph)  # DynamicQuantizeLinear, scale Muls and bias Reshapes that nothing reads any more

    leftovers = [
        f"{n.op_type} {n.name!r}" for n in graph.node if n.op_type in (*INTEGER_OPS, "DynamicQuantizeLinear")
    ]
    if leftovers:
        raise ToolingError(f"quantized nodes left after the rewrite: {', '.join(leftovers[:5])}")
    drop_metadata(out, "onnx.infer")  # "onnxruntime.quant": no longer true of this graph
    result = finalize(out, "dequantize_dynamic")
    convs = sum(1 for m in matches if m.new_node.op_type == "Conv")
    stats = DequantizeStats(
        convs=convs,
        matmuls=len(matches) - convs,
        biases_folded=sum(1 for m in matches if m.bias_folded),
        nodes_before=nodes_before,
        nodes_after=len(result.graph.node),
    )
    return result, stats

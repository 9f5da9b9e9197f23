"""Make the batch axis of an fp32 YOLO graph symbolic, so one ``session.run`` serves several cameras.

Ultralytics' fixed-batch exports hard-code the batch in more than the I/O shapes: every ``Reshape`` carries
a constant target shape such as ``[1, 144, -1]`` (head) or ``[1, 2, 128, 400]`` (C2PSA attention). Setting
the input's dim 0 to ``batch`` is not enough; each such constant is rewritten so that its leading ``1``
becomes ``0`` ("copy the input's dim 0", valid while ``allowzero`` is 0). A Reshape is only rewritten when
its input's dim 0 is the batch (propagated from the graph input through the ops below); anything that would
mix the batch with other axes is refused rather than guessed, and :func:`max_batch_deviation` proves the
result on real frames.

A dynamically quantized graph is refused: ``DynamicQuantizeLinear`` picks one scale per run over the whole
batch, so a frame's detections would depend on the other frames in its batch. Dequantize it first.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from models.tooling import ToolingError
from models.tooling.graph import GraphIndex, attribute, finalize, int_attribute, prune, run, session

BATCH_DIM = "batch"
# Ops that may work along the batch axis, depending on their axis/axes; everything else keeps dim 0.
_AXIS_OPS = {"Concat", "Split", "Slice", "Softmax", "Gather", "Squeeze", "Unsqueeze", "Flatten"}
_SHAPE_CONSTANT_OPS = {"Expand", "Tile", "ConstantOfShape"}


def _set_dim0(value_info: onnx.ValueInfoProto, name: str) -> None:
    dims = value_info.type.tensor_type.shape.dim
    if not dims:
        raise ToolingError(f"{value_info.name}: no shape, cannot make its batch axis dynamic")
    if dims[0].HasField("dim_value") and dims[0].dim_value != 1:
        raise ToolingError(f"{value_info.name}: batch is {dims[0].dim_value}; only a batch of 1 is rewritten")
    dims[0].Clear()
    dims[0].dim_param = name


def _axes_touch_batch(node: onnx.NodeProto, index: GraphIndex, rank: int | None) -> bool:
    """Whether an axis-taking op works on axis 0 (the batch) of its first input; unknown counts as yes."""
    defaults = {"Split": 0, "Gather": 0, "Flatten": 1, "Softmax": -1}
    axes: list[int] | None = None
    attr_axes, attr_axis = attribute(node, "axes"), attribute(node, "axis", defaults.get(node.op_type))
    if isinstance(attr_axes, list):
        axes = [int(a) for a in attr_axes]
    elif node.op_type in ("Slice", "Squeeze", "Unsqueeze"):
        pos = 3 if node.op_type == "Slice" else 1
        name = node.input[pos] if len(node.input) > pos else ""
        value = index.constant(name) if name else None
        if value is None:
            return True  # computed or absent axes (Slice over every axis, Squeeze of all 1-dims)
        axes = [int(v) for v in value.ravel()]
    elif isinstance(attr_axis, int):
        if node.op_type == "Flatten":
            return attr_axis == 0 or (rank is not None and attr_axis == -rank)
        axes = [attr_axis]
    if axes is None:
        return True
    if node.op_type == "Unsqueeze":
        return any(a == 0 or (rank is not None and a == -(rank + len(axes))) for a in axes)
    return any(a == 0 or (rank is not None and a == -rank) or (rank is None and a < 0) for a in axes)


def _has_input(node: onnx.NodeProto, position: int) -> bool:
    return len(node.input) > position and bool(node.input[position])


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every tensor shape inference can tell, to resolve negative axes."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {
        vi.name: len(vi.type.tensor_type.shape.dim) for vi in infos if vi.type.tensor_type.HasField("shape")
    }


def make_batch_dynamic(
    model: onnx.ModelProto, dim_name: str = BATCH_DIM
) -> tuple[onnx.ModelProto, list[str]]:
    """Return a copy whose inputs/outputs have a symbolic dim 0 and the names of the Reshapes rewritten."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    quantized = [
        n.name for n in graph.node if n.op_type in ("DynamicQuantizeLinear", "ConvInteger", "MatMulInteger")
    ]
    if quantized:
        raise ToolingError(
            "the graph is dynamically quantized (e.g. "
            f"{quantized[0]!r}): its activation scale is computed over the whole batch, so batched results "
            "would differ from single-image ones; dequantize it first"
        )
    index = GraphIndex.build(graph)
    ranks = _ranks(model)
    init_names = {t.name for t in graph.initializer}
    batched = {i.name for i in graph.input if i.name not in init_names}
    rewritten: list[str] = []
    new_inits: dict[str, str] = {}  # original shape constant -> rewritten copy (shared by its users)
    for node in graph.node:  # ONNX requires topological order, so inputs are classified before use
        if not any(i in batched for i in node.input if i):
            continue
        where = f"{node.op_type} {node.name!r}"
        if node.op_type == "Reshape":
            shape = index.constant(node.input[1])
            if shape is None:
                raise ToolingError(f"{where}: computed target shape; cannot tell how it uses the batch")
            dims = [int(v) for v in shape.ravel()]
            if not dims or dims[0] not in (0, 1, -1):
                raise ToolingError(f"{where}: target shape {dims} folds the batch into another axis")
            if dims[0] == 1:
                if int_attribute(node, "allowzero", 0) == 1:
                    if 0 in dims:
                        raise ToolingError(f"{where}: allowzero=1 with a literal 0 in {dims}")
                    for attr in node.attribute:
                        if attr.name == "allowzero":
                            attr.i = 0
                key = node.input[1]
                if key not in new_inits:
                    new_inits[key] = f"{key}_dynbatch"
                    fixed = np.array([0, *dims[1:]], dtype=np.int64)
                    graph.initializer.append(numpy_helper.from_array(fixed, new_inits[key]))
                node.input[1] = new_inits[key]
                rewritten.append(node.name)
        elif node.op_type == "Transpose":
            perm = attribute(node, "perm")
            if not isinstance(perm, list) or perm[0] != 0:
                raise ToolingError(f"{where}: perm {perm} moves the batch axis")
        elif node.op_type in _AXIS_OPS and _axes_touch_batch(node, index, ranks.get(node.input[0])):
            raise ToolingError(f"{where}: works along axis 0, the batch")
        elif node.op_type in _SHAPE_CONSTANT_OPS or (node.op_type == "Resize" and _has_input(node, 3)):
            raise ToolingError(f"{where}: takes an explicit output shape, which would pin the batch")
        batched.update(o for o in node.output if o)

    for vi in graph.input:
        if vi.name not in init_names:
            _set_dim0(vi, dim_name)
    for vi in graph.output:
        if vi.type.tensor_type.shape.dim:  # an output without a declared shape is left to inference
            _set_dim0(vi, dim_name)
    prune(graph)  # the original batch-1 shape constants, now unused
    return finalize(out, "dynamic_batch"), rewritten


def max_batch_deviation(model: onnx.ModelProto, batch: npt.NDArray[np.float32], threads: int = 1) -> float:
    """Largest |batched - single| over the raw outputs of ``batch`` [B, 3, S, S]: the proof of the rewrite.

    onnxruntime may pick different kernels for different batch sizes, so expect float noise (~1e-4), not 0.
    """
    if batch.ndim != 4 or batch.shape[0] < 2:
        raise ValueError(f"need a batch of at least 2 NCHW images, got {batch.shape}")
    sess = session(model, threads)
    together = run(sess, batch)
    if together.shape[0] != batch.shape[0]:
        raise ToolingError(f"batched output has {together.shape[0]} rows for {batch.shape[0]} images")
    singles = np.concatenate([run(sess, batch[i : i + 1]) for i in range(batch.shape[0])])
    return float(np.abs(together - singles).max())


def input_size(model: onnx.ModelProto) -> int:
    """Square input side from the graph's input shape (the detector reads the same dims)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[2].HasField("dim_value") or dims[2].dim_value != dims[3].dim_value:
        raise ToolingError(f"input {model.graph.input[0].name} is not a fixed square NCHW image")
    return int(dims[2].dim_value)


def batch_is_dynamic(model: onnx.ModelProto) -> bool:
    return not model.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")

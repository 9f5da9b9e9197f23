"""Small ONNX graph helpers shared by the transforms: who produces and consumes a tensor, constants, pruning.

The transforms rewrite graphs by hand instead of through a graph library so that the only new dependency
is ``onnx`` itself; these helpers keep that bookkeeping in one place. Every transform ends with
:func:`finalize`, which re-infers shapes and runs ``onnx.checker`` so a broken rewrite fails here, loudly,
rather than later inside an edge agent.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from models.tooling import ToolingError

TOOL_NAME = "streetwatch.models.tooling"


@dataclass
class GraphIndex:
    """Producer and consumers of every tensor and the graph's constants, for one snapshot of a graph.

    Rebuild it after a rewrite: it is a plain index, not kept in sync with the graph.
    """

    graph: onnx.GraphProto
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=lambda: defaultdict(list))
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)

    @classmethod
    def build(cls, graph: onnx.GraphProto) -> GraphIndex:
        index = cls(graph)
        index.initializers = {t.name: t for t in graph.initializer}
        for node in graph.node:
            for out in node.output:
                if out:
                    index.producer[out] = node
            for inp in node.input:
                if inp:
                    index.consumers[inp].append(node)
        return index

    def constant(self, name: str) -> npt.NDArray[np.generic] | None:
        """Value of an initializer or of a ``Constant`` node's output; None for anything computed."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        """The single node reading ``name``, or None when zero or several nodes (or a graph output) read it."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or name in {o.name for o in self.graph.output}:
            return None
        return users[0]


def attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def int_attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    value = attribute(node, name, default)
    if not isinstance(value, int):
        raise ToolingError(f"{node.op_type} {node.name!r}: attribute {name} is not an integer")
    return value


def ai_onnx_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ToolingError("model has no ai.onnx opset import")


def prune(graph: onnx.GraphProto) -> int:
    """Drop nodes whose outputs reach no graph output, then unused initializers. Returns nodes removed."""
    needed = {o.name for o in graph.output}
    keep: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    removed = len(graph.node) - len(keep)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    used_inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used_inits)
    return removed


def set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def drop_metadata(model: onnx.ModelProto, key: str) -> None:
    keep = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def finalize(model: onnx.ModelProto, transform: str) -> onnx.ModelProto:
    """Re-infer shapes from scratch, record the transform in the metadata and run the full checker.

    Stale ``value_info`` from before a rewrite would describe tensors that changed type or shape (an int32
    ConvInteger output, a batch of 1), so it is dropped and inferred again rather than patched.
    """
    del model.graph.value_info[:]
    model.producer_name = TOOL_NAME
    model.producer_version = "1"
    history = metadata(model).get("streetwatch.transforms")
    set_metadata(model, "streetwatch.transforms", f"{history},{transform}" if history else transform)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(inferred, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ToolingError(f"{transform}: the rewritten graph is invalid: {err}") from err
    return inferred


def save_model(model: onnx.ModelProto, path: Path) -> str:
    """Write atomically (a half-written model must never replace a good one); returns the file's sha256."""
    data = model.SerializeToString()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".part-{path.name}-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


def load_model(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except OSError as err:
        raise ToolingError(f"cannot read ONNX model {path}: {err.strerror or err}") from err
    except Exception as err:  # protobuf raises DecodeError for a file that is not a model
        raise ToolingError(f"{path} is not an ONNX model: {err}") from err


def session(model: onnx.ModelProto | Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with a fixed intra-op thread count, so timings and outputs are comparable."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """First output of a single-input model."""
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: tensor})[0], dtype=np.float32)

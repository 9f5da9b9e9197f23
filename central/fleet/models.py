"""Detector models an admin uploads for remote updates: checked to load, stored by SHA-256, assigned to nodes.

Central refuses a file before any node sees it when onnxruntime cannot load it, when its input/output is not
the YOLO layout the node's ``OnnxDetector`` expects (one ``[B,3,S,S]`` image input, ``[B,4+C,N]`` output), when
its ``names`` metadata disagrees with the class rows, or when one inference on a grey image fails. What it
learns (sha256, input size, classes) is recorded and shown; the node checks the hash again after downloading.

Assigning sends the ``model`` command (``central.fleet.commands``) to each node with the download path; the
command's progress and outcome (ok, refused, failed: rolled back) are the update's record, audited there.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit
from central.db.models import DetectorModelRow
from central.fleet.enrollment import FleetError

log = logging.getLogger(__name__)

MAX_MODEL_BYTES: Final = 512 * 1024 * 1024
NAME_RE: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.onnx$"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    sha256: str
    size: int
    input_width: int
    input_height: int
    classes: list[str]


def inspect_model(data: bytes) -> ModelInfo:
    """Load ``data`` with onnxruntime and check it is a detector the node can run; ``FleetError`` 422 if not."""
    import numpy as np
    import onnxruntime as ort

    if not data:
        raise FleetError(422, "file: empty")
    if len(data) > MAX_MODEL_BYTES:
        raise FleetError(413, f"file: larger than {MAX_MODEL_BYTES} bytes")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise FleetError(422, f"file: onnxruntime cannot load it: {str(err).splitlines()[0][:300]}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise FleetError(422, f"file: expected one image input and an output, got {len(inputs)} inputs")
    in_shape, out_shape = list(inputs[0].shape), list(outputs[0].shape)
    if len(in_shape) != 4 or len(out_shape) != 3:
        raise FleetError(
            422, f"file: expected input [B,3,S,S] and output [B,4+C,N], got {in_shape} {out_shape}"
        )
    height, width = in_shape[2], in_shape[3]
    if not isinstance(height, int) or not isinstance(width, int):
        raise FleetError(422, "file: the input size is dynamic; export the model with a fixed size")
    meta = dict(session.get_modelmeta().custom_metadata_map)
    classes = _names(meta.get("names"))
    rows = out_shape[1] - 4 if isinstance(out_shape[1], int) else None
    if not classes:
        raise FleetError(
            422, "file: no 'names' metadata (export with Ultralytics, which writes the class names)"
        )
    if rows is not None and rows != len(classes):
        raise FleetError(
            422, f"file: output has {rows} class rows but the metadata names {len(classes)} classes"
        )
    grey = np.full((1, 3, height, width), 114 / 255.0, dtype=np.float32)
    try:
        session.run(None, {inputs[0].name: grey})
    except Exception as err:
        raise FleetError(422, f"file: one inference failed: {str(err).splitlines()[0][:300]}") from None
    return ModelInfo(hashlib.sha256(data).hexdigest(), len(data), width, height, classes)


def _names(raw: str | None) -> list[str]:
    """Ultralytics writes ``names`` as a Python dict literal ``{0: 'person', ...}``."""
    if not raw:
        return []
    try:
        parsed: Any = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return []
    if isinstance(parsed, dict):
        return [str(parsed[k]) for k in sorted(parsed)]
    if isinstance(parsed, list):
        return [str(v) for v in parsed]
    return []


def store_model(
    session: Session, models_dir: Path, name: str, data: bytes, *, username: str, now: datetime
) -> tuple[DetectorModelRow, bool]:
    """Check, write (content-addressed) and record a model; (row, created). Audited."""
    info = inspect_model(data)
    row = session.get(DetectorModelRow, info.sha256)
    if row is not None:
        return row, False
    models_dir.mkdir(parents=True, exist_ok=True)
    relative = f"{info.sha256}.onnx"
    tmp = models_dir / f".{relative}.{os.getpid()}.part"
    tmp.write_bytes(data)
    tmp.replace(models_dir / relative)
    row = DetectorModelRow(
        sha256=info.sha256,
        name=name,
        size=info.size,
        input_width=info.input_width,
        input_height=info.input_height,
        classes=info.classes,
        path=relative,
        uploaded_at=now,
        uploaded_by=username,
    )
    session.add(row)
    audit.record(
        session,
        at=now,
        actor=username,
        action="model.upload",
        target=f"model:{info.sha256}",
        details={
            "name": name,
            "size": info.size,
            "input": [info.input_width, info.input_height],
            "classes": len(info.classes),
        },
    )
    log.info("model %s (%s) uploaded by %s", name, info.sha256[:12], username)
    return row, True


def list_models(session: Session) -> list[DetectorModelRow]:
    return list(session.scalars(select(DetectorModelRow).order_by(DetectorModelRow.uploaded_at.desc())))


def model_args(row: DetectorModelRow, *, stall_s: float, watch_s: float) -> dict[str, Any]:
    """The ``model`` command's arguments for ``row`` (validated again by ``CommandCenter.send``)."""
    return {
        "name": row.name,
        "sha256": row.sha256,
        "size": row.size,
        "url": f"/api/v1/models/{row.sha256}/file",
        "stall_s": stall_s,
        "watch_s": watch_s,
    }

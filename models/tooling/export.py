"""Export an Ultralytics ``.pt`` to ONNX: a thin wrapper over ``ultralytics.YOLO(pt).export(format="onnx")``.

Ultralytics (and torch behind it) come only with the ``export`` extra and are imported here lazily, inside the
function: the edge runtime never imports this module, and the rest of ``models.tooling`` works without them.
It cannot run on the offline development machines (no ``.pt`` weights, no torch) and is therefore untested
there; its output is the kind of fp32 graph that :mod:`models.tooling.qdq` and :mod:`models.tooling.batch`
take directly (no dequantize step needed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from models.tooling import ToolingError

EXTRA_HINT = "pip install -e '.[export]'  (pulls ultralytics and torch; a dev tool, never on an edge box)"


def export_onnx(
    weights: str, out: Path, *, imgsz: int = 640, dynamic: bool = False, opset: int | None = None
) -> Path:
    """Export ``weights`` (a ``.pt`` path or an official name such as ``yolo11n.pt``) to ``out``.

    ``dynamic=True`` gives Ultralytics' dynamic axes (batch and, for Ultralytics, also height/width), which
    the detector accepts; for a dynamic *batch* only, export fixed and use ``make_batch_dynamic`` instead.
    """
    try:
        from ultralytics import YOLO
    except ImportError as err:
        raise ToolingError(f"exporting needs Ultralytics: {EXTRA_HINT}") from err
    kwargs: dict[str, object] = {"format": "onnx", "imgsz": imgsz, "dynamic": dynamic}
    if opset is not None:
        kwargs["opset"] = opset
    try:
        produced = Path(str(YOLO(weights).export(**kwargs)))
    except Exception as err:  # Ultralytics raises many types (download, torch, onnx export errors)
        raise ToolingError(f"Ultralytics export of {weights} failed: {err}") from err
    out.parent.mkdir(parents=True, exist_ok=True)
    if produced.resolve() != out.resolve():
        shutil.move(str(produced), out)
    return out

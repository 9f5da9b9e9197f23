"""Decoding of a raw Ultralytics YOLO head ([4 + C, N]) into :class:`Detections`, in plain numpy.

The exports carry no NMS, so this module is the other half of the model: it must follow Ultralytics'
``non_max_suppression`` (best class per anchor, strict ``> conf``, per-class greedy NMS with ``IoU > iou``
suppressing, at most 300 boxes) or mAP drops. numpy only: the edge image has no torch/torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edge_agent.perception.detector.preprocess import LetterboxMeta, from_letterbox
from edge_agent.types import Detections, FloatArray, IntArray

MAX_DET = 300
"""Most boxes returned per image (Ultralytics' default ``max_det``)."""

MAX_NMS = 30_000
"""Most candidates fed to NMS (Ultralytics' ``max_nms``); bounds the worst case at very low thresholds."""


def cxcywh_to_xyxy(boxes: npt.NDArray[np.floating]) -> FloatArray:
    """Centre/size boxes [N, 4] to corner boxes [N, 4] (float32)."""
    b = np.asarray(boxes, dtype=np.float32)
    half = b[:, 2:4] / 2.0
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)


def box_iou(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Pairwise IoU of xyxy boxes [N, 4] x [M, 4] -> [N, M]; area (x2-x1)*(y2-y1), no +1, as torchvision."""
    a64 = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b64 = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a64[:, 2] - a64[:, 0]) * (a64[:, 3] - a64[:, 1])
    area_b = (b64[:, 2] - b64[:, 0]) * (b64[:, 3] - b64[:, 1])
    lt = np.maximum(a64[:, None, :2], b64[None, :, :2])
    rb = np.minimum(a64[:, None, 2:], b64[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0.0, inter / union, 0.0)
    return iou


def nms(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    iou_threshold: float,
    max_keep: int | None = None,
) -> IntArray:
    """Greedy NMS, class-agnostic: indices of kept boxes, highest score first.

    A box is suppressed when its IoU with a kept box is strictly greater than ``iou_threshold`` (torchvision's
    rule). Greedy keeps come out in score order, so stopping at ``max_keep`` gives exactly the first
    ``max_keep`` of the full result; at conf 0.001 that early stop saves most of the work.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    limit = len(order) if max_keep is None else max_keep
    while order.size and len(keep) < limit:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0.0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0.0, None)
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]  # NaN (two empty boxes) is kept, as in torchvision
    return np.asarray(keep, dtype=np.int64)


def batched_nms_offset(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    class_ids: npt.NDArray[np.integer],
    iou_threshold: float,
    max_keep: int | None = None,
) -> IntArray:
    """Per-class NMS in one greedy pass by shifting each class's boxes to its own far-away region.

    The shift is done in float64: in float32 an offset of ~10^5 px would round box edges to 1/16 px.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if b.shape[0] == 0:
        return np.zeros((0,), np.int64)
    span = float(np.max(b)) - float(min(0.0, np.min(b))) + 1.0
    shifted = b + (np.asarray(class_ids, dtype=np.float64) * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_keep)


def batched_nms_per_class(
    boxes: npt.NDArray[np.floating],
    scores: npt.NDArray[np.floating],
    class_ids: npt.NDArray[np.integer],
    iou_threshold: float,
    max_keep: int | None = None,
) -> IntArray:
    """Per-class NMS as one greedy pass per class, merged by score (same result as the offset trick)."""
    cls = np.asarray(class_ids)
    sc = np.asarray(scores)
    kept: list[IntArray] = []
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)
        kept.append(idx[nms(np.asarray(boxes)[idx], sc[idx], iou_threshold, max_keep)])
    if not kept:
        return np.zeros((0,), np.int64)
    allk = np.concatenate(kept)
    allk = allk[np.lexsort((allk, -sc[allk]))]  # score desc, then index: the offset pass's tie order
    return allk if max_keep is None else allk[:max_keep]


batched_nms = batched_nms_offset
"""The per-class NMS used by :func:`decode`. On yolo11n outputs for coco128 the two give the same boxes and
the offset pass is slightly faster (2.5 vs 2.6 ms/image at conf 0.001, 0.28 vs 0.30 at conf 0.25, 2-core
EPYC), and it does not degrade with the number of classes present; see docs/benchmarks.md."""


def decode(
    output: npt.NDArray[np.floating],
    meta: LetterboxMeta,
    conf_threshold: float,
    iou_threshold: float,
    class_filter: Sequence[int] | npt.NDArray[np.integer] | None = None,
    names: tuple[str, ...] = (),
    max_det: int = MAX_DET,
) -> Detections:
    """Turn one image's raw head output [4 + C, N] (or [1, 4 + C, N]) into boxes in original pixels.

    Steps follow Ultralytics: best class per anchor, keep ``score > conf_threshold``, optionally keep only
    ``class_filter`` ids (applied *after* choosing the best class, so a filter never relabels a box),
    per-class NMS in letterbox space, at most ``max_det`` boxes, then undo the letterbox and clip to the
    image.
    """
    out = np.asarray(output)
    if out.ndim == 3 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 2 or out.shape[0] < 5:
        raise ValueError(f"expected a [4 + classes, anchors] head output, got shape {out.shape}")
    class_scores = out[4:]
    best = class_scores.max(axis=0)
    cand = np.flatnonzero(best > conf_threshold)
    if cand.size == 0:
        return Detections.empty(names)
    cls = class_scores[:, cand].argmax(axis=0).astype(np.int64)
    sc = best[cand].astype(np.float32)
    if class_filter is not None:
        allowed = np.isin(cls, np.asarray(class_filter, dtype=np.int64))
        cand, cls, sc = cand[allowed], cls[allowed], sc[allowed]
        if cand.size == 0:
            return Detections.empty(names)
    if cand.size > MAX_NMS:
        top = np.argsort(-sc, kind="stable")[:MAX_NMS]
        cand, cls, sc = cand[top], cls[top], sc[top]
    boxes = cxcywh_to_xyxy(out[:4, cand].T)
    keep = batched_nms(boxes, sc, cls, iou_threshold, max_det)
    return Detections(from_letterbox(boxes[keep], meta), sc[keep], cls[keep], names)

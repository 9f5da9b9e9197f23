"""Merge one object seen as several classes (a van as both ``car`` and ``truck``).

Per-class NMS (what Ultralytics does by default) keeps both boxes; two tracks then mean two events for one
parked vehicle. Within a group of look-alike classes we keep only the best-scoring box of an overlapping set.
The tracker's class vote then settles the label over time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_agent.types import Detections


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def merge_class_groups(dets: Detections, groups: Sequence[Sequence[int]], iou: float = 0.7) -> Detections:
    """Class-agnostic NMS inside each group of class ids; boxes of other classes pass untouched.

    >>> import numpy as np
    >>> d = Detections(np.array([[0, 0, 10, 10], [0, 0, 10, 9.5]], np.float32),
    ...                np.array([0.4, 0.6], np.float32), np.array([2, 7]), ())
    >>> merge_class_groups(d, [[2, 5, 7]]).class_ids.tolist()
    [7]
    """
    if len(dets) < 2 or not groups:
        return dets
    keep = np.ones(len(dets), dtype=bool)
    for group in groups:
        idx = np.flatnonzero(np.isin(dets.class_ids, np.asarray(group, dtype=np.int64)))
        if len(idx) < 2:
            continue
        order = idx[np.argsort(-dets.scores[idx], kind="stable")]
        alive = np.ones(len(order), dtype=bool)
        for i in range(len(order)):
            if not alive[i]:
                continue
            rest = np.flatnonzero(alive[i + 1 :]) + i + 1
            if len(rest) == 0:
                break
            overlaps = _iou_one_to_many(dets.xyxy[order[i]], dets.xyxy[order[rest]]) > iou
            alive[rest[overlaps]] = False
        keep[order[~alive]] = False
    return dets if keep.all() else dets.filter(keep)

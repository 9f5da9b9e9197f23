"""COCO-style detection metrics (AP at IoU 0.50:0.05:0.95, 101-point interpolation) in plain numpy.

Used by ``scripts/eval_detector.py`` to check that preprocessing and decoding reproduce a model's known
accuracy; kept importable and small so the arithmetic itself is unit-tested. It follows pycocotools'
``evaluateImg`` and ``accumulate`` for one area range and no crowd boxes: per image and class, detections in
score order each take the unmatched ground truth they overlap most (IoU >= t); per class, precision is made
monotone and sampled at recall 0, 0.01, ..., 1.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.perception.detector.postprocess import box_iou

IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)

BoolArray = npt.NDArray[np.bool_]
F64Array = npt.NDArray[np.float64]


def match_detections(
    pred_xyxy: npt.NDArray[np.floating],
    pred_scores: npt.NDArray[np.floating],
    gt_xyxy: npt.NDArray[np.floating],
    iou_thresholds: npt.NDArray[np.floating] = IOU_THRESHOLDS,
) -> BoolArray:
    """True-positive flags [N_pred, T] for one image and one class; row i is the i-th best-scoring detection.

    Greedy by score: each detection, best first, takes the still-unmatched ground truth with the highest IoU
    that is at least the threshold; every threshold is matched independently.
    """
    n, t = len(pred_scores), len(iou_thresholds)
    tp = np.zeros((n, t), dtype=bool)
    if n == 0 or len(gt_xyxy) == 0:
        return tp
    order = np.argsort(-np.asarray(pred_scores), kind="stable")
    ious = box_iou(np.asarray(pred_xyxy)[order], gt_xyxy)
    for k, thr in enumerate(iou_thresholds):
        taken = np.zeros(len(gt_xyxy), dtype=bool)
        for d in range(n):
            cand = np.where(taken, -1.0, ious[d])
            g = int(np.argmax(cand))
            if cand[g] >= thr:
                taken[g] = True
                tp[d, k] = True
    return tp


def average_precision(tp: BoolArray, scores: npt.NDArray[np.floating], n_gt: int) -> F64Array:
    """AP per IoU threshold [T] from true-positive flags [N, T] of all detections of one class (any order).

    101-point interpolated: precision made non-increasing from the right, then read at the first detection
    whose recall reaches each of 0, 0.01, ..., 1 (0 where recall never gets there). ``n_gt`` must be > 0.
    """
    if n_gt <= 0:
        raise ValueError("AP is undefined for a class without ground truth")
    t = tp.shape[1]
    if len(scores) == 0:
        return np.zeros(t)
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    tps = np.cumsum(tp[order], axis=0, dtype=np.float64)
    fps = np.cumsum(~tp[order], axis=0, dtype=np.float64)
    ap = np.zeros(t)
    for k in range(t):
        recall = tps[:, k] / n_gt
        precision = tps[:, k] / (tps[:, k] + fps[:, k])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, RECALL_POINTS, side="left")
        q = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
        ap[k] = float(q.mean())
    return ap


@dataclass(frozen=True, slots=True)
class EvalResult:
    """AP per class and threshold for the classes that have ground truth, and their means."""

    class_ids: tuple[int, ...]
    ap: F64Array  # [len(class_ids), T]
    n_gt: tuple[int, ...]
    n_images: int

    @property
    def map50(self) -> float:
        return float(self.ap[:, 0].mean()) if len(self.class_ids) else 0.0

    @property
    def map50_95(self) -> float:
        return float(self.ap.mean()) if len(self.class_ids) else 0.0

    def class_ap(self, class_id: int) -> tuple[float, float] | None:
        """(AP50, AP50-95) of one class, or None when it has no ground truth."""
        if class_id not in self.class_ids:
            return None
        row = self.ap[self.class_ids.index(class_id)]
        return float(row[0]), float(row.mean())


@dataclass(slots=True)
class DetectionEvaluator:
    """Accumulates images one at a time, so an evaluation run keeps only flags and scores in memory."""

    iou_thresholds: npt.NDArray[np.floating] = field(default_factory=lambda: IOU_THRESHOLDS.copy())
    _tp: dict[int, list[BoolArray]] = field(default_factory=lambda: defaultdict(list))
    _scores: dict[int, list[F64Array]] = field(default_factory=lambda: defaultdict(list))
    _n_gt: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    _images: int = 0

    def add(
        self,
        pred_xyxy: npt.NDArray[np.floating],
        pred_scores: npt.NDArray[np.floating],
        pred_classes: npt.NDArray[np.integer],
        gt_xyxy: npt.NDArray[np.floating],
        gt_classes: npt.NDArray[np.integer],
    ) -> None:
        """Add one image's predictions and ground truth (same pixel coordinates)."""
        self._images += 1
        pc, gc = np.asarray(pred_classes), np.asarray(gt_classes)
        for c in np.union1d(pc, gc).tolist():
            pm, gm = pc == c, gc == c
            self._n_gt[c] += int(gm.sum())
            if not pm.any():
                continue
            sc = np.asarray(pred_scores, dtype=np.float64)[pm]
            order = np.argsort(-sc, kind="stable")
            tp = match_detections(
                np.asarray(pred_xyxy)[pm][order], sc[order], np.asarray(gt_xyxy)[gm], self.iou_thresholds
            )
            self._tp[c].append(tp)
            self._scores[c].append(sc[order])

    def result(self) -> EvalResult:
        """AP of every class with ground truth (a class with only false positives doesn't count, as COCO)."""
        classes = sorted(c for c, n in self._n_gt.items() if n > 0)
        t = len(self.iou_thresholds)
        ap = np.zeros((len(classes), t))
        for i, c in enumerate(classes):
            if self._tp.get(c):
                ap[i] = average_precision(
                    np.concatenate(self._tp[c]), np.concatenate(self._scores[c]), self._n_gt[c]
                )
        return EvalResult(tuple(classes), ap, tuple(self._n_gt[c] for c in classes), self._images)

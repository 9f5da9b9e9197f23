"""Numerical checks of a transformed model against its source on real frames.

A whole-output max |difference| of a YOLO head is dominated by background anchors, whose box regressions are
meaningless and move by tens of pixels at the slightest change; it is reported, but the figures that say
whether detections survive are the class scores and the boxes of anchors that some model is confident about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from edge_agent.types import FloatArray
from models.tooling.graph import run, session

CONFIDENT = 0.25  # the score at which a detection would be reported (Ultralytics' predict default)


@dataclass(frozen=True, slots=True)
class RawDeviation:
    """How far model B's raw [B, 4+C, N] output is from model A's over some frames."""

    frames: int
    max_abs: float  # whole output: boxes (input pixels) and scores
    max_abs_scores: float  # class-score rows only
    confident_anchors: int  # anchors with a best score >= CONFIDENT in either model
    max_abs_box_confident: float  # box rows of those anchors, input pixels
    median_abs_box_confident: float

    def describe(self) -> str:
        return (
            f"{self.frames} frames: max |diff| {self.max_abs:.3g} over the whole output, "
            f"{self.max_abs_scores:.3g} over class scores; over the {self.confident_anchors} anchors scoring "
            f">= {CONFIDENT} in either model, box max {self.max_abs_box_confident:.3g} px, "
            f"median {self.median_abs_box_confident:.3g} px"
        )


def compare_outputs(
    model_a: onnx.ModelProto, model_b: onnx.ModelProto, tensors: Sequence[FloatArray], threads: int = 1
) -> RawDeviation:
    """Run both models on each [1, 3, S, S] tensor and summarise the differences of the raw outputs."""
    if not tensors:
        raise ValueError("no frames to compare on")
    sess_a, sess_b = session(model_a, threads), session(model_b, threads)
    max_abs = max_scores = max_box = 0.0
    boxes: list[FloatArray] = []
    confident = 0
    for tensor in tensors:
        a, b = run(sess_a, tensor)[0], run(sess_b, tensor)[0]
        diff = np.abs(a - b)
        max_abs = max(max_abs, float(diff.max()))
        max_scores = max(max_scores, float(diff[4:].max()))
        sel = np.maximum(a[4:].max(axis=0), b[4:].max(axis=0)) >= CONFIDENT
        confident += int(sel.sum())
        if sel.any():
            box = diff[:4, sel]
            boxes.append(box.ravel())
            max_box = max(max_box, float(box.max()))
    median = float(np.median(np.concatenate(boxes))) if boxes else 0.0
    return RawDeviation(len(tensors), max_abs, max_scores, confident, max_box, median)

"""Persistent foreground inside one zone: goods and stalls COCO has no class for.

A slow background model (OpenCV MOG2) runs on the zone's bounding box, downscaled to ``width`` pixels and
masked to the polygon. Its learning rate follows the time between frames (time constant ``learning_s``), so a
stall set up on the sidewalk stays foreground for tens of minutes while passers-by are foreground only for
a moment. A per-pixel persistence (an exponential average of the foreground mask with time constant
``persistence_s``) separates the two: a pixel is *persistent* once it has been foreground for about that long.

The model learns the scene as it is when the agent starts: goods already standing there then are background
(only the object classes catch those). The pipeline feeds it every detect frame before the rules run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from edge_agent.geometry import Point
from edge_agent.rules.ruleconfig import BackgroundConfig
from edge_agent.types import Frame

Mask = npt.NDArray[np.bool_]
_WARMUP_FRAMES = 10  # the first frames are averaged quickly into the initial background
_PERSISTENT = 1.0 - math.exp(-1.0)  # the average after persistence_s of uninterrupted foreground


class ZoneRaster:
    """A zone's bounding box downscaled to at most ``width`` px, with the polygon as a boolean mask."""

    def __init__(self, polygon_px: Sequence[Point], frame_size: tuple[int, int], width: int) -> None:
        fw, fh = frame_size
        xs = [p[0] for p in polygon_px]
        ys = [p[1] for p in polygon_px]
        self.x0 = max(0, math.floor(min(xs)))
        self.y0 = max(0, math.floor(min(ys)))
        self.x1 = min(fw, max(self.x0 + 1, math.ceil(max(xs))))
        self.y1 = min(fh, max(self.y0 + 1, math.ceil(max(ys))))
        self.scale = min(1.0, width / (self.x1 - self.x0))
        self.size = (
            max(1, round((self.x1 - self.x0) * self.scale)),
            max(1, round((self.y1 - self.y0) * self.scale)),
        )
        pts = np.array([self.to_raster(p) for p in polygon_px], dtype=np.float64)
        mask = np.zeros((self.size[1], self.size[0]), np.uint8)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        self.mask: Mask = mask.astype(bool)
        self.area = max(1, int(self.mask.sum()))

    def to_raster(self, p: Point) -> tuple[float, float]:
        return ((p[0] - self.x0) * self.scale, (p[1] - self.y0) * self.scale)

    def box_mask(self, boxes: Sequence[Sequence[float]]) -> Mask:
        """Union of pixel boxes (xyxy), rasterized."""
        h, w = self.size[1], self.size[0]
        out: Mask = np.zeros((h, w), bool)
        for box in boxes:
            a = self.to_raster((box[0], box[1]))
            b = self.to_raster((box[2], box[3]))
            c0, r0 = max(0, math.floor(a[0])), max(0, math.floor(a[1]))
            c1, r1 = min(w, math.ceil(b[0])), min(h, math.ceil(b[1]))
            if c1 > c0 and r1 > r0:
                out[r0:r1, c0:c1] = True
        return out


class PersistentForeground:
    """MOG2 + persistence over one zone (see the module notes). ``update(frame)`` is the pipeline's verb."""

    def __init__(self, raster: ZoneRaster, cfg: BackgroundConfig) -> None:
        self.raster = raster
        self.cfg = cfg
        self._mog = cv2.createBackgroundSubtractorMOG2(
            history=500, varThreshold=cfg.var_threshold, detectShadows=True
        )
        self._avg = np.zeros(raster.mask.shape, np.float32)
        self._last: float | None = None
        self._frames = 0
        self._kernel = np.ones((3, 3), np.uint8)

    def update(self, frame: Frame) -> None:
        r = self.raster
        crop = frame.image[r.y0 : r.y1, r.x0 : r.x1]
        small = cv2.resize(crop, r.size, interpolation=cv2.INTER_AREA)
        small[~r.mask] = 0
        dt = 0.0 if self._last is None else max(0.0, frame.mono - self._last)
        self._last = frame.mono
        if self._frames < _WARMUP_FRAMES:
            rate = 1.0 / (self._frames + 1)
        else:
            rate = 1.0 - math.exp(-dt / self.cfg.learning_s)
        self._frames += 1
        fg = self._mog.apply(small, learningRate=rate)
        fg = cv2.morphologyEx((fg == 255).astype(np.uint8), cv2.MORPH_OPEN, self._kernel)
        if self._frames <= _WARMUP_FRAMES:
            return
        alpha = 1.0 - math.exp(-dt / self.cfg.persistence_s)
        self._avg += np.float32(alpha) * (fg.astype(np.float32) - self._avg)

    def mask(self) -> Mask:
        """Pixels of the raster that have been foreground for about ``persistence_s`` (inside the zone)."""
        return (self._avg >= _PERSISTENT) & self.raster.mask

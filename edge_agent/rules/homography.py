"""The road's ground plane: a homography between image pixels and metres, from point pairs.

Four pairs give the exact perspective transform (``cv2.getPerspectiveTransform``); more give a least-squares
fit (``cv2.findHomography``, no RANSAC: every pair is a surveyed point) whose reprojection error says how good
the survey is. Points above the horizon have no ground position (``nan``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from edge_agent.geometry import Point
from edge_agent.rules.sceneconfig import GroundPlaneConfig

F64 = npt.NDArray[np.float64]


def _apply(h: F64, pts: F64) -> F64:
    ones = np.ones((len(pts), 1))
    p = np.hstack([pts, ones]) @ h.T
    w = p[:, 2:3]
    out = np.full((len(pts), 2), np.nan)
    ok = (w[:, 0] > 1e-12) & np.isfinite(w[:, 0])
    out[ok] = p[ok, :2] / w[ok]
    return out


def _has_collinear_triple(pts: F64) -> bool:
    scale = float(np.ptp(pts, axis=0).max()) or 1.0
    for i, j, k in ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)):
        (ax, ay), (bx, by), (cx, cy) = pts[i], pts[j], pts[k]
        if abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax)) < 1e-6 * scale * scale:
            return True
    return False


class GroundPlane:
    """Image pixels <-> ground metres.

    >>> gp = GroundPlane.from_points([(0, 0), (100, 0), (100, 100), (0, 100)], [(0, 0), (10, 0), (10, 10), (0, 10)])
    >>> [round(float(v), 6) for v in gp.to_world([(50.0, 50.0)])[0]]
    [5.0, 5.0]
    >>> round(gp.distance_m((0.0, 0.0), (100.0, 0.0)), 6)
    10.0
    """

    def __init__(self, image_to_world: F64) -> None:
        h = np.asarray(image_to_world, dtype=np.float64)
        if h.shape != (3, 3) or not np.isfinite(h).all() or abs(float(np.linalg.det(h))) < 1e-18:
            raise ValueError("the homography is degenerate (points on one line, or repeated)")
        self.h: F64 = h / float(np.abs(h).max())
        self.h_inv: F64 = np.asarray(np.linalg.inv(self.h), dtype=np.float64)

    @classmethod
    def from_points(cls, image_px: Sequence[Point], world_m: Sequence[Point]) -> GroundPlane:
        src = np.asarray(image_px, dtype=np.float64).reshape(-1, 2)
        dst = np.asarray(world_m, dtype=np.float64).reshape(-1, 2)
        if len(src) != len(dst) or len(src) < 4:
            raise ValueError(f"need 4 or more point pairs, got {len(src)} image and {len(dst)} world points")
        if len(src) == 4 and (_has_collinear_triple(src) or _has_collinear_triple(dst)):
            raise ValueError("the homography is degenerate (three of the four points on one line)")
        if len(src) == 4:
            h = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
        else:
            h, _ = cv2.findHomography(src, dst, 0)
            if h is None:
                raise ValueError("no homography fits these points (degenerate layout)")
        h = np.asarray(h, dtype=np.float64)
        # A homography is defined up to scale, sign included: orient it so that the homogeneous w is positive
        # on the road (where the surveyed points are); the horizon is where w changes sign.
        w = np.hstack([src, np.ones((len(src), 1))]) @ h[2]
        if not ((w > 0).all() or (w < 0).all()):
            raise ValueError("the image points lie on both sides of the horizon of their own homography")
        sign = 1.0 if (w > 0).all() else -1.0
        return cls(np.asarray(h * sign, dtype=np.float64))

    @classmethod
    def from_config(cls, cfg: GroundPlaneConfig, frame_size: tuple[int, int]) -> GroundPlane:
        width, height = frame_size
        return cls.from_points([(x * width, y * height) for x, y in cfg.image], cfg.world)

    def to_world(self, image_px: Sequence[Point] | F64) -> F64:
        """[N, 2] metres for [N, 2] pixels (rows of nan above the horizon)."""
        return _apply(self.h, np.asarray(image_px, dtype=np.float64).reshape(-1, 2))

    def to_image(self, world_m: Sequence[Point] | F64) -> F64:
        return _apply(self.h_inv, np.asarray(world_m, dtype=np.float64).reshape(-1, 2))

    def distance_m(self, a: Point, b: Point) -> float:
        """Ground distance between two image points, metres (nan if either is above the horizon)."""
        pa, pb = self.to_world([a, b])
        return float(math.dist(pa, pb))

    def reprojection_errors_px(self, image_px: Sequence[Point], world_m: Sequence[Point]) -> F64:
        """Per pair, pixels between the surveyed image point and the world point mapped back into the image."""
        back = self.to_image(world_m)
        return np.asarray(np.linalg.norm(back - np.asarray(image_px, dtype=np.float64), axis=1))

    def metres_per_pixel(self, at: Point) -> float:
        """Ground metres per image pixel (horizontal) at an image point: the local resolution."""
        return self.distance_m((at[0] - 0.5, at[1]), (at[0] + 0.5, at[1]))

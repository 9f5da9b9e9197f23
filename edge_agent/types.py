"""The typed objects that travel between pipeline stages: Frame -> Detections -> Track -> (rule) Trigger.

Arrays rather than lists of small objects keep the per-frame cost of a busy street (50+ boxes) low; the
dataclasses only give those arrays names and invariants.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded camera frame (BGR, HxWx3) with both clocks: monotonic for durations, UTC for the record."""

    camera_id: str
    index: int
    image: Image
    mono: float
    wall: datetime

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes of one frame in original image pixels, ``xyxy`` float32 [N, 4], ``scores`` [N], ``class_ids`` [N]."""

    xyxy: FloatArray
    scores: FloatArray
    class_ids: IntArray
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4) or self.scores.shape != (n,) or self.class_ids.shape != (n,):
            raise ValueError(
                f"inconsistent detection arrays: xyxy {self.xyxy.shape}, scores {self.scores.shape}, "
                f"class_ids {self.class_ids.shape}"
            )

    @classmethod
    def empty(cls, names: tuple[str, ...] = ()) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64), names)

    def __len__(self) -> int:
        return len(self.xyxy)

    def label(self, i: int) -> str:
        cid = int(self.class_ids[i])
        return self.names[cid] if 0 <= cid < len(self.names) else str(cid)

    def filter(self, mask: npt.NDArray[np.bool_]) -> Detections:
        return Detections(self.xyxy[mask], self.scores[mask], self.class_ids[mask], self.names)


@dataclass(slots=True)
class Track:
    """A tracked object on one camera. Mutable: the tracker updates it in place every frame it is seen.

    ``history`` keeps the last bottom-centre anchors (pixels) with their monotonic times, which rules use for
    dwell radius and direction without keeping their own copies.
    """

    track_id: int
    class_id: int
    label: str
    xyxy: FloatArray
    score: float
    first_seen: float
    last_seen: float
    hits: int = 1
    age_frames: int = 0
    time_since_update: int = 0
    velocity: tuple[float, float] = (0.0, 0.0)
    history: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def anchor(self) -> tuple[float, float]:
        """Bottom-centre of the box: where a road user touches the ground."""
        x1, _, x2, y2 = (float(v) for v in self.xyxy)
        return ((x1 + x2) / 2.0, y2)

    @property
    def height(self) -> float:
        return float(self.xyxy[3] - self.xyxy[1])

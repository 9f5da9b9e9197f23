"""What most rules keep per track: zone membership with inertia against box jitter, and bounded state.

* ``ZoneShape``: a normalized polygon scaled to pixels once, with a bounding-box pre-check;
* ``Debounced``: a boolean that flips only after ``n`` consecutive observations disagree, remembering when
  the confirming streak began (so an entry counts from the first frame inside, not the n-th);
* ``TrackStates``: per-track state objects, forgotten once a track has been unseen for a while.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from edge_agent.geometry import Point, point_in_polygon, scale

S = TypeVar("S")


class ZoneShape:
    """A zone polygon in pixels.

    >>> z = ZoneShape([(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)], (100, 100))
    >>> z.contains((50.0, 75.0)), z.contains((50.0, 25.0))
    (True, False)
    """

    def __init__(self, polygon: Sequence[Point], frame_size: tuple[int, int]) -> None:
        width, height = frame_size
        if width <= 0 or height <= 0:
            raise ValueError(f"frame_size must be positive, got {frame_size}")
        self.polygon: list[Point] = scale(polygon, width, height)
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        self.bbox = (min(xs), min(ys), max(xs), max(ys))

    def contains(self, p: Point) -> bool:
        x1, y1, x2, y2 = self.bbox
        if not (x1 <= p[0] <= x2 and y1 <= p[1] <= y2):
            return False
        return point_in_polygon(p, self.polygon)


@dataclass(slots=True)
class Debounced:
    """A debounced boolean: ``value`` changes after ``n`` consecutive raw observations of the other value.

    ``since`` is the time of the first observation of the streak that set the current value.

    >>> d = Debounced(3)
    >>> [d.update(raw, float(t)) for t, raw in enumerate([True, True, False, True, True, True])]
    [False, False, False, False, False, True]
    >>> d.since
    3.0
    """

    n: int
    value: bool = False
    since: float = 0.0
    _streak: int = 0
    _streak_since: float = 0.0

    def update(self, raw: bool, now: float) -> bool:
        if raw == self.value:
            self._streak = 0
            return self.value
        if self._streak == 0:
            self._streak_since = now
        self._streak += 1
        if self._streak >= self.n:
            self.value, self.since, self._streak = raw, self._streak_since, 0
        return self.value

    def reset(self) -> None:
        self.value, self._streak = False, 0


class TrackStates(Generic[S]):
    """Per-track state with forgetting: ``observe`` creates, ``prune`` drops tracks unseen for ``forget_after_s``."""

    def __init__(self, factory: Callable[[], S], forget_after_s: float) -> None:
        self._factory = factory
        self._forget_after = forget_after_s
        self._states: dict[int, S] = {}
        self._last_seen: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, track_id: int) -> bool:
        return track_id in self._states

    def items(self) -> Iterator[tuple[int, S]]:
        return iter(list(self._states.items()))

    def observe(self, track_id: int, now: float) -> tuple[S, float]:
        """The state of a track seen at ``now`` (created on first sight) and the seconds since it was last
        seen before (``inf`` for a new track)."""
        st = self._states.get(track_id)
        if st is None:
            st = self._states[track_id] = self._factory()
        gap = now - self._last_seen.get(track_id, -math.inf)
        self._last_seen[track_id] = now
        return st, gap

    def peek(self, track_id: int) -> S | None:
        """The state of a track without marking it seen."""
        return self._states.get(track_id)

    def last_seen(self, track_id: int) -> float:
        return self._last_seen[track_id]

    def prune(self, now: float, keep: Callable[[int], bool] = lambda _tid: False) -> None:
        """Forget tracks unseen for longer than ``forget_after_s`` unless ``keep(track_id)``."""
        for tid in [t for t, seen in self._last_seen.items() if now - seen > self._forget_after]:
            if not keep(tid):
                del self._states[tid], self._last_seen[tid]

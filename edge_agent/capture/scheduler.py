"""Which cameras' newest frames go to the shared detector now: per-camera rate, motion gating, fairness.

Why a scheduler: one batched detector serves the whole cluster, and a 2-core box cannot detect every frame of
8 cameras. Per camera, a frame is *due* at the camera's ``detect_fps`` (in frame time, so a file replayed as
fast as possible is sampled exactly like one replayed in real time). A due frame of a still scene is skipped
unless the periodic refresh is due (stopping and encroachment rules need stationary objects seen every few
seconds). Due frames wait for a detector slot one per camera: a newer frame *replaces* the waiting one (the
older is dropped and counted, never queued), and slots go to the camera that has been waiting longest, ties
to the one served least recently, then round-robin, so a busy camera cannot starve the others.

The scheduler is pure logic: no threads, no sleeping; time comes from the frames and an injected clock (only
for waiting times). Every frame offered ends in exactly one counter: skipped (``not_due``, ``no_motion``),
dropped (``overload``, ``stale``), selected, or is still pending.

>>> import numpy as np
>>> from datetime import UTC, datetime
>>> from edge_agent.types import Frame
>>> s = DetectScheduler([CameraPlan("a", detect_fps=5.0)], clock=lambda: 0.0)
>>> img = np.zeros((90, 160, 3), np.uint8)
>>> frames = [Frame("a", i, img, i / 10, datetime.now(UTC)) for i in range(3)]
>>> s.offer("a", frames[0]), [(cam, f.index) for cam, f in s.next_batch()]
(<Offer.QUEUED: 'queued'>, [('a', 0)])
>>> s.offer("a", frames[1]), s.offer("a", frames[2])  # 5 fps: t=0.1 is early, t=0.2 is due
(<Offer.NOT_DUE: 'not_due'>, <Offer.QUEUED: 'queued'>)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from edge_agent.capture.motion import MotionDetector
from edge_agent.config import AgentConfig, CameraConfig, MotionConfig
from edge_agent.types import Frame

log = logging.getLogger(__name__)

EPS = 1e-6  # frame times are sums of 1/fps; a frame exactly on its slot is due


class Offer(StrEnum):
    """What happened to an offered frame."""

    QUEUED = "queued"  # due; waits for a detector slot (replacing an older waiting frame, counted as dropped)
    NOT_DUE = "not_due"  # before the camera's next detect slot
    NO_MOTION = "no_motion"  # due, but the scene is still and the refresh is not due


class Drop(StrEnum):
    """Why a frame the detector wanted never reached it."""

    OVERLOAD = "overload"  # a newer frame of the same camera replaced it while it waited for a slot
    STALE = "stale"  # it waited longer than ``max_wait_s`` (the camera delivered nothing newer)


class Reason(StrEnum):
    """Why a frame was selected."""

    UNGATED = "ungated"  # motion gating off
    FIRST = "first"  # first frame (or first after a resolution change): nothing to compare with
    MOTION = "motion"
    REFRESH = "refresh"  # still scene, periodic refresh


@dataclass(frozen=True, slots=True)
class CameraPlan:
    """What the scheduler needs to know about one camera."""

    camera_id: str
    detect_fps: float = 5.0
    motion: MotionConfig | None = None  # None or ``enabled: false``: detect every due frame

    @classmethod
    def from_config(cls, cam: CameraConfig) -> CameraPlan:
        return cls(cam.id, cam.detect_fps, cam.motion)


@dataclass(slots=True)
class CameraCounters:
    """Per-camera accounting: offered == selected + skipped + dropped + (1 if a frame is pending)."""

    offered: int = 0
    selected: int = 0
    skipped: dict[Offer, int] = field(default_factory=dict)
    dropped: dict[Drop, int] = field(default_factory=dict)
    selected_by: dict[Reason, int] = field(default_factory=dict)
    last_changed_fraction: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "offered": self.offered,
            "selected": self.selected,
            "skipped": {k.value: v for k, v in self.skipped.items()},
            "dropped": {k.value: v for k, v in self.dropped.items()},
            "selected_by": {k.value: v for k, v in self.selected_by.items()},
        }


_K = TypeVar("_K", Offer, Drop, Reason)


def _bump(counter: dict[_K, int], key: _K) -> None:
    counter[key] = counter.get(key, 0) + 1


@dataclass(slots=True)
class _Camera:
    plan: CameraPlan
    order: int
    interval: float
    motion: MotionDetector | None
    refresh_s: float
    counters: CameraCounters = field(default_factory=CameraCounters)
    next_due: float | None = None
    last_selected_mono: float | None = None
    last_selected_at: float | None = None
    pending: Frame | None = None
    pending_reason: Reason = Reason.UNGATED
    offered_at: float = 0.0  # clock when the pending frame was offered (staleness)
    waiting_since: float = 0.0  # clock since the camera has had a frame waiting (fairness; kept on replace)

    def advance(self, mono: float) -> None:
        """Consume the current detect slot: the next one is an interval later, not before ``mono``."""
        base = mono if self.next_due is None else self.next_due
        self.next_due = max(base + self.interval, mono)


class DetectScheduler:
    """Offer each camera's newest frames with ``offer``; take up to ``max_batch`` frames with ``next_batch``.

    ``max_wait_s`` None disables staleness (lossless replay, where the caller offers a camera's next frame
    only once ``has_pending`` is false, so nothing is ever dropped).
    """

    def __init__(
        self,
        plans: Sequence[CameraPlan],
        *,
        max_batch: int = 4,
        max_wait_s: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        ids = [p.camera_id for p in plans]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate camera ids {ids}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._cams: dict[str, _Camera] = {}
        for i, p in enumerate(plans):
            gated = p.motion is not None and p.motion.enabled
            self._cams[p.camera_id] = _Camera(
                plan=p,
                order=i,
                interval=1.0 / p.detect_fps,
                motion=MotionDetector(p.motion) if gated and p.motion is not None else None,
                refresh_s=p.motion.refresh_s if p.motion is not None else 0.0,
            )
        self._rr_start = 0

    @classmethod
    def from_config(
        cls, cfg: AgentConfig, *, lossless: bool = False, clock: Callable[[], float] = time.monotonic
    ) -> DetectScheduler:
        return cls(
            [CameraPlan.from_config(c) for c in cfg.cameras],
            max_batch=cfg.scheduler.max_batch,
            max_wait_s=None if lossless else cfg.scheduler.max_wait_s,
            clock=clock,
        )

    @property
    def camera_ids(self) -> list[str]:
        return list(self._cams)

    def counters(self, camera_id: str) -> CameraCounters:
        return self._cams[camera_id].counters

    def wants(self, camera_id: str, mono: float) -> bool:
        """Whether a frame of time ``mono`` could still be due (at or after the camera's next slot).

        Readers ask this before converting a decoded frame: any frame it says no to would be skipped as
        ``not_due`` by ``offer``, since the next slot only moves later. Called from reader threads: it reads
        one float the detector thread writes.
        """
        due = self._cams[camera_id].next_due
        return due is None or mono >= due - EPS

    def has_pending(self, camera_id: str) -> bool:
        return self._cams[camera_id].pending is not None

    def offer(self, camera_id: str, frame: Frame) -> Offer:
        """Consider a camera's newest frame: skip it, or make it the camera's waiting frame."""
        c = self._cams[camera_id]
        c.counters.offered += 1
        if c.next_due is not None and frame.mono < c.next_due - EPS:
            _bump(c.counters.skipped, Offer.NOT_DUE)
            return Offer.NOT_DUE
        reason = self._gate(c, frame)
        if reason is None:
            _bump(c.counters.skipped, Offer.NO_MOTION)
            c.advance(frame.mono)  # the slot is spent on the motion check; next check one interval later
            return Offer.NO_MOTION
        now = self._clock()
        if c.pending is not None:
            _bump(c.counters.dropped, Drop.OVERLOAD)
            log.debug(
                "camera %s: frame %d dropped (overload): replaced by frame %d after %.3fs waiting",
                camera_id,
                c.pending.index,
                frame.index,
                now - c.offered_at,
            )
        else:
            c.waiting_since = now
        c.pending = frame
        c.pending_reason = reason
        c.offered_at = now
        return Offer.QUEUED

    def _gate(self, c: _Camera, frame: Frame) -> Reason | None:
        """Why a due frame should be detected, or None when motion gating skips it."""
        if c.motion is None:
            return Reason.UNGATED
        result = c.motion.update(frame.image)
        c.counters.last_changed_fraction = result.changed_fraction
        if result.first:
            return Reason.FIRST
        if result.moving:
            return Reason.MOTION
        if c.last_selected_mono is None or frame.mono - c.last_selected_mono >= c.refresh_s - EPS:
            return Reason.REFRESH
        if c.pending is not None:
            return c.pending_reason  # a newer frame of a scene that just moved replaces the waiting one
        return None

    def next_batch(self) -> list[tuple[str, Frame]]:
        """Up to ``max_batch`` waiting frames, longest-waiting camera first. Stale frames are dropped."""
        now = self._clock()
        waiting: list[_Camera] = []
        for c in self._cams.values():
            if c.pending is None:
                continue
            if self.max_wait_s is not None and now - c.offered_at > self.max_wait_s + EPS:
                _bump(c.counters.dropped, Drop.STALE)
                log.debug(
                    "camera %s: frame %d dropped (stale): waited %.3fs for a detector slot",
                    c.plan.camera_id,
                    c.pending.index,
                    now - c.offered_at,
                )
                c.pending = None
                continue
            waiting.append(c)
        n = len(self._cams)
        waiting.sort(
            key=lambda c: (
                c.waiting_since,
                -1.0 if c.last_selected_at is None else c.last_selected_at,
                (c.order - self._rr_start) % n,
            )
        )
        batch: list[tuple[str, Frame]] = []
        for c in waiting[: self.max_batch]:
            frame = c.pending
            assert frame is not None
            c.pending = None
            c.counters.selected += 1
            _bump(c.counters.selected_by, c.pending_reason)
            c.advance(frame.mono)
            c.last_selected_mono = frame.mono
            c.last_selected_at = now
            self._rr_start = (c.order + 1) % n
            batch.append((c.plan.camera_id, frame))
        return batch

    def report(self) -> dict[str, dict[str, object]]:
        """Counters of every camera, for the agent's periodic log line and the heartbeat."""
        return {cid: c.counters.as_dict() for cid, c in self._cams.items()}

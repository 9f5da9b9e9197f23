"""The node's one detector loop: newest frames of every camera -> scheduler -> one batched detector call.

Why one loop instead of a thread per camera: onnxruntime already uses every core for one call, so parallel
calls only fight over them, and one batched call amortizes the per-call overhead across cameras. Capture stays
one thread per camera (``capture_reader``); this loop runs in the caller's thread and hands each camera's
detections to that camera's handler (its pipeline: tracker, rules, events).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.capture.reader import CaptureSet, ReaderMode
from edge_agent.capture.scheduler import DetectScheduler
from edge_agent.types import Detections, Frame, Image

log = logging.getLogger(__name__)

Detect = Callable[[list[Image]], list[Detections]]
# (camera id, frame, its detections, milliseconds of the batched detector call that produced them)
Handle = Callable[[str, Frame, Detections, float], None]


@dataclass(slots=True)
class LoopStats:
    """Detector-side counters: calls, frames, time, and handler failures per camera."""

    batches: int = 0
    frames: int = 0
    detect_ms_total: float = 0.0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    handler_errors: dict[str, int] = field(default_factory=dict)
    tick_errors: int = 0
    observe_errors: dict[str, int] = field(default_factory=dict)


class DetectLoop:
    """``run`` until ``stop`` is set or every source is exhausted; ``step`` does one round (tests)."""

    def __init__(
        self,
        captures: CaptureSet,
        scheduler: DetectScheduler,
        detect: Detect,
        handle: Handle,
        *,
        stop: threading.Event | None = None,
        idle_wait_s: float = 0.05,
        tick: Callable[[], None] | None = None,
        tick_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[str, Frame], None] | None = None,
    ) -> None:
        """``tick`` runs in this loop's thread every ``tick_every_s`` (the pipelines' time-based ends: they
        must happen even when no frame comes). ``observe`` sees every frame taken from a reader, detected or
        not (signal heads: a small crop per frame bridges LED flicker); its failures are counted per camera."""
        missing = set(captures.readers) ^ set(scheduler.camera_ids)
        if missing:
            raise ValueError(f"captures and scheduler disagree on cameras: {sorted(missing)}")
        self.captures = captures
        self.scheduler = scheduler
        self._detect = detect
        self._handle = handle
        self.stop = stop or threading.Event()
        self._idle_wait_s = idle_wait_s
        self._tick = tick
        self._observe = observe
        self._tick_every_s = tick_every_s
        self._clock = clock
        self._next_tick = clock() + tick_every_s
        self.stats = LoopStats()

    def _offer_all(self) -> int:
        """Offer what each camera has. A lossless camera offers frames in order until one waits for a slot
        (back-pressure: its reader blocks on its queue meanwhile); a live camera offers its newest frame."""
        offered = 0
        for cam_id, reader in self.captures.readers.items():
            if reader.mode is ReaderMode.LOSSLESS:
                while not self.scheduler.has_pending(cam_id):
                    frame = reader.take()
                    if frame is None:
                        break
                    self._see(cam_id, frame)
                    self.scheduler.offer(cam_id, frame)
                    offered += 1
            else:
                frame = reader.take()
                if frame is not None:
                    self._see(cam_id, frame)
                    self.scheduler.offer(cam_id, frame)
                    offered += 1
        return offered

    def _see(self, cam_id: str, frame: Frame) -> None:
        if self._observe is None:
            return
        try:
            self._observe(cam_id, frame)
        except Exception:
            s = self.stats
            s.observe_errors[cam_id] = s.observe_errors.get(cam_id, 0) + 1
            log.exception("camera %s: observing frame %d failed", cam_id, frame.index)

    def step(self) -> int:
        """One round: offer, pick a batch, detect, hand out. Returns the number of frames detected."""
        offered = self._offer_all()
        batch = self.scheduler.next_batch()
        if not batch:
            if not offered:
                self.captures.signal.wait(self._idle_wait_s)
            return 0
        t0 = time.perf_counter()
        results = self._detect([frame.image for _, frame in batch])
        ms = (time.perf_counter() - t0) * 1000.0
        s = self.stats
        s.batches += 1
        s.frames += len(batch)
        s.detect_ms_total += ms
        s.batch_sizes[len(batch)] = s.batch_sizes.get(len(batch), 0) + 1
        for (cam_id, frame), dets in zip(batch, results, strict=True):
            try:
                self._handle(cam_id, frame, dets, ms)
            except Exception:
                s.handler_errors[cam_id] = s.handler_errors.get(cam_id, 0) + 1
                log.exception(
                    "camera %s: handling frame %d failed (%d failures so far)",
                    cam_id,
                    frame.index,
                    s.handler_errors[cam_id],
                )
        return len(batch)

    def _drained(self) -> bool:
        return self.captures.all_exhausted() and not any(
            self.scheduler.has_pending(c) for c in self.scheduler.camera_ids
        )

    def run(self) -> None:
        """Loop until stopped or every camera ended (files without loop) and every waiting frame was used."""
        while not self.stop.is_set() and not self._drained():
            self.step()
            self.maybe_tick()

    def maybe_tick(self) -> None:
        """Call ``tick`` when it is due (failures are logged and counted, the loop goes on)."""
        if self._tick is None or self._clock() < self._next_tick:
            return
        self._next_tick = self._clock() + self._tick_every_s
        try:
            self._tick()
        except Exception:
            self.stats.tick_errors += 1
            log.exception("tick failed (%d failures so far)", self.stats.tick_errors)

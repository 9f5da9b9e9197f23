"""Camera input: video files (replayed in real time or as fast as possible) and network streams with reconnect.

File time, not wall time, drives the clocks of file frames (``mono = start + position``), so a rule sees the
same durations whether a clip is replayed in real time for a demo or as fast as possible in a test.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from edge_agent.types import Frame

log = logging.getLogger(__name__)


class CaptureError(Exception):
    """A source that cannot be used at all (missing or unreadable file, bad URL)."""


def is_stream(source: str) -> bool:
    return "://" in source


@dataclass(slots=True)
class CaptureStats:
    """Counters per camera; failures are data (reported in heartbeats and logs)."""

    frames: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    last_frame_mono: float | None = None


class VideoSource:
    """One camera's frames as an iterator. Streams reconnect with exponential backoff and jitter."""

    def __init__(
        self,
        camera_id: str,
        source: str,
        *,
        realtime: bool = True,
        loop: bool = False,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.camera_id = camera_id
        self.source = source
        self.realtime = realtime
        self.loop = loop
        self.stats = CaptureStats()
        self._stop = stop or threading.Event()
        self._clock = clock
        self._sleep = sleep
        self._max_backoff_s = max_backoff_s
        self.fps = 0.0
        self.size = (0, 0)
        if not is_stream(source):
            path = Path(source)
            if not path.is_file():
                raise CaptureError(f"camera {camera_id}: video file not found: {source}")
            cap = self._open()
            if cap is None:
                raise CaptureError(f"camera {camera_id}: cannot decode {source} (not a video, or corrupt)")
            cap.release()

    def _open(self) -> cv2.VideoCapture | None:
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            return None
        ok, probe = cap.read()
        if not ok or probe is None:
            cap.release()
            return None
        if not is_stream(self.source):
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # the probe read must not skip frame 0
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1.0 <= fps <= 240.0 else 25.0
        self.size = (int(probe.shape[1]), int(probe.shape[0]))
        return cap

    def frames(self) -> Iterator[Frame]:
        """Yield frames until the file ends (unless looping) or ``stop`` is set."""
        if is_stream(self.source):
            yield from self._stream_frames()
        else:
            yield from self._file_frames()

    def _file_frames(self) -> Iterator[Frame]:
        index = 0
        start_mono = self._clock()
        start_wall = datetime.now(UTC)
        offset_s = 0.0  # time of frame 0 of the current pass, so looping keeps time moving forward
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                raise CaptureError(f"camera {self.camera_id}: cannot reopen {self.source}")
            pass_frames = 0
            try:
                while not self._stop.is_set():
                    ok, image = cap.read()
                    if not ok or image is None:
                        break
                    pos_s = offset_s + pass_frames / self.fps
                    pass_frames += 1
                    if self.realtime:
                        ahead = start_mono + pos_s - self._clock()
                        if ahead > 0:
                            self._sleep(ahead)
                    self.stats.frames += 1
                    self.stats.last_frame_mono = start_mono + pos_s
                    yield Frame(
                        self.camera_id,
                        index,
                        np.asarray(image, dtype=np.uint8),
                        start_mono + pos_s,
                        start_wall + timedelta(seconds=pos_s),
                    )
                    index += 1
            finally:
                cap.release()
            if pass_frames == 0:
                self.stats.decode_errors += 1
                raise CaptureError(f"camera {self.camera_id}: {self.source} yielded no frames")
            if not self.loop:
                return
            offset_s += pass_frames / self.fps
            log.info("camera %s: end of %s, looping", self.camera_id, self.source)

    def _stream_frames(self) -> Iterator[Frame]:
        index = 0
        backoff = 1.0
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                self.stats.reconnects += 1
                delay = min(self._max_backoff_s, backoff) * random.uniform(0.5, 1.0)
                log.warning("camera %s: cannot open stream, retry in %.1fs", self.camera_id, delay)
                self._stop.wait(delay)
                backoff *= 2
                continue
            backoff = 1.0
            try:
                while not self._stop.is_set():
                    ok, image = cap.read()
                    if not ok or image is None:
                        self.stats.decode_errors += 1
                        log.warning("camera %s: stream read failed, reconnecting", self.camera_id)
                        break
                    now = self._clock()
                    self.stats.frames += 1
                    self.stats.last_frame_mono = now
                    yield Frame(
                        self.camera_id, index, np.asarray(image, dtype=np.uint8), now, datetime.now(UTC)
                    )
                    index += 1
            finally:
                cap.release()
            self.stats.reconnects += 1

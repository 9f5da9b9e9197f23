"""Camera input: video files (replayed in real time or as fast as possible), RTSP/HTTP streams and USB devices.

File time, not wall time, drives the clocks of file frames (``mono = start + position``), so a rule sees the
same durations whether a clip is replayed in real time for a demo or as fast as possible in a test. Live
sources (streams, devices) stamp frames with the clock at arrival and reconnect with exponential backoff and
jitter. ``VideoSource`` is the synchronous iterator; ``capture_reader.CameraReader`` runs one in a background
thread per camera with newest-frame semantics, a ring buffer and a stall watchdog.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from edge_agent.types import Frame

log = logging.getLogger(__name__)


class CaptureError(Exception):
    """A source that cannot be used at all (missing or unreadable file, bad URL)."""


class SourceKind(StrEnum):
    FILE = "file"
    STREAM = "stream"  # rtsp://, http(s):// MJPEG, anything else FFmpeg opens by URL
    DEVICE = "device"  # USB/V4L2 camera: "0" (index) or /dev/videoN


def source_kind(source: str) -> SourceKind:
    """Classify a configured source string.

    >>> [source_kind(s) for s in ("rtsp://cam/1", "http://cam/mjpg", "0", "/dev/video2", "clip.mp4")]
    [<SourceKind.STREAM: 'stream'>, <SourceKind.STREAM: 'stream'>, <SourceKind.DEVICE: 'device'>, \
<SourceKind.DEVICE: 'device'>, <SourceKind.FILE: 'file'>]
    """
    if "://" in source:
        return SourceKind.STREAM
    if source.isdigit() or source.startswith("/dev/video"):
        return SourceKind.DEVICE
    return SourceKind.FILE


def is_stream(source: str) -> bool:
    """Whether the source is live (a network stream or a device): no file time, reconnects instead of ending."""
    return source_kind(source) is not SourceKind.FILE


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` we use; tests inject fakes (hung reads, failing opens)."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)

    def read(self) -> tuple[bool, Any]: ...

    def get(self, prop_id: int) -> float: ...

    def set(self, prop_id: int, value: float) -> bool: ...

    def release(self) -> None: ...


Opener = Callable[[str, SourceKind, float, float], Capture]
# Whether anyone will use the frame of this time (monotonic): the detector's next slot, the clip ring's.
Want = Callable[[float], bool]


def read_wanted(cap: Capture, wanted: Callable[[], bool]) -> tuple[bool, Any, bool]:
    """Decode the next frame; convert it to BGR (a copy of the whole picture) only if ``wanted()`` (asked
    after the decode, so a live frame is judged by its arrival time).

    Returns (ok, image or None, converted). OpenCV's ``grab`` demuxes and decodes; ``retrieve`` converts the
    decoded YUV picture to a new BGR array, the part a frame nobody uses need not pay. Captures without
    ``grab``/``retrieve`` (test fakes) always read.
    """
    grab = getattr(cap, "grab", None)
    retrieve = getattr(cap, "retrieve", None)
    if grab is None or retrieve is None:
        ok, image = cap.read()
        return bool(ok) and image is not None, image, True
    if not grab():
        return False, None, False
    if not wanted():
        return True, None, False
    ok, image = retrieve()
    return bool(ok) and image is not None, image, True


def open_capture(
    source: str, kind: SourceKind, open_timeout_s: float, read_timeout_s: float, threads: int = 0
) -> Capture:
    """Open with OpenCV. Streams get FFmpeg open/read timeouts so a dead camera cannot block a reader forever
    (OpenCV's FFmpeg backend defaults RTSP to TCP, which survives packet loss without smeared frames).

    ``threads`` > 0 caps FFmpeg's decoder threads (0: FFmpeg's choice, one per core). With one reader per
    camera, several cameras already use every core, and each extra decoder thread holds frames of its own.
    """
    if kind is SourceKind.DEVICE:
        index = int(source) if source.isdigit() else source
        return cv2.VideoCapture(index, cv2.CAP_ANY)
    params: list[int] = []
    if threads > 0:
        params += [cv2.CAP_PROP_N_THREADS, threads]
    if kind is SourceKind.STREAM:
        params += [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(read_timeout_s * 1000),
        ]
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)


class Backoff:
    """Exponential backoff with equal jitter: the n-th wait lies in [d/2, d], d = min(cap, initial * 2**n).

    Jitter keeps the cameras of a cluster (and the nodes of a ward) from reconnecting in lockstep after a
    shared switch reboots.

    >>> b = Backoff(0.5, 4.0, rng=lambda: 1.0)
    >>> [b.next_delay() for _ in range(5)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
    """

    def __init__(self, initial_s: float, max_s: float, rng: Callable[[], float] = random.random) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng
        self.attempt = 0

    def next_delay(self) -> float:
        d = min(self.max_s, self.initial_s * 2.0 ** min(self.attempt, 60))
        self.attempt += 1
        return d / 2.0 + self._rng() * d / 2.0

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True)
class CaptureStats:
    """Counters per camera; failures are data (reported in heartbeats and logs).

    ``reconnects`` counts successful re-opens after a loss or a stall; ``open_failures`` the attempts that
    failed; ``decode_errors`` the reads of an open live source that returned no image (lost or broken stream),
    or a file that yielded nothing; ``unseen`` the frames replaced by a newer one before any consumer took them;
    ``grab_only`` the frames decoded but never converted to BGR because nobody wanted them (``VideoSource.want``).
    """

    frames: int = 0
    grab_only: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    open_failures: int = 0
    stalls: int = 0
    unseen: int = 0
    last_frame_mono: float | None = None


class SourceState(StrEnum):
    IDLE = "idle"
    OPENING = "opening"
    READING = "reading"
    BACKOFF = "backoff"
    ENDED = "ended"


class VideoSource:
    """One camera's frames as an iterator. Streams and devices reconnect with exponential backoff and jitter.

    ``state``/``state_since`` (on ``clock``) tell a watchdog whether the source is opening or reading (and so
    can stall) or deliberately waiting in backoff.
    """

    def __init__(
        self,
        camera_id: str,
        source: str,
        *,
        realtime: bool = True,
        loop: bool = False,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        max_backoff_s: float = 60.0,
        initial_backoff_s: float = 1.0,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        rng: Callable[[], float] = random.random,
        opener: Opener = open_capture,
        stats: CaptureStats | None = None,
        first_index: int = 0,
        wall: Callable[[], datetime] | None = None,
        want: Want | None = None,
        decode_threads: int = 0,
    ) -> None:
        self.camera_id = camera_id
        self.want = want  # None: every frame is converted and yielded
        self.source = source
        self.kind = source_kind(source)
        self.realtime = realtime
        self.loop = loop
        self.stats = stats if stats is not None else CaptureStats()
        self._stop = stop or threading.Event()
        self._clock = clock
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._wall = wall or (lambda: datetime.now(UTC))
        self._backoff = Backoff(initial_backoff_s, max(max_backoff_s, initial_backoff_s), rng)
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._opener = opener
        self._decode_threads = decode_threads
        self._index = first_index
        self._opened_once = False
        self._failures_in_row = 0
        self.state = SourceState.IDLE
        self.state_since = clock()
        self.fps = 0.0
        self.size = (0, 0)
        if self.kind is SourceKind.FILE:
            path = Path(source)
            if not path.is_file():
                raise CaptureError(f"camera {camera_id}: video file not found: {source}")
            cap = self._open()
            if cap is None:
                raise CaptureError(f"camera {camera_id}: cannot decode {source} (not a video, or corrupt)")
            cap.release()

    @property
    def next_index(self) -> int:
        """Index the next frame will carry (a restarted reader continues the numbering)."""
        return self._index

    def _set_state(self, state: SourceState) -> None:
        self.state = state
        self.state_since = self._clock()

    def _open(self) -> Capture | None:
        self._set_state(SourceState.OPENING)
        try:
            if self._decode_threads > 0 and self._opener is open_capture:
                cap = open_capture(
                    self.source, self.kind, self._open_timeout_s, self._read_timeout_s, self._decode_threads
                )
            else:
                cap = self._opener(self.source, self.kind, self._open_timeout_s, self._read_timeout_s)
        except cv2.error as err:
            log.warning("camera %s: opening %s raised %s", self.camera_id, self.source, err)
            return None
        if not cap.isOpened():
            cap.release()
            return None
        ok, probe = cap.read()
        if not ok or probe is None:
            cap.release()
            return None
        if self.kind is SourceKind.FILE:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # the probe read must not skip frame 0
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1.0 <= fps <= 240.0 else 25.0
        self.size = (int(probe.shape[1]), int(probe.shape[0]))
        return cap

    def _wanted_at(self, mono: float | None) -> Callable[[], bool]:
        """The question ``read_wanted`` asks after decoding: at file time ``mono``, or (live) at arrival."""
        want = self.want

        def wanted() -> bool:
            return want is None or want(self._clock() if mono is None else mono)

        return wanted

    def frames(self) -> Iterator[Frame]:
        """Yield frames until the file ends (unless looping) or ``stop`` is set."""
        try:
            if self.kind is SourceKind.FILE:
                yield from self._file_frames()
            else:
                yield from self._live_frames()
        finally:
            self._set_state(SourceState.ENDED)

    def _file_frames(self) -> Iterator[Frame]:
        start_mono = self._clock()
        start_wall = self._wall()
        offset_s = 0.0  # time of frame 0 of the current pass, so looping keeps time moving forward
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                raise CaptureError(f"camera {self.camera_id}: cannot reopen {self.source}")
            self._set_state(SourceState.READING)
            pass_frames = 0
            try:
                while not self._stop.is_set():
                    pos_s = offset_s + pass_frames / self.fps
                    ok, image, converted = read_wanted(cap, self._wanted_at(start_mono + pos_s))
                    if not ok:
                        break
                    pass_frames += 1
                    if self.realtime:
                        ahead = start_mono + pos_s - self._clock()
                        if ahead > 0:
                            self._sleep(ahead)
                    self.stats.frames += 1
                    self.stats.last_frame_mono = start_mono + pos_s
                    if not converted:
                        self.stats.grab_only += 1
                        self._index += 1
                        continue
                    yield Frame(
                        self.camera_id,
                        self._index,
                        np.asarray(image, dtype=np.uint8),
                        start_mono + pos_s,
                        start_wall + timedelta(seconds=pos_s),
                    )
                    self._index += 1
            finally:
                cap.release()
            if pass_frames == 0:
                self.stats.decode_errors += 1
                raise CaptureError(f"camera {self.camera_id}: {self.source} yielded no frames")
            if not self.loop:
                return
            offset_s += pass_frames / self.fps
            log.info("camera %s: end of %s, looping", self.camera_id, self.source)

    def _live_frames(self) -> Iterator[Frame]:
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                self.stats.open_failures += 1
                self._failures_in_row += 1
                delay = self._backoff.next_delay()
                log.warning(
                    "camera %s: cannot open %s (failure %d in a row, %d in all), retry in %.2fs",
                    self.camera_id,
                    self.source,
                    self._failures_in_row,
                    self.stats.open_failures,
                    delay,
                )
                self._set_state(SourceState.BACKOFF)
                self._stop.wait(delay)
                continue
            if self._opened_once:
                self.stats.reconnects += 1
                log.info(
                    "camera %s: reconnected to %s after %d failed attempt(s) (reconnect %d)",
                    self.camera_id,
                    self.source,
                    self._failures_in_row,
                    self.stats.reconnects,
                )
            self._failures_in_row = 0
            self._opened_once = True
            self._backoff.reset()
            self._set_state(SourceState.READING)
            try:
                while not self._stop.is_set():
                    ok, image, converted = read_wanted(cap, self._wanted_at(None))
                    if not ok:
                        self.stats.decode_errors += 1
                        log.warning(
                            "camera %s: read failed after frame %d (read errors %d), reconnecting",
                            self.camera_id,
                            self._index - 1,
                            self.stats.decode_errors,
                        )
                        break
                    now = self._clock()
                    self.stats.frames += 1
                    self.stats.last_frame_mono = now
                    if not converted:
                        self.stats.grab_only += 1
                        self._index += 1
                        self._set_state(SourceState.READING)
                        continue
                    yield Frame(
                        self.camera_id, self._index, np.asarray(image, dtype=np.uint8), now, self._wall()
                    )
                    self._index += 1
                    self._set_state(SourceState.READING)
            finally:
                cap.release()
            if not self._stop.is_set():
                self._set_state(SourceState.BACKOFF)
                self._stop.wait(self._backoff.next_delay())

    def mark_reconnecting(self) -> None:
        """A restarted reader's first open counts as a reconnect (the previous one was lost to a stall)."""
        self._opened_once = True

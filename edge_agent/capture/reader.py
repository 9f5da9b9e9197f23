"""One background reader per camera: newest frame + ring buffer, reconnects, stall watchdog, health counters.

Why a thread per camera: decoding must keep pace with the camera even when the detector is busy, otherwise
the stream's socket buffer fills, the camera drops packets and frames arrive smeared or late. The reader keeps
only the newest frame (``LATEST``: it never waits for the consumer and counts the frames nobody took), except
for files replayed as fast as possible (``LOSSLESS``: evaluation must see every frame, so the reader waits for
the consumer through a small queue instead of dropping).

The watchdog (``check_stall``, driven by ``CaptureSet`` once a second or by a test with a fake clock) restarts
a live camera that is connected or connecting but has delivered nothing for ``stall_timeout_s``. A read stuck
inside FFmpeg cannot be interrupted from Python, so the restart starts a fresh reader thread (a new
generation) and the stuck one exits, without delivering, as soon as its read returns.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from edge_agent.capture.sources import (
    CaptureError,
    CaptureStats,
    Opener,
    SourceKind,
    SourceState,
    VideoSource,
    Want,
    open_capture,
)
from edge_agent.config import CameraConfig, CaptureConfig
from edge_agent.types import Frame

log = logging.getLogger(__name__)

FPS_WINDOW_S = 5.0  # measured fps: frames that arrived in the last few seconds
LOSSLESS_PUT_POLL_S = 0.1  # how often a reader waiting for the consumer re-checks stop


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas before the reader threads start (like MALLOC_ARENA_MAX).

    glibc gives each thread that allocates its own arena (up to 8 per core); with one reader per camera, the
    detector and the runtime's threads, freed frame buffers stay spread over many arenas and the process keeps
    tens of MB it does not use (measured: -30 MB peak RSS at 8 cameras). Returns whether it was applied (glibc
    only; elsewhere a no-op).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None or "libc.so" not in name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(-8, arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


class ReaderMode(StrEnum):
    LATEST = "latest"  # live cameras and real-time replay: newest frame, never block on the consumer
    LOSSLESS = "lossless"  # files as fast as possible: every frame, back-pressure on the reader


class FrameSignal:
    """Wakes the one detector loop when any camera has a new frame, so it neither polls nor sleeps blindly.

    Consumers call ``wait`` and then look at every camera: a frame that arrives between the wake-up and the
    look is seen by the look, one that arrives after it sets the signal again.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self) -> None:
        self._event.set()

    def wait(self, timeout_s: float) -> bool:
        fired = self._event.wait(timeout_s)
        self._event.clear()
        return fired


@dataclass(frozen=True, slots=True)
class CaptureHealth:
    """A camera's health for heartbeats and logs (a copy; safe to hand to another thread)."""

    camera_id: str
    state: str
    frames: int
    decode_errors: int
    reconnects: int
    open_failures: int
    stalls: int
    unseen: int
    last_frame_age_s: float | None
    fps: float
    error: str | None


class CameraReader:
    """Reads one camera in a background thread; the detector loop takes frames with ``take``."""

    def __init__(
        self,
        camera_id: str,
        source: str,
        settings: CaptureConfig | None = None,
        *,
        realtime: bool = True,
        loop: bool = False,
        clock: Callable[[], float] = time.monotonic,
        opener: Opener = open_capture,
        rng: Callable[[], float] = random.random,
        signal: FrameSignal | None = None,
        sleep: Callable[[float], None] | None = None,
        consumer: bool = True,
        want: Want | None = None,
    ) -> None:
        self.camera_id = camera_id
        # False: an evidence-only reader (the camera's main stream): its frames go to the taps, never to
        # ``take``, so nothing counts them as unseen.
        self.consumer = consumer
        # Called in this reader's thread with every frame it converts (the clip ring's push).
        self.taps: list[Callable[[Frame], object]] = []
        self.tap_errors = 0
        self._want = want
        self.source = source
        self.settings = settings or CaptureConfig()
        self._realtime = realtime
        self._loop = loop
        self._clock = clock
        self._opener = opener
        self._rng = rng
        self._sleep = sleep
        self.signal = signal or FrameSignal()
        self.stats = CaptureStats()
        self._stop = threading.Event()
        self._gen_stop = threading.Event()
        self._gen = 0
        self._lock = threading.Lock()
        self._source = self._make_source(self._gen_stop, 0)  # fails fast on a missing or corrupt file
        self.mode = (
            ReaderMode.LOSSLESS
            if self._source.kind is SourceKind.FILE and not realtime
            else ReaderMode.LATEST
        )
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize=self.settings.queue_frames)
        self._newest: Frame | None = None
        self._newest_taken = True
        self._ring: deque[Frame] = deque()
        self._arrivals: deque[float] = deque(maxlen=256)
        self._last_frame_at: float | None = None
        self._threads: list[threading.Thread] = []
        self._ended = False
        self.error: CaptureError | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def _make_source(self, stop: threading.Event, first_index: int) -> VideoSource:
        s = self.settings
        return VideoSource(
            self.camera_id,
            self.source,
            realtime=self._realtime,
            loop=self._loop,
            stop=stop,
            clock=self._clock,
            sleep=self._sleep,
            max_backoff_s=s.reconnect_max_s,
            initial_backoff_s=s.reconnect_initial_s,
            open_timeout_s=s.open_timeout_s,
            read_timeout_s=s.read_timeout_s,
            rng=self._rng,
            opener=self._opener,
            stats=self.stats,
            first_index=first_index,
            want=self._want,
            decode_threads=s.decode_threads,
        )

    @property
    def want(self) -> Want | None:
        """Which frames are converted to BGR and delivered (None: all). Frames before the detector's next slot
        that no clip needs are decoded (the stream must be) but never converted or copied."""
        return self._want

    @want.setter
    def want(self, want: Want | None) -> None:
        self._want = want
        self._source.want = want

    def start(self) -> None:
        self._spawn(self._gen, self._source, self._gen_stop)

    def _spawn(self, gen: int, source: VideoSource, stop: threading.Event) -> None:
        t = threading.Thread(
            target=self._run, args=(gen, source, stop), name=f"cap-{self.camera_id}-{gen}", daemon=True
        )
        self._threads.append(t)
        t.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop reading. A thread stuck in a read is left behind (daemon); it exits when the read returns."""
        self._stop.set()
        with self._lock:
            self._gen_stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    @property
    def ended(self) -> bool:
        """The source finished (file end without loop, or a fatal error) and no thread reads any more."""
        return self._ended

    @property
    def exhausted(self) -> bool:
        """Ended and every frame it produced was taken: the consumer can forget this camera."""
        with self._lock:
            return self._ended and self._newest_taken and self._queue.empty()

    @property
    def size(self) -> tuple[int, int]:
        return self._source.size

    def _run(self, gen: int, source: VideoSource, stop: threading.Event) -> None:
        try:
            for frame in source.frames():
                if not self._deliver(frame, gen, stop):
                    break
        except CaptureError as err:
            self.error = err
            log.error("%s", err)
        except Exception as err:  # a reader must never die silently
            self.error = CaptureError(f"camera {self.camera_id}: reader crashed: {err!r}")
            log.exception("camera %s: reader crashed", self.camera_id)
        with self._lock:
            if gen == self._gen:
                self._ended = True
        self.signal.notify()  # wake the consumer so it notices the end

    # -- frames in ---------------------------------------------------------------------------------------

    def _tap(self, frame: Frame) -> None:
        for tap in self.taps:
            try:
                tap(frame)
            except Exception:
                self.tap_errors += 1
                log.exception(
                    "camera %s: frame %d: evidence tap failed (%d)",
                    self.camera_id,
                    frame.index,
                    self.tap_errors,
                )

    def _deliver(self, frame: Frame, gen: int, stop: threading.Event) -> bool:
        now = self._clock()
        if gen != self._gen:
            return False
        self._tap(frame)
        with self._lock:
            if gen != self._gen:
                return False  # a superseded (stalled) generation: its late frame is not ours any more
            self._last_frame_at = now
            self._arrivals.append(now)
            if not self.consumer:
                return True
            self._remember(frame)
            if self.mode is ReaderMode.LATEST:
                if not self._newest_taken:
                    self.stats.unseen += 1
                self._newest = frame
                self._newest_taken = False
        if self.mode is ReaderMode.LOSSLESS:
            while True:
                if stop.is_set():
                    return False
                try:
                    self._queue.put(frame, timeout=LOSSLESS_PUT_POLL_S)
                    break
                except queue.Full:
                    continue
            with self._lock:
                self._newest = frame
        self.signal.notify()
        return True

    def _remember(self, frame: Frame) -> None:
        """Append to the evidence ring at ``ring_fps`` and forget frames older than ``ring_seconds``."""
        s = self.settings
        if s.ring_seconds <= 0:
            return
        if self._ring and frame.mono < self._ring[-1].mono + 1.0 / s.ring_fps - 1e-6:
            return
        self._ring.append(frame)
        while self._ring and self._ring[0].mono < frame.mono - s.ring_seconds - 1e-6:
            self._ring.popleft()

    # -- frames out --------------------------------------------------------------------------------------

    def take(self, timeout_s: float = 0.0) -> Frame | None:
        """The next frame for the consumer, or None. ``LATEST``: the newest frame if not taken yet (never
        blocks). ``LOSSLESS``: the next frame in order, waiting up to ``timeout_s``."""
        if self.mode is ReaderMode.LOSSLESS:
            try:
                return self._queue.get(timeout=timeout_s) if timeout_s > 0 else self._queue.get_nowait()
            except queue.Empty:
                return None
        with self._lock:
            if self._newest_taken or self._newest is None:
                return None
            self._newest_taken = True
            return self._newest

    def untaken_mono(self) -> float | None:
        """Time of the newest frame if the consumer has not taken it yet (``LATEST`` mode), else None."""
        if self.mode is ReaderMode.LOSSLESS:
            return None
        newest = self._newest  # one read of a reference the reader thread replaces: no lock needed
        return None if newest is None or self._newest_taken else newest.mono

    def latest(self) -> Frame | None:
        """The newest frame read (taken or not), e.g. for a snapshot request."""
        with self._lock:
            return self._newest

    def ring(self, seconds_before: float) -> list[Frame]:
        """Frames of the last ``seconds_before`` seconds (frame time, newest frame included), oldest first."""
        with self._lock:
            if not self._ring:
                return []
            since = self._ring[-1].mono - seconds_before - 1e-6
            return [f for f in self._ring if f.mono >= since]

    # -- watchdog and health ------------------------------------------------------------------------------

    def check_stall(self) -> bool:
        """Restart a live camera stuck opening or reading for ``stall_timeout_s``. Returns whether it did."""
        src = self._source
        if src.kind is SourceKind.FILE or self._stop.is_set() or self._ended:
            return False
        if src.state not in (SourceState.OPENING, SourceState.READING):
            return False  # waiting in backoff is deliberate, not a stall
        silent_s = self._clock() - src.state_since
        limit_s = self.settings.stall_timeout_s
        if src.state is SourceState.OPENING:
            # an open has its own FFmpeg timeout; restarting it sooner only piles up connection attempts
            limit_s = max(limit_s, 2.0 * self.settings.open_timeout_s)
        if silent_s < limit_s:
            return False
        with self._lock:
            self._gen += 1
            gen = self._gen
            self._gen_stop.set()
            self._gen_stop = threading.Event()
            stop = self._gen_stop
        self.stats.stalls += 1
        self._threads = [t for t in self._threads if t.is_alive()]
        log.warning(
            "camera %s: %s for %.1fs without a frame, restarting the reader "
            "(stall %d, %d frames so far, %d stuck reader thread(s) left to time out)",
            self.camera_id,
            src.state.value,
            silent_s,
            self.stats.stalls,
            self.stats.frames,
            len(self._threads),
        )
        source = self._make_source(stop, src.next_index)
        source.mark_reconnecting()
        self._source = source
        self._spawn(gen, source, stop)
        return True

    def health(self) -> CaptureHealth:
        now = self._clock()
        with self._lock:
            recent = [t for t in self._arrivals if now - t <= FPS_WINDOW_S]
            span = recent[-1] - recent[0] if len(recent) >= 2 else 0.0
            fps = (len(recent) - 1) / span if span > 0 else 0.0
            age = None if self._last_frame_at is None else now - self._last_frame_at
        s = self.stats
        return CaptureHealth(
            camera_id=self.camera_id,
            state="ended" if self._ended else self._source.state.value,
            frames=s.frames,
            decode_errors=s.decode_errors,
            reconnects=s.reconnects,
            open_failures=s.open_failures,
            stalls=s.stalls,
            unseen=s.unseen,
            last_frame_age_s=age,
            fps=fps,
            error=None if self.error is None else str(self.error),
        )


class CaptureSet:
    """All cameras of the node: starts their readers and runs the watchdog thread over them.

    ``evidence``: the evidence-only readers of cameras with an ``evidence_source`` (their main stream), keyed
    by camera id; they feed clip rings through their taps and are started, watched and stopped with the rest.
    """

    def __init__(
        self,
        readers: Sequence[CameraReader],
        *,
        signal: FrameSignal | None = None,
        watchdog_interval_s: float = 1.0,
        evidence: Sequence[CameraReader] = (),
    ) -> None:
        self.readers = {r.camera_id: r for r in readers}
        self.evidence = {r.camera_id: r for r in evidence}
        self.signal = signal or (readers[0].signal if readers else FrameSignal())
        self._interval_s = watchdog_interval_s
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    @classmethod
    def from_config(
        cls,
        cameras: Sequence[CameraConfig],
        *,
        realtime: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> CaptureSet:
        """One reader per camera sharing one wake-up signal (plus one per evidence stream). Raises
        ``CaptureError`` for a bad file."""
        signal = FrameSignal()
        readers = [
            CameraReader(
                c.id,
                c.source,
                c.capture,
                realtime=c.realtime if realtime is None else realtime,
                loop=c.loop,
                clock=clock,
                signal=signal,
            )
            for c in cameras
        ]
        evidence = [
            CameraReader(
                c.id,
                c.evidence_source,
                c.capture,
                realtime=True,  # never back-pressured by the detector: newest frame, like a live camera
                loop=c.loop,
                clock=clock,
                consumer=False,
            )
            for c in cameras
            if c.evidence_source is not None
        ]
        return cls(readers, signal=signal, evidence=evidence)

    def _all(self) -> list[CameraReader]:
        return [*self.readers.values(), *self.evidence.values()]

    def start(self) -> None:
        for r in self._all():
            r.start()
        self._watchdog = threading.Thread(target=self._watch, name="capture-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            for r in self._all():
                try:
                    r.check_stall()
                except Exception:
                    log.exception("camera %s: watchdog check failed", r.camera_id)

    def stop(self) -> None:
        self._stop.set()
        for r in self._all():
            r.stop()
        if self._watchdog is not None:
            self._watchdog.join(2.0)

    def all_exhausted(self) -> bool:
        return all(r.exhausted for r in self.readers.values())

    def health(self) -> list[CaptureHealth]:
        return [r.health() for r in self.readers.values()]

    def errors(self) -> list[str]:
        return [f"{r.error}" for r in self.readers.values() if r.error is not None] + [
            f"evidence stream: {r.error}" for r in self.evidence.values() if r.error is not None
        ]

"""The background camera reader: lossless and newest-frame modes on the real clip, ring buffer, reconnects,
backoff and the stall watchdog (fake captures and an injected clock; waits are deadlines, never sleeps)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.capture.reader import CameraReader, CaptureSet, ReaderMode
from edge_agent.capture.sources import Backoff, CaptureError, SourceKind, SourceState
from edge_agent.config import CameraConfig, CaptureConfig
from tests.conftest import wait_until
from tests.paths import TOKYO

TOKYO_FRAMES = 368


class FakeClock:
    """Thread-safe enough for one writer at a time; reads are atomic under the GIL."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


class FakeCapture:
    """A scripted camera: ``frames`` good reads, then fail (``then='fail'``) or block until ``unblock``."""

    def __init__(self, tag: int, frames: int, then: str = "fail", clock: FakeClock | None = None) -> None:
        self.tag = tag
        self.remaining = frames + 1  # + the probe read of the open
        self.then = then
        self.clock = clock
        self.unblock = threading.Event()
        self.blocked = threading.Event()
        self.released = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def read(self) -> tuple[bool, Any]:
        if self.remaining > 0:
            self.remaining -= 1
            if self.clock is not None:
                self.clock.advance(0.1)
            return True, np.full((4, 6, 3), self.tag, np.uint8)
        if self.then == "block":
            self.blocked.set()
            self.unblock.wait(10.0)
            return True, np.full((4, 6, 3), self.tag, np.uint8)  # a late frame from a superseded generation
        return False, None

    def get(self, prop_id: int) -> float:
        return 10.0

    def set(self, prop_id: int, value: float) -> bool:
        return True

    def release(self) -> None:
        self.released.set()


class ScriptedOpener:
    """Hands out the scripted captures in order; ``None`` entries are failed opens; then fails forever."""

    def __init__(self, script: list[FakeCapture | None]) -> None:
        self.script = list(script)
        self.opened: list[FakeCapture] = []
        self.calls = 0

    def __call__(self, source: str, kind: SourceKind, open_s: float, read_s: float) -> FakeCapture:
        self.calls += 1
        cap = self.script.pop(0) if self.script else None
        if cap is None:
            dead = FakeCapture(-1, 0)
            dead.isOpened = lambda: False  # type: ignore[method-assign]
            return dead
        self.opened.append(cap)
        return cap


FAST_RETRY = CaptureConfig(reconnect_initial_s=0.01, reconnect_max_s=0.02, stall_timeout_s=5.0)


def drain_lossless(reader: CameraReader) -> list[Any]:
    frames = []
    while True:
        f = reader.take(timeout_s=0.05)
        if f is not None:
            frames.append(f)
        elif reader.exhausted:
            return frames
        assert len(frames) <= TOKYO_FRAMES


# -- files ---------------------------------------------------------------------------------------------


def test_missing_and_corrupt_files_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="video file not found"):
        CameraReader("cam-1", str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 1000)
    with pytest.raises(CaptureError, match="cannot decode"):
        CameraReader("cam-1", str(bad))
    with pytest.raises(CaptureError, match="video file not found"):
        CaptureSet.from_config([CameraConfig(id="c", source=str(tmp_path / "gone.mp4"))])


def test_fast_replay_is_lossless_with_back_pressure() -> None:
    """The consumer sees every frame in order with file time, though the queue holds only 2."""
    reader = CameraReader("cam-1", str(TOKYO), CaptureConfig(queue_frames=2), realtime=False)
    assert reader.mode is ReaderMode.LOSSLESS
    reader.start()
    try:
        frames = drain_lossless(reader)
    finally:
        reader.stop()
    assert [f.index for f in frames] == list(range(TOKYO_FRAMES))
    assert frames[30].mono - frames[0].mono == pytest.approx(1.0, abs=1e-6)
    assert (frames[0].width, frames[0].height) == (960, 540)
    h = reader.health()
    assert (h.frames, h.unseen, h.decode_errors, h.state, h.error) == (TOKYO_FRAMES, 0, 0, "ended", None)


def test_realtime_replay_never_waits_for_the_consumer_and_counts_unseen() -> None:
    """Real-time pacing on a fake clock (the injected sleep advances it): nobody takes frames while the file
    plays, yet the reader finishes; all but the newest frame are counted as never seen."""
    clock = FakeClock()
    lock = threading.Lock()

    def sleep(s: float) -> None:
        with lock:
            clock.advance(s)

    settings = CaptureConfig(ring_seconds=4.0, ring_fps=5.0)  # the raw ring is off by default; on here
    reader = CameraReader("cam-1", str(TOKYO), settings, realtime=True, clock=clock, sleep=sleep)
    assert reader.mode is ReaderMode.LATEST
    reader.start()
    try:
        wait_until(lambda: reader.ended, timeout_s=20.0, message="the file to end")
    finally:
        reader.stop()
    newest = reader.take()
    assert newest is not None and newest.index == TOKYO_FRAMES - 1
    assert reader.take() is None  # each frame is handed out once
    assert reader.exhausted
    h = reader.health()
    assert (h.frames, h.unseen) == (TOKYO_FRAMES, TOKYO_FRAMES - 1)
    assert h.fps == pytest.approx(30.0, rel=0.02)  # measured on the (paced) injected clock
    # the evidence ring: 5 fps over the last 4 s of file time, oldest first
    ring = reader.ring(2.0)
    assert (
        newest.mono - ring[-1].mono < 0.2
    )  # the ring is a 5 fps subsample: the newest frame may not be in it
    assert [round(b.mono - a.mono, 3) for a, b in itertools.pairwise(ring)] == [0.2] * 10
    assert ring[-1].mono - ring[0].mono <= 2.0 + 1e-6
    whole = reader.ring(100.0)
    assert ring[-1].mono - whole[0].mono <= 4.0 + 1e-6 and len(whole) == 21


@pytest.mark.parametrize(
    ("ring_seconds", "ring_fps", "expected"), [(0.0, 5.0, 0), (1.0, 10.0, 11), (3.0, 1.0, 4)]
)
def test_ring_size_follows_settings(ring_seconds: float, ring_fps: float, expected: int) -> None:
    settings = CaptureConfig(ring_seconds=ring_seconds, ring_fps=ring_fps, queue_frames=4)
    reader = CameraReader("cam-1", str(TOKYO), settings, realtime=False)
    reader.start()
    try:
        drain_lossless(reader)
    finally:
        reader.stop()
    assert len(reader.ring(100.0)) == expected


# -- live sources: reconnect, backoff, watchdog ---------------------------------------------------------------


def live_reader(
    opener: ScriptedOpener, clock: FakeClock, settings: CaptureConfig = FAST_RETRY
) -> CameraReader:
    return CameraReader(
        "cam-live", "rtsp://fake/stream", settings, clock=clock, opener=opener, rng=lambda: 1.0
    )


def test_lost_stream_reconnects_and_keeps_numbering() -> None:
    clock = FakeClock()
    opener = ScriptedOpener([FakeCapture(1, 3), None, None, FakeCapture(2, 4, then="block")])
    reader = live_reader(opener, clock)
    reader.start()
    try:
        wait_until(
            lambda: len(opener.opened) == 2 and opener.opened[1].blocked.is_set(),
            timeout_s=5.0,
            message="the reconnect",
        )
        h = reader.health()
        assert (h.frames, h.reconnects, h.open_failures, h.decode_errors, h.stalls) == (7, 1, 2, 1, 0)
        newest = reader.take()
        assert newest is not None and newest.index == 6 and int(newest.image[0, 0, 0]) == 2
        assert h.unseen == 6
    finally:
        opener.opened[-1].unblock.set()
        reader.stop()


def test_waiting_in_backoff_is_not_a_stall() -> None:
    clock = FakeClock()
    opener = ScriptedOpener([])  # the camera is unreachable
    slow_retry = CaptureConfig(reconnect_initial_s=60.0, reconnect_max_s=60.0, stall_timeout_s=2.0)
    reader = live_reader(opener, clock, slow_retry)
    reader.start()
    try:
        wait_until(lambda: reader.health().state == SourceState.BACKOFF, timeout_s=5.0, message="backoff")
        clock.advance(100.0)
        assert not reader.check_stall()
        assert reader.health().open_failures == 1
    finally:
        reader.stop()
    assert reader.stats.stalls == 0


def test_watchdog_restarts_a_hung_camera() -> None:
    clock = FakeClock()
    hung = FakeCapture(1, 5, then="block")
    fresh = FakeCapture(2, 3, then="block")
    opener = ScriptedOpener([hung, fresh])
    reader = live_reader(opener, clock, CaptureConfig(stall_timeout_s=5.0))
    reader.start()
    try:
        wait_until(hung.blocked.is_set, timeout_s=5.0, message="the camera to hang")
        assert reader.stats.frames == 5 and reader.health().state == SourceState.READING
        clock.advance(4.9)
        assert not reader.check_stall()  # not yet
        clock.advance(0.2)
        assert reader.check_stall()
        wait_until(
            lambda: reader.stats.frames == 8, timeout_s=5.0, message="frames from the restarted reader"
        )
        hung.unblock.set()  # the stuck read returns a late frame: it must be discarded, and the thread end
        wait_until(hung.released.is_set, timeout_s=5.0, message="the stuck capture to be released")
        assert reader.stats.frames == 9  # the late read was decoded (counted by the source) ...
        newest = reader.take()
        assert newest is not None and int(newest.image[0, 0, 0]) == 2  # ... but not delivered
        assert newest.index == 7  # numbering continues across the restart
    finally:
        fresh.unblock.set()
        reader.stop()
    h = reader.health()
    assert (h.stalls, h.reconnects) == (1, 1)


def test_stall_check_ignores_files_and_stopped_readers() -> None:
    reader = CameraReader("cam-1", str(TOKYO), realtime=False)
    assert not reader.check_stall()


def test_capture_set_watchdog_thread_runs_the_checks() -> None:
    clock = FakeClock()
    hung = FakeCapture(1, 2, then="block")
    opener = ScriptedOpener([hung, FakeCapture(2, 2, then="block")])
    reader = live_reader(opener, clock, CaptureConfig(stall_timeout_s=1.0))
    captures = CaptureSet([reader], watchdog_interval_s=0.01)
    captures.start()
    try:
        wait_until(hung.blocked.is_set, timeout_s=5.0, message="the camera to hang")
        clock.advance(2.0)
        wait_until(lambda: reader.stats.stalls == 1, timeout_s=5.0, message="the watchdog to restart")
        assert [h.camera_id for h in captures.health()] == ["cam-live"]
    finally:
        for cap in opener.opened:
            cap.unblock.set()
        captures.stop()


@pytest.mark.parametrize(
    ("initial", "cap", "rng", "expected"),
    [
        (0.5, 4.0, 1.0, [0.5, 1.0, 2.0, 4.0, 4.0]),
        (0.5, 4.0, 0.0, [0.25, 0.5, 1.0, 2.0, 2.0]),  # equal jitter: never below half the step
        (1.0, 1.0, 0.5, [0.75, 0.75, 0.75]),
    ],
)
def test_backoff(initial: float, cap: float, rng: float, expected: list[float]) -> None:
    b = Backoff(initial, cap, rng=lambda: rng)
    assert [b.next_delay() for _ in expected] == expected
    b.reset()
    assert b.next_delay() == expected[0]


def test_measured_fps_and_frame_age_use_the_injected_clock() -> None:
    clock = FakeClock()
    cap = FakeCapture(1, 20, then="block", clock=clock)  # each read takes 0.1 s of fake time
    reader = live_reader(ScriptedOpener([cap]), clock)
    reader.start()
    try:
        wait_until(cap.blocked.is_set, timeout_s=5.0, message="20 frames")
        h = reader.health()
        assert h.fps == pytest.approx(10.0, rel=1e-6)
        assert h.last_frame_age_s == pytest.approx(0.0)
        clock.advance(3.0)
        assert reader.health().last_frame_age_s == pytest.approx(3.0)
    finally:
        cap.unblock.set()
        reader.stop()

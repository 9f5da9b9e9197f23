"""The detector loop over real file readers with a fake detector: lossless replay sees every frame and detects
exactly the frame-time slots; real-time replay with a slow detector drops (counted) instead of queueing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_agent.capture.reader import CameraReader, CaptureSet, FrameSignal
from edge_agent.capture.scheduler import CameraPlan, DetectScheduler, Drop, Offer, Reason
from edge_agent.config import CaptureConfig, MotionConfig
from edge_agent.pipeline.detect_loop import DetectLoop
from edge_agent.types import Detections, Frame, Image
from tests.paths import ASSETS, TOKYO

TOKYO_FRAMES = 368
PARKING = ASSETS / "videos" / "intel_car_detection_parkinglot_topdown_768x432.mp4"  # mostly still, 12.5 fps
CROWD = ASSETS / "videos" / "crowd_dense_street_night_fixedcam_720x1280.mp4"  # 85 frames, 30 fps


class FakeDetector:
    def __init__(self, busy_s: float = 0.0) -> None:
        self.batches: list[int] = []
        self.busy_s = busy_s

    def __call__(self, images: list[Image]) -> list[Detections]:
        self.batches.append(len(images))
        if self.busy_s:
            time.sleep(self.busy_s)  # stands for inference time, not a test wait
        return [Detections.empty() for _ in images]


def run_with_deadline(loop: DetectLoop, timeout_s: float) -> None:
    timer = threading.Timer(timeout_s, loop.stop.set)
    timer.start()
    try:
        loop.run()
    finally:
        timer.cancel()
    assert not loop.stop.is_set(), f"loop did not finish within {timeout_s} s"


def readers(sources: dict[str, str], *, realtime: bool) -> CaptureSet:
    signal = FrameSignal()
    return CaptureSet(
        [
            CameraReader(c, s, CaptureConfig(queue_frames=4), realtime=realtime, signal=signal)
            for c, s in sources.items()
        ],
        signal=signal,
    )


def test_lossless_replay_sees_every_frame_and_detects_file_time_slots() -> None:
    captures = readers({"a": str(TOKYO), "b": str(TOKYO)}, realtime=False)
    scheduler = DetectScheduler([CameraPlan("a", 5.0), CameraPlan("b", 5.0)], max_batch=2, max_wait_s=None)
    handled: dict[str, list[Frame]] = {"a": [], "b": []}
    detector = FakeDetector()
    loop = DetectLoop(captures, scheduler, detector, lambda cam, f, d, ms: handled[cam].append(f))
    captures.start()
    try:
        run_with_deadline(loop, 60.0)
    finally:
        captures.stop()
    expected = list(range(0, TOKYO_FRAMES, 6))  # 30 fps file, 5 detect fps in file time: every 6th frame
    for cam in ("a", "b"):
        c = scheduler.counters(cam)
        assert (c.offered, c.selected, c.dropped) == (TOKYO_FRAMES, len(expected), {})
        assert c.skipped == {Offer.NOT_DUE: TOKYO_FRAMES - len(expected)}
        assert [f.index for f in handled[cam]] == expected
        assert captures.readers[cam].health().unseen == 0
    assert sum(detector.batches) == 2 * len(expected) and max(detector.batches) <= 2
    assert loop.stats.frames == 2 * len(expected)


@pytest.mark.skipif(not PARKING.is_file(), reason="clip missing (make assets)")
def test_motion_gating_saves_detector_calls_on_a_still_scene() -> None:
    captures = readers({"p": str(PARKING)}, realtime=False)
    gated = MotionConfig(refresh_s=2.0)
    scheduler = DetectScheduler([CameraPlan("p", 5.0, gated)], max_wait_s=None)
    loop = DetectLoop(captures, scheduler, FakeDetector(), lambda cam, f, d, ms: None)
    captures.start()
    try:
        run_with_deadline(loop, 60.0)
    finally:
        captures.stop()
    c = scheduler.counters("p")
    slots = c.selected + c.skipped.get(Offer.NO_MOTION, 0)
    assert c.offered == 377 and c.dropped == {}
    assert c.skipped[Offer.NO_MOTION] > slots // 3, c.as_dict()  # the topdown lot is still most of the time
    assert c.selected_by.get(Reason.REFRESH, 0) >= 1


@pytest.mark.skipif(not CROWD.is_file(), reason="clip missing (make assets)")
def test_realtime_replay_with_a_slow_detector_drops_and_counts() -> None:
    """Two cameras at 30 fps in real time (2.8 s), a detector that needs 0.15 s per call of one frame: the
    readers never wait, frames the loop never took are counted as unseen, waiting frames replaced by newer
    ones are counted as overload drops, and the two cameras share the detector equally."""
    captures = readers({"a": str(CROWD), "b": str(CROWD)}, realtime=True)
    scheduler = DetectScheduler([CameraPlan("a", 10.0), CameraPlan("b", 10.0)], max_batch=1, max_wait_s=1.0)
    loop = DetectLoop(captures, scheduler, FakeDetector(busy_s=0.15), lambda cam, f, d, ms: None)
    captures.start()
    started = time.monotonic()
    try:
        run_with_deadline(loop, 30.0)
    finally:
        captures.stop()
    wall = time.monotonic() - started  # >= 2.8 s; longer on a loaded machine, where decoding lags
    a, b = scheduler.counters("a"), scheduler.counters("b")
    # alternate while both play; the readers open and reach the end a frame or two apart in real time
    assert abs(a.selected - b.selected) <= 3 and min(a.selected, b.selected) >= 5, (a.as_dict(), b.as_dict())
    # a detector busy 0.15 s per call cannot have been called more often than the wall time allows
    assert a.selected + b.selected <= wall / 0.15 + 1
    for cam, c in (("a", a), ("b", b)):
        h = captures.readers[cam].health()
        assert h.frames == 85
        assert h.unseen > 0 and c.offered + h.unseen == 85  # every frame either offered or counted unseen
        assert c.dropped.get(Drop.OVERLOAD, 0) > 0
        assert c.offered == c.selected + sum(c.skipped.values()) + sum(c.dropped.values())


def test_loop_refuses_mismatched_cameras() -> None:
    captures = readers({"a": str(TOKYO)}, realtime=False)
    with pytest.raises(ValueError, match="disagree"):
        DetectLoop(captures, DetectScheduler([CameraPlan("b")]), FakeDetector(), lambda c, f, d, ms: None)


def test_handler_failure_is_counted_and_the_loop_goes_on() -> None:
    captures = readers({"a": str(TOKYO)}, realtime=False)
    scheduler = DetectScheduler([CameraPlan("a", 1.0)], max_wait_s=None)

    def handle(cam: str, frame: Frame, dets: Detections, ms: float) -> None:
        if frame.index == 0:
            raise RuntimeError("rule bug")

    loop = DetectLoop(captures, scheduler, FakeDetector(), handle)
    captures.start()
    try:
        run_with_deadline(loop, 60.0)
    finally:
        captures.stop()
    assert loop.stats.handler_errors == {"a": 1}
    assert scheduler.counters("a").selected == int(np.ceil(TOKYO_FRAMES / 30))


def test_tick_runs_on_its_clock_whether_frames_come_or_not() -> None:
    """The pipelines' time-based ends hang on this: ``maybe_tick`` calls ``tick`` once per interval of the
    injected clock, with or without frames, and a failing tick is counted, not fatal."""
    captures = readers({"a": str(TOKYO)}, realtime=False)
    now = [0.0]
    calls: list[float] = []

    def tick() -> None:
        calls.append(now[0])
        if len(calls) == 2:
            raise RuntimeError("tick bug")

    loop = DetectLoop(
        captures,
        DetectScheduler([CameraPlan("a", 1.0)], max_wait_s=None),
        FakeDetector(),
        lambda c, f, d, ms: None,
        tick=tick,
        tick_every_s=1.0,
        clock=lambda: now[0],
    )
    for t in (0.5, 0.99, 1.0, 1.5, 2.2, 2.3, 3.4, 9.0):
        now[0] = t
        loop.maybe_tick()  # no step, no frame: the detector is starved
    assert calls == [1.0, 2.2, 3.4, 9.0]
    assert loop.stats.tick_errors == 1


def test_observe_sees_every_frame_taken_detected_or_not() -> None:
    """Signal heads read every frame a reader hands over (the agent's ``observe``), not only the 5 fps the
    detector gets; a failing observer is counted and the loop goes on."""
    captures = readers({"a": str(TOKYO)}, realtime=False)
    scheduler = DetectScheduler([CameraPlan("a", 5.0)], max_wait_s=None)
    seen: list[int] = []
    detected: list[int] = []

    def observe(cam: str, frame: Frame) -> None:
        seen.append(frame.index)
        if frame.index == 3:
            raise RuntimeError("head bug")

    loop = DetectLoop(
        captures, scheduler, FakeDetector(), lambda c, f, d, ms: detected.append(f.index), observe=observe
    )
    captures.start()
    try:
        run_with_deadline(loop, 60.0)
    finally:
        captures.stop()
    assert seen == list(range(TOKYO_FRAMES))
    assert detected == list(range(0, TOKYO_FRAMES, 6))
    assert loop.stats.observe_errors == {"a": 1}

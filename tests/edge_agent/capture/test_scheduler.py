"""Scheduler: per-camera rate, motion gating with refresh, fairness under overload, exact drop accounting.

Everything runs on a fake clock with synthetic frames: a "round" offers each camera its newest frame at time
``t``, takes one batch, and advances ``t`` by the detector's duration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest

from edge_agent.capture.scheduler import CameraPlan, DetectScheduler, Drop, Offer, Reason
from edge_agent.config import AgentConfig, CameraConfig, ModelConfig, MotionConfig, SchedulerConfig
from edge_agent.types import Frame

STILL = np.full((90, 160, 3), 100, np.uint8)
WALL = datetime(2025, 1, 1, tzinfo=UTC)
UNGATED = None


def moving(t: float) -> np.ndarray:
    """A bright square whose position depends on time: every sample differs from the previous one."""
    img = STILL.copy()
    x = int(t * 200) % 140
    img[30:50, x : x + 20] = 255
    return img


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Sim:
    scheduler: DetectScheduler
    clock: FakeClock
    index: dict[str, int]

    def frame(self, cam: str, t: float, image: np.ndarray = STILL) -> Frame:
        self.index[cam] = self.index.get(cam, -1) + 1
        return Frame(cam, self.index[cam], image, t, WALL)

    def offer(self, cam: str, t: float, image: np.ndarray = STILL) -> Offer:
        return self.scheduler.offer(cam, self.frame(cam, t, image))


def make(plans: list[CameraPlan], max_batch: int = 4, max_wait_s: float | None = 10.0) -> Sim:
    clock = FakeClock()
    return Sim(DetectScheduler(plans, max_batch=max_batch, max_wait_s=max_wait_s, clock=clock), clock, {})


def assert_conserved(s: DetectScheduler) -> None:
    """Every offered frame is in exactly one counter, or still pending."""
    for cam in s.camera_ids:
        c = s.counters(cam)
        pending = 1 if s.has_pending(cam) else 0
        assert c.offered == c.selected + sum(c.skipped.values()) + sum(c.dropped.values()) + pending, cam
        assert c.selected == sum(c.selected_by.values()), cam


@pytest.mark.parametrize(
    ("detect_fps", "input_fps", "seconds", "selected"),
    [
        (5.0, 30.0, 2.0, 10),
        (2.0, 30.0, 3.0, 6),
        (30.0, 30.0, 1.0, 30),
        (10.0, 25.0, 1.0, 10),  # 25 fps input has no frame on every 0.1 s slot: the average rate still holds
        (5.0, 3.0, 2.0, 6),  # slower input than detect rate: every frame
    ],
)
def test_per_camera_fps_is_respected(
    detect_fps: float, input_fps: float, seconds: float, selected: int
) -> None:
    sim = make([CameraPlan("a", detect_fps, UNGATED)])
    n = round(seconds * input_fps)
    for i in range(n):
        sim.offer("a", i / input_fps)
        sim.scheduler.next_batch()
    c = sim.scheduler.counters("a")
    assert c.selected == selected
    assert c.skipped == ({Offer.NOT_DUE: n - selected} if n > selected else {})
    assert c.dropped == {}
    assert_conserved(sim.scheduler)


def test_rates_differ_per_camera_in_one_batch_stream() -> None:
    sim = make([CameraPlan("fast", 10.0, UNGATED), CameraPlan("slow", 1.0, UNGATED)])
    for i in range(90):  # 3 s at 30 fps, both cameras, batch room for both
        for cam in ("fast", "slow"):
            sim.offer(cam, i / 30)
        sim.scheduler.next_batch()
    assert sim.scheduler.counters("fast").selected == 30
    assert sim.scheduler.counters("slow").selected == 3


def run_rounds(
    sim: Sim, cams: list[str], rounds: int, step_s: float, image: Callable[[float], np.ndarray] = moving
) -> dict[str, int]:
    """Each round: every camera offers a new frame at ``t``, one batch is taken, the detector takes ``step_s``."""
    got = {c: 0 for c in cams}
    for r in range(rounds):
        t = r * step_s
        sim.clock.t = t
        for cam in cams:
            sim.offer(cam, t, image(t))
        for cam, _ in sim.scheduler.next_batch():
            got[cam] += 1
    return got


@pytest.mark.parametrize(
    ("n_cams", "max_batch", "rounds", "share"),
    [
        (2, 1, 10, 5),
        (4, 1, 40, 10),
        (4, 2, 40, 20),
        (8, 3, 80, 30),
        (3, 2, 30, 20),
    ],
)
def test_equal_share_under_overload(n_cams: int, max_batch: int, rounds: int, share: int) -> None:
    """Every camera always has a due frame (30 fps detect, 0.1 s per detector call): capacity decides."""
    cams = [f"c{i}" for i in range(n_cams)]
    sim = make([CameraPlan(c, 30.0, UNGATED) for c in cams], max_batch=max_batch)
    got = run_rounds(sim, cams, rounds, step_s=0.1)
    assert got == {c: share for c in cams}
    for c in cams:
        counters = sim.scheduler.counters(c)
        assert counters.dropped.get(Drop.OVERLOAD, 0) == rounds - share - (
            1 if sim.scheduler.has_pending(c) else 0
        )
    assert_conserved(sim.scheduler)


def test_drops_counted_exactly_two_cameras_one_slot() -> None:
    """a, b offered every round, one slot: they alternate and each waiting frame is replaced once."""
    sim = make([CameraPlan("a", 30.0, UNGATED), CameraPlan("b", 30.0, UNGATED)], max_batch=1)
    got = run_rounds(sim, ["a", "b"], rounds=10, step_s=0.1)
    a, b = sim.scheduler.counters("a"), sim.scheduler.counters("b")
    assert got == {"a": 5, "b": 5}
    assert (a.offered, a.selected, a.dropped, sim.scheduler.has_pending("a")) == (
        10,
        5,
        {Drop.OVERLOAD: 4},
        True,
    )
    assert (b.offered, b.selected, b.dropped, sim.scheduler.has_pending("b")) == (
        10,
        5,
        {Drop.OVERLOAD: 5},
        False,
    )


def test_busy_camera_does_not_starve_the_others() -> None:
    """One camera wants 30 detections/s, three want 5/s, the detector does 10/s: the quiet ones get served."""
    cams = ["busy", "q1", "q2", "q3"]
    plans = [CameraPlan("busy", 30.0, UNGATED)] + [CameraPlan(c, 5.0, UNGATED) for c in cams[1:]]
    sim = make(plans, max_batch=1)
    got = run_rounds(sim, cams, rounds=60, step_s=0.1)
    assert sum(got.values()) == 60
    assert min(got.values()) >= 14, got  # equal share is 15 each
    assert got["busy"] <= 16, got
    assert_conserved(sim.scheduler)


def test_idle_capacity_goes_to_the_busy_camera() -> None:
    """Without overload nobody waits: each camera gets its own rate."""
    cams = ["busy", "quiet"]
    sim = make([CameraPlan("busy", 10.0, UNGATED), CameraPlan("quiet", 2.0, UNGATED)], max_batch=2)
    got = run_rounds(sim, cams, rounds=30, step_s=0.1)
    assert got == {"busy": 30, "quiet": 6}
    assert sim.scheduler.counters("busy").dropped == {}


MOTION = MotionConfig(refresh_s=1.0)


def test_still_camera_is_skipped_until_refresh() -> None:
    sim = make([CameraPlan("a", 5.0, MOTION)])
    reasons: list[tuple[float, Reason]] = []
    for i in range(90):  # 3 s at 30 fps of a still scene
        t = i / 30
        sim.offer("a", t)
        for _, f in sim.scheduler.next_batch():
            reasons.append((round(f.mono, 3), Reason.FIRST if f.mono == 0 else Reason.REFRESH))
    c = sim.scheduler.counters("a")
    assert [t for t, _ in reasons] == [0.0, 1.0, 2.0]
    assert c.selected_by == {Reason.FIRST: 1, Reason.REFRESH: 2}
    assert c.skipped == {Offer.NO_MOTION: 12, Offer.NOT_DUE: 75}  # 15 slots at 5 fps, 3 used
    assert_conserved(sim.scheduler)


def test_motion_wakes_a_gated_camera_at_its_detect_rate() -> None:
    sim = make([CameraPlan("a", 5.0, MOTION)])
    selected: list[float] = []
    for i in range(60):  # still for 1 s, then a moving square for 1 s
        t = i / 30
        sim.offer("a", t, STILL if t < 1.0 else moving(t))
        selected += [round(f.mono, 3) for _, f in sim.scheduler.next_batch()]
    assert selected == [0.0, 1.0, 1.2, 1.4, 1.6, 1.8]
    c = sim.scheduler.counters("a")
    assert c.selected_by == {Reason.FIRST: 1, Reason.MOTION: 5}  # 1.0 moved as well as being a refresh


def test_gated_and_ungated_cameras_share_the_detector() -> None:
    """Under overload a still, gated camera costs only its refreshes; the moving ones share the rest."""
    cams = ["still", "m1", "m2"]
    plans = [
        CameraPlan("still", 5.0, MOTION),
        CameraPlan("m1", 30.0, UNGATED),
        CameraPlan("m2", 30.0, UNGATED),
    ]
    sim = make(plans, max_batch=1)
    got = {c: 0 for c in cams}
    for r in range(40):
        t = r * 0.1
        sim.clock.t = t
        sim.offer("still", t, STILL)
        sim.offer("m1", t, moving(t))
        sim.offer("m2", t, moving(t))
        for cam, _ in sim.scheduler.next_batch():
            got[cam] += 1
    assert got["still"] == 4  # first frame, then refresh at 1, 2, 3 s (each picked at most a round later)
    assert got["m1"] + got["m2"] == 36 and abs(got["m1"] - got["m2"]) <= 1
    assert_conserved(sim.scheduler)


def test_stale_frame_is_dropped_not_detected_late() -> None:
    sim = make([CameraPlan("a", 5.0, UNGATED)], max_wait_s=0.5)
    sim.offer("a", 0.0)
    sim.clock.t = 0.6  # the camera delivered nothing newer and the detector was busy
    assert sim.scheduler.next_batch() == []
    assert sim.scheduler.counters("a").dropped == {Drop.STALE: 1}
    assert not sim.scheduler.has_pending("a")
    assert sim.offer("a", 0.6) is Offer.QUEUED  # the slot was not consumed by the stale frame
    assert [f.mono for _, f in sim.scheduler.next_batch()] == [0.6]


def test_lossless_caller_never_drops() -> None:
    """A caller that offers only when nothing is pending (fast file replay) loses nothing."""
    sim = make([CameraPlan("a", 5.0, UNGATED), CameraPlan("b", 5.0, UNGATED)], max_batch=1, max_wait_s=None)
    queues = {c: [i / 30 for i in range(60)] for c in ("a", "b")}
    selected = 0
    while any(queues.values()) or any(sim.scheduler.has_pending(c) for c in queues):
        for cam, q in queues.items():
            while q and not sim.scheduler.has_pending(cam):
                sim.offer(cam, q.pop(0))
        sim.clock.t += 5.0  # a very slow detector: nothing goes stale without max_wait_s
        selected += len(sim.scheduler.next_batch())
    for cam in ("a", "b"):
        c = sim.scheduler.counters(cam)
        assert (c.offered, c.selected, c.dropped) == (60, 10, {})
    assert selected == 20


def test_batch_is_bounded_and_one_frame_per_camera() -> None:
    cams = [f"c{i}" for i in range(6)]
    sim = make([CameraPlan(c, 5.0, UNGATED) for c in cams], max_batch=4)
    for c in cams:
        sim.offer(c, 0.0)
    first = sim.scheduler.next_batch()
    second = sim.scheduler.next_batch()
    assert [c for c, _ in first] == ["c0", "c1", "c2", "c3"]
    assert [c for c, _ in second] == ["c4", "c5"]
    assert sim.scheduler.next_batch() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "max_batch"),
        ({"plans": [CameraPlan("a"), CameraPlan("a")]}, "duplicate camera"),
    ],
)
def test_invalid_construction(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"plans": [CameraPlan("a")], **kwargs}
    with pytest.raises(ValueError, match=message):
        DetectScheduler(**args)  # type: ignore[arg-type]


def test_from_config_reads_camera_and_scheduler_settings(tmp_path) -> None:
    cfg = AgentConfig(
        node_id="n1",
        model=ModelConfig(path=tmp_path / "m.onnx"),
        cameras=[
            CameraConfig(id="a", source="a.mp4", detect_fps=2.0, motion=MotionConfig(enabled=False)),
            CameraConfig(id="b", source="rtsp://x/1"),
        ],
        scheduler=SchedulerConfig(max_batch=2, max_wait_s=0.25),
    )
    s = DetectScheduler.from_config(cfg)
    assert (s.max_batch, s.max_wait_s, s.camera_ids) == (2, 0.25, ["a", "b"])
    assert DetectScheduler.from_config(cfg, lossless=True).max_wait_s is None

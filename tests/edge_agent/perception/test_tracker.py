"""ByteTracker on synthetic detection sequences with injected time."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.perception.tracker import ByteTracker
from edge_agent.types import Detections

NAMES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
CAR, TRUCK = 2, 5


def dets(*boxes: tuple[float, float, float, float, float] | tuple[float, float, float, float, float, int]):
    """Detections from (x1, y1, x2, y2, score[, class_id]) tuples; class defaults to car."""
    if not boxes:
        return Detections.empty(NAMES)
    xyxy = np.array([b[:4] for b in boxes], np.float32)
    scores = np.array([b[4] for b in boxes], np.float32)
    classes = np.array([b[5] if len(b) > 5 else CAR for b in boxes], np.int64)
    return Detections(xyxy, scores, classes, NAMES)


def box(x: float, y: float, w: float = 60.0, h: float = 40.0, score: float = 0.9, cls: int = CAR):
    return (x, y, x + w, y + h, score, cls)


def ids(tracks) -> list[int]:
    return [t.track_id for t in tracks]


@pytest.mark.parametrize(
    ("vx", "vy", "fps"),
    [
        pytest.param(50.0, 0.0, 5.0, id="right-5fps"),
        pytest.param(-30.0, 20.0, 10.0, id="diagonal-10fps"),
        pytest.param(0.0, -80.0, 15.0, id="up-15fps"),
        pytest.param(0.0, 0.0, 5.0, id="parked"),
    ],
)
def test_constant_velocity_keeps_one_id_and_velocity_converges(vx, vy, fps):
    tracker = ByteTracker()
    seen: set[int] = set()
    for f in range(30):
        t = f / fps
        out = tracker.update(dets(box(400 + vx * t, 300 + vy * t)), t)
        if f >= 1:
            assert len(out) == 1
            seen.add(out[0].track_id)
    assert seen == {1}
    track = out[0]
    assert track.velocity == pytest.approx((vx, vy), abs=max(1.0, 0.02 * np.hypot(vx, vy)))


def test_velocity_with_irregular_frame_intervals():
    """dt comes from ``now``: a detector stalling under load must not distort the px/s estimate."""
    tracker = ByteTracker()
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.05, 0.4, 40))
    for t in times:
        out = tracker.update(dets(box(100 + 40.0 * t, 200 + 10.0 * t)), float(t))
    assert ids(out) == [1]
    assert out[0].velocity == pytest.approx((40.0, 10.0), abs=1.0)


def test_crossing_boxes_keep_their_ids():
    tracker = ByteTracker()
    fps, speed = 10.0, 150.0  # px/s each, opposite directions, partially overlapping when they pass
    first: dict[str, int] = {}
    for f in range(40):
        t = f / fps
        a = box(100 + speed * t, 100)
        b = box(700 - speed * t, 115)
        out = tracker.update(dets(a, b), t)
        if f == 1:
            by_x = sorted(out, key=lambda tr: tr.xyxy[0])
            first = {"a": by_x[0].track_id, "b": by_x[1].track_id}
        if f >= 1:
            assert len(out) == 2
            by_id = {tr.track_id: tr for tr in out}
            assert by_id[first["a"]].xyxy[1] == pytest.approx(100.0)  # a rides at y=100, b at y=115
            assert by_id[first["b"]].xyxy[1] == pytest.approx(115.0)
    assert first["a"] != first["b"]


@pytest.mark.parametrize(
    ("gap_s", "same_id"),
    [
        pytest.param(0.6, True, id="short-gap"),
        pytest.param(2.8, True, id="just-under-max-lost"),
        pytest.param(3.4, False, id="over-max-lost"),
    ],
)
def test_missing_frames(gap_s, same_id):
    tracker = ByteTracker(max_lost_s=3.0)
    dt, vx = 0.2, 20.0
    t = 0.0
    for _ in range(10):
        out = tracker.update(dets(box(300 + vx * t, 300)), t)
        t = round(t + dt, 6)
    original = out[0].track_id
    last_seen = t - dt
    while t - last_seen < gap_s:
        assert tracker.update(dets(), t) == []
        t = round(t + dt, 6)
    out = tracker.update(dets(box(300 + vx * t, 300)), t)
    out += tracker.update(dets(box(300 + vx * (t + dt), 300)), t + dt)
    assert out, "the object is tracked again"
    assert (out[-1].track_id == original) is same_id


def test_low_score_detection_continues_a_track_but_never_starts_one():
    tracker = ByteTracker()
    tracker.update(dets(box(100, 100)), 0.0)
    out = tracker.update(dets(box(102, 100)), 0.2)
    assert ids(out) == [1]
    # Occluded: the score drops below high_thresh; the second association keeps the id.
    for i, t in enumerate((0.4, 0.6, 0.8)):
        out = tracker.update(dets(box(104 + 2 * i, 100, score=0.15)), t)
        assert ids(out) == [1]
        assert out[0].score == pytest.approx(0.15)
        assert out[0].time_since_update == 0
    # A lone low-score box elsewhere never becomes a track, however long it stays.
    lone = ByteTracker()
    for f in range(20):
        assert lone.update(dets(box(500, 500, score=0.15)), f * 0.2) == []
    assert lone.live_count == 0


def test_high_score_below_new_track_thresh_does_not_start_a_track():
    tracker = ByteTracker(high_thresh=0.5, new_track_thresh=0.6)
    for f in range(10):
        assert tracker.update(dets(box(500, 500, score=0.55)), f * 0.2) == []
    assert tracker.live_count == 0


def test_detections_below_low_thresh_are_ignored():
    tracker = ByteTracker()
    tracker.update(dets(box(100, 100)), 0.0)
    tracker.update(dets(box(100, 100)), 0.2)
    assert tracker.update(dets(box(100, 100, score=0.05)), 0.4) == []


@pytest.mark.parametrize("min_hits", [1, 2, 3, 5])
def test_tentative_tracks_are_not_returned_before_min_hits(min_hits):
    tracker = ByteTracker(min_hits=min_hits)
    for f in range(8):
        out = tracker.update(dets(box(100 + f, 100)), f * 0.2)
        if f + 1 < min_hits:
            assert out == []
        else:
            assert ids(out) == [1]
            assert out[0].hits == f + 1


def test_tentative_track_that_misses_is_dropped():
    tracker = ByteTracker(min_hits=3)
    tracker.update(dets(box(100, 100)), 0.0)
    tracker.update(dets(), 0.2)
    assert tracker.live_count == 0
    tracker.update(dets(box(100, 100)), 0.4)
    tracker.update(dets(box(100, 100)), 0.6)
    out = tracker.update(dets(box(100, 100)), 0.8)
    assert ids(out) == [2]


def test_ids_are_positive_increasing_and_never_reused():
    tracker = ByteTracker(max_lost_s=0.5)
    all_ids: list[int] = []
    t = 0.0
    for burst in range(20):
        x = 50.0 + 200.0 * (burst % 5)  # the same places again and again
        for _ in range(3):
            out = tracker.update(dets(box(x, 100), box(x, 400)), t)
            t += 0.2
        all_ids += ids(out)
        for _ in range(5):  # gone for 1 s > max_lost_s
            tracker.update(dets(), t)
            t += 0.2
    assert len(all_ids) == 40
    assert len(set(all_ids)) == 40
    assert all(i > 0 for i in all_ids)
    assert all_ids == sorted(all_ids)
    assert tracker.live_count == 0


def test_history_holds_time_and_bottom_centre_anchor():
    tracker = ByteTracker()
    frames = [(0.0, 100.0, 200.0), (0.2, 104.0, 201.0), (0.4, 108.0, 202.0), (0.6, 112.0, 203.0)]
    for t, x, y in frames:
        out = tracker.update(dets(box(x, y, w=60.0, h=40.0)), t)
    track = out[0]
    assert list(track.history) == [(t, x + 30.0, y + 40.0) for t, x, y in frames]
    assert track.anchor == (142.0, 243.0)
    assert (track.first_seen, track.last_seen) == (0.0, 0.6)


def test_track_box_is_the_detection_not_the_filter_estimate():
    tracker = ByteTracker()
    tracker.update(dets(box(100, 100)), 0.0)
    out = tracker.update(dets((110.5, 101.25, 170.5, 141.0, 0.8)), 0.2)
    np.testing.assert_array_equal(out[0].xyxy, np.array([110.5, 101.25, 170.5, 141.0], np.float32))
    assert out[0].score == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("sequence", "label"),
    [
        pytest.param([CAR, CAR, TRUCK, CAR, TRUCK, CAR], "car", id="car-with-flicker"),
        pytest.param([CAR, TRUCK, TRUCK, TRUCK, CAR, TRUCK], "truck", id="mostly-truck"),
        pytest.param([TRUCK, CAR], "truck", id="tie-keeps-first"),
        pytest.param([TRUCK, CAR, CAR], "car", id="overtaken"),
    ],
)
def test_class_is_a_majority_vote(sequence, label):
    tracker = ByteTracker(min_hits=1)
    for f, cls in enumerate(sequence):
        out = tracker.update(dets(box(200 + f, 200, cls=cls)), f * 0.2)
        assert ids(out) == [1]
    assert out[0].label == label
    assert out[0].class_id == NAMES.index(label)


def test_same_class_preferred_when_overlap_is_ambiguous():
    tracker = ByteTracker()
    for f in range(3):
        tracker.update(dets(box(100, 100, cls=CAR), box(400, 100, cls=TRUCK)), f * 0.2)
    # Both classes appear at the car's place with the same box; the car track takes the car box.
    out = tracker.update(dets(box(100, 100, cls=TRUCK, score=0.9), box(100, 100, cls=CAR, score=0.9)), 0.6)
    car = next(t for t in out if t.track_id == 1)
    assert car.label == "car"
    assert car.hits == 4


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        ByteTracker(low_thresh=0.6, high_thresh=0.5)
    with pytest.raises(ValueError):
        ByteTracker(new_track_thresh=0.2)
    with pytest.raises(ValueError):
        ByteTracker(min_hits=0)


def test_non_finite_boxes_are_ignored():
    tracker = ByteTracker(min_hits=1)
    out = tracker.update(dets((np.nan, 0.0, 10.0, 10.0, 0.9), box(100, 100)), 0.0)
    assert len(out) == 1


def test_hundred_moving_objects_keep_their_ids():
    """A busy street: 100 boxes on a grid, each moving at its own constant velocity. Speed is measured in
    scripts/bench_*.py, not here."""
    rng = np.random.default_rng(0)
    gx, gy = np.meshgrid(np.arange(10), np.arange(10))
    pos = np.stack([gx.ravel() * 180.0, gy.ravel() * 180.0], axis=1)
    vel = rng.uniform(-40, 40, (100, 2))
    wh = rng.uniform(40, 100, (100, 2))
    tracker = ByteTracker()
    ids_by_frame = []
    for f in range(60):
        t = f * 0.2
        p = pos + vel * t
        xyxy = np.concatenate([p, p + wh], axis=1).astype(np.float32)
        d = Detections(xyxy, np.full(100, 0.9, np.float32), np.full(100, 2, np.int64), NAMES)
        out = tracker.update(d, t)
        ids_by_frame.append({tr.track_id for tr in out})
    assert len(ids_by_frame[1]) == 100
    assert all(ids == ids_by_frame[1] for ids in ids_by_frame[1:])

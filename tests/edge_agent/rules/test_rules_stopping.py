"""IllegalStoppingRule as a state machine over scripted tracks and injected monotonic time."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from edge_agent.config import ZoneConfig
from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding
from edge_agent.rules.ruleconfig import IllegalStoppingRuleConfig
from edge_agent.rules.schedule import fixed_clock
from edge_agent.rules.stopping import IllegalStoppingRule
from edge_agent.types import Track
from tests.edge_agent.rules.rulekit import LOCAL_MIDNIGHT_MON

W, H = 1920, 1080
# Pixels: x 480..1440, y 540..1080 (bottom half, middle half).
ZONE = ZoneConfig(id="no-stop", polygon=[(0.25, 0.5), (0.75, 0.5), (0.75, 1.0), (0.25, 1.0)])
RADIUS = 0.03 * W  # 57.6 px
DT = 0.5  # s between frames


def make_rule(**overrides: object) -> IllegalStoppingRule:
    params: dict[str, object] = {
        "type": "illegal_stopping",
        "id": "stop-1",
        "zone": "no-stop",
        "min_dwell_s": 30.0,
        "max_radius": 0.03,
        "inertia_frames": 3,
        "end_grace_s": 3.0,
        "cooldown_s": 60.0,
    }
    params.update(overrides)
    return IllegalStoppingRule(IllegalStoppingRuleConfig.model_validate(params), ZONE, (W, H))


class Car:
    """A scripted road user; ``at`` moves its box so that the bottom-centre anchor is (x, y)."""

    def __init__(self, track_id: int, label: str = "car") -> None:
        self.track = Track(track_id, 2, label, np.zeros(4, np.float32), 0.9, 0.0, 0.0)

    def at(self, x: float, y: float, now: float) -> Track:
        self.track.xyxy = np.array([x - 50.0, y - 60.0, x + 50.0, y], np.float32)
        self.track.last_seen = now
        self.track.time_since_update = 0
        return self.track


def frames(start: float, stop: float, dt: float = DT) -> Iterable[float]:
    """Times start, start + dt, ... < stop, computed without accumulating rounding error."""
    n = round((stop - start) / dt)
    return (start + i * dt for i in range(n))


def park(rule: IllegalStoppingRule, car: Car, x: float, y: float, start: float, stop: float) -> list[Finding]:
    out: list[Finding] = []
    for t in frames(start, stop):
        out += rule.evaluate([car.at(x, y, t)], t)
    return out


def phases(findings: list[Finding]) -> list[tuple[str, str, float]]:
    return [(f.phase.value, f.key, f.now) for f in findings]


# --- the basic life cycle --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probe", "starts"),
    [
        pytest.param(30.0 - 1e-6, False, id="just-before-min-dwell"),
        pytest.param(30.0, True, id="at-min-dwell"),
        pytest.param(30.25, True, id="after-min-dwell"),
    ],
)
def test_start_boundary(probe, starts):
    rule, car = make_rule(), Car(1)
    assert park(rule, car, 900, 800, 0.0, 29.5) == []
    out = rule.evaluate([car.at(900, 800, probe)], probe)
    if starts:
        [f] = out
        assert (f.phase, f.started, f.now) == (Phase.START, 0.0, probe)
        assert f.measurements["dwell_s"] == pytest.approx(probe)
    else:
        assert out == []


def test_parked_car_starts_once_and_ends_when_it_drives_away():
    rule, car = make_rule(), Car(7)
    out = park(rule, car, 900, 800, 0.0, 60.0)
    [start] = out
    assert start.phase is Phase.START
    assert (start.key, start.started, start.now) == ("track-7", 0.0, 30.0)
    assert start.type is EventType.ILLEGAL_STOPPING
    assert (start.rule_id, start.zone_id) == ("stop-1", "no-stop")
    assert start.measurements == {"dwell_s": 30.0, "displacement_px": 0.0}
    assert [o.track_id for o in start.objects] == [7]
    assert start.objects[0].label == "car"

    # Drives off at 100 px/frame: the third frame beyond the radius ends it.
    out = []
    for i, t in enumerate(frames(60.0, 64.0), start=1):
        out += rule.evaluate([car.at(900 + 100 * i, 800, t)], t)
    [end] = out
    assert (end.phase, end.key, end.started, end.now) == (Phase.END, "track-7", 0.0, 61.0)
    assert end.measurements["dwell_s"] == pytest.approx(59.5)  # last stationary frame at 59.5
    assert end.measurements["displacement_px"] > RADIUS
    np.testing.assert_array_equal(end.objects[0].xyxy, [1150.0, 740.0, 1250.0, 800.0])  # box at 61.0


def test_snapshot_is_a_frozen_copy():
    rule, car = make_rule(min_dwell_s=1.0), Car(1)
    [start] = park(rule, car, 900, 800, 0.0, 1.5)
    box = start.objects[0].xyxy.copy()
    car.at(1000, 800, 1.5)
    np.testing.assert_array_equal(start.objects[0].xyxy, box)


def test_robust_reference_ignores_a_jittery_first_box():
    """A first box 50 px off, then the car creeps 40 px the other way: still one stop that began at 0."""
    rule, car = make_rule(), Car(1)
    out = rule.evaluate([car.at(950, 800, 0.0)], 0.0)
    out += park(rule, car, 900, 800, 0.5, 20.0)
    out += park(rule, car, 870, 800, 20.0, 40.0)  # 80 px from the first box, 30 px from the reference
    [f] = out
    assert (f.phase, f.started, f.now) == (Phase.START, 0.0, 30.0)
    assert f.measurements["displacement_px"] == pytest.approx(30.0)


def test_small_jitter_around_a_parked_position_is_stationary():
    rule, car = make_rule(), Car(1)
    rng = np.random.default_rng(3)
    out: list[Finding] = []
    for t in frames(0.0, 40.0):
        dx, dy = rng.normal(0.0, 6.0, 2)
        out += rule.evaluate([car.at(900 + dx, 800 + dy, t)], t)
    assert phases(out) == [("start", "track-1", 30.0)]


# --- zone inertia -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("inertia", [2, 3, 5])
def test_alternating_in_out_at_the_edge_starts_nothing(inertia):
    rule, car = make_rule(inertia_frames=inertia), Car(1)
    out: list[Finding] = []
    for i, t in enumerate(frames(0.0, 200.0)):
        out += rule.evaluate([car.at(900, 535 if i % 2 else 545, t)], t)  # the edge is y = 540
    assert out == []


@pytest.mark.parametrize(
    ("pattern", "ends"),
    [
        pytest.param("oi" * 20, False, id="alternating"),
        pytest.param("ooi" * 15, False, id="two-out-one-in"),
        pytest.param("ooo" + "i" * 10, True, id="three-out"),
    ],
)
def test_edge_jitter_of_a_stopped_car_ends_only_after_inertia(pattern, ends):
    rule, car = make_rule(), Car(1)
    [start] = park(rule, car, 900, 545, 0.0, 31.0)
    out: list[Finding] = []
    for ch, t in zip(pattern, frames(31.0, 31.0 + DT * len(pattern)), strict=True):
        out += rule.evaluate([car.at(900, 545 if ch == "i" else 535, t)], t)
    if ends:
        [end] = out
        assert (end.phase, end.started, end.now) == (Phase.END, start.started, 32.0)
        assert end.measurements["dwell_s"] == pytest.approx(30.5)  # last in-zone frame at 30.5
    else:
        assert out == []


def test_entering_counts_from_the_first_frame_of_the_confirming_streak():
    rule, car = make_rule(), Car(1)
    out = park(rule, car, 900, 500, 0.0, 10.0)  # parked outside the zone, 40 px above it
    out += park(rule, car, 900, 545, 10.0, 45.0)  # rolls 45 px into the zone (within the radius) and stays
    # 45 px is within the radius, so it has been still since 0.0; it is inside since 10.0 (the first frame of
    # the confirming in-zone streak, not the third): the stop counts from 10.0.
    [f] = out
    assert (f.phase, f.started, f.now) == (Phase.START, 10.0, 40.0)


# --- who and what does not count ------------------------------------------------------------------------


@pytest.mark.parametrize("speed", [200.0, 60.0, 10.0])
def test_moving_car_crossing_the_zone_raises_nothing(speed):
    rule, car = make_rule(), Car(1)
    out: list[Finding] = []
    t = 0.0
    x = 300.0
    while x < 1700.0:
        out += rule.evaluate([car.at(x, 800, t)], t)
        t += DT
        x += speed * DT
    assert out == []


@pytest.mark.parametrize(
    ("label", "fires"),
    [
        ("car", True),
        ("truck", True),
        ("bus", True),
        ("motorcycle", True),
        ("person", False),
        ("bicycle", False),
    ],
)
def test_only_configured_classes(label, fires):
    rule, car = make_rule(), Car(1, label=label)
    out = park(rule, car, 900, 800, 0.0, 40.0)
    assert len(out) == (1 if fires else 0)


def test_custom_classes():
    rule, car = make_rule(classes=["person"]), Car(1, label="person")
    assert len(park(rule, car, 900, 800, 0.0, 40.0)) == 1


def test_parked_outside_the_zone_raises_nothing():
    rule, car = make_rule(), Car(1)
    assert park(rule, car, 300, 800, 0.0, 100.0) == []


def test_tracks_not_updated_this_frame_count_as_unseen():
    rule, car = make_rule(), Car(1)
    park(rule, car, 900, 800, 0.0, 31.0)
    car.track.time_since_update = 1
    out: list[Finding] = []
    for t in frames(31.0, 35.0):
        out += rule.evaluate([car.track], t)
    assert phases(out) == [("end", "track-1", 34.0)]


# --- occlusion, grace and cooldown ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gap_s", "continues"),
    [
        pytest.param(1.0, True, id="brief"),
        pytest.param(3.0, True, id="exactly-grace"),
        pytest.param(3.5, False, id="over-grace"),
        pytest.param(10.0, False, id="long"),
    ],
)
def test_occlusion(gap_s, continues):
    rule, car = make_rule(), Car(3)
    out = park(rule, car, 900, 800, 0.0, 40.5)  # last seen at 40.0
    assert phases(out) == [("start", "track-3", 30.0)]
    gap = [f for t in frames(40.5, 40.0 + gap_s) for f in rule.evaluate([], t)]
    back = park(rule, car, 900, 800, 40.0 + gap_s, 80.0)
    if continues:
        assert gap == [] and back == []
    else:
        # Ended by the first frame more than end_grace_s after 40.0, whether or not the car is in it.
        [end] = gap + back
        assert (end.phase, end.key, end.started) == (Phase.END, "track-3", 0.0)
        assert end.now == pytest.approx(43.5)
        assert end.measurements["dwell_s"] == pytest.approx(40.0)
        assert end.objects[0].track_id == 3  # the last known snapshot
        # re-found within the cooldown: no new START (checked by the unpacking above)


def test_occluded_car_continues_then_drives_off_with_the_full_dwell():
    rule, car = make_rule(), Car(3)
    out = park(rule, car, 900, 800, 0.0, 40.5)
    out += [f for t in frames(40.5, 42.5) for f in rule.evaluate([], t)]
    out += park(rule, car, 905, 802, 42.5, 90.5)
    for i, t in enumerate(frames(90.5, 93.0), start=1):
        out += rule.evaluate([car.at(905 + 100 * i, 802, t)], t)
    assert phases(out) == [("start", "track-3", 30.0), ("end", "track-3", 91.5)]
    assert out[1].started == out[0].started == 0.0
    assert out[1].measurements["dwell_s"] == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("cooldown", "restart_at"),
    [
        pytest.param(10.0, 71.0, id="short-cooldown-dwell-decides"),
        pytest.param(60.0, 101.0, id="cooldown-decides"),
        pytest.param(0.0, 71.0, id="no-cooldown"),
    ],
)
def test_cooldown(cooldown, restart_at):
    rule, car = make_rule(cooldown_s=cooldown), Car(5)
    out = park(rule, car, 700, 800, 0.0, 40.0)
    out += park(rule, car, 900, 800, 40.0, 150.0)  # moves 200 px at 40.0 and parks again
    assert phases(out) == [
        ("start", "track-5", 30.0),
        ("end", "track-5", 41.0),
        ("start", "track-5", restart_at),
    ]
    second = out[2]
    assert second.started == 41.0  # the new stationary period, confirmed after inertia
    assert second.measurements["dwell_s"] == pytest.approx(restart_at - 41.0)


def test_two_cars_are_independent_events():
    rule, a, b = make_rule(), Car(1), Car(2)
    out: list[Finding] = []
    for t in frames(0.0, 60.0):
        tracks = [a.at(700, 800, t)]
        if t >= 10.0:
            tracks.append(b.at(1200, 900, t))
        out += rule.evaluate(tracks, t)
    for i, t in enumerate(frames(60.0, 62.0), start=1):
        out += rule.evaluate([a.at(700 + 100 * i, 800, t), b.at(1200, 900, t)], t)
    assert phases(out) == [("start", "track-1", 30.0), ("start", "track-2", 40.0), ("end", "track-1", 61.0)]
    assert out[1].started == 10.0


# --- bounded state --------------------------------------------------------------------------------------


def test_state_of_transient_tracks_is_forgotten():
    rule = make_rule()
    t = 0.0
    for tid in range(1, 501):  # a busy street: 500 cars each seen for 3 frames while driving through
        car = Car(tid)
        for k in range(3):
            rule.evaluate([car.at(500 + 150 * k, 800, t)], t)
            t += 0.1
    assert rule.tracked_count <= 500
    for t2 in frames(t, t + 70.0, dt=1.0):
        rule.evaluate([], t2)
    assert rule.tracked_count == 0


def test_state_with_a_pending_cooldown_is_kept_until_it_runs_out():
    rule, car = make_rule(cooldown_s=300.0), Car(9)
    park(rule, car, 900, 800, 0.0, 40.0)
    [end] = [f for t in frames(40.0, 45.0) for f in rule.evaluate([], t)]
    assert end.phase is Phase.END
    for t in frames(45.0, 200.0, dt=5.0):
        rule.evaluate([], t)
    assert rule.tracked_count == 1
    rule.evaluate([], 400.0)
    assert rule.tracked_count == 0


# --- construction -----------------------------------------------------------------------------------------


def test_zone_must_match_the_rule():
    cfg = IllegalStoppingRuleConfig(type="illegal_stopping", id="r", zone="other")
    with pytest.raises(ValueError, match="other"):
        IllegalStoppingRule(cfg, ZONE, (W, H))


def test_frame_size_must_be_positive():
    cfg = IllegalStoppingRuleConfig(type="illegal_stopping", id="r", zone="no-stop")
    with pytest.raises(ValueError):
        IllegalStoppingRule(cfg, ZONE, (0, H))


@pytest.mark.parametrize(
    ("width", "fires"),
    [
        pytest.param(480, False, id="480px-radius-14px"),
        pytest.param(1920, True, id="1920px-radius-58px"),
    ],
)
def test_radius_scales_with_frame_width(width, fires):
    """A car crawling 4 px per frame leaves a 14.4 px radius in ~2 s, a 57.6 px one only after ~7 s."""
    height = width * 9 // 16
    cfg = IllegalStoppingRuleConfig(type="illegal_stopping", id="r", zone="no-stop", min_dwell_s=5.0)
    rule = IllegalStoppingRule(cfg, ZONE, (width, height))
    car = Car(1)
    out: list[Finding] = []
    for i, t in enumerate(frames(0.0, 10.0)):
        out += rule.evaluate([car.at(0.4 * width + 4 * i, 0.8 * height, t)], t)
    assert [f.phase for f in out][:1] == ([Phase.START] if fires else [])


def test_with_the_tracker_a_parked_car_occluded_by_a_passing_bus_is_one_event():
    """ByteTracker feeding the rule: the bus hides the car for 2 s; the car keeps its id and its event."""
    from edge_agent.perception.tracker import ByteTracker
    from edge_agent.types import Detections

    names = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
    tracker, rule = ByteTracker(), make_rule()
    findings: list[Finding] = []
    for t in frames(0.0, 70.0, dt=0.2):
        boxes, scores, classes = [[850.0, 740.0, 950.0, 800.0]], [0.85], [2]
        if 40.0 <= t < 42.0:
            boxes, scores, classes = [], [], []  # hidden
        bus_x = 550.0 + 200.0 * (t - 40.0)  # covers the car (x 850..950) from 40.0 to 42.0
        if 36.0 <= t < 48.0:
            boxes.append([bus_x, 600.0, bus_x + 300.0, 850.0])
            scores.append(0.9)
            classes.append(4)
        dets = Detections(
            np.array(boxes, np.float32).reshape(-1, 4),
            np.array(scores, np.float32),
            np.array(classes, np.int64),
            names,
        )
        findings += rule.evaluate(tracker.update(dets, t), t)
    assert [(f.phase, f.key) for f in findings] == [(Phase.START, "track-1")]
    assert findings[0].started == 0.2  # confirmed on its second frame (min_hits=2)


# --- schedules ------------------------------------------------------------------------------------------------


def scheduled_rule(start: str, end: str, **overrides: object) -> IllegalStoppingRule:
    params: dict[str, object] = {
        "type": "illegal_stopping",
        "id": "stop-1",
        "zone": "no-stop",
        "min_dwell_s": 30.0,
        "schedule": {"windows": [{"start": start, "end": end}]},
    }
    params.update(overrides)
    cfg = IllegalStoppingRuleConfig.model_validate(params)
    return IllegalStoppingRule(cfg, ZONE, (W, H), fixed_clock(LOCAL_MIDNIGHT_MON))


def test_outside_the_schedule_nothing_fires():
    rule, car = scheduled_rule("07:00", "09:00"), Car(1)  # mono 0 is 00:00 local
    assert park(rule, car, 900, 800, 0.0, 120.0) == []


def test_dwell_counts_from_the_window_opening_and_the_window_closing_ends_it():
    """Parked since 06:59:00; the no-stopping window opens at 07:00: START at 07:00:30, END at 09:00:00."""
    rule, car = scheduled_rule("07:00", "09:00"), Car(1)
    t0 = 7 * 3600.0 - 60.0
    out: list[Finding] = []
    for t in frames(t0, 9 * 3600.0 + 5.0, dt=1.0):
        out += rule.evaluate([car.at(900, 800, t)], t)
    assert [(f.phase, f.started, f.now) for f in out] == [
        (Phase.START, 7 * 3600.0, 7 * 3600.0 + 30.0),
        (Phase.END, 7 * 3600.0, 9 * 3600.0),
    ]


def test_without_a_clock_a_schedule_is_refused():
    cfg = IllegalStoppingRuleConfig.model_validate(
        {
            "type": "illegal_stopping",
            "id": "r",
            "zone": "no-stop",
            "schedule": {"windows": [{"start": "07:00", "end": "09:00"}]},
        }
    )
    with pytest.raises(ValueError, match="wall clock"):
        IllegalStoppingRule(cfg, ZONE, (W, H))

"""WrongWayRule: displacement against a lane zone's direction, from the track history, robust to jitter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding
from edge_agent.rules.ruleconfig import WrongWayRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.wrongway import WrongWayRule
from tests.edge_agent.rules.rulekit import H, Mover, W, frames, phases, zone

# Pixels: x 480..1440, y 216..1080; traffic must drive up the image.
LANE = zone("lane", [(0.25, 0.2), (0.75, 0.2), (0.75, 1.0), (0.25, 1.0)], direction="up")
MIN_PX = 0.06 * W  # 115.2 px


def make_rule(**overrides: object) -> WrongWayRule:
    params: dict[str, object] = {"type": "wrong_way", "id": "ww", "zone": "lane"}
    params.update(overrides)
    return WrongWayRule(WrongWayRuleConfig.model_validate(params), Scene((W, H), {"lane": LANE}))


def drive(rule, mover, x0, y0, vx, vy, start, stop, every: int = 1) -> list[Finding]:
    out: list[Finding] = []
    for i, t in enumerate(frames(start, stop)):
        track = mover.at(x0 + vx * (t - start), y0 + vy * (t - start), t)
        if i % every == 0:
            out += rule.evaluate([track], t)
    return out


def test_driving_the_allowed_way_raises_nothing():
    rule, car = make_rule(), Mover(1)
    assert drive(rule, car, 900, 1000, 0, -150, 0.0, 5.0) == []


def test_driving_against_the_direction_starts_once_and_ends_after_it_stops():
    rule, car = make_rule(), Mover(1)
    out = drive(rule, car, 900, 300, 0, 150, 0.0, 4.0)  # down the image: wrong way
    [start] = out
    assert (start.phase, start.key, start.type, start.zone_id) == (
        Phase.START,
        "track-1",
        EventType.WRONG_WAY,
        "lane",
    )
    assert start.measurements["distance_px"] >= MIN_PX
    assert start.measurements["angle_deg"] == pytest.approx(0.0, abs=1e-6)
    assert start.measurements["speed_px_s"] == pytest.approx(150.0, rel=0.05)
    assert start.now < 1.5  # 115 px at 150 px/s plus the median lag
    out = drive(rule, car, 900, 900, 0, 0, 4.0, 12.0)  # stops in the lane
    [end] = out
    assert end.phase is Phase.END and end.key == "track-1"


@pytest.mark.parametrize(
    ("total_px", "fires"),
    [
        pytest.param(100.0, False, id="100px-below-min-distance"),
        pytest.param(140.0, True, id="140px-above-min-distance"),
    ],
)
def test_min_distance_boundary(total_px, fires):
    rule, car = make_rule(), Mover(1)
    out = drive(rule, car, 900, 400, 0, 50, 0.0, total_px / 50)
    out += drive(rule, car, 900, 400 + total_px, 0, 0, total_px / 50, total_px / 50 + 3.0)
    assert [f.phase for f in out][:1] == ([Phase.START] if fires else [])


def test_jitter_of_a_stopped_car_is_not_wrong_way():
    rule, car = make_rule(), Mover(1)
    rng = np.random.default_rng(7)
    out: list[Finding] = []
    for t in frames(0.0, 60.0):
        dx, dy = rng.normal(0.0, 12.0, 2)
        out += rule.evaluate([car.at(900 + dx, 700 + dy, t)], t)
    assert out == []


@pytest.mark.parametrize(
    ("angle_from_opposite", "fires"),
    [(0.0, True), (45.0, True), (55.0, True), (65.0, False), (90.0, False)],
)
def test_angle_limit(angle_from_opposite, fires):
    rule, car = make_rule(), Mover(1)
    a = math.radians(angle_from_opposite)
    v = 200.0
    out = drive(rule, car, 700, 300, v * math.sin(a), v * math.cos(a), 0.0, 2.5)
    assert [f.phase for f in out][:1] == ([Phase.START] if fires else [])


def test_crossing_the_lane_sideways_is_not_wrong_way():
    rule, car = make_rule(), Mover(1)
    assert drive(rule, car, 500, 700, 300, 20, 0.0, 3.0) == []


@pytest.mark.parametrize(
    ("label", "speed_px_s", "fires"),
    [
        pytest.param("motorcycle", 150.0, True, id="motorbike"),
        pytest.param("bicycle", 150.0, True, id="bicycle"),
        pytest.param("person", 250.0, True, id="rider-without-scooter-2.5-hps"),
        pytest.param("person", 80.0, False, id="pedestrian-walking-down-the-lane"),
        pytest.param("dog", 250.0, False, id="other-class"),
    ],
)
def test_who_counts(label, speed_px_s, fires):
    rule, who = make_rule(), Mover(3, label, size=(40.0, 100.0))
    out = drive(rule, who, 900, 300, 0, speed_px_s, 0.0, 4.0)
    assert [f.phase for f in out][:1] == ([Phase.START] if fires else [])


def test_uses_the_history_between_evaluations():
    """The rule sees every fifth frame only; the anchors in between come from Track.history."""
    rule, car = make_rule(), Mover(1)
    out = drive(rule, car, 900, 300, 0, 150, 0.0, 4.0, every=5)
    assert [f.phase for f in out] == [Phase.START]


@pytest.mark.parametrize(
    ("gap_s", "events"),
    [
        pytest.param(1.0, 1, id="lost-1s-same-incident"),
        pytest.param(3.0, 1, id="lost-3s-ended-then-cooldown"),
    ],
)
def test_lost_and_refound(gap_s, events):
    rule, car = make_rule(), Mover(1)
    out = drive(rule, car, 900, 250, 0, 150, 0.0, 2.0)
    out += [f for t in frames(2.0, 2.0 + gap_s) for f in rule.evaluate([], t)]
    out += drive(rule, car, 900, 250 + 150 * (2.0 + gap_s), 0, 150, 2.0 + gap_s, 5.0 + gap_s)
    assert len([f for f in out if f.phase is Phase.START]) == events


def test_two_wrong_way_riders_are_two_events():
    rule, a, b = make_rule(), Mover(1, "motorcycle"), Mover(2, "motorcycle")
    out: list[Finding] = []
    for t in frames(0.0, 3.0):
        out += rule.evaluate([a.at(700, 300 + 150 * t, t), b.at(1100, 300 + 200 * t, t)], t)
    assert sorted(k for p, k, _ in phases(out) if p == "start") == ["track-1", "track-2"]


def test_zone_without_direction_is_refused():
    flat = zone("lane", [(0.25, 0.2), (0.75, 0.2), (0.75, 1.0), (0.25, 1.0)])
    cfg = WrongWayRuleConfig.model_validate({"type": "wrong_way", "id": "ww", "zone": "lane"})
    with pytest.raises(ValueError, match="no direction"):
        WrongWayRule(cfg, Scene((W, H), {"lane": flat}))


@pytest.mark.parametrize(
    ("direction", "vy", "fires"), [(270, -150, True), ("down", 150, False), (-90, 150, False)]
)
def test_direction_as_angle_or_name(direction, vy, fires):
    lane = zone("lane", [(0.25, 0.2), (0.75, 0.2), (0.75, 1.0), (0.25, 1.0)], direction=direction)
    cfg = WrongWayRuleConfig.model_validate({"type": "wrong_way", "id": "ww", "zone": "lane"})
    rule, car = WrongWayRule(cfg, Scene((W, H), {"lane": lane})), Mover(1)
    out = drive(rule, car, 900, 600, 0, vy, 0.0, 3.0)
    assert len(out) == (1 if fires else 0)

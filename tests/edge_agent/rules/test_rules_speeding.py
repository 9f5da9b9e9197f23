"""SpeedingRule: ground speed through the homography, smoothed by a least-squares fit over the track."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding
from edge_agent.rules.homography import GroundPlane
from edge_agent.rules.ruleconfig import SpeedingRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.speeding import SpeedingRule
from tests.edge_agent.rules.rulekit import H, Mover, W, frames, zone

# The surveyed road: a 7 m x 60 m stretch seen in perspective (image pixels of 1920x1080 <-> metres).
IMAGE_PX = [(816.0, 324.0), (1104.0, 324.0), (1728.0, 1026.0), (192.0, 1026.0)]
WORLD_M = [(0.0, 0.0), (7.0, 0.0), (7.0, 60.0), (0.0, 60.0)]
PLANE = GroundPlane.from_points(IMAGE_PX, WORLD_M)
ROAD = zone("road", [(x / W, y / H) for x, y in IMAGE_PX])


def make_rule(**overrides: object) -> SpeedingRule:
    params: dict[str, object] = {"type": "speeding", "id": "sp", "zone": "road"}
    params.update(overrides)
    return SpeedingRule(
        SpeedingRuleConfig.model_validate(params), Scene((W, H), {"road": ROAD}, ground_plane=PLANE)
    )


def image_of(x_m: float, y_m: float) -> tuple[float, float]:
    px = PLANE.to_image([(x_m, y_m)])[0]
    return float(px[0]), float(px[1])


def drive(rule, mover, kmh, start, stop, y0=2.0, lane_x=3.5, noise_px=0.0, seed=0) -> list[Finding]:
    """Drive down the road (towards the camera) at ``kmh`` from ``y0`` metres."""
    rng = np.random.default_rng(seed)
    out: list[Finding] = []
    for t in frames(start, stop):
        x, y = image_of(lane_x, y0 + kmh / 3.6 * (t - start))
        dx, dy = rng.normal(0.0, noise_px, 2) if noise_px else (0.0, 0.0)
        out += rule.evaluate([mover.at(x + dx, y + dy, t)], t)
    return out


def test_speeder_raises_one_event_with_its_speed():
    rule, car = make_rule(), Mover(1)
    out = drive(rule, car, 70.0, 0.0, 2.4)
    [start] = [f for f in out if f.phase is Phase.START]
    assert (start.type, start.key, start.zone_id) == (EventType.SPEEDING, "track-1", "road")
    assert start.measurements["speed_kmh"] == pytest.approx(70.0, abs=0.5)
    assert start.measurements["limit_kmh"] == 50.0
    assert rule.speed_kmh(1) == pytest.approx(70.0, abs=0.5)


@pytest.mark.parametrize(
    ("kmh", "fires"),
    [(30.0, False), (50.0, False), (54.0, False), (56.5, True), (90.0, True)],
)
def test_limit_plus_tolerance(kmh, fires):
    rule, car = make_rule(), Mover(1)
    out = drive(rule, car, kmh, 0.0, 2.4)
    assert len([f for f in out if f.phase is Phase.START]) == (1 if fires else 0)


def test_box_jitter_is_smoothed():
    rule, car = make_rule(), Mover(1)
    out = drive(rule, car, 48.0, 0.0, 3.0, noise_px=3.0, seed=5)
    assert out == []
    assert rule.speed_kmh(1) == pytest.approx(48.0, abs=4.0)


def test_id_switch_jump_is_implausible_and_ignored():
    rule, car = make_rule(), Mover(1)
    out = drive(rule, car, 20.0, 0.0, 2.0)
    x, y = image_of(3.5, 40.0)  # the id jumps to a road user 28 m further down
    out += [f for t in frames(2.0, 2.6) for f in rule.evaluate([car.at(x, y, t)], t)]
    assert [f for f in out if f.phase is Phase.START] == []


def test_speed_max_over_the_incident():
    rule, car = make_rule(samples=6, min_span_s=0.8), Mover(1)
    out = drive(rule, car, 60.0, 0.0, 1.6, y0=0.5)
    out += drive(rule, car, 80.0, 1.6, 3.0, y0=0.5 + 60 / 3.6 * 1.6)
    out += [f for t in frames(3.0, 6.0) for f in rule.evaluate([], t)]
    start, end = out
    assert start.measurements["speed_kmh"] == pytest.approx(60.0, abs=1.0)
    assert end.phase is Phase.END
    assert end.measurements["speed_max_kmh"] == pytest.approx(80.0, abs=1.0)


@pytest.mark.parametrize(
    ("label", "riders", "fires"), [("person", True, True), ("person", False, False), ("car", True, True)]
)
def test_riders_are_measured(label, riders, fires):
    rule = make_rule(riders={"enabled": riders})
    who = Mover(1, label)
    out = drive(rule, who, 65.0, 0.0, 2.4)
    assert len([f for f in out if f.phase is Phase.START]) == (1 if fires else 0)


def test_outside_the_zone_is_not_measured():
    rule, car = make_rule(), Mover(1)
    out = [f for t in frames(0.0, 3.0) for f in rule.evaluate([car.at(100 + 500 * t, 200, t)], t)]
    assert out == []


@pytest.mark.parametrize(("gap_s", "starts"), [(1.0, 1), (5.0, 1)])
def test_lost_and_refound(gap_s, starts):
    """Within end_grace_s the same incident goes on; after it the incident ends and the cooldown holds."""
    rule, car = make_rule(), Mover(1)
    out = drive(rule, car, 70.0, 0.0, 2.0)
    out += [f for t in frames(2.0, 2.0 + gap_s) for f in rule.evaluate([], t)]
    out += drive(rule, car, 70.0, 2.0 + gap_s, 4.0 + gap_s, y0=2.0 + 70 / 3.6 * (2.0 + gap_s))
    assert len([f for f in out if f.phase is Phase.START]) == starts


def test_needs_a_ground_plane():
    cfg = SpeedingRuleConfig.model_validate({"type": "speeding", "id": "sp", "zone": "road"})
    with pytest.raises(ValueError, match="ground_plane"):
        SpeedingRule(cfg, Scene((W, H), {"road": ROAD}))


@pytest.mark.parametrize("fps", [5.0, 10.0, 20.0])
def test_high_detect_rates_still_give_a_speed(fps):
    """Found on the motorway clip at 10 detect-fps (tests/scenarios): the default 10 samples span 0.9 s there,
    under min_span_s 1 s, so the rule never had a speed. The fit now takes as many of the latest anchors as it
    needs to span min_span_s."""
    rule, car = make_rule(), Mover(1)
    out: list[Finding] = []
    for i in range(int(3.0 * fps)):
        t = round(i / fps, 9)
        x, y = image_of(3.5, 2.0 + 70.0 / 3.6 * t)
        out += rule.evaluate([car.at(x, y, t)], t)
    [start] = [f for f in out if f.phase is Phase.START]
    assert start.measurements["speed_kmh"] == pytest.approx(70.0, abs=0.5)
    assert rule.speed_kmh(1) == pytest.approx(70.0, abs=0.5)
    assert 1.0 <= start.now - start.started <= 1.0 + 2.0 / fps  # the fit window spans just over a second


def test_a_rider_on_a_detected_motorbike_is_measured_once():
    """Found on the Saigon clip (tests/scenarios): the rider's own track sits on the scooter's track; it is the
    same road user, so only the motorcycle raises the event."""
    rule = make_rule()
    bike, rider = Mover(1, "motorcycle", (60.0, 60.0)), Mover(2, "person", (50.0, 110.0))
    out: list[Finding] = []
    for t in frames(0.0, 2.4):
        x, y = image_of(3.5, 2.0 + 70.0 / 3.6 * t)
        out += rule.evaluate([bike.at(x, y, t), rider.at(x, y - 20.0, t)], t)
    assert [f.key for f in out if f.phase is Phase.START] == ["track-1"]

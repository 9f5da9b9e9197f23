"""MotorbikeOverloadRule: riders associated with a motorbike over frames, and person groups without one."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding
from edge_agent.rules.overload import MotorbikeOverloadRule
from edge_agent.rules.ruleconfig import MotorbikeOverloadRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.types import Track
from tests.edge_agent.rules.rulekit import H, Mover, W, frames, zone
from tests.paths import COCO128

ROAD = zone("road", [(0.0, 0.3), (1.0, 0.3), (1.0, 1.0), (0.0, 1.0)])
SPEED = 250.0  # px/s: about 2 rider heights per second


def make_rule(**overrides: object) -> MotorbikeOverloadRule:
    params: dict[str, object] = {"type": "motorbike_overload", "id": "ov", "zone": "road"}
    params.update(overrides)
    return MotorbikeOverloadRule(
        MotorbikeOverloadRuleConfig.model_validate(params), Scene((W, H), {"road": ROAD})
    )


class Bike:
    """A scooter (80x80 px box) with riders stacked on it (person boxes 40x120 ending halfway down the bike);
    ``detected`` False leaves the scooter box out, as the COCO model often does on Vietnamese footage."""

    def __init__(
        self, moto_id: int, rider_ids: list[int], detected: bool = True, spacing: float = 15.0
    ) -> None:
        self.moto = Mover(moto_id, "motorcycle", (80.0, 80.0))
        self.riders = [Mover(r, "person", (40.0, 120.0)) for r in rider_ids]
        self.detected = detected
        self.spacing = spacing

    def at(self, x: float, y: float, t: float) -> list[Track]:
        out = [self.moto.at(x, y, t)] if self.detected else []
        out += [r.at(x + self.spacing * (i - 1), y - 40.0, t) for i, r in enumerate(self.riders)]
        return out


def ride(
    rule, bikes: list[Bike], start: float, stop: float, vx: float = SPEED, x0: float = 200.0, y: float = 800.0
):
    out: list[Finding] = []
    for t in frames(start, stop):
        tracks = [tr for k, b in enumerate(bikes) for tr in b.at(x0 + vx * (t - start), y + 150 * k, t)]
        out += rule.evaluate(tracks, t)
    return out


def starts(out: list[Finding]) -> list[Finding]:
    return [f for f in out if f.phase is Phase.START]


def test_three_riders_on_a_moving_motorbike():
    rule = make_rule()
    out = ride(rule, [Bike(1, [11, 12, 13])], 0.0, 4.0)
    [start] = starts(out)
    assert (start.type, start.key, start.zone_id) == (EventType.MOTORBIKE_OVERLOAD, "moto-1", "road")
    assert start.measurements["riders"] == 3.0 and start.measurements["motorcycle_detected"] == 1.0
    assert [o.label for o in start.objects] == ["motorcycle", "person", "person", "person"]
    # riders count after 6 of 10 frames (1.0 s), then the overload must hold for min_duration_s 1.0
    assert 1.9 <= start.now <= 2.3


@pytest.mark.parametrize(
    ("riders", "max_riders", "fires"), [(2, 2, False), (3, 2, True), (2, 1, True), (4, 3, True)]
)
def test_threshold(riders, max_riders, fires):
    rule = make_rule(max_riders=max_riders)
    out = ride(rule, [Bike(1, list(range(11, 11 + riders)))], 0.0, 4.0)
    assert len(starts(out)) == (1 if fires else 0)


@pytest.mark.parametrize(("require_moving", "fires"), [(True, False), (False, True)])
def test_people_around_a_parked_bike(require_moving, fires):
    rule = make_rule(require_moving=require_moving)
    out = ride(rule, [Bike(1, [11, 12, 13])], 0.0, 4.0, vx=0.0)
    assert len(starts(out)) == (1 if fires else 0)


def test_a_passer_by_overlapping_for_a_moment_is_not_a_rider():
    rule = make_rule()
    bike, walker = Bike(1, [11, 12]), Mover(99, "person", (40.0, 120.0))
    out: list[Finding] = []
    for i, t in enumerate(frames(0.0, 6.0)):
        tracks = bike.at(200 + SPEED * t, 800, t)
        if 10 <= i < 14:  # four frames level with the bike, then gone
            tracks.append(walker.at(200 + SPEED * t + 20, 760, t))
        out += rule.evaluate(tracks, t)
    assert starts(out) == []


def test_three_riders_without_a_scooter_box_count_as_one_bike():
    rule = make_rule()
    out = ride(rule, [Bike(1, [21, 22, 23], detected=False)], 0.0, 4.0)
    [start] = starts(out)
    assert start.key == "riders-21"
    assert start.measurements == pytest.approx(
        {"riders": 3.0, "motorcycle_detected": 0.0, "duration_s": start.measurements["duration_s"]}
    )
    assert [o.track_id for o in start.objects] == [21, 22, 23]


def test_rider_groups_can_be_switched_off():
    rule = make_rule(rider_groups=False)
    assert starts(ride(rule, [Bike(1, [21, 22, 23], detected=False)], 0.0, 4.0)) == []


def test_pedestrians_walking_together_are_not_a_bike():
    rule = make_rule()
    assert starts(ride(rule, [Bike(1, [21, 22, 23], detected=False)], 0.0, 6.0, vx=90.0)) == []


def test_two_scooters_side_by_side_with_two_riders_each():
    """Side by side a body height apart (anchors 120 px apart): two bikes of two, not one of four."""
    rule = make_rule()
    a, b = Bike(1, [21, 22], detected=False), Bike(2, [31, 32], detected=False)
    out: list[Finding] = []
    for t in frames(0.0, 4.0):
        x = 200 + SPEED * t
        out += rule.evaluate(a.at(x, 800, t) + b.at(x + 120, 800, t), t)
    assert starts(out) == []


def test_scooter_detected_midway_continues_the_same_incident():
    rule = make_rule()
    bike = Bike(1, [21, 22, 23], detected=False)
    out = ride(rule, [bike], 0.0, 3.0)
    bike.detected = True
    out += ride(rule, [bike], 3.0, 6.0, x0=200 + SPEED * 3.0)
    assert [(f.phase, f.key) for f in starts(out)] == [(Phase.START, "riders-21")]


@pytest.mark.parametrize(("gap_s", "n_starts"), [(1.0, 1), (4.0, 1)])
def test_lost_and_refound(gap_s, n_starts):
    """Within end_grace_s the incident continues; after it, it ends and the cooldown holds the bike."""
    rule = make_rule()
    bike = Bike(1, [11, 12, 13])
    out = ride(rule, [bike], 0.0, 3.0)
    out += [f for t in frames(3.0, 3.0 + gap_s) for f in rule.evaluate([], t)]
    out += ride(rule, [bike], 3.0 + gap_s, 6.0 + gap_s, x0=200 + SPEED * (3.0 + gap_s))
    assert len(starts(out)) == n_starts


def test_state_is_bounded():
    rule = make_rule()
    for k in range(30):
        ride(rule, [Bike(100 + k, [1000 + 3 * k, 1001 + 3 * k, 1002 + 3 * k])], 10.0 * k, 10.0 * k + 2.0)
    for t in frames(400.0, 600.0, dt=5.0):
        rule.evaluate([], t)
    assert rule.state_size == 0


def _labels(name: str, size: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    w, h = size
    out = []
    for line in (COCO128 / "labels" / "train2017" / f"{name}.txt").read_text().splitlines():
        c, cx, cy, bw, bh = (float(v) for v in line.split())
        box = np.array(
            [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], np.float32
        )
        out.append((int(c), box))
    return out


@pytest.mark.parametrize(
    ("image", "size", "max_riders", "riders"),
    [
        pytest.param("000000000529", (427, 640), 1, 2.0, id="driver-and-passenger-flagged-with-max-1"),
        pytest.param("000000000529", (427, 640), 2, None, id="driver-and-passenger-legal-in-vietnam"),
        pytest.param("000000000086", (512, 640), 0 + 1, None, id="one-rider"),
    ],
)
def test_real_coco_still(image, size, max_riders, riders):
    """coco128 photos with their ground-truth boxes (class 3 motorcycle, 0 person) held still for a second:
    the association must find the passenger whose box ends near the bike's top and the driver whose box ends
    near its bottom."""
    if not (COCO128 / "labels" / "train2017" / f"{image}.txt").is_file():
        pytest.skip("coco128 is not in the assets (make assets)")
    w, h = size
    rule = MotorbikeOverloadRule(
        MotorbikeOverloadRuleConfig.model_validate(
            {
                "type": "motorbike_overload",
                "id": "ov",
                "zone": "all",
                "max_riders": max_riders,
                "require_moving": False,
                "min_duration_s": 0.0,
                "window_frames": 3,
                "min_frames": 3,
            }
        ),
        Scene((w, h), {"all": zone("all", [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])}),
    )
    tracks = []
    for i, (cls, box) in enumerate(_labels(image, size)):
        if cls in (0, 3):
            t = Track(i + 1, cls, "person" if cls == 0 else "motorcycle", box, 0.9, 0.0, 0.0)
            tracks.append(t)
    out: list[Finding] = []
    for t in frames(0.0, 1.0):
        for tr in tracks:
            tr.last_seen, tr.time_since_update = t, 0
        out += rule.evaluate(tracks, t)
    got = starts(out)
    if riders is None:
        assert got == []
    else:
        [start] = got
        assert start.measurements["riders"] == riders
        assert start.measurements["motorcycle_detected"] == 1.0

"""SidewalkVehicleRule over scripted tracks and injected monotonic time."""

from __future__ import annotations

import pytest

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding
from edge_agent.rules.ruleconfig import SidewalkVehicleRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.schedule import fixed_clock
from edge_agent.rules.sidewalk import SidewalkVehicleRule
from tests.edge_agent.rules.rulekit import DT, LOCAL_MIDNIGHT_MON, H, Mover, W, frames, phases, zone

# Pixels: x 0..576, y 540..1080 (the left third of the bottom half).
WALK = zone("walk", [(0.0, 0.5), (0.3, 0.5), (0.3, 1.0), (0.0, 1.0)])
EDGE_X = 0.3 * W  # 576 px


def make_rule(clock_epoch=None, **overrides: object) -> SidewalkVehicleRule:
    params: dict[str, object] = {"type": "sidewalk_vehicle", "id": "walk-1", "zone": "walk"}
    params.update(overrides)
    clock = fixed_clock(clock_epoch) if clock_epoch is not None else None
    return SidewalkVehicleRule(
        SidewalkVehicleRuleConfig.model_validate(params), Scene((W, H), {"walk": WALK}, clock=clock)
    )


def stay(rule, mover, x, y, start, stop) -> list[Finding]:
    return [f for t in frames(start, stop) for f in rule.evaluate([mover.at(x, y, t)], t)]


def test_parked_motorbike_starts_after_the_grace_and_ends_when_it_leaves():
    rule, bike = make_rule(), Mover(4, "motorcycle")
    out = stay(rule, bike, 300, 800, 0.0, 20.0)
    [start] = out
    assert (start.phase, start.key, start.started, start.now) == (Phase.START, "track-4", 0.0, 5.0)
    assert start.type is EventType.SIDEWALK_VEHICLE and start.zone_id == "walk"
    assert start.measurements["dwell_s"] == pytest.approx(5.0)
    assert start.measurements["rider"] == 0.0
    out = stay(rule, bike, 800, 800, 20.0, 22.0)  # back on the road
    [end] = out
    assert (end.phase, end.now) == (Phase.END, pytest.approx(20.4))  # third frame outside (inertia 3)
    assert end.measurements["duration_s"] == pytest.approx(19.8)  # up to the last frame on the sidewalk


@pytest.mark.parametrize(
    ("leave_at", "fires"),
    [
        pytest.param(4.8, False, id="leaves-just-before-grace"),
        pytest.param(5.2, True, id="just-past-grace"),
    ],
)
def test_grace_boundary(leave_at, fires):
    rule, car = make_rule(), Mover(1)
    out = stay(rule, car, 300, 800, 0.0, leave_at)
    out += stay(rule, car, 900, 800, leave_at, leave_at + 2.0)
    assert [f.phase for f in out][:1] == ([Phase.START] if fires else [])


def test_jitter_across_the_zone_edge_raises_nothing():
    rule, car = make_rule(grace_s=1.0), Mover(1)
    out = [
        f
        for i, t in enumerate(frames(0.0, 60.0))
        for f in rule.evaluate([car.at(EDGE_X + (8 if i % 2 else -8), 800, t)], t)
    ]
    assert out == []


def test_entry_counts_from_the_first_frame_of_the_confirming_streak():
    rule, car = make_rule(), Mover(1)
    out = stay(rule, car, EDGE_X + 30, 800, 0.0, 3.0)  # on the road beside the kerb
    out += stay(rule, car, EDGE_X - 30, 800, 3.0, 20.0)
    [start] = out
    assert (start.started, start.now) == (3.0, 8.0)


@pytest.mark.parametrize(
    ("label", "fires"),
    [
        ("car", True),
        ("motorcycle", True),
        ("truck", True),
        ("bus", True),
        ("bicycle", False),
        ("chair", False),
    ],
)
def test_only_vehicle_classes(label, fires):
    rule, thing = make_rule(), Mover(1, label)
    assert len(stay(rule, thing, 300, 800, 0.0, 10.0)) == (1 if fires else 0)


@pytest.mark.parametrize(
    ("speed_hps", "fires"),
    [
        pytest.param(0.8, False, id="walking-0.8-heights-per-s"),
        pytest.param(2.0, True, id="riding-2-heights-per-s"),
    ],
)
def test_a_person_at_riding_speed_counts_as_a_motorbike(speed_hps, fires):
    """The scooter under a rider is often not detected: a fast 'person' on the sidewalk is a motorbike."""
    rule = make_rule(grace_s=1.0)
    rider = Mover(9, "person", size=(40.0, 100.0))  # 100 px tall: 1 height/s = 100 px/s
    out = [
        f for t in frames(0.0, 2.6) for f in rule.evaluate([rider.at(20 + speed_hps * 100 * t, 800, t)], t)
    ]
    assert [f.phase for f in out] == ([Phase.START] if fires else [])
    if fires:
        assert out[0].measurements["rider"] == 1.0


def test_riders_can_be_switched_off():
    rule = make_rule(grace_s=1.0, riders={"enabled": False})
    rider = Mover(9, "person", size=(40.0, 100.0))
    assert [f for t in frames(0.0, 2.6) for f in rule.evaluate([rider.at(20 + 200 * t, 800, t)], t)] == []


@pytest.mark.parametrize(
    ("gap_s", "one_event"),
    [
        pytest.param(2.0, True, id="lost-within-grace"),
        pytest.param(6.0, False, id="lost-beyond-grace"),
    ],
)
def test_lost_and_refound(gap_s, one_event):
    rule, car = make_rule(cooldown_s=30.0), Mover(2)
    out = stay(rule, car, 300, 800, 0.0, 10.0)
    out += [f for t in frames(10.0, 10.0 + gap_s) for f in rule.evaluate([], t)]
    out += stay(rule, car, 300, 800, 10.0 + gap_s, 30.0)
    if one_event:
        assert phases(out) == [("start", "track-2", 5.0)]
    else:
        # ended 3 s after it was last seen; back on the sidewalk within the cooldown: no second START
        assert phases(out) == [("start", "track-2", 5.0), ("end", "track-2", 13.0)]


def test_after_the_cooldown_the_same_vehicle_may_raise_again():
    rule, car = make_rule(cooldown_s=5.0), Mover(2)
    out = stay(rule, car, 300, 800, 0.0, 10.0)
    out += stay(rule, car, 900, 800, 10.0, 12.0)  # off the sidewalk: END at 10.4
    out += stay(rule, car, 300, 800, 12.0, 25.0)  # back at 12.0; grace done at 17.0, cooldown over at 15.4
    assert phases(out) == [("start", "track-2", 5.0), ("end", "track-2", 10.4), ("start", "track-2", 17.0)]


def test_updates_for_long_incidents():
    rule, car = make_rule(update_interval_s=10.0), Mover(2)
    out = stay(rule, car, 300, 800, 0.0, 26.0)
    assert [(p, n) for p, _, n in phases(out)] == [("start", 5.0), ("update", 15.0), ("update", 25.0)]


def test_schedule_window_boundary():
    """Sidewalk rule in force 07:00-09:00 local; a car parked from 06:59:50 raises at 07:00:05 (dwell from
    the opening), and its incident ends when the window closes."""
    rule = make_rule(
        LOCAL_MIDNIGHT_MON, schedule={"windows": [{"start": "07:00", "end": "09:00"}]}, update_interval_s=0.0
    )
    car = Mover(3)
    t0 = 7 * 3600 - 10.0
    out = [f for t in frames(t0, 9 * 3600 + 3.0, dt=1.0) for f in rule.evaluate([car.at(300, 800, t)], t)]
    start, end = out
    assert (start.phase, start.started, start.now) == (Phase.START, 7 * 3600.0, 7 * 3600 + 5.0)
    assert (end.phase, end.now) == (Phase.END, 9 * 3600.0)


def test_state_is_forgotten():
    rule = make_rule()
    for tid in range(1, 201):
        car = Mover(tid)
        t0 = tid * 0.5
        for k in range(3):
            rule.evaluate([car.at(200 + 100 * k, 800, t0 + k * DT)], t0 + k * DT)
    for t in frames(200.0, 400.0, dt=5.0):
        rule.evaluate([], t)
    assert rule.tracked_count == 0


@pytest.mark.parametrize(
    ("gap_s", "dx", "continues"),
    [
        pytest.param(2.0, 0.0, True, id="hidden-2s-new-id-same-place"),
        pytest.param(2.0, 20.0, True, id="new-box-20px-off"),
        pytest.param(2.0, 200.0, False, id="another-place-is-another-vehicle"),
        pytest.param(5.0, 0.0, False, id="back-after-end-grace"),
    ],
)
def test_a_new_track_id_where_the_vehicle_stood_continues_its_incident(gap_s, dx, continues):
    """A passer-by hides a parked motorbike; the tracker gives it a new id (end_grace_s 3 s)."""
    rule = make_rule()
    out = stay(rule, Mover(4, "motorcycle"), 300, 800, 0.0, 10.0)
    out += [f for t in frames(10.0, 10.0 + gap_s) for f in rule.evaluate([], t)]
    out += stay(rule, Mover(9, "motorcycle"), 300 + dx, 800, 10.0 + gap_s, 30.0)
    starts = [f for f in out if f.phase is Phase.START]
    if continues:
        assert [(f.phase, f.key) for f in out] == [(Phase.START, "track-4")]
        [end] = rule.close(30.0)
        assert (end.key, sorted(o.track_id for o in end.objects)) == ("track-4", [4, 9])
        assert end.measurements["duration_s"] == pytest.approx(29.8)
    else:
        assert [f.key for f in starts] == ["track-4", "track-9"]

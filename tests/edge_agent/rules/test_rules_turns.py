"""IllegalTurnRule: forbidden entry -> exit zone pairs, optionally by time of day."""

from __future__ import annotations

import itertools

import pytest

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding
from edge_agent.rules.ruleconfig import IllegalTurnRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.schedule import fixed_clock
from edge_agent.rules.turns import IllegalTurnRule
from tests.edge_agent.rules.rulekit import LOCAL_MIDNIGHT_MON, H, Mover, W, frames, zone

ZONES = {
    "south": zone("south", [(0.4, 0.7), (0.6, 0.7), (0.6, 1.0), (0.4, 1.0)]),  # approach, bottom middle
    "west": zone("west", [(0.0, 0.3), (0.2, 0.3), (0.2, 0.6), (0.0, 0.6)]),  # exit, left
    "north": zone("north", [(0.4, 0.0), (0.6, 0.0), (0.6, 0.3), (0.4, 0.3)]),  # exit, top middle
}
SOUTH, JUNCTION, WEST, NORTH = (960, 900), (960, 600), (200, 500), (960, 200)


def make_rule(clock=None, **overrides: object) -> IllegalTurnRule:
    params: dict[str, object] = {
        "type": "illegal_turn",
        "id": "no-left",
        "forbidden": [{"from_zone": "south", "to_zone": "west"}],
    }
    params.update(overrides)
    return IllegalTurnRule(IllegalTurnRuleConfig.model_validate(params), Scene((W, H), ZONES, clock=clock))


def path(rule, mover, waypoints, start=0.0, seconds_per_leg=2.0) -> list[Finding]:
    """Move linearly through the waypoints, ``seconds_per_leg`` each, then stay 2 s at the last one."""
    out: list[Finding] = []
    t = start
    for (x0, y0), (x1, y1) in itertools.pairwise(waypoints):
        for i, tt in enumerate(frames(t, t + seconds_per_leg)):
            f = i / round(seconds_per_leg / 0.2)
            out += rule.evaluate([mover.at(x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, tt)], tt)
        t += seconds_per_leg
    x, y = waypoints[-1]
    for tt in frames(t, t + 4.0):
        out += rule.evaluate([mover.at(x, y, tt)], tt)
    return out


def test_forbidden_turn_raises_one_event_on_the_exit_zone():
    rule, car = make_rule(), Mover(1)
    out = path(rule, car, [SOUTH, JUNCTION, WEST])
    start, end = out
    assert (start.phase, start.type, start.zone_id, start.key) == (
        Phase.START,
        EventType.ILLEGAL_TURN,
        "west",
        "track-1",
    )
    assert 0.0 < start.measurements["transit_s"] < 4.0
    assert end.phase is Phase.END


@pytest.mark.parametrize(
    ("waypoints", "fires"),
    [
        pytest.param([SOUTH, JUNCTION, NORTH], False, id="straight-on-allowed"),
        pytest.param([WEST, JUNCTION, SOUTH], False, id="reverse-pair-allowed"),
        pytest.param([JUNCTION, WEST], False, id="not-seen-in-the-entry-zone"),
        pytest.param([WEST, (300, 500), WEST], False, id="first-seen-in-the-exit-zone"),
        pytest.param([SOUTH, JUNCTION, WEST], True, id="south-to-west"),
    ],
)
def test_pairs(waypoints, fires):
    rule, car = make_rule(), Mover(1)
    out = path(rule, car, waypoints)
    assert len([f for f in out if f.phase is Phase.START]) == (1 if fires else 0)


@pytest.mark.parametrize(("leg_s", "fires"), [(14.0, True), (16.0, False)])
def test_max_transit(leg_s, fires):
    """Two legs through the junction; max_transit_s 20 from leaving the entry to entering the exit, which
    takes 52 % of the first leg and 76 % of the second: 17.9 s with 14 s legs, 20.5 s with 16 s legs."""
    rule, car = make_rule(), Mover(1)
    out = path(rule, car, [SOUTH, JUNCTION, WEST], seconds_per_leg=leg_s)
    assert len([f for f in out if f.phase is Phase.START]) == (1 if fires else 0)


def test_jitter_on_the_exit_edge_is_one_event():
    rule, car = make_rule(), Mover(1)
    out = path(rule, car, [SOUTH, JUNCTION, (384, 500)])  # stops right on the exit zone's edge (x = 384)
    for i, t in enumerate(frames(8.0, 40.0)):
        out += rule.evaluate([car.at(384 + (10 if i % 2 else -10), 500, t)], t)
    assert len([f for f in out if f.phase is Phase.START]) <= 1


def test_occluded_in_the_junction_and_refound_in_the_exit():
    rule, car = make_rule(), Mover(1)
    out = path(rule, car, [SOUTH, JUNCTION], seconds_per_leg=2.0)  # ends at t = 6.0 in the junction
    out += [f for t in frames(6.0, 9.0) for f in rule.evaluate([], t)]  # hidden by a bus
    out += path(rule, car, [(500, 500), WEST], start=9.0)
    assert len([f for f in out if f.phase is Phase.START]) == 1


@pytest.mark.parametrize(
    ("label", "size", "leg_s", "fires"),
    [
        pytest.param("person", (40.0, 100.0), 1.0, True, id="rider-without-scooter"),
        pytest.param("person", (40.0, 100.0), 8.0, False, id="pedestrian"),
        pytest.param("motorcycle", (60.0, 80.0), 8.0, True, id="slow-motorbike"),
    ],
)
def test_who_counts(label, size, leg_s, fires):
    rule, who = make_rule(), Mover(1, label, size)
    out = path(rule, who, [SOUTH, JUNCTION, WEST], seconds_per_leg=leg_s)
    assert len([f for f in out if f.phase is Phase.START]) == (1 if fires else 0)


@pytest.mark.parametrize(("hour", "fires"), [(6, False), (7, True), (9, False)])
def test_time_of_day_ban(hour, fires):
    rule = make_rule(
        fixed_clock(LOCAL_MIDNIGHT_MON), schedule={"windows": [{"start": "07:00", "end": "09:00"}]}
    )
    out = path(rule, Mover(1), [SOUTH, JUNCTION, WEST], start=hour * 3600.0 + 60.0)
    assert len([f for f in out if f.phase is Phase.START]) == (1 if fires else 0)


def test_two_forbidden_pairs():
    rule = make_rule(
        forbidden=[{"from_zone": "south", "to_zone": "west"}, {"from_zone": "west", "to_zone": "north"}]
    )
    out = path(rule, Mover(1), [WEST, JUNCTION, NORTH])
    [start] = [f for f in out if f.phase is Phase.START]
    assert start.zone_id == "north"

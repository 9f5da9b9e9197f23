"""RedLightRule: stop-line crossings in the controlled direction while the signal is red; never on UNKNOWN."""

from __future__ import annotations

from datetime import timedelta

import pytest

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding
from edge_agent.rules.redlight import RedLightRule
from edge_agent.rules.ruleconfig import RedLightRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.sceneconfig import ExternalSignalConfig, LineConfig
from edge_agent.rules.schedule import fixed_clock
from edge_agent.rules.signal import ExternalSignalFeed, SignalState
from edge_agent.types import Frame
from tests.edge_agent.rules.rulekit import LOCAL_MIDNIGHT_MON, H, Mover, W, frames, phases

R, A, G, U = SignalState.RED, SignalState.AMBER, SignalState.GREEN, SignalState.UNKNOWN
# Stop line across the middle of the frame (y = 540 px, x 384..1536); traffic drives up into the junction.
STOP = LineConfig(id="stop", points=((0.2, 0.5), (0.8, 0.5)), direction="up")
LINE_Y = 0.5 * H


class Script:
    """A signal source that plays a script of (from time, state); UNKNOWN before the first entry."""

    id = "light"

    def __init__(self, *spans: tuple[float, SignalState]) -> None:
        self.spans = sorted(spans)

    def update(self, frame: Frame) -> None:
        return None

    def state(self, now: float) -> SignalState:
        current = U
        for t, s in self.spans:
            if t <= now:
                current = s
        return current


def make_rule(signal, **overrides: object) -> RedLightRule:
    params: dict[str, object] = {"type": "red_light", "id": "rl", "line": "stop", "signal": "light"}
    params.update(overrides)
    scene = Scene((W, H), {}, lines={"stop": STOP}, signals={"light": signal})
    return RedLightRule(RedLightRuleConfig.model_validate(params), scene)


def approach(
    rule,
    mover,
    cross_at: float,
    speed: float = 200.0,
    x: float = 900.0,
    start: float | None = None,
    stop: float | None = None,
):
    """Drive up the image at ``speed`` px/s, passing the line (y = 540) at ``cross_at``; frames every 0.2 s
    from ``start`` (default ``cross_at - 3.1``)."""
    out: list[Finding] = []
    first = start if start is not None else cross_at - 3.1
    for t in frames(first, stop if stop is not None else cross_at + 3.0):
        out += rule.evaluate([mover.at(x, LINE_Y + speed * (cross_at - t), t)], t)
    return out


@pytest.mark.parametrize(
    ("script", "fires"),
    [
        pytest.param(Script((0.0, R)), True, id="red"),
        pytest.param(Script((0.0, G)), False, id="green"),
        pytest.param(Script((0.0, A)), False, id="amber"),
        pytest.param(Script(), False, id="unknown-never-guess"),
        pytest.param(Script((0.0, R), (10.1, U), (10.3, R)), False, id="unknown-while-crossing"),
        pytest.param(Script((0.0, G), (10.05, R)), False, id="red-after-the-last-frame-behind"),
        pytest.param(Script((0.0, G), (9.7, R)), False, id="red-for-less-than-red-grace"),
        pytest.param(Script((0.0, G), (9.0, R)), True, id="red-for-more-than-red-grace"),
        pytest.param(Script((0.0, R), (10.5, G)), True, id="turns-green-after-the-crossing"),
    ],
)
def test_signal_state_at_the_crossing(script, fires):
    rule, car = make_rule(script), Mover(1)
    out = approach(rule, car, cross_at=10.1)  # last frame behind the line 10.0, first beyond 10.2
    starts = [f for f in out if f.phase is Phase.START]
    assert len(starts) == (1 if fires else 0)
    if fires:
        [start] = starts
        assert (start.type, start.zone_id, start.key) == (EventType.RED_LIGHT, "stop", "track-1")
        assert start.started == pytest.approx(10.2)
        assert start.measurements["crossing_gap_s"] == pytest.approx(0.2)


def test_red_for_is_measured_and_the_event_ends_after_the_grace():
    rule, car = make_rule(Script((0.0, G), (6.0, R))), Mover(1)
    out = approach(rule, car, cross_at=10.1, start=5.0, stop=20.0)
    start, end = out
    assert start.measurements["red_for_s"] == pytest.approx(4.0)  # red since 6.0, behind the line at 10.0
    assert start.now == pytest.approx(10.4)  # confirmed on the second frame beyond (inertia 2)
    assert (end.phase, end.key) == (Phase.END, "track-1")
    assert end.now == pytest.approx(12.6)  # end_grace_s 2 after the trigger


def test_amber_is_flagged_only_when_configured():
    assert approach(make_rule(Script((0.0, A))), Mover(1), 10.1) == []
    assert [f.phase for f in approach(make_rule(Script((0.0, A)), flag_amber=True), Mover(1), 10.1)] == [
        Phase.START,
        Phase.END,
    ]


def test_crossing_the_other_way_is_ignored():
    rule, car = make_rule(Script((0.0, R))), Mover(1)
    assert approach(rule, car, cross_at=10.1, speed=-100.0) == []


@pytest.mark.parametrize(
    ("amplitude", "every"),
    [
        pytest.param(8.0, 1, id="jitter-inside-the-dead-band"),
        pytest.param(20.0, 1, id="jitter-beyond-the-band-every-frame"),
    ],
)
def test_a_motorbike_waiting_on_the_line_crosses_nothing(amplitude, every):
    rule, bike = make_rule(Script((0.0, R))), Mover(1, "motorcycle")
    out: list[Finding] = []
    for t in frames(0.0, 3.0):
        out += rule.evaluate([bike.at(900, LINE_Y + 30 - t * 10, t)], t)  # creeps up to the line
    for i, t in enumerate(frames(3.0, 60.0)):
        out += rule.evaluate([bike.at(900, LINE_Y + (amplitude if (i // every) % 2 else -amplitude), t)], t)
    assert out == []


@pytest.mark.parametrize(("x", "fires"), [(300.0, False), (400.0, True), (1530.0, True), (1600.0, False)])
def test_only_crossings_within_the_line_ends(x, fires):
    rule, car = make_rule(Script((0.0, R))), Mover(1)
    out = approach(rule, car, cross_at=10.1, x=x)
    assert len([f for f in out if f.phase is Phase.START]) == (1 if fires else 0)


def test_a_track_first_seen_beyond_the_line_never_crossed_it():
    rule, car = make_rule(Script((0.0, R))), Mover(1)
    out = [f for t in frames(0.0, 5.0) for f in rule.evaluate([car.at(900, LINE_Y - 50 - 100 * t, t)], t)]
    assert out == []


@pytest.mark.parametrize(
    ("script", "fires"),
    [
        pytest.param(Script((0.0, R)), True, id="red-throughout-the-gap"),
        pytest.param(Script((0.0, R), (11.0, G), (11.4, R)), False, id="green-during-the-gap"),
    ],
)
def test_lost_before_the_line_and_refound_beyond(script, fires):
    rule, car = make_rule(script), Mover(1)
    out: list[Finding] = []
    for t in frames(7.0, 10.0):
        out += rule.evaluate([car.at(900, LINE_Y + 50 * (11.0 - t), t)], t)  # behind the line until 10.0
    out += [f for t in frames(10.0, 12.0) for f in rule.evaluate([], t)]  # occluded by a bus
    for t in frames(12.0, 14.0):
        out += rule.evaluate([car.at(900, LINE_Y - 50 * (t - 11.0), t)], t)
    assert len([f for f in out if f.phase is Phase.START]) == (1 if fires else 0)


@pytest.mark.parametrize(
    ("label", "speed", "fires"),
    [
        pytest.param("motorcycle", 100.0, True, id="motorbike"),
        pytest.param("person", 250.0, True, id="rider-without-scooter"),
        pytest.param("person", 60.0, False, id="pedestrian"),
        pytest.param("bicycle", 100.0, True, id="bicycle"),
    ],
)
def test_who_counts(label, speed, fires):
    rule, who = make_rule(Script((0.0, R))), Mover(1, label, size=(40.0, 100.0))
    out = approach(rule, who, cross_at=10.1, speed=speed)
    assert len([f for f in out if f.phase is Phase.START]) == (1 if fires else 0)


def test_crossing_back_and_again_within_the_cooldown_is_one_event():
    rule, car = make_rule(Script((0.0, R))), Mover(1)
    out = approach(rule, car, cross_at=10.1)
    out += approach(rule, car, cross_at=14.1, speed=-100.0)  # reverses back over the line
    out += approach(rule, car, cross_at=20.1)
    assert [p for p, _, _ in phases(out)] == ["start", "end"]


def test_with_an_external_feed_and_its_expiry():
    clock = fixed_clock(LOCAL_MIDNIGHT_MON)
    feed = ExternalSignalFeed(ExternalSignalConfig(source="external", id="light", max_age_s=2.0), clock)
    rule, car, other = make_rule(feed), Mover(1), Mover(2)
    out: list[Finding] = []
    for t in frames(7.0, 13.0):
        if t < 11.0:  # the controller says red every second until 10.x, then goes silent
            feed.push(R, clock(t))
        out += rule.evaluate([car.at(900, LINE_Y + 100 * (10.1 - t), t)], t)
    assert len([f for f in out if f.phase is Phase.START]) == 1
    # the feed went silent at 10.8: from 12.8 on the state is UNKNOWN and nothing is flagged
    out = [
        f for t in frames(13.0, 20.0) for f in rule.evaluate([other.at(900, LINE_Y + 100 * (16.1 - t), t)], t)
    ]
    assert feed.state(16.0) is U
    assert [f for f in out if f.phase is Phase.START] == []
    assert clock(1.0) - clock(0.0) == timedelta(seconds=1)


def test_a_rider_on_a_detected_motorbike_is_one_road_user():
    """Found on the Saigon clip (tests/scenarios): a rider whose scooter is detected too has a person track on
    the motorcycle track; before the fix both crossed the line on red and raised two events."""
    rule = make_rule(Script((0.0, R)))
    bike, rider = Mover(1, "motorcycle", (40.0, 60.0)), Mover(2, "person", (36.0, 90.0))
    out: list[Finding] = []
    for t in frames(7.0, 13.1):
        y = LINE_Y + 250.0 * (10.1 - t)
        out += rule.evaluate([bike.at(900.0, y, t), rider.at(900.0, y - 15.0, t)], t)
    assert [f.key for f in out if f.phase is Phase.START] == ["track-1"]


def test_a_rider_whose_scooter_is_missed_still_counts():
    """The rider heuristic still stands in when no motorcycle box is under the rider."""
    rule = make_rule(Script((0.0, R)))
    rider, other_bike = Mover(2, "person", (36.0, 90.0)), Mover(1, "motorcycle", (40.0, 60.0))
    out: list[Finding] = []
    for t in frames(7.0, 13.1):
        y = LINE_Y + 250.0 * (10.1 - t)
        out += rule.evaluate([rider.at(900.0, y, t), other_bike.at(300.0, 900.0, t)], t)
    assert [f.key for f in out if f.phase is Phase.START] == ["track-2"]

"""GatheringRule: persistent groups of persons within a radius scaled by body height."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding
from edge_agent.rules.gathering import GatheringRule, groups
from edge_agent.rules.ruleconfig import GatheringRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.types import Track
from tests.edge_agent.rules.rulekit import H, Mover, W, frames, zone

SQUARE = zone("square", [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])


def make_rule(**overrides: object) -> GatheringRule:
    params: dict[str, object] = {"type": "gathering", "id": "g", "zone": "square", "update_interval_s": 0.0}
    params.update(overrides)
    return GatheringRule(GatheringRuleConfig.model_validate(params), Scene((W, H), {"square": SQUARE}))


def crowd(ids: list[int], height: float = 150.0) -> list[Mover]:
    return [Mover(i, "person", (height * 0.35, height)) for i in ids]


def ring(people: list[Mover], cx: float, cy: float, spacing: float, t: float) -> list[Track]:
    """People on a circle of radius ``spacing`` around (cx, cy)."""
    n = len(people)
    return [
        p.at(cx + spacing * math.cos(2 * math.pi * k / n), cy + spacing * math.sin(2 * math.pi * k / n), t)
        for k, p in enumerate(people)
    ]


def stand(rule, people, start, stop, cx=900.0, cy=700.0, spacing=120.0, dt=1.0) -> list[Finding]:
    return [f for t in frames(start, stop, dt) for f in rule.evaluate(ring(people, cx, cy, spacing, t), t)]


def test_five_people_standing_together_for_a_minute():
    rule = make_rule()
    out = stand(rule, crowd([1, 2, 3, 4, 5]), 0.0, 70.0)
    [start] = out
    assert (start.type, start.phase, start.key, start.zone_id) == (
        EventType.GATHERING,
        Phase.START,
        "group-1",
        "square",
    )
    assert (start.started, start.now) == (0.0, 60.0)
    m = start.measurements
    assert m["count"] == 5.0 and m["count_max"] == 5.0
    assert m["radius_px"] == pytest.approx(120.0, abs=1.0)
    assert m["radius_heights"] == pytest.approx(0.8, abs=0.01)
    n = int(m["hull_points"])
    assert 4 <= n <= 16
    hull = [(m[f"hull_x{i:02d}"], m[f"hull_y{i:02d}"]) for i in range(n)]
    assert all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in hull)
    assert min(x for x, _ in hull) == pytest.approx(
        (900 + 120 * math.cos(math.radians(144)) - 26.25) / W, abs=1e-3
    )
    assert sorted(o.track_id for o in start.objects) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("n", "spacing", "height", "fires"),
    [
        pytest.param(4, 120.0, 150.0, False, id="four-is-not-enough"),
        pytest.param(5, 200.0, 150.0, True, id="radius-1.33-heights"),
        pytest.param(5, 240.0, 150.0, False, id="radius-1.6-heights"),
        pytest.param(5, 40.0, 40.0, True, id="far-away-small-and-close"),
        pytest.param(5, 100.0, 40.0, False, id="far-away-2.5-heights-apart"),
    ],
)
def test_count_and_radius_in_body_heights(n, spacing, height, fires):
    rule = make_rule()
    out = stand(rule, crowd(list(range(1, n + 1)), height), 0.0, 70.0, spacing=spacing)
    assert len(out) == (1 if fires else 0)


def test_a_group_walking_through_is_not_a_gathering():
    """A group crossing the square at walking pace (1 height/s) is in view for 13 s. (A group that keeps
    together for min_duration_s does count, moving or not: a march is a gathering.)"""
    rule = make_rule()
    people = crowd([1, 2, 3, 4, 5])
    out = [
        f
        for t in frames(0.0, 70.0, 1.0)
        for f in rule.evaluate(ring(people, 100 + 150 * t, 700, 120, t)[: 5 if t < 13 else 0], t)
    ]
    assert out == []


def test_members_coming_and_going_is_one_gathering():
    rule = make_rule()
    people = crowd(list(range(1, 10)))
    out: list[Finding] = []
    for t in frames(0.0, 120.0, 1.0):
        k = int(t // 20) % 4  # every 20 s one person leaves and another joins: always 6 present
        present = people[k : k + 6]
        out += rule.evaluate(ring(present, 900, 700, 120, t), t)
    assert [(f.phase, f.key) for f in out] == [(Phase.START, "group-1")]
    assert out[0].measurements["count"] == 6.0


def test_the_tracker_renumbering_everyone_keeps_the_group():
    rule = make_rule()
    out = stand(rule, crowd([1, 2, 3, 4, 5]), 0.0, 30.0)
    out += stand(rule, crowd([11, 12, 13, 14, 15]), 30.0, 70.0)
    assert [f.now for f in out] == [60.0]


@pytest.mark.parametrize(("gap_s", "phases"), [(8.0, ["start"]), (15.0, ["start", "end"])])
def test_dispersing_ends_after_the_grace_and_cooldown_holds(gap_s, phases):
    rule = make_rule()
    people = crowd([1, 2, 3, 4, 5])
    out = stand(rule, people, 0.0, 70.0)
    out += [f for t in frames(70.0, 70.0 + gap_s, 1.0) for f in rule.evaluate([], t)]
    out += stand(rule, people, 70.0 + gap_s, 200.0)  # they come back within the 300 s cooldown
    assert [f.phase.value for f in out] == phases


def test_updates_while_it_lasts():
    rule = make_rule(update_interval_s=60.0)
    out = stand(rule, crowd([1, 2, 3, 4, 5]), 0.0, 190.0)
    assert [(f.phase.value, f.now) for f in out] == [("start", 60.0), ("update", 120.0), ("update", 180.0)]


def test_two_separate_groups_are_two_gatherings():
    rule = make_rule()
    a, b = crowd([1, 2, 3, 4, 5]), crowd([6, 7, 8, 9, 10])
    out: list[Finding] = []
    for t in frames(0.0, 70.0, 1.0):
        out += rule.evaluate(ring(a, 400, 700, 120, t) + ring(b, 1500, 700, 120, t), t)
    assert sorted(f.key for f in out) == ["group-1", "group-2"]


def test_only_persons_in_the_zone():
    rule = GatheringRule(
        GatheringRuleConfig.model_validate({"type": "gathering", "id": "g", "zone": "left"}),
        Scene((W, H), {"left": zone("left", [(0.0, 0.0), (0.3, 0.0), (0.3, 1.0), (0.0, 1.0)])}),
    )
    assert stand(rule, crowd([1, 2, 3, 4, 5]), 0.0, 70.0, cx=1200.0) == []


def test_candidates_are_forgotten():
    rule = make_rule(min_duration_s=1000.0)
    for k in range(20):
        stand(rule, crowd(list(range(10 * k, 10 * k + 5))), 10.0 * k, 10.0 * k + 5.0, cx=200 + 80 * k)
    for t in frames(300.0, 400.0, 10.0):
        rule.evaluate([], t)
    assert rule.candidate_count == 0


@settings(max_examples=80, deadline=None)
@given(
    pts=st.lists(
        st.tuples(st.floats(0, 1900), st.floats(100, 1000), st.floats(30, 200)), min_size=0, max_size=25
    ),
    radius=st.floats(0.5, 3.0),
    min_persons=st.integers(2, 6),
)
def test_groups_property(pts, radius, min_persons):
    """Every group has at least min_persons members, all within radius median heights of its centre, and no
    person is in two groups."""
    tracks = []
    for i, (x, y, h) in enumerate(pts):
        t = Track(i, 0, "person", np.array([x - h / 6, y - h, x + h / 6, y], np.float32), 0.9, 0.0, 0.0)
        tracks.append(t)
    found = groups(tracks, radius, min_persons)
    seen: set[int] = set()
    for g in found:
        assert len(g) >= min_persons
        ids = {t.track_id for t in g}
        assert not ids & seen
        seen |= ids
        anchors = np.array([t.anchor for t in g])
        centre = anchors.mean(axis=0)
        med = float(np.median([t.height for t in g]))
        assert (np.linalg.norm(anchors - centre, axis=1) <= radius * med + 1e-6).all()


@pytest.mark.parametrize(
    ("speed_hps", "max_speed", "fires"),
    [
        pytest.param(0.0, 0.35, True, id="standing-group-is-one-gathering"),
        pytest.param(0.1, 0.35, True, id="shuffling-about-is-standing"),
        pytest.param(0.9, 0.35, False, id="walking-together-is-not"),
        pytest.param(0.5, 0.35, False, id="strolling-is-not"),
        pytest.param(0.9, 0.0, True, id="max-speed-0-counts-a-march"),
    ],
)
def test_gathering_means_standing_together(speed_hps, max_speed, fires):
    """Five people keeping together for 12 s (longer than min_duration_s 8 s) in view, moving at ``speed_hps``
    body heights per second (height 150 px: a walk of 0.9 crosses the square in 13 s)."""
    rule = make_rule(max_speed=max_speed, min_duration_s=8.0)
    people = crowd([1, 2, 3, 4, 5])
    out = [
        f
        for t in frames(0.0, 12.0, 0.5)
        for f in rule.evaluate(ring(people, 100 + 150 * speed_hps * t, 700, 120, t), t)
        if f.phase is Phase.START
    ]
    assert len(out) == (1 if fires else 0)

"""EncroachmentRule: occupancy of a sidewalk zone by static objects and persistent foreground, over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding
from edge_agent.rules.encroachment import EncroachmentRule
from edge_agent.rules.ruleconfig import EncroachmentRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.types import Frame, Track
from tests.edge_agent.rules.rulekit import Mover, frames, zone

FW, FH = 640, 360
# Sidewalk: x 0..320, y 180..360 (the bottom-left quarter): 57 600 px^2.
WALK = zone("walk", [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)])


def make_rule(**overrides: object) -> EncroachmentRule:
    params: dict[str, object] = {
        "type": "encroachment",
        "id": "enc",
        "zone": "walk",
        "min_duration_s": 60.0,
        "end_grace_s": 10.0,
        "update_interval_s": 0.0,
        "background": {"enabled": False},
    }
    params.update(overrides)
    return EncroachmentRule(EncroachmentRuleConfig.model_validate(params), Scene((FW, FH), {"walk": WALK}))


def stall(n: int, label: str = "dining table") -> list[Mover]:
    """``n`` static things of 80x90 px side by side along the sidewalk (each 12.5 % of the zone)."""
    return [Mover(100 + i, label, (80.0, 90.0)) for i in range(n)]


def place(things: list[Mover], t: float, x0: float = 40.0) -> list[Track]:
    return [m.at(x0 + 80 * i, 330, t) for i, m in enumerate(things)]


def run(rule, things, start, stop, dt=1.0, x0=40.0) -> list[Finding]:
    return [f for t in frames(start, stop, dt) for f in rule.evaluate(place(things, t, x0), t)]


def test_goods_over_the_threshold_for_long_enough():
    rule = make_rule()
    out = run(rule, stall(4), 0.0, 80.0)  # 4 tables: 50 % of the zone
    [start] = out
    assert (start.type, start.phase, start.key, start.zone_id) == (
        EventType.ENCROACHMENT,
        Phase.START,
        "zone",
        "walk",
    )
    # static after 10 s, then 60 s above the threshold
    assert (start.started, start.now) == (10.0, 70.0)
    m = start.measurements
    assert m["occupancy"] == pytest.approx(0.5, abs=0.02)
    assert m["occupancy_objects"] == pytest.approx(m["occupancy"]) and m["occupancy_foreground"] == 0.0
    assert m["occupancy_max"] == pytest.approx(0.5, abs=0.02) and m["occupancy_mean"] == pytest.approx(
        0.5, abs=0.02
    )
    assert m["static_objects"] == 4.0
    assert [k for k in m if k.startswith("occupancy_s")] == [f"occupancy_s{i:02d}" for i in range(12)]
    assert m["series_step_s"] == pytest.approx(61.0 / 12, abs=0.2)
    assert len(start.objects) == 4


@pytest.mark.parametrize(("n", "fires"), [(2, False), (3, True)])
def test_threshold(n, fires):
    """2 tables = 25 % (below 30 %), 3 = 37.5 %."""
    assert len(run(make_rule(), stall(n), 0.0, 80.0)) == (1 if fires else 0)


def test_duration_boundary():
    rule = make_rule()
    assert run(rule, stall(4), 0.0, 69.0) == []  # above the threshold from 10.0: 59 s
    assert len(run(rule, stall(4), 69.0, 71.0)) == 1


def test_moving_things_are_not_static():
    rule = make_rule()
    movers = stall(4, "chair")
    out = [
        f for t in frames(0.0, 120.0, 1.0) for f in rule.evaluate(place(movers, t, x0=20 + (t % 20) * 3), t)
    ]
    assert out == []


def test_things_standing_outside_the_zone_do_not_count():
    """A market stall standing on the road beside the sidewalk: its box covers 18 % of the zone's image
    area, but it does not stand in the zone (anchor outside)."""
    rule = make_rule(min_occupancy=0.1)
    stall_ = Mover(100, "dining table", (300.0, 180.0))
    out = [f for t in frames(0.0, 100.0, 1.0) for f in rule.evaluate([stall_.at(400, 330, t)], t)]
    assert out == [] and rule.occupancy == 0.0
    inside = make_rule(min_occupancy=0.1)
    assert (
        len([f for t in frames(0.0, 100.0, 1.0) for f in inside.evaluate([stall_.at(300, 330, t)], t)]) == 1
    )


def test_classes_outside_the_list_do_not_count():
    rule = make_rule()
    assert run(rule, stall(4, "person"), 0.0, 100.0) == []
    assert len(run(make_rule(classes=["person"]), stall(4, "person"), 0.0, 100.0)) == 1


def test_flickering_detections_are_held():
    """Goods detected on one frame in three still count (their last box is held for 10 s)."""
    rule = make_rule()
    things = stall(4)
    out: list[Finding] = []
    for i, t in enumerate(frames(0.0, 80.0, 1.0)):
        tracks = place(things, t) if i % 3 == 0 else []
        out += rule.evaluate(tracks, t)
    assert len(out) == 1


@pytest.mark.parametrize(("gap_s", "ends"), [(8.0, False), (15.0, True)])
def test_a_dip_shorter_than_the_grace_does_not_break_the_run(gap_s, ends):
    rule = make_rule()
    things = stall(4)
    out = run(rule, things, 0.0, 100.0)
    # the stall is cleared away for gap_s (objects held 10 s after last seen, so occupancy drops at 110)
    out += [f for t in frames(100.0, 110.0 + gap_s, 1.0) for f in rule.evaluate([], t)]
    out += run(rule, things, 110.0 + gap_s, 130.0 + gap_s)
    assert [f.phase for f in out] == ([Phase.START, Phase.END] if ends else [Phase.START])


def test_updates_while_it_lasts():
    rule = make_rule(update_interval_s=60.0)
    out = run(rule, stall(3), 0.0, 200.0)
    assert [(f.phase, f.now) for f in out] == [
        (Phase.START, 70.0),
        (Phase.UPDATE, 130.0),
        (Phase.UPDATE, 190.0),
    ]


def test_series_rises_when_more_goods_arrive():
    rule = make_rule(update_interval_s=200.0)
    first, more = stall(3), stall(4)[3:]
    out: list[Finding] = []
    for t in frames(0.0, 400.0, 1.0):
        tracks = place(first, t) + (place(more, t, x0=280) if t >= 150 else [])
        out += rule.evaluate(tracks, t)
    update = next(f for f in out if f.phase is Phase.UPDATE)
    series = [update.measurements[f"occupancy_s{i:02d}"] for i in range(12)]
    assert series[0] == pytest.approx(0.375, abs=0.02)
    assert series[-1] == pytest.approx(0.5, abs=0.02)
    assert series == sorted(series)
    assert update.measurements["occupancy_max"] == pytest.approx(0.5, abs=0.02)
    assert 0.375 < update.measurements["occupancy_mean"] < 0.5


# --- persistent foreground (the background model) --------------------------------------------------------------


_BASES: list[np.ndarray] = []


def scene_frame(t: float, goods: bool, walker_x: float | None = None) -> Frame:
    """A pavement with camera noise (four pre-drawn noise patterns), optionally with goods and a walker."""
    if not _BASES:
        rng = np.random.default_rng(0)
        clean = np.full((FH, FW, 3), 120, np.int16)
        clean[180:, :] = (150, 150, 140)
        _BASES.extend(
            np.clip(clean + rng.integers(-4, 5, clean.shape), 0, 255).astype(np.uint8) for _ in range(4)
        )
    img = _BASES[int(t * 2) % 4].copy()
    if goods:
        img[230:360, 20:240] = (30, 90, 200)  # crates of fruit: 220 x 130 px, ~50 % of the zone
    if walker_x is not None:
        x = int(walker_x)
        img[220:360, x : x + 30] = (40, 40, 40)
    epoch = datetime(2024, 5, 13, 1, tzinfo=UTC)
    return Frame("c", int(t * 5), img, t, epoch + timedelta(seconds=t))


def test_persistent_foreground_counts_goods_without_a_class():
    rule = make_rule(background={"enabled": True, "width": 80, "persistence_s": 5.0, "learning_s": 600.0})
    assert len(rule.inputs) == 1
    out: list[Finding] = []
    for t in frames(0.0, 80.0, 0.5):
        frame = scene_frame(t, goods=t >= 5.0)
        for source in rule.inputs:
            source.update(frame)
        out += rule.evaluate([], t)
    [start] = out
    assert start.measurements["occupancy_foreground"] == pytest.approx(0.5, abs=0.1)
    assert start.measurements["occupancy_objects"] == 0.0
    assert 60.0 <= start.now - 5.0 <= 75.0  # persistence ~5 s, then 60 s above the threshold


def test_passers_by_do_not_build_persistent_foreground():
    rule = make_rule(background={"enabled": True, "width": 80, "persistence_s": 5.0})
    peak = 0.0
    for t in frames(0.0, 60.0, 0.5):
        walker = (t * 40.0) % 300 if t >= 5.0 else None
        rule.update(scene_frame(t, goods=False, walker_x=walker))
        assert rule.evaluate([], t) == []
        peak = max(peak, rule.occupancy)
    assert peak < 0.05


def test_a_vehicle_that_drove_through_is_not_static_after_it_left():
    """Found on the Nga 4 clip (tests/scenarios): static means seen still for static_after_s. A motorbike that
    crosses the zone and leaves is unseen, not still; before the fix its last box counted as a static object
    from static_after_s after it was last seen moving until the 10 s hold ran out."""
    rule = make_rule(static_after_s=1.0, min_occupancy=0.1, min_duration_s=2.0)
    bike = Mover(7, "motorcycle", (200.0, 150.0))
    out: list[Finding] = []
    for t in frames(0.0, 2.0, 0.2):  # rides across the sidewalk at 100 px/s
        out += rule.evaluate([bike.at(60 + 100 * t, 330, t)], t)
    for t in frames(2.0, 12.0, 0.2):  # gone
        out += rule.evaluate([], t)
        assert rule.occupancy == 0.0, t
    assert out == []


def test_static_counts_from_the_time_seen_still():
    """A parked motorbike seen still for static_after_s counts, and keeps counting for the hold after it was
    last seen (flicker); the same box seen only once does not."""
    rule = make_rule(static_after_s=1.0, min_occupancy=0.1, min_duration_s=0.0)
    bike = Mover(7, "motorcycle", (200.0, 150.0))
    rule.evaluate([bike.at(100, 330, 0.0)], 0.0)
    rule.evaluate([], 5.0)
    assert rule.occupancy == 0.0
    for t in frames(5.0, 6.4, 0.2):
        rule.evaluate([bike.at(100, 330, t)], t)
    assert rule.occupancy > 0.1
    rule.evaluate([], 15.0)
    assert rule.occupancy > 0.1

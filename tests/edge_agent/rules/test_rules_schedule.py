"""Schedules (time-of-day windows in a timezone), the schedule gate and the frame clock."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.rules.sceneconfig import ScheduleConfig
from edge_agent.rules.schedule import FrameClock, ScheduleGate, fixed_clock, is_active
from edge_agent.types import Frame
from tests.edge_agent.rules.rulekit import LOCAL_MIDNIGHT_MON


def sched(*windows: tuple[str, str, list[str] | None], tz: str = "Asia/Ho_Chi_Minh") -> ScheduleConfig:
    return ScheduleConfig.model_validate(
        {
            "timezone": tz,
            "windows": [
                {"start": s, "end": e, **({"days": d} if d is not None else {})} for s, e, d in windows
            ],
        }
    )


def local(day: int, hh: int, mm: int, ss: int = 0) -> datetime:
    """UTC datetime of local (UTC+7) time on Monday 13 May 2024 + ``day`` days."""
    return LOCAL_MIDNIGHT_MON + timedelta(days=day, hours=hh, minutes=mm, seconds=ss)


MORNING = sched(("06:30", "09:00", ["mon", "tue", "wed", "thu", "fri"]))
NIGHT = sched(("22:00", "05:00", ["fri"]))


@pytest.mark.parametrize(
    ("schedule", "when", "expected"),
    [
        pytest.param(MORNING, local(0, 6, 29, 59), False, id="one-second-before-start"),
        pytest.param(MORNING, local(0, 6, 30), True, id="start-is-inclusive"),
        pytest.param(MORNING, local(0, 8, 59, 59), True, id="last-second"),
        pytest.param(MORNING, local(0, 9, 0), False, id="end-is-exclusive"),
        pytest.param(MORNING, local(5, 7, 0), False, id="saturday-not-listed"),
        pytest.param(MORNING, local(4, 7, 0), True, id="friday"),
        pytest.param(NIGHT, local(4, 21, 59), False, id="night-before-start"),
        pytest.param(NIGHT, local(4, 23, 0), True, id="night-friday-evening"),
        pytest.param(NIGHT, local(5, 4, 59), True, id="night-runs-into-saturday-morning"),
        pytest.param(NIGHT, local(5, 5, 0), False, id="night-ends"),
        pytest.param(NIGHT, local(5, 23, 0), False, id="saturday-evening-not-listed"),
        pytest.param(NIGHT, local(0, 2, 0), False, id="monday-early-belongs-to-sunday"),
        pytest.param(
            sched(("06:30", "09:00", None), tz="UTC"), local(0, 7, 0), False, id="other-timezone-0000-utc"
        ),
        pytest.param(
            sched(("06:30", "09:00", None), tz="UTC"), local(0, 14, 0), True, id="other-timezone-0700-utc"
        ),
    ],
)
def test_is_active(schedule, when, expected):
    assert is_active(schedule, when) is expected


def test_is_active_refuses_naive_times():
    with pytest.raises(ValueError, match="aware"):
        is_active(MORNING, datetime(2024, 5, 13, 7, 0))


@given(
    start=st.times().map(lambda t: t.replace(microsecond=0)),
    end=st.times().map(lambda t: t.replace(microsecond=0)),
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_a_window_and_its_complement_cover_every_instant_once(start: time, end: time, at: datetime):
    if start == end:
        return
    a = sched((start.isoformat(), end.isoformat(), None))
    b = sched((end.isoformat(), start.isoformat(), None))
    assert is_active(a, at) != is_active(b, at)


def test_gate_without_schedule_is_always_open():
    gate = ScheduleGate(None, None)
    assert gate.update(0.0) and gate.update(1e9)
    assert gate.since == -math.inf


def test_gate_needs_a_clock_for_a_schedule():
    with pytest.raises(ValueError, match="wall clock"):
        ScheduleGate(MORNING, None)


def test_gate_tracks_when_the_window_opened():
    gate = ScheduleGate(MORNING, fixed_clock(LOCAL_MIDNIGHT_MON))
    t_open = 6.5 * 3600
    assert gate.update(t_open - 1.0) is False
    assert gate.update(t_open) is True
    assert gate.since == t_open
    assert gate.update(9 * 3600) is False
    # open from the first evaluation: since is -inf (the window opened before the rule started)
    late = ScheduleGate(MORNING, fixed_clock(LOCAL_MIDNIGHT_MON))
    assert late.update(7 * 3600) is True and late.since == -math.inf


def test_frame_clock_maps_monotonic_time_through_the_latest_frame():
    clock = FrameClock()
    wall = datetime(2024, 5, 13, 1, 0, tzinfo=UTC)
    clock.observe(Frame("c", 0, np.zeros((2, 2, 3), np.uint8), 100.0, wall))
    assert clock(100.0) == wall
    assert clock(102.5) == wall + timedelta(seconds=2.5)
    assert FrameClock()(0.0).tzinfo is not None  # before any frame: now, aware


def test_fixed_clock_needs_an_aware_epoch():
    with pytest.raises(ValueError):
        fixed_clock(datetime(2024, 1, 1))

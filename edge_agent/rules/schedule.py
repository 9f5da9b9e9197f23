"""Time-of-day schedules: when a rule is in force, and the wall clock that rules read them with.

Rules run on monotonic time; only schedules need the local time of day. The pipeline owns a ``FrameClock``
that maps monotonic seconds onto the UTC time of the latest frame, and each rule asks it through a
``ScheduleGate``. Tests inject any ``WallClock`` (a function of monotonic seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from edge_agent.rules.sceneconfig import WEEKDAYS, ScheduleConfig
from edge_agent.types import Frame

WallClock = Callable[[float], datetime]


def is_active(schedule: ScheduleConfig, wall: datetime) -> bool:
    """Whether the aware datetime ``wall`` falls in one of the schedule's windows (local time).

    A window whose end is before its start runs past midnight and belongs to the day it starts on.

    >>> from edge_agent.rules.sceneconfig import ScheduleConfig
    >>> night = ScheduleConfig.model_validate({"windows": [{"start": "22:00", "end": "05:00", "days": ["fri"]}]})
    >>> is_active(night, datetime(2024, 5, 17, 15, 30, tzinfo=UTC))  # Fri 22:30 in Ho Chi Minh City (UTC+7)
    True
    >>> is_active(night, datetime(2024, 5, 17, 21, 59, tzinfo=UTC))  # Sat 04:59 local: Friday's window
    True
    >>> is_active(night, datetime(2024, 5, 18, 15, 30, tzinfo=UTC))  # Sat 22:30 local
    False
    """
    if wall.tzinfo is None:
        raise ValueError("wall time must be timezone-aware")
    local = wall.astimezone(ZoneInfo(schedule.timezone))
    t = local.time().replace(tzinfo=None)
    today = WEEKDAYS[local.weekday()]
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    for w in schedule.windows:
        if w.start < w.end:
            if today in w.days and w.start <= t < w.end:
                return True
        elif (today in w.days and t >= w.start) or (yesterday in w.days and t < w.end):
            return True
    return False


class ScheduleGate:
    """Tracks whether a rule is in force at monotonic ``now`` and since when.

    ``since`` is the monotonic time the schedule last opened, ``-inf`` when it was open from the start (or
    there is no schedule): rules start an incident no earlier than ``since``, so dwell outside the window
    does not count.
    """

    def __init__(self, schedule: ScheduleConfig | None, clock: WallClock | None) -> None:
        if schedule is not None and clock is None:
            raise ValueError("a rule with a schedule needs a wall clock")
        self._schedule = schedule
        self._clock = clock
        self.active = True
        self.since = -math.inf

    def update(self, now: float) -> bool:
        """Re-evaluate at ``now``; returns whether the rule is in force."""
        if self._schedule is None or self._clock is None:
            return True
        active = is_active(self._schedule, self._clock(now))
        if active and not self.active:
            self.since = now
        self.active = active
        return active


class FrameClock:
    """Monotonic -> UTC through the latest frame's pair of clocks (the pipeline calls ``observe``)."""

    def __init__(self) -> None:
        self._mono: float | None = None
        self._wall: datetime | None = None

    def observe(self, frame: Frame) -> None:
        self._mono, self._wall = frame.mono, frame.wall

    def __call__(self, mono: float) -> datetime:
        if self._mono is None or self._wall is None:
            return datetime.now(UTC)
        return self._wall + timedelta(seconds=mono - self._mono)


def fixed_clock(epoch: datetime) -> WallClock:
    """A clock where monotonic 0.0 is ``epoch`` (tests, replays)."""
    if epoch.tzinfo is None:
        raise ValueError("epoch must be timezone-aware")
    return lambda mono: epoch + timedelta(seconds=mono)

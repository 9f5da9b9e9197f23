"""Helpers for the rule tests: scripted tracks that keep an anchor history like the tracker, frame times, and
a fixed wall clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np

from edge_agent.config import ZoneConfig
from edge_agent.rules.base import Finding
from edge_agent.types import Track

W, H = 1920, 1080
DT = 0.2  # s between detect frames (5 fps)
# Monday 2024-05-13 00:00 in Ho Chi Minh City (UTC+7) is 2024-05-12 17:00 UTC: mono 0.0 is local midnight.
LOCAL_MIDNIGHT_MON = datetime(2024, 5, 12, 17, 0, tzinfo=UTC)


def zone(
    zone_id: str, polygon: list[tuple[float, float]], direction: float | str | None = None
) -> ZoneConfig:
    return ZoneConfig(id=zone_id, polygon=polygon, direction=direction)


class Mover:
    """A scripted road user; ``at`` moves its box so that the bottom-centre anchor is (x, y) and records the
    anchor in ``history`` as the tracker does for a matched frame."""

    def __init__(self, track_id: int, label: str = "car", size: tuple[float, float] = (100.0, 60.0)) -> None:
        self.w, self.h = size
        self.track = Track(track_id, 2, label, np.zeros(4, np.float32), 0.9, 0.0, 0.0)

    def at(self, x: float, y: float, now: float) -> Track:
        t = self.track
        t.xyxy = np.array([x - self.w / 2, y - self.h, x + self.w / 2, y], np.float32)
        t.last_seen, t.time_since_update = now, 0
        t.history.append((now, float(x), float(y)))
        return t

    def unseen(self) -> Track:
        self.track.time_since_update = 1
        return self.track


def frames(start: float, stop: float, dt: float = DT) -> Iterable[float]:
    """Times start, start + dt, ... < stop, without accumulated rounding."""
    n = round((stop - start) / dt)
    return (round(start + i * dt, 9) for i in range(n))


def phases(findings: list[Finding]) -> list[tuple[str, str, float]]:
    return [(f.phase.value, f.key, round(f.now, 6)) for f in findings]

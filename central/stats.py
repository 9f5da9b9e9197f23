"""Review statistics per ward, camera, rule type and local day: events, confirmed/dismissed rates, median time
to decision; plus the geometry of the server-rendered SVG charts (no JavaScript, no chart library).

A rule with a high dismissal rate is one an operator should tune. Computed over the user's wards only.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.db.models import EventRow, ReviewStatus
from central.scope import Scope
from central.timefmt import local_day

MAX_DAYS = 366


@dataclass
class Bucket:
    events: int = 0
    confirmed: int = 0
    dismissed: int = 0
    decision_s: list[float] = field(default_factory=list)

    @property
    def decided(self) -> int:
        return self.confirmed + self.dismissed

    @property
    def confirmed_rate(self) -> float | None:
        return self.confirmed / self.decided if self.decided else None

    @property
    def dismissed_rate(self) -> float | None:
        return self.dismissed / self.decided if self.decided else None

    @property
    def median_decision_s(self) -> float | None:
        return statistics.median(self.decision_s) if self.decision_s else None

    def add(self, status: str, decision_s: float | None) -> None:
        self.events += 1
        if status == ReviewStatus.CONFIRMED.value:
            self.confirmed += 1
        elif status == ReviewStatus.DISMISSED.value:
            self.dismissed += 1
        if decision_s is not None:
            self.decision_s.append(decision_s)


@dataclass
class Stats:
    total: Bucket
    by_ward: dict[str, Bucket]
    by_camera: dict[str, Bucket]
    by_type: dict[str, Bucket]
    by_day: dict[str, Bucket]


def compute(session: Session, scope: Scope, *, since: datetime, until: datetime, tz: str) -> Stats:
    query = select(
        EventRow.ward_id,
        EventRow.node_id,
        EventRow.camera_id,
        EventRow.type,
        EventRow.started_at,
        EventRow.review_status,
        EventRow.received_at,
        EventRow.decided_at,
    ).where(scope.events(), EventRow.started_at >= since, EventRow.started_at < until)
    total = Bucket()
    by: dict[str, dict[str, Bucket]] = {k: defaultdict(Bucket) for k in ("ward", "camera", "type", "day")}
    for ward, node, camera, kind, started, status, received, decided in session.execute(query):
        took = (decided - received).total_seconds() if decided is not None else None
        keys = {
            "ward": ward or "-",
            "camera": f"{node}/{camera}",
            "type": kind,
            "day": local_day(started, tz),
        }
        total.add(status, took)
        for name, key in keys.items():
            by[name][key].add(status, took)
    day = since
    while day < until:  # every day of the range, also those without events
        by["day"].setdefault(local_day(day, tz), Bucket())
        day += timedelta(days=1)
    return Stats(
        total,
        dict(sorted(by["ward"].items())),
        dict(sorted(by["camera"].items())),
        dict(sorted(by["type"].items())),
        dict(sorted(by["day"].items())),
    )


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    cls: str
    title: str


def day_bars(by_day: dict[str, Bucket], width: float = 900, height: float = 220) -> tuple[list[Bar], float]:
    """Stacked bars per day (confirmed, dismissed, still open); returns the bars and the y-axis maximum."""
    top = max((b.events for b in by_day.values()), default=0) or 1
    slot = width / max(len(by_day), 1)
    bars: list[Bar] = []
    for i, (day, b) in enumerate(by_day.items()):
        y = height
        for count, cls in (
            (b.confirmed, "confirmed"),
            (b.dismissed, "dismissed"),
            (b.events - b.decided, "open"),
        ):
            h = height * count / top
            y -= h
            if count:
                bars.append(Bar(i * slot + 2, y, max(slot - 4, 1), h, cls, f"{day}: {count}"))
    return bars, float(top)

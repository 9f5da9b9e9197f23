"""The review queue and search: filters, keyset pagination, incident grouping, each type's key fact.

Keyset ("seek") pagination instead of OFFSET: the next page starts after the last row's sort key, so page 500
costs the same as page 1 and a row arriving meanwhile neither repeats nor skips one. The default order is the
officer's: oldest pending first; supervisors get escalated events first. The sort key is encoded into an opaque
``cursor`` (URL-safe base64 of JSON).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, lazyload

from central.db.models import EventRow, ReviewStatus, Role
from central.review import EVENT_TYPES, STATUS_ALL, STATUS_FILTERS, ReviewError
from central.scope import Scope

_T = TypeVar("_T", bound=Any)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
GROUP_WINDOW = timedelta(minutes=10)
ORDERS = ("oldest", "newest")
QUERY_KEYS = ("status", "ward", "camera", "zone", "type", "label", "claimed_by", "since", "until", "order")
MAX_TEXT = 64


@dataclass(frozen=True)
class Filters:
    """What the officer asked for; every field optional except status (default pending)."""

    status: str = ReviewStatus.PENDING.value
    ward: str | None = None
    camera: str | None = None
    zone: str | None = None
    type: str | None = None
    label: str | None = None
    claimed_by: str | None = None
    since: datetime | None = None  # aware; the page converts local input to UTC
    until: datetime | None = None
    order: str = "oldest"
    escalated_first: bool = False

    def query_params(self) -> dict[str, str]:
        """The filters as the page's query string (for "next page" links and the live-update poll)."""
        out = {"status": self.status, "order": self.order}
        for name in ("ward", "camera", "zone", "type", "label", "claimed_by"):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out


@dataclass
class Page:
    rows: list[EventRow]
    next_cursor: str | None
    filters: Filters
    groups: list[Group] = field(default_factory=list)


@dataclass
class Group:
    """Events of one camera/zone/type starting within ``GROUP_WINDOW`` of the first: one queue row."""

    head: EventRow
    members: list[EventRow]

    @property
    def count(self) -> int:
        return len(self.members)


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    if len(value) > MAX_TEXT:
        raise ReviewError("error_bad_filter", f"filter value longer than {MAX_TEXT} characters")
    return value or None


def parse_filters(
    *,
    role: str,
    status: str | None = None,
    ward: str | None = None,
    camera: str | None = None,
    zone: str | None = None,
    type_: str | None = None,
    label: str | None = None,
    claimed_by: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    order: str | None = None,
) -> Filters:
    """Validate raw query values (``ReviewError`` -> 422 with the message key)."""
    status = (status or ReviewStatus.PENDING.value).strip().lower()
    if status not in STATUS_FILTERS:
        raise ReviewError("error_bad_status", f"status must be one of {', '.join(STATUS_FILTERS)}")
    type_value = _text(type_)
    if type_value is not None and type_value not in EVENT_TYPES:
        raise ReviewError("error_bad_type", f"type must be one of {', '.join(EVENT_TYPES)}")
    order = (order or "oldest").strip().lower()
    if order not in ORDERS:
        raise ReviewError("error_bad_order", f"order must be one of {', '.join(ORDERS)}")
    if since is not None and until is not None and since > until:
        raise ReviewError("error_bad_range", "the time range ends before it starts")
    return Filters(
        status=status,
        ward=_text(ward),
        camera=_text(camera),
        zone=_text(zone),
        type=type_value,
        label=_text(label),
        claimed_by=_text(claimed_by),
        since=since,
        until=until,
        order=order,
        escalated_first=role in (Role.SUPERVISOR.value, Role.ADMIN.value) and status != STATUS_ALL,
    )


def _where(query: Select[_T], scope: Scope, f: Filters) -> Select[_T]:
    query = query.where(scope.events())
    if f.status != STATUS_ALL:
        query = query.where(EventRow.review_status == f.status)
    if f.ward:
        query = query.where(EventRow.ward_id == f.ward)
    if f.camera:
        query = query.where(EventRow.camera_id == f.camera)
    if f.zone:
        query = query.where(EventRow.zone_id == f.zone)
    if f.type:
        query = query.where(EventRow.type == f.type)
    if f.label:
        pattern = f.label.replace("\\", "").replace("%", "\\%").replace("_", "\\_")
        query = query.where(EventRow.labels.like(f"%,{pattern},%", escape="\\"))
    if f.claimed_by:
        query = query.where(EventRow.claimed_by == f.claimed_by)
    if f.since is not None:
        query = query.where(EventRow.started_at >= f.since)
    if f.until is not None:
        query = query.where(EventRow.started_at < f.until)
    return query


def encode_cursor(row: EventRow, f: Filters) -> str:
    key = [int(row.escalated) if f.escalated_first else 0, row.started_at.isoformat(), row.event_id]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        escalated, started, event_id = json.loads(raw)
        at = datetime.fromisoformat(started)
        if at.tzinfo is None or not isinstance(event_id, str) or escalated not in (0, 1):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise ReviewError("error_bad_cursor", "invalid page cursor") from None
    return int(escalated), at, event_id


def list_page(
    session: Session, scope: Scope, f: Filters, *, cursor: str | None = None, limit: int = DEFAULT_LIMIT
) -> Page:
    """One page of events after ``cursor``, with the cursor of the next page (None on the last one).

    Escalated-first (supervisors) runs one query per flag, escalated ones first, each in the order of an
    index (``ix_events_escalated``) instead of one query sorting the whole backlog by a mixed-direction key.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ReviewError("error_bad_limit", f"limit must be between 1 and {MAX_LIMIT}")
    position = decode_cursor(cursor) if cursor else None
    if not f.escalated_first:
        rows = _seek(session, scope, f, position, None, limit + 1)
    else:
        rows = []
        for flag in (1, 0):
            if position is not None and flag > position[0]:
                continue  # the cursor is already past the escalated part
            after = position if position is not None and position[0] == flag else None
            rows += _seek(session, scope, f, after, bool(flag), limit + 1 - len(rows))
            if len(rows) > limit:
                break
    next_cursor = encode_cursor(rows[limit - 1], f) if len(rows) > limit else None
    rows = rows[:limit]
    return Page(rows=rows, next_cursor=next_cursor, filters=f, groups=group_incidents(rows))


def _seek(
    session: Session,
    scope: Scope,
    f: Filters,
    after: tuple[int, datetime, str] | None,
    escalated: bool | None,
    limit: int,
) -> list[EventRow]:
    query = _where(select(EventRow), scope, f)
    if escalated is not None:
        query = query.where(EventRow.escalated == escalated)  # "= true": usable as an index condition
    newest = f.order == "newest"
    if after is not None:
        _flag, at, event_id = after
        query = query.where(
            or_(EventRow.started_at < at, and_(EventRow.started_at == at, EventRow.event_id < event_id))
            if newest
            else or_(EventRow.started_at > at, and_(EventRow.started_at == at, EventRow.event_id > event_id))
        )
    order = (
        (EventRow.started_at.desc(), EventRow.event_id.desc())
        if newest
        else (EventRow.started_at.asc(), EventRow.event_id.asc())
    )
    # Decisions load only if a caller reads them (the queue does not): no second query per page.
    query = query.options(lazyload(EventRow.decisions))
    return list(session.scalars(query.order_by(*order).limit(limit)))


def count_newer(session: Session, scope: Scope, f: Filters, since: datetime) -> int:
    """Events matching ``f`` that central received after ``since`` (the queue's new-events badge)."""
    query = _where(select(func.count()).select_from(EventRow), scope, f).where(EventRow.received_at > since)
    return int(session.scalar(query) or 0)


def group_incidents(rows: list[EventRow]) -> list[Group]:
    """Collapse near-duplicates on one page: same camera, zone and type, starting within the window."""
    groups: list[Group] = []
    open_groups: dict[tuple[str, str, str, str], Group] = {}
    for row in rows:
        key = (row.node_id, row.camera_id, row.zone_id, row.type)
        group = open_groups.get(key)
        if group is not None and abs(row.started_at - group.head.started_at) <= GROUP_WINDOW:
            group.members.append(row)
            continue
        group = Group(head=row, members=[row])
        open_groups[key] = group
        groups.append(group)
    return groups


def incident_filters(group: Group, f: Filters) -> Filters:
    """Filters that list every member of ``group`` (the "show all N" link)."""
    head = group.head
    return replace(
        f,
        camera=head.camera_id,
        zone=head.zone_id,
        type=head.type,
        since=head.started_at - GROUP_WINDOW,
        until=head.started_at + GROUP_WINDOW,
    )


@dataclass(frozen=True)
class KeyFact:
    """The one number an officer needs first for this event type (label key, formatted by the page)."""

    key: str  # i18n key of the label, e.g. "fact_speed"
    kind: str  # duration | speed | count | percent | signal | number
    value: float | None
    limit: float | None = None


_FACT_BY_TYPE: dict[str, tuple[str, str, str]] = {
    # type: (label key, measurement, kind)
    "illegal_stopping": ("measure_dwell_s", "dwell_s", "duration"),
    "sidewalk_vehicle": ("measure_dwell_s", "dwell_s", "duration"),
    "speeding": ("measure_speed_kmh", "speed_kmh", "speed"),
    "gathering": ("measure_count", "count", "count"),
    "encroachment": ("measure_occupancy", "occupancy", "percent"),
    "red_light": ("measure_red_for_s", "red_for_s", "signal"),
    "motorbike_overload": ("measure_riders", "riders", "count"),
    "wrong_way": ("measure_distance_px", "distance_px", "number"),
    "illegal_turn": ("measure_transit_s", "transit_s", "duration"),
}


def key_fact(event_type: str, measurements: dict[str, Any]) -> KeyFact | None:
    spec = _FACT_BY_TYPE.get(event_type)
    if spec is None:
        return None
    label, name, kind = spec
    value = measurements.get(name)
    limit = measurements.get("limit_kmh") if kind == "speed" else None
    return KeyFact(
        label, kind, float(value) if value is not None else None, float(limit) if limit is not None else None
    )

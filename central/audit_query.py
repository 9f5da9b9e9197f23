"""Reading the audit log: filters (actor, action, target, local date range) and keyset pages, newest first.

Admins read every row. A supervisor reads the rows of their wards: what people assigned to those wards did or
had done to their accounts, and whatever concerns those wards' events, cases and the wards themselves.

Dates people type are local days in the deployment's time zone (``STREETWATCH_TIMEZONE``); they are turned
into UTC bounds here, so "2026-12-06" means the officer's 6 December, not UTC's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, String, cast, literal, or_, select
from sqlalchemy.orm import Session

from central.db.models import AuditRow, EventRow, UserWardRow
from central.db.wards import CaseRow

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None  # exact, or a family ending in "." ("login." = login and login.*)
    target: str | None = None  # substring
    day_from: date | None = None  # local, inclusive
    day_to: date | None = None  # local, inclusive


def _local_midnight_utc(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=zone)


def _in_wards(wards: frozenset[str]) -> ColumnElement[bool]:
    people = select(UserWardRow.username).where(UserWardRow.ward_id.in_(wards))
    events = select(literal("event:") + EventRow.event_id).where(EventRow.ward_id.in_(wards))
    cases = select(literal("case:") + cast(CaseRow.id, String)).where(CaseRow.ward_id.in_(wards))
    return or_(
        AuditRow.username.in_(people),
        AuditRow.target.in_(
            select(literal("user:") + UserWardRow.username).where(UserWardRow.ward_id.in_(wards))
        ),
        AuditRow.target.in_(events),
        AuditRow.target.in_(cases),
        AuditRow.target.in_([f"ward:{ward}" for ward in sorted(wards)]),
    )


def _query(flt: AuditFilter, zone: ZoneInfo, wards: frozenset[str] | None) -> Select[AuditRow]:
    query = select(AuditRow)
    if wards is not None:
        query = query.where(_in_wards(wards))
    if flt.actor:
        query = query.where(AuditRow.username == flt.actor)
    if flt.action:
        if flt.action.endswith("."):
            stem = flt.action.removesuffix(".")
            query = query.where(
                or_(AuditRow.action == stem, AuditRow.action.startswith(flt.action, autoescape=True))
            )
        else:
            query = query.where(AuditRow.action == flt.action)
    if flt.target:
        query = query.where(AuditRow.target.contains(flt.target, autoescape=True))
    if flt.day_from:
        query = query.where(AuditRow.at >= _local_midnight_utc(flt.day_from, zone))
    if flt.day_to:
        query = query.where(AuditRow.at < _local_midnight_utc(flt.day_to + timedelta(days=1), zone))
    return query


def page(
    session: Session,
    flt: AuditFilter,
    *,
    zone: ZoneInfo,
    wards: frozenset[str] | None = None,
    before_id: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[AuditRow], int | None]:
    """One page of matching rows, newest first, and the ``before_id`` of the next page (None: no more).

    ``wards``: None reads everything (admins); a set restricts to rows of those wards (supervisors).
    """
    query = _query(flt, zone, wards)
    if before_id is not None:
        query = query.where(AuditRow.id < before_id)
    rows = list(session.scalars(query.order_by(AuditRow.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def actions(session: Session) -> list[str]:
    """The distinct actions recorded so far (for the page's filter list)."""
    return sorted(session.scalars(select(AuditRow.action).distinct()))

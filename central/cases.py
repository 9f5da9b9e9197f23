"""Cases: an officer groups events of one ward into an investigation file; its evidence is locked.

Every change is audited. A case belongs to one ward and only takes that ward's events, so exporting a case never
leaks another ward's footage. ``locked_evidence`` is what retention must keep (``central.retention``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit
from central.db.models import EventRow, Role
from central.db.wards import CaseEventRow, CaseRow, EventEvidenceRow
from central.review import ReviewError
from central.scope import Scope

MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
CASE_ROLES = frozenset({Role.OFFICER.value, Role.SUPERVISOR.value, Role.ADMIN.value})


def _check_role(role: str) -> None:
    if role not in CASE_ROLES:
        raise ReviewError("error_forbidden", "your role may not manage cases", 403)


def create_case(
    session: Session,
    scope: Scope,
    *,
    title: str,
    description: str,
    ward_id: str,
    username: str,
    role: str,
    now: datetime,
) -> CaseRow:
    _check_role(role)
    title = title.strip()
    if not title or len(title) > MAX_TITLE:
        raise ReviewError("error_case_title", f"a case needs a title of 1..{MAX_TITLE} characters")
    if len(description) > MAX_DESCRIPTION:
        raise ReviewError("error_case_title", f"description longer than {MAX_DESCRIPTION} characters")
    if not ward_id or not scope.allows(ward_id):
        raise ReviewError("error_case_ward_required", "choose one of your wards")
    case = CaseRow(
        title=title,
        description=description.strip(),
        owner=username,
        ward_id=ward_id,
        created_at=now,
        updated_at=now,
    )
    session.add(case)
    session.flush()
    audit.record(
        session, username, "case.create", f"case:{case.id}", {"title": title, "ward": ward_id}, at=now
    )
    return case


def add_event(
    session: Session, case: CaseRow, event: EventRow, *, username: str, role: str, now: datetime
) -> bool:
    """Put ``event`` into ``case`` (False when it was already there); same ward only."""
    _check_role(role)
    if event.ward_id != case.ward_id:
        raise ReviewError("error_case_ward", "the event belongs to another ward than the case", 422)
    if session.get(CaseEventRow, (case.id, event.event_id)) is not None:
        return False
    session.add(CaseEventRow(case_id=case.id, event_id=event.event_id, added_by=username, added_at=now))
    case.updated_at = now
    audit.record(session, username, "case.add_event", f"case:{case.id}", {"event": event.event_id}, at=now)
    return True


def remove_event(
    session: Session, case: CaseRow, event_id: str, *, username: str, role: str, now: datetime
) -> bool:
    _check_role(role)
    row = session.get(CaseEventRow, (case.id, event_id))
    if row is None:
        return False
    session.delete(row)
    case.updated_at = now
    audit.record(session, username, "case.remove_event", f"case:{case.id}", {"event": event_id}, at=now)
    return True


def case_events(session: Session, case: CaseRow) -> list[EventRow]:
    return list(
        session.scalars(
            select(EventRow)
            .join(CaseEventRow, CaseEventRow.event_id == EventRow.event_id)
            .where(CaseEventRow.case_id == case.id)
            .order_by(EventRow.started_at, EventRow.event_id)
        )
    )


def list_cases(session: Session, scope: Scope) -> list[CaseRow]:
    return list(session.scalars(select(CaseRow).where(scope.cases()).order_by(CaseRow.updated_at.desc())))


def locked_evidence(session: Session) -> set[str]:
    """Hashes of evidence referenced by an event in any case: retention must not delete these."""
    return set(
        session.scalars(
            select(EventEvidenceRow.sha256)
            .join(CaseEventRow, CaseEventRow.event_id == EventEvidenceRow.event_id)
            .distinct()
        )
    )

"""The review queue: listing events and recording officers' decisions.

Both the HTML pages and the JSON API call these functions, so the rules (a dismissal needs a reason, every
decision is audited, the latest decision sets the status) live in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit
from central.db.models import DecisionKind, DecisionRow, EventRow, EvidenceRow, ReviewStatus, Role
from edge_agent.contract import EventType, EvidenceKind

STATUS_ALL = "all"
STATUS_FILTERS = (*(s.value for s in ReviewStatus), STATUS_ALL)
EVENT_TYPES = tuple(t.value for t in EventType)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_REASON_LENGTH = 2000

# Who may decide on an event; operators and technicians see the queue but do not judge violations.
DECIDER_ROLES = frozenset({Role.OFFICER.value, Role.ADMIN.value})

_STATUS_AFTER = {
    DecisionKind.CONFIRM: ReviewStatus.CONFIRMED,
    DecisionKind.DISMISS: ReviewStatus.DISMISSED,
    # Escalation hands the event to someone senior; it stays (or goes back) in the open queue.
    DecisionKind.ESCALATE: ReviewStatus.PENDING,
}


class ReviewError(ValueError):
    """A request the review rules refuse (bad filter, missing reason...); ``key`` names an i18n message."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def parse_filters(
    status: str | None, event_type: str | None, limit: int | None
) -> tuple[str, str | None, int]:
    """Validate list filters: status (default pending), optional type, limit within 1..MAX_LIMIT."""
    status = (status or ReviewStatus.PENDING.value).strip().lower()
    if status not in STATUS_FILTERS:
        raise ReviewError("error_bad_status", f"status must be one of {', '.join(STATUS_FILTERS)}")
    event_type = (event_type or "").strip() or None
    if event_type is not None and event_type not in EVENT_TYPES:
        raise ReviewError("error_bad_type", f"type must be one of {', '.join(EVENT_TYPES)}")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise ReviewError("error_bad_limit", f"limit must be between 1 and {MAX_LIMIT}")
    return status, event_type, limit


def list_events(session: Session, status: str, event_type: str | None, limit: int) -> list[EventRow]:
    """Events newest first (by start time), filtered by review status (or ``all``) and type."""
    query = select(EventRow)
    if status != STATUS_ALL:
        query = query.where(EventRow.review_status == status)
    if event_type is not None:
        query = query.where(EventRow.type == event_type)
    query = query.order_by(EventRow.started_at.desc(), EventRow.event_id.desc()).limit(limit)
    return list(session.scalars(query))


def stored_evidence(session: Session, events: Iterable[EventRow]) -> set[str]:
    """The evidence hashes among ``events`` that central has actually received."""
    hashes = {ref["sha256"] for event in events for ref in event.evidence if "sha256" in ref}
    if not hashes:
        return set()
    return set(session.scalars(select(EvidenceRow.sha256).where(EvidenceRow.sha256.in_(hashes))))


def snapshot_ref(event: EventRow) -> dict[str, Any] | None:
    """The newest annotated snapshot of an event (plain snapshot as a fallback), or None."""
    for kind in (EvidenceKind.SNAPSHOT_ANNOTATED.value, EvidenceKind.SNAPSHOT.value):
        refs = [ref for ref in event.evidence if ref.get("kind") == kind]
        if refs:
            return refs[-1]
    return None


def decide(
    session: Session,
    event: EventRow,
    *,
    decision: str,
    reason: str | None,
    username: str,
    role: str,
    now: datetime,
) -> DecisionRow:
    """Record a decision, update the event's status and write the audit row, in the caller's transaction."""
    if role not in DECIDER_ROLES:
        raise ReviewError("error_forbidden", "your role may not decide on events")
    try:
        kind = DecisionKind(decision)
    except ValueError:
        choices = ", ".join(k.value for k in DecisionKind)
        raise ReviewError("error_bad_decision", f"decision must be one of {choices}") from None
    reason = (reason or "").strip() or None
    if kind is DecisionKind.DISMISS and reason is None:
        raise ReviewError("error_reason_required", "a dismissal needs a reason")
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise ReviewError("error_reason_too_long", f"reason is longer than {MAX_REASON_LENGTH} characters")
    previous = event.review_status
    row = DecisionRow(
        event_id=event.event_id, decision=kind.value, reason=reason, username=username, decided_at=now
    )
    session.add(row)
    event.decisions.append(row)
    event.review_status = _STATUS_AFTER[kind].value
    audit.record(
        session,
        at=now,
        username=username,
        action=f"event.{kind.value}",
        target=f"event:{event.event_id}",
        detail={"reason": reason, "previous_status": previous, "status": event.review_status},
    )
    return row

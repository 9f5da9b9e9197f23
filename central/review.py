"""Review integrity: claims with a lease, versioned decisions, and the supervisor's audited reopen.

Both the HTML pages and the JSON API call these functions, so the rules live in one place:

* an officer *claims* an event before deciding; others see the claim, and cannot decide or claim while the
  lease runs (409); the claim ends with the decision or when the lease runs out;
* a decision names the event ``version`` it was made on; every change (a node's newer phase, a decision, a
  reopen) bumps the version with a conditional UPDATE, so of two concurrent decisions exactly one wins and the
  other gets 409, on SQLite and PostgreSQL alike;
* a decided (confirmed/dismissed) event is changed only by a supervisor's *reopen*, with a reason;
* every claim, release, decision and reopen writes an audit row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from central import audit
from central.db.models import DecisionKind, DecisionRow, EventRow, EvidenceRow, ReviewStatus, Role
from edge_agent.contract import EventType, EvidenceKind

STATUS_ALL = "all"
STATUS_FILTERS = (*(s.value for s in ReviewStatus), STATUS_ALL)
EVENT_TYPES = tuple(t.value for t in EventType)
MAX_REASON_LENGTH = 2000

# Who may claim and decide; operators and technicians read their wards' events but do not judge violations.
DECIDER_ROLES = frozenset({Role.OFFICER.value, Role.SUPERVISOR.value, Role.ADMIN.value})
REOPEN_ROLES = frozenset({Role.SUPERVISOR.value, Role.ADMIN.value})
DECIDED = frozenset({ReviewStatus.CONFIRMED.value, ReviewStatus.DISMISSED.value})

_STATUS_AFTER = {
    DecisionKind.CONFIRM: ReviewStatus.CONFIRMED,
    DecisionKind.DISMISS: ReviewStatus.DISMISSED,
    # Escalation hands the event to a supervisor; it stays in the open queue, sorted first for them.
    DecisionKind.ESCALATE: ReviewStatus.PENDING,
}


class ReviewError(ValueError):
    """A request the review rules refuse; ``key`` names an i18n message, ``status`` the HTTP code."""

    def __init__(self, key: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.status = status


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


def active_claim(event: EventRow, now: datetime) -> str | None:
    """Who holds the event's claim right now (None: nobody, or the lease ran out)."""
    if event.claimed_by and event.claimed_until is not None and event.claimed_until > now:
        return event.claimed_by
    return None


def _check_version(event: EventRow, version: int | None) -> int:
    if version is None:
        raise ReviewError("error_version_required", "the decision must name the event version it was made on")
    if version != event.version:
        raise ReviewError(
            "error_stale",
            f"the event changed since you opened it (version {version}, now {event.version}); reload it",
            409,
        )
    return version


def _bump(session: Session, event: EventRow, version: int, **values: Any) -> None:
    """Write ``values`` and version+1 only if nobody changed the event since ``version`` (else 409)."""
    result = session.execute(
        update(EventRow)
        .where(EventRow.event_id == event.event_id, EventRow.version == version)
        .values(version=version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ReviewError("error_stale", "the event changed at the same time; reload it", 409)
    session.refresh(event)


def claim(
    session: Session, event: EventRow, *, username: str, role: str, now: datetime, lease_s: int
) -> None:
    """Claim ``event`` for ``lease_s`` seconds (renews one's own claim); 409 when another officer holds it."""
    if role not in DECIDER_ROLES:
        raise ReviewError("error_forbidden", "your role may not claim events", 403)
    if event.review_status in DECIDED:
        raise ReviewError("error_decided", "the event is already decided", 409)
    until = now + timedelta(seconds=lease_s)
    result = session.execute(
        update(EventRow)
        .where(
            EventRow.event_id == event.event_id,
            or_(
                EventRow.claimed_by.is_(None),
                EventRow.claimed_by == username,
                EventRow.claimed_until <= now,
            ),
        )
        .values(claimed_by=username, claimed_until=until)
        .execution_options(synchronize_session=False)
    )
    session.refresh(event)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ReviewError("error_claimed", f"claimed by {event.claimed_by}", 409)
    audit.record(
        session, username, "event.claim", f"event:{event.event_id}", {"until": until.isoformat()}, at=now
    )


def release(session: Session, event: EventRow, *, username: str, now: datetime) -> None:
    """Give up one's own claim (no-op when not holding it)."""
    if event.claimed_by != username:
        return
    event.claimed_by = None
    event.claimed_until = None
    audit.record(session, username, "event.release", f"event:{event.event_id}", {}, at=now)


def decide(
    session: Session,
    event: EventRow,
    *,
    decision: str,
    reason: str | None,
    username: str,
    role: str,
    version: int | None,
    now: datetime,
) -> DecisionRow:
    """Record a decision made on ``version``; updates status, releases the claim, audits; caller commits."""
    if role not in DECIDER_ROLES:
        raise ReviewError("error_forbidden", "your role may not decide on events", 403)
    try:
        kind = DecisionKind(decision)
    except ValueError:
        kind = None
    if kind is None or kind is DecisionKind.REOPEN:
        choices = ", ".join(k.value for k in _STATUS_AFTER)
        raise ReviewError("error_bad_decision", f"decision must be one of {choices}")
    reason = (reason or "").strip() or None
    if kind is DecisionKind.DISMISS and reason is None:
        raise ReviewError("error_reason_required", "a dismissal needs a reason")
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise ReviewError("error_reason_too_long", f"reason is longer than {MAX_REASON_LENGTH} characters")
    if event.review_status in DECIDED:
        raise ReviewError("error_decided", "the event is already decided; a supervisor can reopen it", 409)
    holder = active_claim(event, now)
    if holder is not None and holder != username:
        raise ReviewError("error_claimed", f"claimed by {holder}", 409)
    version = _check_version(event, version)
    previous = event.review_status
    status = _STATUS_AFTER[kind].value
    _bump(
        session,
        event,
        version,
        review_status=status,
        escalated=kind is DecisionKind.ESCALATE,
        decided_at=None if kind is DecisionKind.ESCALATE else now,
        claimed_by=None,
        claimed_until=None,
    )
    row = DecisionRow(
        event_id=event.event_id,
        decision=kind.value,
        reason=reason,
        username=username,
        decided_at=now,
        event_version=version,
    )
    session.add(row)
    session.flush()
    session.refresh(event, ["decisions"])
    audit.record(
        session,
        username,
        f"event.{kind.value}",
        f"event:{event.event_id}",
        {"reason": reason, "previous_status": previous, "status": status, "version": version},
        at=now,
    )
    return row


def reopen(
    session: Session,
    event: EventRow,
    *,
    reason: str | None,
    username: str,
    role: str,
    version: int | None,
    now: datetime,
) -> DecisionRow:
    """A supervisor sends a decided event back to the queue; the reason is required and audited."""
    if role not in REOPEN_ROLES:
        raise ReviewError("error_forbidden_reopen", "only supervisors may reopen a decided event", 403)
    reason = (reason or "").strip() or None
    if reason is None:
        raise ReviewError("error_reason_required_reopen", "a reopen needs a reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise ReviewError("error_reason_too_long", f"reason is longer than {MAX_REASON_LENGTH} characters")
    if event.review_status not in DECIDED:
        raise ReviewError("error_not_decided", "only a decided event can be reopened", 409)
    version = _check_version(event, version)
    previous = event.review_status
    _bump(
        session,
        event,
        version,
        review_status=ReviewStatus.PENDING.value,
        escalated=False,
        decided_at=None,
        claimed_by=None,
        claimed_until=None,
    )
    row = DecisionRow(
        event_id=event.event_id,
        decision=DecisionKind.REOPEN.value,
        reason=reason,
        username=username,
        decided_at=now,
        event_version=version,
    )
    session.add(row)
    session.flush()
    session.refresh(event, ["decisions"])
    audit.record(
        session,
        username,
        "event.reopen",
        f"event:{event.event_id}",
        {"reason": reason, "previous_status": previous, "version": version},
        at=now,
    )
    return row

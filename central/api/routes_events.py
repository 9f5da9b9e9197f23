"""JSON API of the review (``/api/v1/events``): scoped listing/search with keyset pages, claims, versioned
decisions, supervisor reopen. Another ward's event answers 404, exactly like one that does not exist."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from central import queue, review
from central.api.deps import ApiUser, CentralDep, DbSession
from central.api.schemas import DecisionOut, ErrorOut, EventOut
from central.db.models import EventRow
from central.scope import Scope, event_in_scope, scope_of

router = APIRouter(prefix="/api/v1", tags=["review"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 404, 409, 422)}


class ReviewEventOut(EventOut):
    ward_id: str | None
    version: int = Field(description="Send it back with a decision; a stale one is refused with 409.")
    claimed_by: str | None
    claimed_until: datetime | None
    escalated: bool
    changed_after_decision: bool = Field(description="A node sent a later phase after the decision.")

    @classmethod
    def review_fields(cls, row: EventRow, stored: set[str], role: str = "") -> dict[str, Any]:
        return {
            **cls.fields_of(row, stored, role),
            "ward_id": row.ward_id,
            "version": row.version,
            "claimed_by": row.claimed_by,
            "claimed_until": row.claimed_until,
            "escalated": row.escalated,
            "changed_after_decision": row.changed_after_decision,
        }

    @classmethod
    def of(cls, row: EventRow, stored: set[str], role: str = "") -> ReviewEventOut:
        return cls(**cls.review_fields(row, stored, role))


class ReviewEventDetailOut(ReviewEventOut):
    decisions: list[DecisionOut]

    @classmethod
    def of(cls, row: EventRow, stored: set[str], role: str = "") -> ReviewEventDetailOut:
        return cls(
            **cls.review_fields(row, stored, role), decisions=[DecisionOut.of(d) for d in row.decisions]
        )


class EventPageOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    events: list[ReviewEventOut]
    next_cursor: str | None = Field(description="Pass as ``cursor`` for the next page; null on the last.")


class VersionedDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern="^(confirm|dismiss|escalate)$", description="confirm, dismiss or escalate.")
    reason: str | None = Field(
        default=None, max_length=review.MAX_REASON_LENGTH, description="Required to dismiss."
    )
    version: int = Field(ge=1, description="The event version the decision was made on (from the event).")


class ReopenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=review.MAX_REASON_LENGTH, description="Why it is reopened.")
    version: int = Field(ge=1, description="The event version the supervisor looked at.")


def _scope(db: DbSession, user: ApiUser) -> Scope:
    return scope_of(db, user.username, user.role)


def _event(db: DbSession, scope: Scope, event_id: str, *, lock: bool = False) -> EventRow:
    row = event_in_scope(db, scope, event_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id}")
    return row


def _refused(exc: review.ReviewError) -> HTTPException:
    return HTTPException(exc.status, exc.message)


@router.get("/events", response_model=EventPageOut, responses=_ERRORS)
def api_list_events(
    user: ApiUser,
    db: DbSession,
    status_: Annotated[
        str | None, Query(alias="status", description="pending|confirmed|dismissed|all")
    ] = None,
    ward: Annotated[str | None, Query(max_length=64)] = None,
    camera: Annotated[str | None, Query(max_length=64)] = None,
    zone: Annotated[str | None, Query(max_length=64)] = None,
    type_: Annotated[str | None, Query(alias="type", description="Event type, e.g. speeding.")] = None,
    label: Annotated[str | None, Query(max_length=64, description="Object class, e.g. car.")] = None,
    claimed_by: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[
        datetime | None, Query(description="Started at or after (ISO 8601 with offset).")
    ] = None,
    until: Annotated[datetime | None, Query(description="Started before (ISO 8601 with offset).")] = None,
    order: Annotated[str | None, Query(pattern="^(oldest|newest)$")] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=queue.MAX_LIMIT)] = queue.DEFAULT_LIMIT,
) -> EventPageOut:
    """The caller's wards only; oldest pending first (escalated first for supervisors); keyset pages."""
    for value in (since, until):
        if value is not None and value.tzinfo is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since/until need a UTC offset")
    try:
        filters = queue.parse_filters(
            role=user.role,
            status=status_ or review.STATUS_ALL,
            ward=ward,
            camera=camera,
            zone=zone,
            type_=type_,
            label=label,
            claimed_by=claimed_by,
            since=since,
            until=until,
            order=order,
        )
        page = queue.list_page(db, _scope(db, user), filters, cursor=cursor, limit=limit)
    except review.ReviewError as exc:
        raise _refused(exc) from None
    stored = review.stored_evidence(db, page.rows)
    return EventPageOut(
        events=[ReviewEventOut.of(r, stored, user.role) for r in page.rows], next_cursor=page.next_cursor
    )


@router.get("/events/{event_id}", response_model=ReviewEventDetailOut, responses=_ERRORS)
def api_get_event(event_id: str, user: ApiUser, db: DbSession) -> ReviewEventDetailOut:
    """One event with its decision history (404 outside the caller's wards)."""
    row = _event(db, _scope(db, user), event_id)
    return ReviewEventDetailOut.of(row, review.stored_evidence(db, [row]), user.role)


@router.post("/events/{event_id}/claim", response_model=ReviewEventDetailOut, responses=_ERRORS)
def api_claim(event_id: str, user: ApiUser, db: DbSession, central: CentralDep) -> ReviewEventDetailOut:
    """Claim the event for the lease (renews one's own claim); 409 when someone else holds it."""
    row = _event(db, _scope(db, user), event_id)
    try:
        review.claim(
            db,
            row,
            username=user.username,
            role=user.role,
            now=central.clock(),
            lease_s=central.settings.claim_lease_s,
        )
    except review.ReviewError as exc:
        db.rollback()
        raise _refused(exc) from None
    db.commit()
    return ReviewEventDetailOut.of(row, review.stored_evidence(db, [row]), user.role)


@router.post("/events/{event_id}/release", response_model=ReviewEventDetailOut, responses=_ERRORS)
def api_release(event_id: str, user: ApiUser, db: DbSession, central: CentralDep) -> ReviewEventDetailOut:
    """Give up one's own claim."""
    row = _event(db, _scope(db, user), event_id)
    review.release(db, row, username=user.username, now=central.clock())
    db.commit()
    return ReviewEventDetailOut.of(row, review.stored_evidence(db, [row]), user.role)


@router.post("/events/{event_id}/decision", response_model=ReviewEventDetailOut, responses=_ERRORS)
def api_decide(
    event_id: str, body: VersionedDecisionIn, user: ApiUser, db: DbSession, central: CentralDep
) -> ReviewEventDetailOut:
    """Confirm, dismiss (with a reason) or escalate, on the version read; 409 if stale/claimed/decided."""
    row = _event(db, _scope(db, user), event_id)
    try:
        review.decide(
            db,
            row,
            decision=body.decision,
            reason=body.reason,
            username=user.username,
            role=user.role,
            version=body.version,
            now=central.clock(),
        )
    except review.ReviewError as exc:
        db.rollback()
        raise _refused(exc) from None
    db.commit()
    return ReviewEventDetailOut.of(row, review.stored_evidence(db, [row]), user.role)


@router.post("/events/{event_id}/reopen", response_model=ReviewEventDetailOut, responses=_ERRORS)
def api_reopen(
    event_id: str, body: ReopenIn, user: ApiUser, db: DbSession, central: CentralDep
) -> ReviewEventDetailOut:
    """A supervisor sends a decided event back to the queue, with a reason (audited)."""
    row = _event(db, _scope(db, user), event_id)
    try:
        review.reopen(
            db,
            row,
            reason=body.reason,
            username=user.username,
            role=user.role,
            version=body.version,
            now=central.clock(),
        )
    except review.ReviewError as exc:
        db.rollback()
        raise _refused(exc) from None
    db.commit()
    return ReviewEventDetailOut.of(row, review.stored_evidence(db, [row]), user.role)

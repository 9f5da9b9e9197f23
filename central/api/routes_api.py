"""JSON API for scripts, tests and future front ends (``/api/v1``); same login cookie as the pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from sqlalchemy import select

from central import audit, review
from central.api.deps import ApiUser, CentralDep, DbSession, login_session
from central.api.schemas import (
    DeadLetterOut,
    DecisionIn,
    EventDetailOut,
    EventOut,
    LoginIn,
    UserOut,
)
from central.db.models import DeadLetterRow, EventRow, Role
from central.users import authenticate

router = APIRouter(prefix="/api/v1", tags=["api"])

DEAD_LETTER_ROLES = frozenset({Role.ADMIN.value, Role.TECHNICIAN.value})


@router.post("/login", response_model=UserOut)
def api_login(body: LoginIn, request: Request, db: DbSession, central: CentralDep) -> UserOut:
    """Check a username/password and set the session cookie (401 on mismatch)."""
    user = authenticate(db, body.username, body.password)
    target = f"user:{body.username[:64]}"
    if user is None:
        audit.record(db, at=central.clock(), username=None, action="login.failed", target=target)
        db.commit()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    audit.record(db, at=central.clock(), username=user.username, action="login", target=target)
    db.commit()
    login_session(request, user)
    return UserOut(username=user.username, role=user.role)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def api_logout(request: Request) -> None:
    """End the session (idempotent)."""
    request.session.clear()


@router.get("/me", response_model=UserOut)
def api_me(user: ApiUser) -> UserOut:
    """Who the session belongs to."""
    return UserOut(username=user.username, role=user.role)


@router.get("/events", response_model=list[EventOut])
def api_list_events(
    user: ApiUser,
    db: DbSession,
    status_: Annotated[
        str | None, Query(alias="status", description="pending|confirmed|dismissed|all")
    ] = None,
    type_: Annotated[
        str | None, Query(alias="type", description="Event type, e.g. illegal_stopping.")
    ] = None,
    limit: Annotated[int | None, Query(description=f"1..{review.MAX_LIMIT}")] = None,
) -> list[EventOut]:
    """Events newest first; without ``status`` all statuses are listed."""
    try:
        status_filter, type_filter, limit_value = review.parse_filters(
            status_ or review.STATUS_ALL, type_, limit
        )
    except review.ReviewError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message) from None
    rows = review.list_events(db, status_filter, type_filter, limit_value)
    stored = review.stored_evidence(db, rows)
    return [EventOut.of(row, stored, user.role) for row in rows]


def _event_or_404(db: DbSession, event_id: str) -> EventRow:
    row = db.get(EventRow, event_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id}")
    return row


@router.get("/events/{event_id}", response_model=EventDetailOut)
def api_get_event(event_id: str, user: ApiUser, db: DbSession) -> EventDetailOut:
    """One event with its decision history."""
    row = _event_or_404(db, event_id)
    return EventDetailOut.of(row, review.stored_evidence(db, [row]), user.role)


@router.post("/events/{event_id}/decision", response_model=EventDetailOut)
def api_decide(
    event_id: str, body: DecisionIn, user: ApiUser, db: DbSession, central: CentralDep
) -> EventDetailOut:
    """Confirm, dismiss (with a reason) or escalate an event; 422 with the reason when refused."""
    row = _event_or_404(db, event_id)
    try:
        review.decide(
            db,
            row,
            decision=body.decision,
            reason=body.reason,
            username=user.username,
            role=user.role,
            now=central.clock(),
        )
    except review.ReviewError as exc:
        code = (
            status.HTTP_403_FORBIDDEN
            if exc.key == "error_forbidden"
            else status.HTTP_422_UNPROCESSABLE_CONTENT
        )
        raise HTTPException(code, exc.message) from None
    db.commit()
    return EventDetailOut.of(row, review.stored_evidence(db, [row]), user.role)


@router.get("/dead-letters", response_model=list[DeadLetterOut])
def api_dead_letters(
    user: ApiUser,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=review.MAX_LIMIT)] = review.DEFAULT_LIMIT,
) -> list[DeadLetterOut]:
    """Messages central refused, newest first, with the reason (admins and technicians)."""
    if user.role not in DEAD_LETTER_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "dead letters are for admins and technicians")
    rows = db.scalars(select(DeadLetterRow).order_by(DeadLetterRow.id.desc()).limit(limit))
    return [DeadLetterOut.of(row) for row in rows]

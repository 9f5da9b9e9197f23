"""JSON API for scripts, tests and future front ends (``/api/v1``); same login cookie as the pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import select

from central import queue
from central.api.deps import ApiUser, DbSession
from central.api.schemas import (
    DeadLetterOut,
    UserOut,
)
from central.db.models import DeadLetterRow, Role

router = APIRouter(prefix="/api/v1", tags=["api"])

DEAD_LETTER_ROLES = frozenset({Role.ADMIN.value, Role.TECHNICIAN.value})


@router.get("/me", response_model=UserOut)
def api_me(user: ApiUser) -> UserOut:
    """Who the session belongs to."""
    return UserOut(username=user.username, role=user.role)


# Event listing, claims, decisions and reopen: central/api/routes_events.py (scoped to the wards).


@router.get("/dead-letters", response_model=list[DeadLetterOut])
def api_dead_letters(
    user: ApiUser,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=queue.MAX_LIMIT)] = queue.DEFAULT_LIMIT,
) -> list[DeadLetterOut]:
    """Messages central refused, newest first, with the reason (admins and technicians)."""
    if user.role not in DEAD_LETTER_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "dead letters are for admins and technicians")
    rows = db.scalars(select(DeadLetterRow).order_by(DeadLetterRow.id.desc()).limit(limit))
    return [DeadLetterOut.of(row) for row in rows]

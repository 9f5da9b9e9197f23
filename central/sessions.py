"""Server-side login sessions: the cookie carries a random token, the database decides whether it is valid.

A signed cookie alone cannot be taken back: a copied cookie works until it expires. Here the cookie holds 256
random bits and ``login_sessions`` keeps only their SHA-256 (a stolen database row cannot be replayed as a
cookie). Logout, a password change, disabling the account and the user's own "end this session" set
``ended_at``, and the very next request with that cookie is anonymous. Sessions also end after
``session_idle_s`` without use and ``session_max_age_s`` after login.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from central import audit
from central.db.models import LoginSessionRow, UserRow

# How often ``last_seen_at`` is written: each request would be a write per page view for nothing.
TOUCH_INTERVAL = timedelta(seconds=60)
MAX_USER_AGENT = 255


class EndReason:
    LOGOUT = "logout"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    DISABLED = "disabled"
    ENDED_BY_USER = "ended_by_user"
    ROLE_CHANGED = "role_changed"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewSession:
    token: str  # goes into the cookie, never stored
    row: LoginSessionRow


def start(
    db: Session, user: UserRow, *, now: datetime, max_age_s: int, address: str, user_agent: str
) -> NewSession:
    token = secrets.token_urlsafe(32)
    row = LoginSessionRow(
        token_hash=token_hash(token),
        username=user.username,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=max_age_s),
        address=address[:64],
        user_agent=user_agent[:MAX_USER_AGENT],
    )
    db.add(row)
    db.flush()
    return NewSession(token, row)


def select_by_token(token: str) -> Select[LoginSessionRow]:
    return select(LoginSessionRow).where(LoginSessionRow.token_hash == token_hash(token))


def resolve(
    db: Session, token: str | None, *, now: datetime, idle_s: int
) -> tuple[LoginSessionRow, UserRow] | None:
    """The live session and its (enabled) user for a cookie token, else None; touches ``last_seen_at``."""
    if not token:
        return None
    row = db.scalars(select_by_token(token)).first()
    if row is None or row.ended_at is not None:
        return None
    if now >= row.expires_at or now - row.last_seen_at >= timedelta(seconds=idle_s):
        end(db, row, now=now, reason="expired", actor=None)
        db.commit()
        return None
    user = db.get(UserRow, row.username)
    if user is None or user.disabled:
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        row.last_seen_at = now
        db.commit()
    return row, user


def end(db: Session, row: LoginSessionRow, *, now: datetime, reason: str, actor: str | None) -> None:
    """End one session (idempotent) and audit it."""
    if row.ended_at is not None:
        return
    row.ended_at = now
    row.end_reason = reason
    audit.record(
        db, actor, "session.end", f"user:{row.username}", {"session": row.id, "reason": reason}, at=now
    )


def end_all(
    db: Session, username: str, *, now: datetime, reason: str, actor: str | None, keep: int | None = None
) -> int:
    """End every live session of ``username`` (except ``keep``); one audit row with the count."""
    query = update(LoginSessionRow).where(
        LoginSessionRow.username == username, LoginSessionRow.ended_at.is_(None)
    )
    if keep is not None:
        query = query.where(LoginSessionRow.id != keep)
    result = db.execute(
        query.values(ended_at=now, end_reason=reason).execution_options(synchronize_session="fetch")
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        audit.record(
            db, actor, "session.end_all", f"user:{username}", {"count": count, "reason": reason}, at=now
        )
    return count


def live_sessions(db: Session, username: str, *, now: datetime) -> list[LoginSessionRow]:
    """The user's sessions that still work, newest first (for their sessions page)."""
    rows = db.scalars(
        select(LoginSessionRow)
        .where(
            LoginSessionRow.username == username,
            LoginSessionRow.ended_at.is_(None),
            LoginSessionRow.expires_at > now,
        )
        .order_by(LoginSessionRow.created_at.desc(), LoginSessionRow.id.desc())
    )
    return list(rows)

"""User accounts: the bootstrap administrator and password login."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from central import audit
from central.db.models import Role, UserRow
from central.security import hash_password, needs_rehash, verify_password

log = logging.getLogger(__name__)


def bootstrap_admin(session: Session, username: str, password: str, now: datetime) -> None:
    """Create the admin from settings, or bring its password and role in line with them.

    Running at every start makes the environment the source of truth for the first account: rotating
    ``STREETWATCH_ADMIN_PASSWORD`` and restarting is how a lost admin password is recovered.
    """
    user = session.get(UserRow, username)
    if user is None:
        session.add(
            UserRow(
                username=username,
                password_hash=hash_password(password),
                role=Role.ADMIN.value,
                created_at=now,
                updated_at=now,
            )
        )
        audit.record(session, at=now, actor=None, action="user.bootstrap", target=f"user:{username}")
        log.info("created admin user %r", username)
        return
    changed = []
    if not verify_password(user.password_hash, password) or needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        changed.append("password")
    if user.role != Role.ADMIN.value:
        user.role = Role.ADMIN.value
        changed.append("role")
    if changed:
        user.updated_at = now
        audit.record(
            session,
            at=now,
            actor=None,
            action="user.bootstrap",
            target=f"user:{username}",
            details={"changed": changed},
        )
        log.info("updated admin user %r (%s)", username, ", ".join(changed))


def authenticate(session: Session, username: str, password: str) -> UserRow | None:
    """The user when the password matches, else None (same cost whether or not the user exists)."""
    user = session.get(UserRow, username) if username else None
    if not verify_password(user.password_hash if user else None, password):
        return None
    return user

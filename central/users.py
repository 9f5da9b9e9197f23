"""User accounts: the bootstrap administrator, password login, and what admins do to accounts.

Accounts are created, given wards, disabled, re-enabled and reset here (the admin pages and the
``streetwatch-central users`` CLI both call these functions), each change audited in the same transaction.
Disabling or resetting an account ends its sessions at once. Accounts are never deleted: decisions and audit
rows keep naming them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from central import audit, sessions
from central.db.models import Role, UserRow, UserWardRow, WardRow
from central.passwords import PasswordProblem, check_password
from central.security import hash_password, needs_rehash, verify_password

log = logging.getLogger(__name__)

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"
_USERNAME_RE = re.compile(USERNAME_PATTERN)


class UserError(Exception):
    """A refused account change: ``key`` for the page's translation, ``message`` in English for APIs/CLI."""

    def __init__(
        self, key: str, message: str, password_problem: PasswordProblem | None = None, **params: str
    ) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
        self.password_problem = password_problem
        self.params = params

    def text(self, lang: str) -> str:
        """The reason in ``lang`` (the password policy explains itself; the rest via ``central.i18n``)."""
        if self.password_problem is not None:
            return self.password_problem.message(lang)
        from central.i18n import translate

        return translate(lang, self.key).format(**self.params)


@dataclass(frozen=True)
class UserInfo:
    """An account as pages and the CLI list it."""

    username: str
    role: str
    wards: tuple[str, ...]
    disabled: bool
    must_change_password: bool
    created_at: datetime


def bootstrap_admin(session: Session, username: str, password: str, now: datetime) -> None:
    """Create the admin from settings, or bring its password, role and enabled state in line with them.

    Running at every start makes the environment the source of truth for the first account: rotating
    ``STREETWATCH_ADMIN_PASSWORD`` and restarting is how a lost (or disabled) admin account is recovered.
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
                must_change_password=False,
            )
        )
        session.flush()
        audit.record(session, actor=None, action="user.bootstrap", target=f"user:{username}", at=now)
        log.info("created admin user %r", username)
        return
    changed = []
    if not verify_password(user.password_hash, password) or needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        changed.append("password")
    if user.role != Role.ADMIN.value:
        user.role = Role.ADMIN.value
        changed.append("role")
    if user.disabled_at is not None:
        user.disabled_at = None
        user.disabled_by = None
        changed.append("enabled")
    if changed:
        user.updated_at = now
        audit.record(
            session,
            actor=None,
            action="user.bootstrap",
            target=f"user:{username}",
            details={"changed": changed},
            at=now,
        )
        log.info("updated admin user %r (%s)", username, ", ".join(changed))


def check_login(session: Session, username: str, password: str) -> tuple[UserRow | None, bool]:
    """(the user if the password matches, whether that account is disabled); same cost for unknown users.

    A disabled account is named only to someone who typed its right password, so they know to ask an admin
    instead of retrying; everyone else learns nothing about which accounts exist.
    """
    user = session.get(UserRow, username) if username else None
    matches = verify_password(user.password_hash if user else None, password)  # always one verify
    if user is None or not matches:
        return None, False
    return user, user.disabled


def authenticate(session: Session, username: str, password: str) -> UserRow | None:
    """The enabled user when the password matches, else None (same cost whether or not the user exists)."""
    user, disabled = check_login(session, username, password)
    return None if disabled else user


def user_wards(session: Session, username: str) -> set[str]:
    """The wards ``username`` is assigned to."""
    return set(session.scalars(select(UserWardRow.ward_id).where(UserWardRow.username == username)))


def _require_user(session: Session, username: str) -> UserRow:
    user = session.get(UserRow, username)
    if user is None:
        raise UserError("error_no_user", f"no user {username!r}", username=username)
    return user


def _check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise UserError("error_bad_role", f"unknown role {role!r} (one of {roles})", roles=roles) from None


def _check_wards(session: Session, wards: list[str]) -> list[str]:
    wanted = sorted(set(wards))
    known = set(session.scalars(select(WardRow.ward_id)))
    unknown = [ward for ward in wanted if ward not in known]
    if unknown:
        listing = ", ".join(sorted(known)) or "none yet"
        raise UserError(
            "error_unknown_ward",
            f"unknown ward(s) {', '.join(unknown)} (known: {listing})",
            wards=", ".join(unknown),
            known=listing,
        )
    return wanted


def _check_password(username: str, password: str) -> None:
    problem = check_password(password, username=username)
    if problem is not None:
        raise UserError("error_weak_password", problem.message("en"), problem)


def create_user(
    session: Session,
    *,
    username: str,
    role: str,
    password: str,
    wards: list[str],
    actor: str | None,
    now: datetime,
    must_change_password: bool = True,
) -> UserRow:
    """Create an account; its first password is temporary (changed at first login) unless told otherwise."""
    if not _USERNAME_RE.match(username):
        raise UserError(
            "error_bad_username",
            f"username {username!r} must be 2-64 characters: lower-case letters, digits, '.', '_' or '-'",
        )
    if session.get(UserRow, username) is not None:
        raise UserError("error_user_exists", f"user {username!r} already exists", username=username)
    kind = _check_role(role)
    ward_ids = _check_wards(session, wards)
    _check_password(username, password)
    user = UserRow(
        username=username,
        password_hash=hash_password(password),
        role=kind.value,
        created_at=now,
        updated_at=now,
        must_change_password=must_change_password,
    )
    session.add(user)
    session.flush()
    session.add_all(UserWardRow(username=username, ward_id=ward) for ward in ward_ids)
    audit.record(
        session, actor, "user.create", f"user:{username}", {"role": kind.value, "wards": ward_ids}, at=now
    )
    return user


def set_wards(session: Session, username: str, wards: list[str], *, actor: str | None, now: datetime) -> None:
    user = _require_user(session, username)
    ward_ids = _check_wards(session, wards)
    before = sorted(user_wards(session, username))
    if before == ward_ids:
        return
    session.execute(delete(UserWardRow).where(UserWardRow.username == username))
    session.add_all(UserWardRow(username=username, ward_id=ward) for ward in ward_ids)
    user.updated_at = now
    audit.record(
        session, actor, "user.wards", f"user:{username}", {"before": before, "after": ward_ids}, at=now
    )


def set_role(session: Session, username: str, role: str, *, actor: str | None, now: datetime) -> None:
    """Change a role; the user's sessions end, so no page keeps showing what the old role could do."""
    user = _require_user(session, username)
    kind = _check_role(role)
    if user.role == kind.value:
        return
    if actor == username:
        raise UserError("error_self", "you cannot change your own role")
    before = user.role
    user.role = kind.value
    user.updated_at = now
    audit.record(
        session, actor, "user.role", f"user:{username}", {"before": before, "after": kind.value}, at=now
    )
    sessions.end_all(session, username, now=now, reason=sessions.EndReason.ROLE_CHANGED, actor=actor)


def disable_user(session: Session, username: str, *, actor: str | None, now: datetime) -> int:
    """Disable an account and end all its sessions; returns how many sessions ended."""
    user = _require_user(session, username)
    if actor == username:
        raise UserError("error_self", "you cannot disable your own account")
    if user.disabled:
        return 0
    user.disabled_at = now
    user.disabled_by = actor
    user.updated_at = now
    audit.record(session, actor, "user.disable", f"user:{username}", at=now)
    return sessions.end_all(session, username, now=now, reason=sessions.EndReason.DISABLED, actor=actor)


def enable_user(session: Session, username: str, *, actor: str | None, now: datetime) -> None:
    user = _require_user(session, username)
    if not user.disabled:
        return
    user.disabled_at = None
    user.disabled_by = None
    user.updated_at = now
    audit.record(session, actor, "user.enable", f"user:{username}", at=now)


def reset_password(
    session: Session, username: str, password: str, *, actor: str | None, now: datetime
) -> int:
    """An admin sets a temporary password: the user must change it at next login; sessions end."""
    user = _require_user(session, username)
    _check_password(username, password)
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.password_changed_at = now
    user.updated_at = now
    audit.record(session, actor, "user.password_reset", f"user:{username}", at=now)
    return sessions.end_all(session, username, now=now, reason=sessions.EndReason.PASSWORD_RESET, actor=actor)


def change_password(
    session: Session,
    user: UserRow,
    *,
    current: str,
    new: str,
    now: datetime,
    keep_session: int | None,
) -> int:
    """The user changes their own password; every other session of theirs ends. Returns how many ended."""
    if not verify_password(user.password_hash, current):
        raise UserError("error_wrong_current_password", "the current password is wrong")
    if verify_password(user.password_hash, new):
        raise UserError("error_same_password", "the new password must differ from the current one")
    _check_password(user.username, new)
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.password_changed_at = now
    user.updated_at = now
    audit.record(session, user.username, "user.password_change", f"user:{user.username}", at=now)
    return sessions.end_all(
        session,
        user.username,
        now=now,
        reason=sessions.EndReason.PASSWORD_CHANGED,
        actor=user.username,
        keep=keep_session,
    )


def list_users(session: Session) -> list[UserInfo]:
    wards: dict[str, list[str]] = {}
    for row in session.scalars(select(UserWardRow).order_by(UserWardRow.ward_id)):
        wards.setdefault(row.username, []).append(row.ward_id)
    return [
        UserInfo(
            username=user.username,
            role=user.role,
            wards=tuple(wards.get(user.username, ())),
            disabled=user.disabled,
            must_change_password=user.must_change_password,
            created_at=user.created_at,
        )
        for user in session.scalars(select(UserRow).order_by(UserRow.username))
    ]

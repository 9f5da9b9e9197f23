"""Enrollment tokens, node enrollment, per-node HTTP tokens and revocation.

A technician creates a one-time token (short lifetime, stored as its SHA-256); the node trades it once for
its identity and secrets (node id, MQTT username/password, HTTP token), which central returns once and keeps
only as hashes. Every step leaves an audit row, failed attempts included.

Tokens and passwords are 256 random bits (``secrets.token_urlsafe(32)``): nothing to guess, so a plain SHA-256
is the right hash for them (it allows lookup by hash; argon2 is for human passwords).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from central import audit
from central.db.models import EnrollmentTokenRow, NodeRow
from central.messaging.broker_auth import mosquitto_hash

SECRET_BYTES = 32
NODE_ID_SUFFIX_BYTES = 4
MAX_SLUG = 40


class FleetError(Exception):
    """A refused fleet operation: an HTTP status and a message that says why."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new enrollment token; ``token`` exists only here and in the response that shows it once."""

    id: int
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedCredentials:
    """What a node gets at enrollment; the secrets are never stored or shown again."""

    node_id: str
    node_name: str
    mqtt_username: str
    mqtt_password: str
    http_token: str


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> str:
    """SHA-256 hex of a random secret (enrollment token, node HTTP token)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def node_id_for(name: str) -> str:
    """``"Hoàn Kiếm box 3"`` -> ``hoan-kiem-box-3-1a2b3c4d``: readable in logs, unique by its random tail."""
    ascii_name = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    ascii_name = ascii_name.encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:MAX_SLUG].strip("-") or "node"
    return f"{slug}-{secrets.token_hex(NODE_ID_SUFFIX_BYTES)}"


def create_enrollment_token(session: Session, *, username: str, now: datetime, ttl_s: int) -> IssuedToken:
    """A one-time token valid for ``ttl_s`` seconds; audit row included (committed by the caller)."""
    token = new_secret()
    row = EnrollmentTokenRow(
        token_hash=secret_hash(token),
        created_by=username,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        at=now,
        actor=username,
        action="enrollment_token.create",
        target=f"enrollment_token:{row.id}",
        details={"expires_at": row.expires_at.isoformat()},
    )
    return IssuedToken(row.id, token, row.expires_at)


def enroll_node(session: Session, *, token: str, node_name: str, now: datetime) -> IssuedCredentials:
    """Use ``token`` (once) to create a node with fresh credentials; ``FleetError(401)`` says why not.

    The token is claimed with a conditional UPDATE (``used_at IS NULL``), so two nodes racing with the same
    token cannot both enroll, on SQLite and PostgreSQL alike.
    """
    row = session.scalar(
        select(EnrollmentTokenRow).where(EnrollmentTokenRow.token_hash == secret_hash(token))
    )
    if row is None:
        raise FleetError(401, "unknown enrollment token")
    if row.used_at is not None:
        raise FleetError(401, "enrollment token already used")
    if row.expires_at <= now:
        raise FleetError(401, "enrollment token expired")
    node_id = node_id_for(node_name)
    claimed = cast(
        CursorResult[Any],
        session.execute(
            update(EnrollmentTokenRow)
            .where(EnrollmentTokenRow.id == row.id, EnrollmentTokenRow.used_at.is_(None))
            .values(used_at=now, node_id=node_id)
        ),
    )
    if claimed.rowcount != 1:
        raise FleetError(401, "enrollment token already used")
    issued = IssuedCredentials(node_id, node_name, node_id, new_secret(), new_secret())
    session.add(
        NodeRow(
            node_id=node_id,
            name=node_name,
            mqtt_username=issued.mqtt_username,
            mqtt_password_hash=mosquitto_hash(issued.mqtt_password),
            http_token_hash=secret_hash(issued.http_token),
            enrolled_at=now,
            enrolled_by=row.created_by,
        )
    )
    audit.record(
        session,
        at=now,
        actor=None,
        action="node.enroll",
        target=f"node:{node_id}",
        details={"name": node_name, "enrollment_token": row.id, "token_created_by": row.created_by},
    )
    return issued


def revoke_node(session: Session, node_id: str, *, username: str, now: datetime) -> NodeRow:
    """Drop a node's credentials (broker and HTTP); idempotent. The row stays: events still name the node."""
    row = session.get(NodeRow, node_id)
    if row is None:
        raise FleetError(404, f"no node {node_id}")
    if row.revoked_at is not None:
        return row
    row.revoked_at = now
    row.revoked_by = username
    row.mqtt_password_hash = None
    row.http_token_hash = None
    audit.record(session, at=now, actor=username, action="node.revoke", target=f"node:{node_id}")
    return row


def node_of_token(session: Session, token: str) -> str | None:
    """The id of the (not revoked) node whose HTTP token this is, else None."""
    return session.scalar(
        select(NodeRow.node_id).where(
            NodeRow.http_token_hash == secret_hash(token), NodeRow.revoked_at.is_(None)
        )
    )

"""Tamper-evident audit trail: every login, decision, claim, user/ward change, evidence view and export.

Each row carries the hash of the row before it (``prev_hash``) and a SHA-256 over its own canonical content
plus that ``prev_hash`` (``hash``). Changing, deleting or reordering any row breaks the chain from that row on,
and ``verify`` names the first broken one; the database additionally refuses UPDATE/DELETE outright
(``central.db.append_only``). Rows are written with the change they describe, in the same transaction: if the
change rolls back, so does its audit row, and the chain has no gap.

Writers are serialised while they read the chain's tail and insert: on PostgreSQL with a transaction-level
advisory lock (released at commit/rollback), on SQLite by taking the database's write lock first (SQLite has
one writer at a time anyway). Without that, two concurrent writers would both chain onto the same tail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from central.db.models import AuditRow
from edge_agent.contract import utcnow

GENESIS_HASH = "0" * 64
# Arbitrary, fixed: the key of the PostgreSQL advisory lock that serialises audit writers.
_PG_LOCK_KEY = 0x5357_4155_4449_54  # "SWAUDIT"
_VERIFY_BATCH = 1000


def canonical_json(value: Any) -> str:
    """The one JSON text a value hashes as: sorted keys, no spaces, UTF-8 kept (stable across backends)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _utc_text(at: datetime) -> str:
    aware = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(
    prev_hash: str, at: datetime, actor: str | None, action: str, target: str, details: dict[str, Any]
) -> str:
    """SHA-256 (hex) of a row's canonical content, chained onto ``prev_hash``."""
    content = canonical_json(
        {
            "prev_hash": prev_hash,
            "at": _utc_text(at),
            "actor": actor,
            "action": action,
            "target": target,
            "details": details,
        }
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _lock_chain(session: Session) -> None:
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif bind.dialect.name == "sqlite":
        # A no-op write takes SQLite's RESERVED lock now, before the tail is read (held until commit).
        session.execute(text("UPDATE audit_log SET id = id WHERE 0"))


def _tail_hash(session: Session) -> str:
    last = session.scalars(select(AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)).first()
    return last if last is not None else GENESIS_HASH


def record(
    session: Session,
    actor: str | None,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> AuditRow:
    """Append an audit row in ``session``'s transaction (committed with the change it describes, or not at all).

    ``actor`` is the username (None: the system), ``action`` a dotted verb (``login.failed``, ``event.claim``),
    ``target`` what it concerns (``user:lan``, ``event:<id>``), ``details`` JSON-able facts. ``at`` defaults to
    now (pass the app's clock). The row is flushed at once so the next ``record`` chains onto it.
    """
    when = at if at is not None else utcnow()
    # Round-trip through JSON so the stored value hashes the same when it is read back (tuples, etc.).
    clean = json.loads(canonical_json(details or {}))
    _lock_chain(session)
    previous = _tail_hash(session)
    row = AuditRow(
        at=when,
        username=actor,
        action=action,
        target=target,
        detail=clean,
        prev_hash=previous,
        hash=row_hash(previous, when, actor, action, target, clean),
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ChainBreak:
    """The first row where the chain does not hold, and why."""

    row_id: int
    reason: str


@dataclass(frozen=True)
class VerifyResult:
    rows: int
    first_break: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def _rows(session: Session) -> Iterator[AuditRow]:
    last_id = 0
    while True:
        batch = session.scalars(
            select(AuditRow).where(AuditRow.id > last_id).order_by(AuditRow.id).limit(_VERIFY_BATCH)
        ).all()
        if not batch:
            return
        yield from batch
        last_id = batch[-1].id
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Walk the chain oldest first; the first row whose content or link does not match is reported."""
    previous = GENESIS_HASH
    count = 0
    for row in _rows(session):
        count += 1
        if row.prev_hash != previous:
            reason = (
                "its prev_hash does not match the row before it "
                "(a row before it was removed, inserted or changed)"
            )
            return VerifyResult(count, ChainBreak(row.id, reason))
        expected = row_hash(row.prev_hash, row.at, row.username, row.action, row.target, row.detail)
        if row.hash != expected:
            return VerifyResult(
                count, ChainBreak(row.id, "its content does not match its hash (it was changed)")
            )
        previous = row.hash
    return VerifyResult(count, None)

"""Unblurred originals: stored on central only, readable only with a privilege and a reason, each view audited.

Nodes blur faces in everything officers see and also upload the clean frame unblurred (evidence kind
``snapshot_original``). Such a hash is *restricted*: the plain ``/evidence/{sha256}`` URL answers 404 for it to
everyone, and the bytes come only from :func:`open_original`, which checks the viewer's role, requires a
reason and writes an audit row in the same transaction as the check (no row, no bytes).

The privilege is a role set (``ORIGINAL_VIEWER_ROLES``): supervisors and admins. Officers, operators and
technicians are refused (403).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit
from central.db.models import EventRow, EvidenceRow, RestrictedEvidenceRow
from edge_agent.contract import RESTRICTED_KINDS

ORIGINAL_VIEWER_ROLES = frozenset({"supervisor", "admin"})
RESTRICTED_KIND_VALUES = frozenset(k.value for k in RESTRICTED_KINDS)
MIN_REASON_LENGTH = 10
MAX_REASON_LENGTH = 500
AUDIT_ACTION = "evidence.view_original"


class OriginalError(Exception):
    """A refused view of an original; ``status_code`` and an i18n ``key`` for the page."""

    def __init__(self, status_code: int, key: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.key = key
        self.message = message


def may_view_originals(role: str) -> bool:
    return role in ORIGINAL_VIEWER_ROLES


def is_restricted_kind(kind: str | None) -> bool:
    return kind in RESTRICTED_KIND_VALUES


def mark_restricted(session: Session, refs: Iterable[tuple[str, str]], now: datetime) -> int:
    """Mark (sha256, kind) pairs of restricted kinds; returns how many were new. Idempotent."""
    wanted = {sha: kind for sha, kind in refs if is_restricted_kind(kind)}
    if not wanted:
        return 0
    known = set(
        session.scalars(
            select(RestrictedEvidenceRow.sha256).where(RestrictedEvidenceRow.sha256.in_(list(wanted)))
        )
    )
    new = [sha for sha in wanted if sha not in known]
    for sha in new:
        session.add(RestrictedEvidenceRow(sha256=sha, kind=wanted[sha], marked_at=now))
    if new:
        session.flush()
    return len(new)


def is_restricted(session: Session, sha256: str) -> bool:
    return session.get(RestrictedEvidenceRow, sha256) is not None


def visible_refs(refs: Iterable[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    """The evidence references a user may see listed: originals only for the privileged."""
    privileged = may_view_originals(role)
    return [r for r in refs if privileged or not is_restricted_kind(r.get("kind"))]


@dataclass(frozen=True, slots=True)
class OriginalFile:
    sha256: str
    content_type: str
    relative_path: str


def open_original(
    session: Session,
    event: EventRow,
    sha256: str,
    *,
    username: str,
    role: str,
    reason: str | None,
    now: datetime,
) -> OriginalFile:
    """Check the privilege and the reason, audit the view (in the caller's transaction) and locate the bytes."""
    if not may_view_originals(role):
        raise OriginalError(403, "error_original_forbidden", "your role may not view unblurred originals")
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON_LENGTH:
        raise OriginalError(
            422, "error_original_reason", f"give a reason of at least {MIN_REASON_LENGTH} characters"
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise OriginalError(
            422, "error_reason_too_long", f"reason is longer than {MAX_REASON_LENGTH} characters"
        )
    ref = next(
        (r for r in event.evidence if r.get("sha256") == sha256 and is_restricted_kind(r.get("kind"))), None
    )
    row = session.get(EvidenceRow, sha256)
    if ref is None or row is None:
        raise OriginalError(404, "not_found", "this event has no such original on central")
    audit.record(
        session,
        at=now,
        actor=username,
        action=AUDIT_ACTION,
        target=f"evidence:{sha256}",
        details={"event_id": event.event_id, "kind": ref.get("kind"), "reason": reason, "role": role},
    )
    return OriginalFile(sha256, row.content_type, row.path)

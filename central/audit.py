"""Append-only audit trail: every decision, login and user change leaves a row.

Rows are only ever inserted; ``central.db.models`` refuses ORM updates and deletes of ``AuditRow``. (On
PostgreSQL, production should additionally ``REVOKE UPDATE, DELETE`` on ``audit_log`` from the app's role.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from central.db.models import AuditRow


def record(
    session: Session,
    *,
    at: datetime,
    username: str | None,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> AuditRow:
    """Add an audit row to ``session`` (committed with the change it describes, or not at all)."""
    row = AuditRow(at=at, username=username, action=action, target=target, detail=detail or {})
    session.add(row)
    return row

"""Dead-letter retention and quota: dead letters are for diagnosis, not an archive, and must not fill the disk.

``prune_dead_letters`` deletes dead letters older than the retention and then the oldest beyond the quota (row
count); the ingest workers run it every few minutes (``IngestWorkers``). Each payload is already capped at
``MAX_DEAD_LETTER_BYTES`` (64 KiB), so the quota bounds the table's size too (100,000 rows: at most ~6.4 GB,
typically a few hundred MB).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from central.db.models import DeadLetterRow
from central.db.session import Database

log = logging.getLogger(__name__)


def prune_dead_letters(db: Database, now: datetime, *, retention_days: float, max_rows: int) -> int:
    """Delete expired and over-quota dead letters (oldest first); returns how many went."""
    removed = 0
    with db.session() as session:
        cutoff = now - timedelta(days=retention_days)
        expired = session.execute(delete(DeadLetterRow).where(DeadLetterRow.received_at < cutoff))
        removed += _rowcount(expired)
        total = int(session.scalar(select(func.count()).select_from(DeadLetterRow)) or 0)
        excess = total - max_rows
        if excess > 0:
            oldest = select(DeadLetterRow.id).order_by(DeadLetterRow.id).limit(excess).scalar_subquery()
            removed += _rowcount(session.execute(delete(DeadLetterRow).where(DeadLetterRow.id.in_(oldest))))
    if removed:
        log.warning(
            "dead letters: %d removed (retention %g days, quota %d rows)", removed, retention_days, max_rows
        )
    return removed


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)

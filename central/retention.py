"""Evidence retention: delete evidence bytes stored before a cutoff, except those locked by a case.

Events keep their references (the page then says "not uploaded"), so the record of what happened survives
while the footage ages out; evidence of any event in a case is never deleted (``central.cases``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit
from central.cases import locked_evidence
from central.db.models import EvidenceRow
from central.evidence import EvidenceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    deleted: int
    kept_locked: int
    bytes_freed: int


def purge_evidence(session: Session, store: EvidenceStore, *, before: datetime, now: datetime) -> Purged:
    """Delete evidence stored before ``before`` unless a case holds it; audited as one row."""
    locked = locked_evidence(session)
    deleted = kept = freed = 0
    for row in session.scalars(select(EvidenceRow).where(EvidenceRow.stored_at < before)):
        if row.sha256 in locked:
            kept += 1
            continue
        store.delete(row.sha256)  # a file, or an object in S3 (central/evidence_s3.py)
        freed += row.size
        deleted += 1
        session.delete(row)
    audit.record(
        session,
        None,
        "evidence.purge",
        "evidence",
        {"before": before.isoformat(), "deleted": deleted, "kept_locked": kept, "bytes": freed},
        at=now,
    )
    log.info("retention: deleted %d evidence files (%d bytes), kept %d locked by cases", deleted, freed, kept)
    return Purged(deleted, kept, freed)

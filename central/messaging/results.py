"""What ingesting one message did: shared by ingest and the in-memory node health without importing each other."""

from enum import StrEnum


class IngestResult(StrEnum):
    """What ingesting one message did."""

    INSERTED = "inserted"
    UPDATED = "updated"
    DUPLICATE = "duplicate"  # same message again (QoS 1 redelivery): nothing changed
    STALE = "stale"  # an older phase/status than the one stored arrived late: nothing changed
    HISTORY = "history"  # a newer phase of a decided event: kept as history, decided facts unchanged
    DEAD_LETTER = "dead_letter"

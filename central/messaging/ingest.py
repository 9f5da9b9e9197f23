"""Turn MQTT messages into database rows: idempotent, order-tolerant, never silently dropping anything.

QoS 1 means "at least once": the broker redelivers whatever central did not acknowledge, and a node's outbox
retries until acknowledged, so the same message arriving twice is normal. Phases of one event may also arrive
out of order after a reconnect. Hence the rules here:

* one row per ``event_id``; a message is applied only when it is *newer* than the row, ordered by
  ``(phase rank, observed_at)`` with start < update < end, so a late ``start`` never regresses an ``end``;
* a message that is not newer is a ``duplicate`` (same order key) or ``stale`` (older) and changes nothing;
  a "duplicate" whose content differs from what is stored is a conflict and is dead-lettered, not dropped;
* once an officer has decided (confirmed/dismissed), a newer phase never changes the decided facts: it is kept
  in ``event_history`` and the event is flagged ``changed_after_decision`` for the event page to show;
* every change of the stored facts bumps the event's ``version``: a decision made on an older version is
  refused (central/review.py), so nobody confirms facts they were not shown;
* anything that cannot be accepted (bad JSON, schema error, a node speaking for another node, an ``event_id``
  reused for a different camera/rule) becomes a ``dead_letters`` row with the reason and the exact bytes.

``Ingestor.ingest`` never raises for bad input. It does raise for infrastructure failures (database down), so
the MQTT layer can withhold the acknowledgement and let the broker redeliver later.

Group commit and concurrency. ``ingest_batch`` applies many messages in *one* transaction (one commit, one
fsync), and the caller acknowledges them only after it returned. Several workers (threads or processes) may
ingest concurrently: the database decides duplicates, not the process. A new event is inserted with
``INSERT ... ON CONFLICT (event_id) DO NOTHING`` (PostgreSQL and SQLite), so of two workers racing on one id
exactly one inserts; the other finds the row, locks it (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
serialises writers) and applies the phase-order rule above, so the result does not depend on who won.

Who counts. With ``require_enrollment`` (central's default), an event from a node that is not enrolled, or
was revoked, is dead-lettered with that reason, whatever the broker let through. An event larger than
``max_event_bytes`` is dead-lettered too, its payload truncated.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from central import originals
from central.db.models import DeadLetterRow, EventRow, NodeRow, NodeStatusRow, ReviewStatus
from central.db.session import Database
from central.messaging.event_rows import (
    _apply_newer,
    _differs,
    _differs_from_history,
    _insert_if_new,
    _is_last_will,
    _keep_as_history,
    _latest_history,
    _link_evidence,
    _new_event_row,
    _row_values,
    camera_ward,
)
from central.messaging.node_health import NodeHealth
from central.messaging.results import IngestResult as IngestResult  # re-exported: callers import it from here
from edge_agent.contract import Event, Heartbeat, NodeStatus, Phase, Topics, utcnow

log = logging.getLogger(__name__)

PHASE_RANK = {Phase.START.value: 0, Phase.UPDATE.value: 1, Phase.END.value: 2}
# Fields that identify what an event is about; a later phase that changes them is not the same event.
IDENTITY_FIELDS = ("node_id", "camera_id", "zone_id", "rule_id", "type")
# A dead letter keeps this much of the payload (enough to read what went wrong; the size is recorded).
MAX_DEAD_LETTER_BYTES = 64 * 1024
DEFAULT_MAX_EVENT_BYTES = 256 * 1024
BATCH_ATTEMPTS = 6
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})  # deadlock, serialization failure, lock timeout


class IngestCounters:
    """Thread-safe in-process counters for /healthz and /metrics (the ingest thread writes, requests read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, kind: str, result: IngestResult) -> None:
        with self._lock:
            key = (kind, result.value)
            self._counts[key] = self._counts.get(key, 0) + 1

    def by_kind(self) -> dict[tuple[str, str], int]:
        """Counts keyed by (message kind, result), e.g. ``("event", "inserted")``."""
        with self._lock:
            return dict(self._counts)

    def summary(self) -> dict[str, int]:
        """The headline numbers: received, ingested (inserted+updated events), duplicates, dead letters..."""
        counts = self.by_kind()

        def total(result: IngestResult, kind: str | None = None) -> int:
            return sum(n for (k, r), n in counts.items() if r == result.value and kind in (None, k))

        return {
            "received": sum(counts.values()),
            "ingested": total(IngestResult.INSERTED, "event") + total(IngestResult.UPDATED, "event"),
            "inserted": total(IngestResult.INSERTED, "event"),
            "updated": total(IngestResult.UPDATED, "event"),
            "duplicates": total(IngestResult.DUPLICATE),
            "stale": total(IngestResult.STALE),
            "after_decision": total(IngestResult.HISTORY),
            "dead_letters": total(IngestResult.DEAD_LETTER),
            "statuses": total(IngestResult.INSERTED, "status") + total(IngestResult.UPDATED, "status"),
        }


@dataclass(frozen=True)
class Conflict:
    """A well-formed message that contradicts what is stored (e.g. an event_id reused by another camera)."""

    reason: str


def describe_validation_error(exc: ValidationError) -> str:
    """A compact one-line reason, e.g. ``phase: Input should be 'start', 'update' or 'end'``."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "payload"
        parts.append(f"{location}: {error['msg']}")
    return f"{exc.title}: " + "; ".join(parts)


class Ingestor:
    """Applies event and node-status messages to the database."""

    def __init__(
        self,
        db: Database,
        topics: Topics,
        *,
        clock: Callable[[], datetime] = utcnow,
        counters: IngestCounters | None = None,
        require_enrollment: bool = False,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self._db = db
        self._topics = topics
        self._clock = clock
        self.counters = counters or IngestCounters()
        self.nodes = NodeHealth()
        # Set by the app: stores each newer heartbeat for the fleet pages (central.fleet.health); never raises.
        self.heartbeat_sink: Callable[[Heartbeat, datetime], object] | None = None
        self.require_enrollment = require_enrollment
        self.max_event_bytes = max_event_bytes

    def ingest(self, topic: str, payload: bytes) -> IngestResult:
        """Apply one message; bad input becomes a dead letter, infrastructure errors propagate."""
        return self.ingest_batch([(topic, payload)])[0]

    def ingest_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[IngestResult]:
        """Apply ``(topic, payload)`` messages in one transaction; one result each, in order.

        Bad input becomes dead letters inside the same transaction. A message the database refuses (e.g. a
        NUL in a PostgreSQL string) makes the batch split into single messages, so only that one is
        dead-lettered. A unique-key race lost to another worker rolls back and retries. Infrastructure errors
        propagate: then nothing of the batch was committed and none of it may be acknowledged.
        """
        if not messages:
            return []
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                with self._db.session() as session:
                    standing = self._standing(session, messages)
                    fresh = self._insert_new(session, messages, standing)
                    outcomes = [
                        fresh.get(i) or self._apply(session, t, p, standing)
                        for i, (t, p) in enumerate(messages)
                    ]
                break
            except DataError as exc:
                if len(messages) > 1:
                    return [r for m in messages for r in self.ingest_batch([m])]
                topic, payload = messages[0]
                kind = self._kind(topic)
                return [
                    self._count(
                        kind, self.dead_letter(topic, payload, f"database refused the {kind}: {exc.orig}")
                    )
                ]
            except IntegrityError:
                if attempt == BATCH_ATTEMPTS:
                    raise
                log.debug("ingest batch lost a unique-key race (attempt %d); retrying", attempt)
            except OperationalError as exc:
                # Concurrent workers: SQLite's write lock held past the busy timeout (or a stale read snapshot),
                # PostgreSQL's deadlock detector or a serialization failure aborted us. Nothing was committed;
                # waiting a little and redoing the batch is the remedy.
                if attempt == BATCH_ATTEMPTS or not _retryable(exc):
                    raise
                log.info(
                    "ingest batch aborted by a concurrent worker (%s); retrying", type(exc.orig).__name__
                )
                time.sleep(0.05 * attempt)
        return [self._count(kind, result) for kind, result in outcomes]

    def _kind(self, topic: str) -> str:
        node = self._topics.node_of(topic)
        if node is not None and topic == self._topics.events(node):
            return "event"
        if node is not None and topic == self._topics.status(node):
            return "status"
        return "unknown"

    def _apply(
        self, session: Session, topic: str, payload: bytes, standing: dict[str, str | None]
    ) -> tuple[str, IngestResult]:
        kind = self._kind(topic)
        node = self._topics.node_of(topic)
        if kind == "event" and node is not None:
            if len(payload) > self.max_event_bytes:
                reason = f"event of {len(payload)} bytes exceeds the maximum of {self.max_event_bytes} bytes"
                return kind, self._dead_letter_in(session, topic, payload, reason)
            refusal = standing.get(node)
            if refusal is not None:
                return kind, self._dead_letter_in(session, topic, payload, refusal)
            return kind, self._ingest_event(session, node, topic, payload)
        if kind == "status" and node is not None:
            return kind, self._ingest_status(session, node, topic, payload)
        return kind, self._dead_letter_in(session, topic, payload, "unexpected topic for central ingest")

    def _insert_new(
        self, session: Session, messages: Sequence[tuple[str, bytes]], standing: dict[str, str | None]
    ) -> dict[int, tuple[str, IngestResult]]:
        """The fast path of a batch: one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` for the first
        message of every event id; returns {index: ("event", INSERTED)} for the rows it created. Everything
        else (later phases, ids that exist, bad input) goes through ``_apply`` one message at a time."""
        now = self._clock()
        firsts: dict[str, tuple[int, Event, dict[str, Any]]] = {}
        wards: dict[tuple[str, str], str | None] = {}
        for i, (topic, payload) in enumerate(messages):
            node = self._topics.node_of(topic)
            if node is None or topic != self._topics.events(node) or len(payload) > self.max_event_bytes:
                continue
            if standing.get(node) is not None:
                continue
            try:
                event = Event.from_json(payload)
            except ValidationError:
                continue
            event_id = str(event.event_id)
            if event.node_id != node or event_id in firsts:
                continue
            camera = (event.node_id, event.camera_id)
            if camera not in wards:
                wards[camera] = camera_ward(session, event.node_id, event.camera_id, now)
            row = _new_event_row(event, now)
            row.ward_id = wards[camera]
            firsts[event_id] = (i, event, _row_values(row))
            originals.mark_restricted(session, [(r.sha256, r.kind.value) for r in event.evidence], now)
        if not firsts:
            return {}
        rows = [firsts[e][2] for e in sorted(firsts)]  # one lock order for every worker: fewer deadlocks
        if any(set(r) != set(rows[0]) for r in rows):
            return {}  # a column without a scalar default: leave it to the one-by-one path
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = insert(EventRow).values(rows).on_conflict_do_nothing(index_elements=["event_id"])
        created = set(session.execute(statement.returning(EventRow.event_id)).scalars())
        for event_id in sorted(created):
            _link_evidence(session, event_id, set(), firsts[event_id][1].evidence)
        if created:
            session.flush()
        return {firsts[e][0]: ("event", IngestResult.INSERTED) for e in created}

    def _standing(self, session: Session, messages: Sequence[tuple[str, bytes]]) -> dict[str, str | None]:
        """node id -> why its events do not count (None: enrolled); one query per batch."""
        if not self.require_enrollment:
            return {}
        nodes = {n for t, _ in messages if (n := self._topics.node_of(t)) is not None}
        if not nodes:
            return {}
        rows = session.execute(select(NodeRow.node_id, NodeRow.revoked_at).where(NodeRow.node_id.in_(nodes)))
        known: dict[str, datetime | None] = {node_id: revoked for node_id, revoked in rows}
        standing: dict[str, str | None] = {}
        for n in nodes:
            revoked = known.get(n)
            if n not in known:
                standing[n] = f"node {n!r} is not enrolled"
            elif revoked is not None:
                standing[n] = f"node {n!r} was revoked at {revoked.isoformat()}"
            else:
                standing[n] = None
        return standing

    def observe_heartbeat(self, topic: str, payload: bytes) -> IngestResult:
        """Record a heartbeat in ``nodes`` (memory); an invalid one becomes a dead letter like anything else.

        Separate from ``ingest``: heartbeats are QoS 0 telemetry that never touch the events tables, and a
        database outage must not stop central from seeing that nodes are alive.
        """
        node = self._topics.node_of(topic)
        if node is None or topic != self._topics.heartbeat(node):
            return self._count("unknown", self.dead_letter(topic, payload, "not a heartbeat topic"))
        try:
            beat = Heartbeat.from_json(payload)
        except ValidationError as exc:
            return self._count("heartbeat", self.dead_letter(topic, payload, describe_validation_error(exc)))
        if beat.node_id != node:
            reason = f"node_id {beat.node_id!r} does not match topic node {node!r}"
            return self._count("heartbeat", self.dead_letter(topic, payload, reason))
        received_at = self._clock()
        result = self.nodes.observe(beat, received_at)
        if self.heartbeat_sink is not None and result in (IngestResult.INSERTED, IngestResult.UPDATED):
            self.heartbeat_sink(beat, received_at)
        return self._count("heartbeat", result)

    def _count(self, kind: str, result: IngestResult) -> IngestResult:
        self.counters.add(kind, result)
        return result

    # -- events ---------------------------------------------------------------------------------------------

    def _ingest_event(self, session: Session, node: str, topic: str, payload: bytes) -> IngestResult:
        try:
            event = Event.from_json(payload)
        except ValidationError as exc:
            return self._dead_letter_in(session, topic, payload, describe_validation_error(exc))
        if event.node_id != node:
            return self._dead_letter_in(
                session, topic, payload, f"node_id {event.node_id!r} does not match topic node {node!r}"
            )
        outcome = self._upsert_event(session, event)
        if isinstance(outcome, IngestResult):
            return outcome
        return self._dead_letter_in(session, topic, payload, outcome.reason)

    def _upsert_event(self, session: Session, event: Event) -> IngestResult | Conflict:
        """Insert or update the row; a ``Conflict`` means the message must become a dead letter."""
        now = self._clock()
        # Restrict originals first: an event may name a hash before its bytes arrive (conservative even for a
        # message that turns out stale or conflicting: it only hides bytes).
        originals.mark_restricted(session, [(r.sha256, r.kind.value) for r in event.evidence], now)
        # The database decides who inserts (INSERT ... ON CONFLICT DO NOTHING): of two workers racing on one
        # id exactly one creates the row; the other finds it below, locked, and applies the phase order.
        new = _new_event_row(event, now)
        new.ward_id = camera_ward(session, event.node_id, event.camera_id, now)
        if _insert_if_new(session, new):
            _link_evidence(session, new.event_id, set(), event.evidence)
            session.flush()
            return IngestResult.INSERTED
        row = session.get(EventRow, str(event.event_id), with_for_update=True)
        if row is None:  # cannot happen: the insert found a conflicting row in this transaction
            raise IntegrityError("event row vanished after a conflicting insert", None, Exception())
        for field in IDENTITY_FIELDS:
            stored, incoming = getattr(row, field), str(getattr(event, field))
            if stored != incoming:
                reason = f"event_id {row.event_id} already belongs to {field}={stored!r}, not {incoming!r}"
                return Conflict(reason)
        stored_key = (PHASE_RANK[row.phase], row.observed_at)
        incoming_key = (PHASE_RANK[event.phase.value], event.observed_at)
        decided = row.review_status != ReviewStatus.PENDING.value
        if decided:
            history = _latest_history(session, row.event_id)
            if history is not None:
                stored_key = max(stored_key, (PHASE_RANK[history.phase], history.observed_at))
        if incoming_key == stored_key:
            differs = _differs_from_history(session, row, event) if decided else _differs(row, event)
            if differs:
                return Conflict(
                    f"event_id {row.event_id}: a different message with the same phase and "
                    f"observed_at is already stored ({differs})"
                )
            return IngestResult.DUPLICATE
        if incoming_key < stored_key:
            return IngestResult.STALE
        known = {str(ref.get("sha256")) for ref in row.evidence}
        if decided:
            _keep_as_history(session, row, event, now)
            _link_evidence(session, row.event_id, known, event.evidence)
            return IngestResult.HISTORY
        _apply_newer(row, event, now)
        row.version += 1
        _link_evidence(session, row.event_id, known, event.evidence)
        return IngestResult.UPDATED

    # -- node status ----------------------------------------------------------------------------------------

    def _ingest_status(self, session: Session, node: str, topic: str, payload: bytes) -> IngestResult:
        try:
            status = NodeStatus.model_validate_json(payload)
        except ValidationError as exc:
            return self._dead_letter_in(session, topic, payload, describe_validation_error(exc))
        if status.node_id != node:
            return self._dead_letter_in(
                session, topic, payload, f"node_id {status.node_id!r} does not match topic node {node!r}"
            )
        return self._upsert_status(session, status)

    def _upsert_status(self, session: Session, status: NodeStatus) -> IngestResult:
        now = self._clock()
        row = session.get(NodeStatusRow, status.node_id, with_for_update=True)
        if row is None:
            row = NodeStatusRow(node_id=status.node_id)
            session.add(row)
            result = IngestResult.INSERTED
        elif status.at < row.at and not _is_last_will(status, row):
            return IngestResult.STALE
        elif status.at == row.at and status.state.value == row.state:
            return IngestResult.DUPLICATE
        else:
            result = IngestResult.UPDATED
        row.state = status.state.value
        row.at = status.at if result is IngestResult.INSERTED else max(row.at, status.at)
        row.software = status.software
        row.model_name = status.model.name if status.model else None
        row.model_sha256 = status.model.sha256 if status.model else None
        row.config_version = status.config_version
        row.received_at = now
        session.flush()  # a concurrent insert of the same node fails here and the batch is retried
        return result

    # -- dead letters ---------------------------------------------------------------------------------------

    def quarantine(self, topic: str, payload: bytes, error: str) -> IngestResult:
        """Dead-letter a message whose ingest keeps raising, so it cannot block the queue (kind "poison")."""
        return self._count("poison", self.dead_letter(topic, payload, error))

    def dead_letter(self, topic: str, payload: bytes, error: str) -> IngestResult:
        """Keep a message central could not accept, with the reason and its bytes (its own transaction)."""
        with self._db.session() as session:
            return self._dead_letter_in(session, topic, payload, error)

    def _dead_letter_in(self, session: Session, topic: str, payload: bytes, error: str) -> IngestResult:
        """``dead_letter`` inside the caller's transaction; payloads beyond ``MAX_DEAD_LETTER_BYTES`` are cut."""
        size = len(payload)
        kept = payload[:MAX_DEAD_LETTER_BYTES]
        if size > len(kept):
            error = f"{error} (payload truncated to {len(kept)} of {size} bytes)"
        log.warning("dead letter on %s: %s", topic, error)
        session.add(
            DeadLetterRow(
                received_at=self._clock(),
                topic=_storable_text(topic),
                payload=_storable_text(kept.decode("utf-8", errors="replace")),
                payload_b64=base64.b64encode(kept).decode("ascii"),
                payload_size=size,
                error=_storable_text(error),
            )
        )
        return IngestResult.DEAD_LETTER


def _retryable(exc: OperationalError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate in RETRYABLE_SQLSTATES or "locked" in str(exc.orig)


def _storable_text(text: str) -> str:
    """Text every backend accepts: PostgreSQL refuses NUL characters (the exact bytes stay in base64)."""
    return text.replace("\x00", "\ufffd")

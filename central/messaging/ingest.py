"""Turn MQTT messages into database rows: idempotent, order-tolerant, never silently dropping anything.

QoS 1 means "at least once": the broker redelivers whatever central did not acknowledge, and a node's outbox
retries until acknowledged, so the same message arriving twice is normal. Phases of one event may also arrive
out of order after a reconnect. Hence the rules here:

* one row per ``event_id``; a message is applied only when it is *newer* than the row, ordered by
  ``(phase rank, observed_at)`` with start < update < end, so a late ``start`` never regresses an ``end``;
* a message that is not newer is a ``duplicate`` (same order key) or ``stale`` (older) and changes nothing;
* anything that cannot be accepted (bad JSON, schema error, a node speaking for another node, an ``event_id``
  reused for a different camera/rule) becomes a ``dead_letters`` row with the reason and the exact bytes.

``Ingestor.ingest`` never raises for bad input. It does raise for infrastructure failures (database down), so
the MQTT layer can withhold the acknowledgement and let the broker redeliver later.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError

from central import originals
from central.db.models import DeadLetterRow, EventRow, NodeStatusRow
from central.db.session import Database
from edge_agent.contract import Event, EvidenceRef, Heartbeat, NodeStatus, Phase, Topics, utcnow

log = logging.getLogger(__name__)

PHASE_RANK = {Phase.START.value: 0, Phase.UPDATE.value: 1, Phase.END.value: 2}
# Fields that identify what an event is about; a later phase that changes them is not the same event.
IDENTITY_FIELDS = ("node_id", "camera_id", "zone_id", "rule_id", "type")
MAX_DEAD_LETTER_BYTES = 1024 * 1024


class IngestResult(StrEnum):
    """What ingesting one message did."""

    INSERTED = "inserted"
    UPDATED = "updated"
    DUPLICATE = "duplicate"  # same message again (QoS 1 redelivery): nothing changed
    STALE = "stale"  # an older phase/status than the one stored arrived late: nothing changed
    DEAD_LETTER = "dead_letter"


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
            "dead_letters": total(IngestResult.DEAD_LETTER),
            "statuses": total(IngestResult.INSERTED, "status") + total(IngestResult.UPDATED, "status"),
        }


class NodeHealth:
    """The latest heartbeat of every node, in memory, for ``/metrics`` (thread-safe).

    Not in the database on purpose: a heartbeat's value is being the latest (one row per node every 30 s
    would be ~2,900 rows a day per node of superseded numbers), and history belongs to the metrics system
    that scrapes ``/metrics``. Every ingest worker subscribes to all heartbeats, so each one's view is complete.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[Heartbeat, datetime]] = {}

    def observe(self, beat: Heartbeat, received_at: datetime) -> IngestResult:
        """Keep ``beat`` if it is newer than the one held (a spooled heartbeat may arrive late)."""
        with self._lock:
            held = self._latest.get(beat.node_id)
            if held is not None and beat.at <= held[0].at:
                return IngestResult.DUPLICATE if beat.at == held[0].at else IngestResult.STALE
            self._latest[beat.node_id] = (beat, received_at)
        return IngestResult.INSERTED if held is None else IngestResult.UPDATED

    def latest(self) -> dict[str, tuple[Heartbeat, datetime]]:
        """node id -> (latest heartbeat, when central received it)."""
        with self._lock:
            return dict(self._latest)

    def prometheus_lines(self) -> list[str]:
        """Gauges of every node's latest heartbeat, in the Prometheus text format."""
        rows: dict[str, list[str]] = {name: [] for name, _ in _NODE_GAUGES}
        for node, (beat, _received) in sorted(self.latest().items()):
            n = f'node="{node}"'
            rows["heartbeat_timestamp_seconds"].append(f"{{{n}}} {beat.at.timestamp():.3f}")
            rows["uptime_seconds"].append(f"{{{n}}} {beat.uptime_s:.1f}")
            rows["outbox_depth"].append(f"{{{n}}} {beat.outbox.depth}")
            rows["outbox_uploads"].append(f"{{{n}}} {beat.outbox.uploads}")
            rows["outbox_bytes"].append(f"{{{n}}} {beat.outbox.bytes}")
            for key, count in sorted(beat.outbox.dropped.items()):
                klass, reason = key.split(".", 1)
                rows["outbox_dropped_total"].append(f'{{{n},class="{klass}",reason="{reason}"}} {count}')
            rows["mqtt_reconnects_total"].append(f"{{{n}}} {beat.mqtt_reconnects}")
            if beat.disk_free_bytes is not None:
                rows["disk_free_bytes"].append(f"{{{n}}} {beat.disk_free_bytes}")
            if beat.cpu_temp_c is not None:
                rows["cpu_temperature_celsius"].append(f"{{{n}}} {beat.cpu_temp_c:.1f}")
            for cam in beat.cameras:
                c = f'{n},camera="{cam.camera_id}"'
                rows["camera_fps"].append(f"{{{c}}} {cam.fps}")
                rows["camera_detect_fps"].append(f"{{{c}}} {cam.detect_fps}")
                rows["camera_frames_dropped_total"].append(f"{{{c}}} {cam.frames_dropped}")
                for q, value in (("0.5", cam.inference_ms_p50), ("0.95", cam.inference_ms_p95)):
                    if value is not None:
                        rows["camera_inference_ms"].append(f'{{{c},quantile="{q}"}} {value:.1f}')
        lines: list[str] = []
        for name, help_text in _NODE_GAUGES:
            if rows[name]:
                metric = f"streetwatch_node_{name}"
                lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
                lines += [f"{metric}{sample}" for sample in rows[name]]
        return lines


# Identifiers in labels match the contract's pattern (letters, digits, '_', '.', '-'): no escaping needed.
_NODE_GAUGES = (
    ("heartbeat_timestamp_seconds", "When the node measured its latest heartbeat (Unix time)."),
    ("uptime_seconds", "Seconds since the node's agent started."),
    ("outbox_depth", "Messages waiting in the node's outbox."),
    ("outbox_uploads", "Evidence uploads waiting in the node's outbox."),
    ("outbox_bytes", "Bytes spooled in the node's outbox."),
    ("outbox_dropped_total", "Items the node's outbox dropped, by class and reason."),
    ("mqtt_reconnects_total", "Times the node lost its broker connection."),
    ("disk_free_bytes", "Free bytes on the node's outbox filesystem."),
    ("cpu_temperature_celsius", "The node's CPU/SoC temperature."),
    ("camera_fps", "Frames read per second, per camera."),
    ("camera_detect_fps", "Detector runs per second, per camera."),
    ("camera_frames_dropped_total", "Frames lost per camera (replaced before use or undecodable)."),
    ("camera_inference_ms", "Detector latency per camera (quantiles over recent runs)."),
)


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
    ) -> None:
        self._db = db
        self._topics = topics
        self._clock = clock
        self.counters = counters or IngestCounters()
        self.nodes = NodeHealth()

    def ingest(self, topic: str, payload: bytes) -> IngestResult:
        """Apply one message; bad input becomes a dead letter, infrastructure errors propagate."""
        node = self._topics.node_of(topic)
        if node is not None and topic == self._topics.events(node):
            return self._count("event", self._ingest_event(node, topic, payload))
        if node is not None and topic == self._topics.status(node):
            return self._count("status", self._ingest_status(node, topic, payload))
        return self._count("unknown", self.dead_letter(topic, payload, "unexpected topic for central ingest"))

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
        return self._count("heartbeat", self.nodes.observe(beat, self._clock()))

    def _count(self, kind: str, result: IngestResult) -> IngestResult:
        self.counters.add(kind, result)
        return result

    # -- events ---------------------------------------------------------------------------------------------

    def _ingest_event(self, node: str, topic: str, payload: bytes) -> IngestResult:
        try:
            event = Event.from_json(payload)
        except ValidationError as exc:
            return self.dead_letter(topic, payload, describe_validation_error(exc))
        if event.node_id != node:
            return self.dead_letter(
                topic, payload, f"node_id {event.node_id!r} does not match topic node {node!r}"
            )
        # Two attempts: a concurrent worker may insert the same event_id between our read and our insert.
        for attempt in (1, 2):
            try:
                outcome = self._upsert_event(event)
            except DataError as exc:  # valid JSON the database cannot hold (e.g. NUL in a PostgreSQL string)
                return self.dead_letter(topic, payload, f"database refused the event: {exc.orig}")
            except IntegrityError:
                if attempt == 2:
                    raise
                log.debug("event %s inserted concurrently; retrying as an update", event.event_id)
                continue
            if isinstance(outcome, IngestResult):
                return outcome
            return self.dead_letter(topic, payload, outcome.reason)
        raise AssertionError("unreachable")

    def _upsert_event(self, event: Event) -> IngestResult | Conflict:
        """Insert or update the row; a ``Conflict`` means the message must become a dead letter."""
        now = self._clock()
        with self._db.session() as session:
            # Restrict originals first: an event may name a hash before its bytes arrive (conservative
            # even for a message that turns out stale or conflicting: it only hides bytes).
            originals.mark_restricted(session, [(r.sha256, r.kind.value) for r in event.evidence], now)
            row = session.get(EventRow, str(event.event_id), with_for_update=True)
            if row is None:
                session.add(_new_event_row(event, now))
                session.flush()
                return IngestResult.INSERTED
            for field in IDENTITY_FIELDS:
                stored, incoming = getattr(row, field), str(getattr(event, field))
                if stored != incoming:
                    reason = (
                        f"event_id {row.event_id} already belongs to {field}={stored!r}, not {incoming!r}"
                    )
                    return Conflict(reason)
            stored_key = (PHASE_RANK[row.phase], row.observed_at)
            incoming_key = (PHASE_RANK[event.phase.value], event.observed_at)
            if incoming_key == stored_key:
                return IngestResult.DUPLICATE
            if incoming_key < stored_key:
                return IngestResult.STALE
            _apply_newer(row, event, now)
            return IngestResult.UPDATED

    # -- node status ----------------------------------------------------------------------------------------

    def _ingest_status(self, node: str, topic: str, payload: bytes) -> IngestResult:
        try:
            status = NodeStatus.model_validate_json(payload)
        except ValidationError as exc:
            return self.dead_letter(topic, payload, describe_validation_error(exc))
        if status.node_id != node:
            return self.dead_letter(
                topic, payload, f"node_id {status.node_id!r} does not match topic node {node!r}"
            )
        try:
            return self._upsert_status(status)
        except DataError as exc:
            return self.dead_letter(topic, payload, f"database refused the status: {exc.orig}")

    def _upsert_status(self, status: NodeStatus) -> IngestResult:
        now = self._clock()
        with self._db.session() as session:
            row = session.get(NodeStatusRow, status.node_id, with_for_update=True)
            if row is None:
                row = NodeStatusRow(node_id=status.node_id)
                session.add(row)
                result = IngestResult.INSERTED
            elif status.at < row.at:
                return IngestResult.STALE
            elif status.at == row.at and status.state.value == row.state:
                return IngestResult.DUPLICATE
            else:
                result = IngestResult.UPDATED
            row.state = status.state.value
            row.at = status.at
            row.software = status.software
            row.model_name = status.model.name if status.model else None
            row.model_sha256 = status.model.sha256 if status.model else None
            row.config_version = status.config_version
            row.received_at = now
        return result

    # -- dead letters ---------------------------------------------------------------------------------------

    def quarantine(self, topic: str, payload: bytes, error: str) -> IngestResult:
        """Dead-letter a message whose ingest keeps raising, so it cannot block the queue (kind "poison")."""
        return self._count("poison", self.dead_letter(topic, payload, error))

    def dead_letter(self, topic: str, payload: bytes, error: str) -> IngestResult:
        """Keep a message central could not accept, with the reason and its exact bytes."""
        size = len(payload)
        kept = payload[:MAX_DEAD_LETTER_BYTES]
        if size > len(kept):
            error = f"{error} (payload truncated to {len(kept)} of {size} bytes)"
        log.warning("dead letter on %s: %s", topic, error)
        with self._db.session() as session:
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


def _storable_text(text: str) -> str:
    """Text every backend accepts: PostgreSQL refuses NUL characters (the exact bytes stay in base64)."""
    return text.replace("\x00", "\ufffd")


def _new_event_row(event: Event, now: datetime) -> EventRow:
    row = EventRow(
        event_id=str(event.event_id),
        node_id=event.node_id,
        camera_id=event.camera_id,
        zone_id=event.zone_id,
        rule_id=event.rule_id,
        type=event.type.value,
        started_at=event.started_at,
        received_at=now,
        evidence=[],
    )
    _apply_newer(row, event, now)
    return row


def _apply_newer(row: EventRow, event: Event, now: datetime) -> None:
    """Copy the fields a later phase may change; evidence accumulates (a clip often arrives with ``end``)."""
    row.phase = event.phase.value
    row.observed_at = event.observed_at
    row.ended_at = event.ended_at
    row.objects = [obj.model_dump(mode="json") for obj in event.objects]
    row.measurements = dict(event.measurements)
    row.evidence = merge_evidence(row.evidence or [], event.evidence)
    row.model_name = event.model.name
    row.model_sha256 = event.model.sha256
    row.config_version = event.config_version
    row.updated_at = now


def merge_evidence(stored: list[dict[str, Any]], incoming: list[EvidenceRef]) -> list[dict[str, Any]]:
    """Stored references first, then new hashes in arrival order (so the last snapshot is the newest)."""
    merged = list(stored)
    seen = {ref.get("sha256") for ref in stored}
    for ref in incoming:
        if ref.sha256 not in seen:
            merged.append(ref.model_dump(mode="json"))
            seen.add(ref.sha256)
    return merged

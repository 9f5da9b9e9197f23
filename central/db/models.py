"""ORM models of central's database (SQLAlchemy 2, typed ``Mapped`` columns).

The schema is portable on purpose: plain strings with named CHECK constraints instead of native enums (no
PostgreSQL ``ALTER TYPE`` dance when a value is added), JSON that becomes JSONB on PostgreSQL, and timestamps
that are always aware UTC (``UTCDateTime``). The migration in ``central/migrations/versions`` mirrors this
file; ``tests/central/test_migrations.py`` checks that they agree.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    event,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship

from central.db.types import UTCDateTime, json_type

# Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LEN = 64  # matches the contract's identifier pattern (1-64 chars)


class ReviewStatus(StrEnum):
    """Where an event stands in the officers' queue."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class DecisionKind(StrEnum):
    """What an officer decided about an event."""

    CONFIRM = "confirm"
    DISMISS = "dismiss"
    ESCALATE = "escalate"
    REOPEN = "reopen"  # a supervisor sends a decided event back to the queue (with a reason)


class Role(StrEnum):
    """User roles of the design notes (section 1)."""

    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    OPERATOR = "operator"
    TECHNICIAN = "technician"
    ADMIN = "admin"


def _in(column: str, values: type[StrEnum]) -> str:
    """A portable ``column IN (...)`` check expression for a string enum."""
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class EventRow(Base):
    """One event (all phases upserted into one row, keyed by the node-minted ``event_id``)."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint("phase IN ('start', 'update', 'end')", name="phase"),
        CheckConstraint(_in("review_status", ReviewStatus), name="review_status"),
        Index("ix_events_started_at", "started_at"),
        Index("ix_events_type", "type"),
        Index("ix_events_camera_id", "camera_id"),
        # The queue's keyset orders and common searches (central/queue.py), each served in index order:
        # a ward's pending events oldest first; escalated first (supervisors, one query per flag); all of a
        # ward's events by time; by type or camera by time; every ward's queue (admins).
        Index("ix_events_queue", "ward_id", "review_status", "started_at", "event_id"),
        Index("ix_events_escalated", "ward_id", "review_status", "escalated", "started_at", "event_id"),
        Index("ix_events_ward_started", "ward_id", "started_at", "event_id"),
        Index("ix_events_ward_type", "ward_id", "type", "started_at", "event_id"),
        Index("ix_events_camera_started", "camera_id", "started_at", "event_id"),
        Index("ix_events_status_started", "review_status", "started_at", "event_id"),
    )

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(ID_LEN))
    camera_id: Mapped[str] = mapped_column(String(ID_LEN))
    zone_id: Mapped[str] = mapped_column(String(ID_LEN))
    rule_id: Mapped[str] = mapped_column(String(ID_LEN))
    type: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(8))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    objects: Mapped[list[dict[str, Any]]] = mapped_column(json_type())
    measurements: Mapped[dict[str, float]] = mapped_column(json_type())
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(json_type())
    model_name: Mapped[str] = mapped_column(String(128))
    model_sha256: Mapped[str] = mapped_column(String(64))
    config_version: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    review_status: Mapped[str] = mapped_column(String(16), default=ReviewStatus.PENDING.value, index=True)
    # Issue 9 (central/scope.py, central/claims.py, central/queue.py): the ward the camera belonged to when
    # the event arrived, a version every change bumps (decisions carry it; a stale one is a 409), the claim
    # lease, flags the queue sorts and filters on, and the labels as ",car,truck," for the class filter.
    ward_id: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    claimed_by: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    labels: Mapped[str] = mapped_column(String(255), default="")
    changed_after_decision: Mapped[bool] = mapped_column(Boolean, default=False)

    decisions: Mapped[list[DecisionRow]] = relationship(
        back_populates="event", order_by="DecisionRow.decided_at", lazy="selectin"
    )


class EvidenceRow(Base):
    """Evidence bytes central holds, content-addressed by their (re-computed) SHA-256."""

    __tablename__ = "evidence"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    path: Mapped[str] = mapped_column(String(255), doc="Relative to the evidence directory.")


class RestrictedEvidenceRow(Base):
    """Evidence central must not serve by its plain URL: unblurred originals (faces visible).

    Its own table, not a column of ``evidence``: a hash is marked by whichever arrives first, the upload (the
    node names the kind) or an event that references it, so the mark exists before the bytes can be read.
    """

    __tablename__ = "restricted_evidence"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DecisionRow(Base):
    """An officer's decision on an event; rows are only ever added, the latest one sets the status."""

    __tablename__ = "decisions"
    __table_args__ = (CheckConstraint(_in("decision", DecisionKind), name="decision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.event_id", ondelete="RESTRICT"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Named ``username`` rather than ``user``: ``user`` is a reserved word in PostgreSQL.
    username: Mapped[str] = mapped_column(String(ID_LEN))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())
    event_version: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="The event version the decision was made on (None: before issue 9)."
    )

    event: Mapped[EventRow] = relationship(back_populates="decisions")


class DeadLetterRow(Base):
    """A message central could not accept, kept with the reason so nothing is silently dropped."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text, doc="UTF-8 decoded with errors='replace', for reading.")
    payload_b64: Mapped[str] = mapped_column(Text, doc="The exact bytes, base64, for forensics/replay.")
    payload_size: Mapped[int] = mapped_column(Integer, doc="Size of the original payload in bytes.")
    error: Mapped[str] = mapped_column(Text)


class UserRow(Base):
    """A person who can log in; the password only ever as an argon2 hash.

    Accounts are disabled, never deleted: decisions and audit rows keep naming them.
    """

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", Role), name="role"),)

    username: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    disabled_by: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="Set by an admin's reset; cleared by a change."
    )
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


class WardRow(Base):
    """A ward (phường): the unit officers work in and reads are scoped to."""

    __tablename__ = "wards"

    ward_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserWardRow(Base):
    """A user's assignment to a ward (many to many)."""

    __tablename__ = "user_wards"

    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"), primary_key=True)
    ward_id: Mapped[str] = mapped_column(
        ForeignKey("wards.ward_id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class LoginSessionRow(Base):
    """A server-side login session; the browser's cookie holds the random token, this row only its SHA-256.

    Ending a session (logout, password change, disabling, the user's own "end") sets ``ended_at``; the
    row is kept so the user's sessions page and the audit can show it.
    """

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    address: Mapped[str] = mapped_column(String(64), doc="Client address at login.")
    user_agent: Mapped[str] = mapped_column(String(255))


class AuditRow(Base):
    """Append-only, hash-chained record of who did what.

    ``hash`` is the SHA-256 of the row's canonical content including ``prev_hash`` (the previous row's
    ``hash``), so changing, removing or reordering a row breaks the chain (``central.audit.verify``). The
    database itself refuses UPDATE and DELETE (``central.db.append_only``).
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    username: Mapped[str | None] = mapped_column(
        String(ID_LEN), nullable=True, index=True, doc="The actor; None: the system."
    )
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(json_type())
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class NodeStatusRow(Base):
    """The last status a node announced (retained message / Last Will)."""

    __tablename__ = "node_status"

    node_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    software: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    model_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    config_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NodeRow(Base):
    """An enrolled node: its identity, hashes of its credentials, and where its remote config stands.

    Secrets are only kept in the form their checker needs: the MQTT password as the Mosquitto PBKDF2 hash
    the broker's password_file holds, the HTTP token as a SHA-256 (it is 256 random bits, so a fast hash is
    enough and allows lookup). Revoking clears both and keeps the row, since events still name the node.
    """

    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    mqtt_username: Mapped[str] = mapped_column(String(ID_LEN), unique=True)
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    http_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    enrolled_by: Mapped[str] = mapped_column(String(ID_LEN), doc="Who created the enrollment token.")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    desired_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    published_version: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="Version the broker holds retained (PUBACK received)."
    )
    applied_version: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="Version the node said it runs (last config/applied)."
    )
    ack_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ack_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    ack_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    ack_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NodeConfigRow(Base):
    """Every config central accepted for a node, by version (history; the newest is the desired one)."""

    __tablename__ = "node_configs"

    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.node_id", ondelete="RESTRICT"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    config: Mapped[dict[str, Any]] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(ID_LEN))
    note: Mapped[str | None] = mapped_column(Text, nullable=True, doc="Why this version (e.g. a rollback).")
    rollback_of: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="The older version this one re-publishes, for a rollback."
    )


class NodeCommandRow(Base):
    """One command sent to a node and where it stands (``central.fleet.commands``)."""

    __tablename__ = "node_commands"
    __table_args__ = (
        CheckConstraint(
            "state IN ('sent', 'progress', 'ok', 'refused', 'failed', 'timeout', 'unsent')", name="state"
        ),
        Index("ix_node_commands_node_created", "node_id", "created_at"),
    )

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.node_id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(json_type())
    state: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(json_type(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(ID_LEN))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class EnrollmentTokenRow(Base):
    """A one-time enrollment token, stored as its SHA-256; ``used_at`` is set once, atomically."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(ID_LEN))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    node_id: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True, doc="Node it enrolled.")


class NodeHealthRow(Base):
    """The latest heartbeat of every node heard on the broker, enrolled or not (``central.fleet.health``).

    One row per node, in the database rather than only in the ingest worker's memory, so that every API
    replica shows the same fleet page and a node that was heard but never enrolled can be found and enrolled.
    """

    __tablename__ = "node_health"

    node_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When central first heard the node.")
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When the node measured (its clock).")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), doc="When central received it.")
    heartbeat: Mapped[dict[str, Any]] = mapped_column(json_type(), doc="The Heartbeat as JSON.")


class NodeHeartbeatRow(Base):
    """Heartbeat history for the node page's charts; pruned to ``heartbeat_retention_s`` (bounded)."""

    __tablename__ = "node_heartbeats"
    __table_args__ = (Index("ix_node_heartbeats_node_at", "node_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[str] = mapped_column(String(ID_LEN))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat: Mapped[dict[str, Any]] = mapped_column(json_type())


class DetectorModelRow(Base):
    """An ONNX detector an admin uploaded: checked to load, addressed by its SHA-256 (``central.fleet.models``)."""

    __tablename__ = "detector_models"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger)
    input_width: Mapped[int] = mapped_column(Integer)
    input_height: Mapped[int] = mapped_column(Integer)
    classes: Mapped[list[str]] = mapped_column(json_type())
    path: Mapped[str] = mapped_column(String(255), doc="Relative to <data_dir>/models.")
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    uploaded_by: Mapped[str] = mapped_column(String(ID_LEN))


class ExtractionState(StrEnum):
    """Where a footage request stands (issue 10, item 6)."""

    REQUESTED = "requested"
    RECORDING_FOUND = "recording-found"
    UPLOADING = "uploading"
    READY = "ready"
    NOT_AVAILABLE = "not-available"
    FAILED = "failed"


class ExtractionRow(Base):
    """An officer's request for a camera's footage over a time range, and the clip it produced."""

    __tablename__ = "extractions"
    __table_args__ = (
        CheckConstraint(_in("state", ExtractionState), name="state"),
        Index("ix_extractions_camera_requested", "camera_id", "requested_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(ID_LEN))
    camera_id: Mapped[str] = mapped_column(String(ID_LEN))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(ID_LEN))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(36), nullable=True, doc="The extract command.")
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, doc="The clip (evidence store).")
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    recorded_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    recorded_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AppendOnlyError(RuntimeError):
    """Raised when code tries to change or delete an audit row."""


@event.listens_for(AuditRow, "before_update")
@event.listens_for(AuditRow, "before_delete")
def _refuse_audit_change(mapper: Mapper[AuditRow], connection: object, target: AuditRow) -> None:
    raise AppendOnlyError("audit_log is append-only; rows may not be updated or deleted")

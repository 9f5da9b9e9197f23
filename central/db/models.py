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
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    event,
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


class Role(StrEnum):
    """User roles of the design notes (section 1)."""

    OFFICER = "officer"
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
    """A person who can log in; the password only ever as an argon2 hash."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", Role), name="role"),)

    username: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """Append-only record of who did what (decisions, logins, user changes)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    username: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True, doc="None: the system.")
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(json_type())


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


class AppendOnlyError(RuntimeError):
    """Raised when code tries to change or delete an audit row."""


@event.listens_for(AuditRow, "before_update")
@event.listens_for(AuditRow, "before_delete")
def _refuse_audit_change(mapper: Mapper[AuditRow], connection: object, target: AuditRow) -> None:
    raise AppendOnlyError("audit_log is append-only; rows may not be updated or deleted")

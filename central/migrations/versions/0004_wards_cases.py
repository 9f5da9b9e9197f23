"""Officers' workspace: camera registry (wards come with 0003), event versions and claims, post-decision
history, evidence links, cases.

Written by hand to mirror ``central/db/wards.py`` and the issue-9 columns of ``central/db/models.py``;
existing events are backfilled (labels, evidence links, escalated flag, decision time) so the scoped queue
works on an upgraded database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The queue's orders and common searches (central/queue.py), mirrored from EventRow.__table_args__.
EVENT_INDEXES = {
    "ix_events_queue": ["ward_id", "review_status", "started_at", "event_id"],
    "ix_events_escalated": ["ward_id", "review_status", "escalated", "started_at", "event_id"],
    "ix_events_ward_started": ["ward_id", "started_at", "event_id"],
    "ix_events_ward_type": ["ward_id", "type", "started_at", "event_id"],
    "ix_events_camera_started": ["camera_id", "started_at", "event_id"],
    "ix_events_status_started": ["review_status", "started_at", "event_id"],
}
DECISIONS_BEFORE = "decision IN ('confirm', 'dismiss', 'escalate')"
DECISIONS_AFTER = "decision IN ('confirm', 'dismiss', 'escalate', 'reopen')"


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("ward_id", sa.String(64), nullable=True),
        sa.Column("location", sa.String(255), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["ward_id"], ["wards.ward_id"], name=op.f("fk_cameras_ward_id_wards"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("node_id", "camera_id", name=op.f("pk_cameras")),
    )
    op.create_index(op.f("ix_cameras_ward_id"), "cameras", ["ward_id"])
    op.create_table(
        "event_evidence",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.event_id"],
            name=op.f("fk_event_evidence_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "sha256", name=op.f("pk_event_evidence")),
    )
    op.create_index("ix_event_evidence_sha256", "event_evidence", ["sha256"])
    op.create_table(
        "event_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("received_at", _ts(), nullable=False),
        sa.Column("phase", sa.String(8), nullable=False),
        sa.Column("observed_at", _ts(), nullable=False),
        sa.Column("ended_at", _ts(), nullable=True),
        sa.Column("objects", _json(), nullable=False),
        sa.Column("measurements", _json(), nullable=False),
        sa.Column("evidence", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.event_id"],
            name=op.f("fk_event_history_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_history")),
    )
    op.create_index(op.f("ix_event_history_event_id"), "event_history", ["event_id"])
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("ward_id", sa.String(64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ward_id"], ["wards.ward_id"], name=op.f("fk_cases_ward_id_wards"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    op.create_index(op.f("ix_cases_ward_id"), "cases", ["ward_id"])
    op.create_table(
        "case_events",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("added_by", sa.String(64), nullable=False),
        sa.Column("added_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_events_case_id_cases"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.event_id"],
            name=op.f("fk_case_events_event_id_events"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("case_id", "event_id", name=op.f("pk_case_events")),
    )
    op.create_index(op.f("ix_case_events_event_id"), "case_events", ["event_id"])

    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("ward_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("claimed_until", _ts(), nullable=True))
        batch.add_column(sa.Column("escalated", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("decided_at", _ts(), nullable=True))
        batch.add_column(sa.Column("labels", sa.String(255), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("changed_after_decision", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    for name, columns in EVENT_INDEXES.items():
        op.create_index(name, "events", columns)

    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("event_version", sa.Integer(), nullable=True))
        batch.drop_constraint(op.f("ck_decisions_decision"), type_="check")
        batch.create_check_constraint(op.f("ck_decisions_decision"), DECISIONS_AFTER)

    _backfill()


def _backfill() -> None:
    """Labels, evidence links, escalated flags and decision times of events stored before this revision."""
    bind = op.get_bind()
    events = sa.table(
        "events",
        sa.column("event_id", sa.String),
        sa.column("objects", _json()),
        sa.column("evidence", _json()),
        sa.column("labels", sa.String),
    )
    links = sa.table("event_evidence", sa.column("event_id", sa.String), sa.column("sha256", sa.String))
    for event_id, objects, evidence in bind.execute(
        sa.select(events.c.event_id, events.c.objects, events.c.evidence)
    ):
        names = sorted({str(o.get("label", "")) for o in objects or [] if o.get("label")})
        labels = ("," + ",".join(names) + ",")[:255] if names else ""
        bind.execute(events.update().where(events.c.event_id == event_id).values(labels=labels))
        hashes = {str(ref["sha256"]) for ref in evidence or [] if ref.get("sha256")}
        if hashes:
            bind.execute(links.insert(), [{"event_id": event_id, "sha256": h} for h in sorted(hashes)])
    decisions = sa.table(
        "decisions",
        sa.column("id", sa.Integer),
        sa.column("event_id", sa.String),
        sa.column("decision", sa.String),
        sa.column("decided_at", _ts()),
    )
    latest: dict[str, tuple[str, Any]] = {}
    for event_id, decision, decided_at in bind.execute(
        sa.select(decisions.c.event_id, decisions.c.decision, decisions.c.decided_at).order_by(
            decisions.c.decided_at, decisions.c.id
        )
    ):
        latest[event_id] = (decision, decided_at)
    flags = sa.table(
        "events",
        sa.column("event_id", sa.String),
        sa.column("escalated", sa.Boolean),
        sa.column("decided_at", _ts()),
    )
    for event_id, (decision, decided_at) in latest.items():
        values: dict[str, Any] = {"escalated": decision == "escalate"}
        if decision in ("confirm", "dismiss"):
            values["decided_at"] = decided_at
        bind.execute(flags.update().where(flags.c.event_id == event_id).values(**values))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_constraint(op.f("ck_decisions_decision"), type_="check")
        batch.create_check_constraint(op.f("ck_decisions_decision"), DECISIONS_BEFORE)
        batch.drop_column("event_version")
    for name in EVENT_INDEXES:
        op.drop_index(name, table_name="events")
    with op.batch_alter_table("events") as batch:
        for column in (
            "changed_after_decision",
            "labels",
            "decided_at",
            "escalated",
            "claimed_until",
            "claimed_by",
            "version",
            "ward_id",
        ):
            batch.drop_column(column)
    op.drop_table("case_events")
    op.drop_table("cases")
    op.drop_table("event_history")
    op.drop_table("event_evidence")
    op.drop_table("cameras")

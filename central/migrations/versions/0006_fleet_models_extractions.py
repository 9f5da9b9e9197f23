"""Fleet health (``node_health``, ``node_heartbeats``), detector models and footage extractions.

Written by hand to mirror ``central/db/models.py`` (``NodeHealthRow``, ``NodeHeartbeatRow``,
``DetectorModelRow``, ``ExtractionRow``); ``tests/central/test_migrations.py`` compares the migrated schema
with the models.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 22:20:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXTRACTION_STATES = ("requested", "recording-found", "uploading", "ready", "not-available", "failed")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "node_health",
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("first_seen_at", _ts(), nullable=False),
        sa.Column("heartbeat_at", _ts(), nullable=False),
        sa.Column("received_at", _ts(), nullable=False),
        sa.Column("heartbeat", _json(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_node_health")),
    )
    op.create_table(
        "node_heartbeats",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("received_at", _ts(), nullable=False),
        sa.Column("heartbeat", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_heartbeats")),
    )
    op.create_index("ix_node_heartbeats_node_at", "node_heartbeats", ["node_id", "at"])
    op.create_index(op.f("ix_node_heartbeats_at"), "node_heartbeats", ["at"])
    op.create_table(
        "detector_models",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("input_width", sa.Integer(), nullable=False),
        sa.Column("input_height", sa.Integer(), nullable=False),
        sa.Column("classes", _json(), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("uploaded_at", _ts(), nullable=False),
        sa.Column("uploaded_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_detector_models")),
    )
    op.create_table(
        "extractions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("start_at", _ts(), nullable=False),
        sa.Column("end_at", _ts(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", _ts(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(36), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("recorded_start", _ts(), nullable=True),
        sa.Column("recorded_end", _ts(), nullable=True),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.CheckConstraint(
            "state IN (" + ", ".join(repr(s) for s in EXTRACTION_STATES) + ")",
            name=op.f("ck_extractions_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extractions")),
    )
    op.create_index("ix_extractions_camera_requested", "extractions", ["camera_id", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_extractions_camera_requested", table_name="extractions")
    op.drop_table("extractions")
    op.drop_table("detector_models")
    op.drop_index(op.f("ix_node_heartbeats_at"), table_name="node_heartbeats")
    op.drop_index("ix_node_heartbeats_node_at", table_name="node_heartbeats")
    op.drop_table("node_heartbeats")
    op.drop_table("node_health")

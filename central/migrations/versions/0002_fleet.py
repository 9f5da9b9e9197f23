"""Fleet: enrolled nodes (credential hashes, remote config state), their config history, enrollment tokens.

Written by hand to mirror ``central/db/models.py`` (``NodeRow``, ``NodeConfigRow``, ``EnrollmentTokenRow``);
``tests/central/test_migrations.py`` compares the migrated schema with the models.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("mqtt_username", sa.String(64), nullable=False),
        sa.Column("mqtt_password_hash", sa.String(255), nullable=True),
        sa.Column("http_token_hash", sa.String(64), nullable=True),
        sa.Column("enrolled_at", _ts(), nullable=False),
        sa.Column("enrolled_by", sa.String(64), nullable=False),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.Column("desired_version", sa.Integer(), nullable=True),
        sa.Column("published_version", sa.Integer(), nullable=True),
        sa.Column("applied_version", sa.Integer(), nullable=True),
        sa.Column("ack_version", sa.Integer(), nullable=True),
        sa.Column("ack_ok", sa.Boolean(), nullable=True),
        sa.Column("ack_error", sa.Text(), nullable=True),
        sa.Column("ack_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("mqtt_username", name=op.f("uq_nodes_mqtt_username")),
        sa.UniqueConstraint("http_token_hash", name=op.f("uq_nodes_http_token_hash")),
    )

    op.create_table(
        "node_configs",
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.node_id"], name=op.f("fk_node_configs_node_id_nodes"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("node_id", "version", name=op.f("pk_node_configs")),
    )

    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("used_at", _ts(), nullable=True),
        sa.Column("node_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrollment_tokens_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("enrollment_tokens")
    op.drop_table("node_configs")
    op.drop_table("nodes")

"""Commands to nodes (``node_commands``) and config history notes (``node_configs.note``/``rollback_of``).

Written by hand to mirror ``central/db/models.py`` (``NodeCommandRow``, ``NodeConfigRow``);
``tests/central/test_migrations.py`` compares the migrated schema with the models.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "node_commands",
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("args", _json(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.CheckConstraint(
            "state IN ('sent', 'progress', 'ok', 'refused', 'failed', 'timeout', 'unsent')",
            name=op.f("ck_node_commands_state"),
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.node_id"], name=op.f("fk_node_commands_node_id_nodes"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_node_commands")),
    )
    op.create_index("ix_node_commands_node_created", "node_commands", ["node_id", "created_at"])
    with op.batch_alter_table("node_configs") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("rollback_of", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node_configs") as batch:
        batch.drop_column("rollback_of")
        batch.drop_column("note")
    op.drop_index("ix_node_commands_node_created", table_name="node_commands")
    op.drop_table("node_commands")

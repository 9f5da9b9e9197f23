"""Accounts and a tamper-evident audit: roles with supervisor, disabled users, wards and user<->ward
assignments, server-side login sessions, and the audit log's hash chain guarded by database triggers.

Written by hand to mirror ``central/db/models.py`` (``UserRow``, ``WardRow``, ``UserWardRow``,
``LoginSessionRow``, ``AuditRow``); ``tests/central/test_migrations.py`` compares the migrated schema with the
models. Audit rows that already exist are chained here (in id order) before the triggers forbid changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from central.audit import GENESIS_HASH, row_hash
from central.db.append_only import create_guards, drop_guards

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES_BEFORE = "role IN ('officer', 'operator', 'technician', 'admin')"
ROLES_AFTER = "role IN ('officer', 'supervisor', 'operator', 'technician', 'admin')"


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled_at", _ts(), nullable=True))
        batch.add_column(sa.Column("disabled_by", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("password_changed_at", _ts(), nullable=True))
        batch.drop_constraint(op.f("ck_users_role"), type_="check")
        batch.create_check_constraint(op.f("ck_users_role"), ROLES_AFTER)

    op.create_table(
        "wards",
        sa.Column("ward_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("ward_id", name=op.f("pk_wards")),
    )
    op.create_table(
        "user_wards",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("ward_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"], ["users.username"], name=op.f("fk_user_wards_username_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["ward_id"], ["wards.ward_id"], name=op.f("fk_user_wards_ward_id_wards"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("username", "ward_id", name=op.f("pk_user_wards")),
    )
    op.create_index(op.f("ix_user_wards_ward_id"), "user_wards", ["ward_id"])

    op.create_table(
        "login_sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("last_seen_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("ended_at", _ts(), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"],
            ["users.username"],
            name=op.f("fk_login_sessions_username_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_login_sessions_token_hash")),
    )
    op.create_index(op.f("ix_login_sessions_username"), "login_sessions", ["username"])

    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
    _chain_existing_rows()
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint(op.f("uq_audit_log_hash"), ["hash"])
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"])
    op.create_index(op.f("ix_audit_log_username"), "audit_log", ["username"])
    create_guards(op.get_bind())


def _chain_existing_rows() -> None:
    """Hash the rows written before this revision, oldest first, so the chain covers them too."""
    bind = op.get_bind()
    audit = sa.table(
        "audit_log",
        sa.column("id", sa.Integer()),
        sa.column("at", _ts()),
        sa.column("username", sa.String()),
        sa.column("action", sa.String()),
        sa.column("target", sa.String()),
        sa.column("detail", sa.JSON()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    previous = GENESIS_HASH
    rows = bind.execute(sa.select(audit).order_by(audit.c.id)).mappings().all()
    for row in rows:
        at = row["at"]
        digest = row_hash(
            previous, at, row["username"], row["action"], row["target"], dict(row["detail"] or {})
        )
        bind.execute(sa.update(audit).where(audit.c.id == row["id"]).values(prev_hash=previous, hash=digest))
        previous = digest


def downgrade() -> None:
    drop_guards(op.get_bind())
    op.drop_index(op.f("ix_audit_log_username"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_action"), table_name="audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_constraint(op.f("uq_audit_log_hash"), type_="unique")
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
    op.drop_index(op.f("ix_login_sessions_username"), table_name="login_sessions")
    op.drop_table("login_sessions")
    op.drop_index(op.f("ix_user_wards_ward_id"), table_name="user_wards")
    op.drop_table("user_wards")
    op.drop_table("wards")
    op.execute("UPDATE users SET role = 'officer' WHERE role = 'supervisor'")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("ck_users_role"), type_="check")
        batch.create_check_constraint(op.f("ck_users_role"), ROLES_BEFORE)
        batch.drop_column("password_changed_at")
        batch.drop_column("must_change_password")
        batch.drop_column("disabled_by")
        batch.drop_column("disabled_at")

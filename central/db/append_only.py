"""Database guards that make ``audit_log`` append-only below the application.

The ORM already refuses updates of ``AuditRow``, but that stops only well-behaved code. These triggers make
the database itself refuse ``UPDATE`` and ``DELETE`` (and on PostgreSQL ``TRUNCATE``), whoever issues them: a
raw SQL console, a buggy migration, a compromised app. On PostgreSQL the privileges to change rows are also
revoked from ``PUBLIC`` and from the role that ran the migration; the table's owner could still drop the
trigger, which is what the hash chain (``central.audit.verify``) is for.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

TABLE = "audit_log"
MESSAGE = "audit_log is append-only: rows may not be updated or deleted"

_SQLITE_CREATE = [
    f"CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    f"CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
]
_SQLITE_DROP = ["DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete"]

_PG_CREATE = [
    f"""CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
END;
$$""",
    f"CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON {TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()",
    f"CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()",
    f"REVOKE UPDATE, DELETE, TRUNCATE ON {TABLE} FROM PUBLIC",
    f"REVOKE UPDATE, DELETE, TRUNCATE ON {TABLE} FROM CURRENT_USER",
]
_PG_DROP = [
    f"DROP TRIGGER IF EXISTS audit_log_no_change ON {TABLE}",
    f"DROP TRIGGER IF EXISTS audit_log_no_truncate ON {TABLE}",
    "DROP FUNCTION IF EXISTS audit_log_refuse_change()",
    f"GRANT UPDATE, DELETE, TRUNCATE ON {TABLE} TO CURRENT_USER",
]


def create_guards(connection: Connection) -> None:
    """Install the triggers (and on PostgreSQL revoke the privileges) for this connection's backend."""
    for statement in _SQLITE_CREATE if connection.dialect.name == "sqlite" else _PG_CREATE:
        connection.execute(text(statement))


def drop_guards(connection: Connection) -> None:
    """Remove them again (downgrade only)."""
    for statement in _SQLITE_DROP if connection.dialect.name == "sqlite" else _PG_DROP:
        connection.execute(text(statement))

"""Migrations: the hand-written initial revision creates the schema the models describe, idempotently."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from central.db import migrate
from central.db.models import Base
from tests.central.conftest import _reset_postgres

TABLES = {"events", "evidence", "decisions", "dead_letters", "users", "audit_log", "node_status"}
TABLES |= {"nodes", "node_configs", "enrollment_tokens"}  # 0002: fleet
TABLES |= {"wards", "user_wards", "login_sessions"}  # 0003: accounts and audit
TABLES |= {"cameras", "event_evidence", "event_history", "cases", "case_events"}  # 0004: wards and cases
TABLES |= {"node_commands"}  # 0005: commands to nodes
TABLES |= {
    "node_health",
    "node_heartbeats",
    "detector_models",
    "extractions",
}  # 0006: health, models, footage
TABLES |= {"restricted_evidence"}  # 0007: unblurred originals


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'dir' / 'central.db'}"


def schema_diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_all_tables_on_an_empty_sqlite(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert migrate.current_revision(url) is None  # also creates the parent folders
    migrate.upgrade(url)
    assert table_names(url) == TABLES | {"alembic_version"}
    assert migrate.current_revision(url) == migrate.head_revision() == "0007"


def test_upgrade_twice_is_a_no_op_and_keeps_data(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (username, password_hash, role, created_at, updated_at) "
                "VALUES ('u', 'h', 'officer', '2025-01-01 00:00:00', '2025-01-01 00:00:00')"
            )
        )
    migrate.upgrade(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM users")).scalar_one() == 1
    engine.dispose()
    assert migrate.current_revision(url) == "0007"


def test_migration_matches_the_models(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    migrate.upgrade(url)
    assert schema_diff(url) == []


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    from central.db.session import Database

    url = sqlite_url(tmp_path)
    migrate.upgrade(url)
    database = Database(url)
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
    database.dispose()


def test_upgrade_on_postgresql(postgres_url: str) -> None:
    """Same migration on a real PostgreSQL (the fixture starts a throwaway server, or TEST_POSTGRES_URL)."""
    url = postgres_url
    _reset_postgres(url)
    migrate.upgrade(url)
    migrate.upgrade(url)
    assert table_names(url) >= TABLES
    assert schema_diff(url) == []

"""The tamper-evident audit log on SQLite and a real PostgreSQL: the database refuses UPDATE/DELETE, the hash
chain names the first row that was changed or removed behind the triggers' back, and concurrent writers keep
one chain.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from central import audit
from central.db import migrate
from central.db.session import Database
from tests.central.conftest import login
from tests.central.factories import T0

ROOT = Path(__file__).resolve().parents[2]


def write_rows(db: Database, count: int) -> None:
    with db.session() as session:
        for i in range(count):
            audit.record(session, "lan", "event.confirm", f"event:{i}", {"i": i, "note": "xác nhận"}, at=T0)


def execute(db: Database, sql: str) -> None:
    with db.engine.begin() as connection:
        connection.execute(text(sql))


def drop_guards(db: Database) -> None:
    """What an attacker with DDL rights would do first; the chain must still tell."""
    if db.engine.dialect.name == "sqlite":
        execute(db, "DROP TRIGGER audit_log_no_update")
        execute(db, "DROP TRIGGER audit_log_no_delete")
    else:
        execute(db, "DROP TRIGGER audit_log_no_change ON audit_log")
        execute(db, "GRANT UPDATE, DELETE ON audit_log TO CURRENT_USER")


def cli_verify(db: Database) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREETWATCH_DATABASE_URL": db.url}
    return subprocess.run(
        [sys.executable, "-m", "central.cli", "audit", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_fresh_chain_verifies(db: Database) -> None:
    write_rows(db, 5)
    with db.sessionmaker() as session:
        result = audit.verify(session)
    assert (result.ok, result.rows) == (True, 5)
    done = cli_verify(db)
    assert done.returncode == 0 and "audit chain OK: 5 row(s)" in done.stdout


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET action = 'event.dismiss' WHERE id = 2",
        "UPDATE audit_log SET detail = detail",
        "DELETE FROM audit_log WHERE id = 2",
        "DELETE FROM audit_log",
    ],
)
def test_the_database_refuses_changes(db: Database, sql: str) -> None:
    write_rows(db, 3)
    with pytest.raises(DBAPIError, match="append-only"):
        execute(db, sql)
    with db.sessionmaker() as session:
        assert audit.verify(session).rows == 3


def test_postgres_refuses_truncate_and_revokes_rights(db: Database) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE and GRANTs are PostgreSQL's")
    write_rows(db, 2)
    with pytest.raises(DBAPIError, match="append-only"):
        execute(db, "TRUNCATE audit_log")
    with db.engine.connect() as connection:
        public = connection.execute(
            text("SELECT has_table_privilege('public', 'audit_log', 'UPDATE, DELETE, TRUNCATE')")
        ).scalar_one()
        grants = connection.execute(
            text(
                "SELECT count(*) FROM information_schema.role_table_grants WHERE table_name = 'audit_log' "
                "AND privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')"
            )
        ).scalar_one()
    assert public is False and grants == 0


def test_a_changed_row_is_named(db: Database) -> None:
    write_rows(db, 5)
    drop_guards(db)
    execute(db, "UPDATE audit_log SET target = 'event:forged' WHERE id = 3")
    with db.sessionmaker() as session:
        result = audit.verify(session)
    assert result.first_break is not None and result.first_break.row_id == 3
    assert "content does not match" in result.first_break.reason
    done = cli_verify(db)
    assert done.returncode == 1
    assert "audit chain BROKEN at row 3: its content does not match its hash" in done.stdout


def test_a_rehashed_row_is_caught_by_the_next_link(db: Database) -> None:
    write_rows(db, 5)
    drop_guards(db)
    with db.sessionmaker() as session:
        row = session.get(audit.AuditRow, 3)
        assert row is not None
        forged = audit.row_hash(row.prev_hash, row.at, row.username, "event.dismiss", row.target, row.detail)
    execute(db, f"UPDATE audit_log SET action = 'event.dismiss', hash = '{forged}' WHERE id = 3")
    with db.sessionmaker() as session:
        result = audit.verify(session)
    assert result.first_break is not None and result.first_break.row_id == 4
    assert "prev_hash" in result.first_break.reason


def test_a_removed_row_is_named(db: Database) -> None:
    write_rows(db, 5)
    drop_guards(db)
    execute(db, "DELETE FROM audit_log WHERE id = 2")
    done = cli_verify(db)
    assert done.returncode == 1 and "BROKEN at row 3" in done.stdout


def test_concurrent_writers_keep_one_chain(db: Database) -> None:
    """Eight threads, 25 rows each, on separate connections: no two rows may chain onto the same tail."""
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                with db.session() as session:
                    audit.record(session, f"user{n}", "evidence.view", f"evidence:{n}-{i}", at=T0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.sessionmaker() as session:
        result = audit.verify(session)
    assert (result.ok, result.rows) == (True, 200)


def test_rows_written_before_the_migration_are_chained(database_url: str) -> None:
    migrate.upgrade(database_url, "0002")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for i in range(3):
            connection.execute(
                text(
                    "INSERT INTO audit_log (at, username, action, target, detail) "
                    "VALUES (:at, 'admin', 'login', :target, :detail)"
                ),
                {
                    "at": T0.replace(tzinfo=None) if database_url.startswith("sqlite") else T0,
                    "target": f"user:{i}",
                    "detail": '{"old": true}',
                },
            )
    engine.dispose()
    migrate.upgrade(database_url)
    db = Database(database_url)
    try:
        write_rows(db, 1)
        with db.sessionmaker() as session:
            result = audit.verify(session)
        assert (result.ok, result.rows) == (True, 4)
    finally:
        db.dispose()


def test_audit_page_filters_and_shows_local_time(client: TestClient) -> None:
    login(client)
    client.post("/api/v1/login", json={"username": "nobody", "password": "wrong-wrong"})
    login(client)
    page = client.get("/audit?action=login.failed")
    assert page.status_code == 200
    assert page.text.count("data-audit-id=") == 1 and "user:nobody" in page.text
    assert "Asia/Ho_Chi_Minh" in page.text
    # The fake clock stands at 09:00 UTC: the page shows 16:00 in Ho Chi Minh City, UTC on hover.
    assert 'title="2025-03-01 09:00:00 UTC">2025-03-01 16:00:00</time>' in page.text
    assert client.get("/audit?from=yesterday").status_code == 422
    api = client.get("/api/v1/audit", params={"action": "login."}).json()
    assert [row["action"] for row in api["rows"]] == ["login", "login.failed", "login"]
    assert client.get("/api/v1/audit/verify").json()["ok"] is True


def test_audit_page_is_for_admins_and_supervisors(client: TestClient, db: Database) -> None:
    from central import users

    with db.session() as session:
        for name, role in (("lan", "officer"), ("son", "supervisor")):
            users.create_user(
                session,
                username=name,
                role=role,
                password="green-mango-bicycle-41",
                wards=[],
                actor=None,
                now=T0,
                must_change_password=False,
            )
    login(client, "lan", "green-mango-bicycle-41")
    assert client.get("/audit").status_code == 403
    assert client.get("/api/v1/audit").status_code == 403
    login(client, "son", "green-mango-bicycle-41")
    assert client.get("/audit").status_code == 200
    assert client.get("/api/v1/audit").status_code == 200
    assert client.get("/api/v1/audit/verify").status_code == 403  # verification is the admin's


def test_downgrade_below_0003_and_back_keeps_the_chain(database_url: str) -> None:
    """0003's downgrade drops the guards and the hash columns; upgrading again re-chains the kept rows."""
    from alembic import command

    migrate.upgrade(database_url)
    db = Database(database_url)
    try:
        write_rows(db, 3)
    finally:
        db.dispose()
    command.downgrade(migrate.alembic_config(database_url), "0002")
    assert migrate.current_revision(database_url) == "0002"
    migrate.upgrade(database_url)
    db = Database(database_url)
    try:
        with db.sessionmaker() as session:
            result = audit.verify(session)
        assert (result.ok, result.rows) == (True, 3)
        with pytest.raises(DBAPIError, match="append-only"):
            execute(db, "DELETE FROM audit_log")
    finally:
        db.dispose()


def test_a_supervisor_reads_only_their_wards_rows(client: TestClient, db: Database) -> None:
    from central import users
    from central.db.models import WardRow

    with db.session() as session:
        session.add_all([WardRow(ward_id=w, name=w, created_at=T0) for w in ("p-ben-nghe", "p-da-kao")])
        session.flush()
        for name, role, ward in (
            ("son", "supervisor", "p-ben-nghe"),
            ("lan", "officer", "p-ben-nghe"),
            ("minh", "officer", "p-da-kao"),
        ):
            users.create_user(
                session,
                username=name,
                role=role,
                password="green-mango-bicycle-41",
                wards=[ward],
                actor="admin",
                now=T0,
                must_change_password=False,
            )
        audit.record(session, None, "ward.update", "ward:p-da-kao", at=T0)
        audit.record(session, None, "ward.update", "ward:p-ben-nghe", at=T0)
    login(client, "son", "green-mango-bicycle-41")
    rows = client.get("/api/v1/audit", params={"limit": 500}).json()["rows"]
    seen = {(row["action"], row["target"]) for row in rows}
    assert ("user.create", "user:lan") in seen and ("ward.update", "ward:p-ben-nghe") in seen
    assert ("user.create", "user:minh") not in seen and ("ward.update", "ward:p-da-kao") not in seen
    page = client.get("/audit").text
    assert "user:lan" in page and "user:minh" not in page
    login(client)  # the admin reads everything
    everything = {row["target"] for row in client.get("/api/v1/audit", params={"limit": 500}).json()["rows"]}
    assert {"user:minh", "ward:p-da-kao"} <= everything

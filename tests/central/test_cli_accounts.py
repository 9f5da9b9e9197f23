"""``streetwatch-central users ...`` run as the installed console script against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from central.db import migrate
from central.db.models import AuditRow, WardRow
from central.db.session import Database
from tests.central.factories import T0

PASSWORD = "green-mango-bicycle-41"


def script() -> str:
    found = Path(sys.executable).parent / "streetwatch-central"
    if found.exists():
        return str(found)
    on_path = shutil.which("streetwatch-central")
    if on_path is None:
        pytest.fail("the streetwatch-central console script is not installed (pip install -e '.[central]')")
    return on_path


def run(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_")}
    env["STREETWATCH_DATABASE_URL"] = database_url
    return subprocess.run(
        [script(), *args], input=stdin, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def wards_db(database_url: str) -> str:
    migrate.upgrade(database_url)
    database = Database(database_url)
    with database.session() as session:
        session.add_all(
            [
                WardRow(ward_id="p-ben-nghe", name="Phường Bến Nghé", created_at=T0),
                WardRow(ward_id="p-da-kao", name="Phường Đa Kao", created_at=T0),
            ]
        )
    database.dispose()
    return database_url


def test_users_add_list_disable(wards_db: str) -> None:
    added = run(
        wards_db,
        "users",
        "add",
        "lan",
        "--role",
        "officer",
        "--ward",
        "p-ben-nghe",
        "--ward",
        "p-da-kao",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert "created lan (officer; wards: p-ben-nghe, p-da-kao)" in added.stdout
    listed = run(wards_db, "users", "list", "--json")
    rows = {row["username"]: row for row in json.loads(listed.stdout)}
    assert rows["lan"] == {
        "username": "lan",
        "role": "officer",
        "wards": ["p-ben-nghe", "p-da-kao"],
        "disabled": False,
        "must_change_password": True,
    }
    disabled = run(wards_db, "users", "disable", "lan")
    assert disabled.returncode == 0 and "disabled lan; 0 session(s) ended" in disabled.stdout
    table = run(wards_db, "users", "list").stdout.splitlines()
    assert table[0].split() == ["USERNAME", "ROLE", "STATE", "WARDS"]
    assert table[1].split() == ["lan", "officer", "disabled", "p-ben-nghe,", "p-da-kao"]
    database = Database(wards_db)
    with database.session() as session:
        rows_ = session.scalars(select(AuditRow).order_by(AuditRow.id)).all()
        assert [(r.action, r.target) for r in rows_] == [
            ("user.create", "user:lan"),
            ("user.disable", "user:lan"),
        ]
        assert rows_[0].username is not None and rows_[0].username.startswith("@cli:")
    database.dispose()
    assert run(wards_db, "audit", "verify").stdout.strip() == "audit chain OK: 2 row(s)"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ("users", "add", "lan", "--role", "officer", "--ward", "p-nowhere"),
            PASSWORD,
            "unknown ward(s) p-nowhere (known: p-ben-nghe, p-da-kao)",
        ),
        (("users", "add", "lan", "--role", "officer"), "aaaaaaaaaaaa", "too easy to guess"),
        (("users", "add", "Lan Anh", "--role", "officer"), PASSWORD, "must be 2-64 characters"),
        (("users", "disable", "ghost"), "", "no user 'ghost'"),
    ],
)
def test_refusals_are_explained(wards_db: str, args: tuple[str, ...], stdin: str, message: str) -> None:
    done = run(wards_db, *args, stdin=stdin + "\n")
    assert done.returncode == 1
    assert message in done.stderr


def test_bad_role_is_a_usage_error(wards_db: str) -> None:
    done = run(wards_db, "users", "add", "lan", "--role", "boss")
    assert done.returncode == 2 and "invalid choice: 'boss'" in done.stderr


def test_generated_password_is_printed_and_works(wards_db: str) -> None:
    done = run(wards_db, "users", "add", "minh", "--role", "supervisor", "--generate-password")
    assert done.returncode == 0, done.stderr
    password = done.stdout.split("temporary password: ")[1].split()[0]
    from central import users

    database = Database(wards_db)
    with database.session() as session:
        assert users.authenticate(session, "minh", password) is not None
    database.dispose()

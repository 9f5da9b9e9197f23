"""Fixtures for central's tests: isolated settings, a migrated temp database, an app client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from central import security
from central.app import create_app
from central.db import migrate
from central.db.session import Database
from central.messaging.ingest import Ingestor
from central.settings import ENV_PREFIX, Settings
from tests.central.factories import T0, TOPICS

# Every database-backed test runs twice: on a temp SQLite file ([sqlite]) and on PostgreSQL ([postgresql]),
# the session's ``postgres_url`` (tests/conftest.py, tests/pg.py): a throwaway server started for the run, or
# TEST_POSTGRES_URL (postgresql+psycopg://user:pass@host/db, a throwaway database). Its public schema is
# dropped before every test. No PostgreSQL: the [postgresql] runs are skipped locally, and fail in CI.
BACKENDS = ("sqlite", "postgresql")
RESET_LOCK_TIMEOUT = "10s"  # a connection a previous test leaked fails the reset instead of hanging it

ADMIN_PASSWORD = "correct-horse-battery"
NODE_TOKEN = "node-token-0123456789abcdef"
SECRET_KEY = "s" * 48


class FakeClock:
    """An injectable clock: tests move time explicitly instead of sleeping."""

    def __init__(self, start: datetime = T0 + timedelta(hours=1)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from what a test passes, never from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters: production cost (~64 MiB, 3 passes) per login would dominate the suite."""
    monkeypatch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"SET LOCAL lock_timeout = '{RESET_LOCK_TIMEOUT}'"))
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a temp SQLite file, or the session's PostgreSQL database, reset."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")  # started only when a [postgresql] test runs
        _reset_postgres(url)
        return url
    return f"sqlite:///{tmp_path / 'db' / 'central.db'}"


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "admin_password": ADMIN_PASSWORD,
            "node_token": NODE_TOKEN,
            "secret_key": SECRET_KEY,
            "mqtt_enabled": False,
            "max_evidence_bytes": 64 * 1024,
            # Tests ingest events of made-up nodes; enrollment checks: tests/central/messaging/test_workers.py.
            "ingest_require_enrollment": False,
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    migrate.upgrade(settings.database_url)
    database = Database(settings.database_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def ingestor(db: Database, clock: FakeClock) -> Ingestor:
    return Ingestor(db, TOPICS, clock=clock)


@pytest.fixture
def client(settings: Settings, clock: FakeClock) -> Iterator[TestClient]:
    """A TestClient with the app's lifespan running (migrations, admin bootstrap; MQTT off)."""
    app = create_app(settings, clock=clock)
    with TestClient(app) as test_client:
        yield test_client


def login(client: TestClient, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    """Log in through the API and send the session's CSRF token on every later request, as a front end does."""
    response = client.post("/api/v1/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]


@pytest.fixture
def admin(client: TestClient) -> TestClient:
    """The client, logged in as the bootstrap admin."""
    login(client)
    return client

"""Shared fixtures for every test package: free ports and a real Mosquitto broker.

The ``mosquitto`` fixture runs the real broker binary (the one production uses) on a free loopback port with
an anonymous, non-persistent configuration. Without the binary the tests that need it are skipped locally, but
fail in CI (``CI`` set), where a silently skipped integration test would hide a broken pipeline.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
BROKER_START_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until ``host:port`` accepts TCP connections; raise with a reason on timeout or early exit."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with status {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s} s") from None
            time.sleep(0.02)


def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.02, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value (returned) or fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {message}")
        time.sleep(interval_s)


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    for candidate in MOSQUITTO_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    return None


@dataclass(frozen=True)
class MosquittoBroker:
    """A running test broker: connect to ``host:port``; ``log_path`` holds its log for failure analysis."""

    host: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_mosquitto(directory: Path, port: int | None = None) -> MosquittoBroker:
    """Start mosquitto with a temp config in ``directory``; skip/fail when the binary is missing."""
    binary = find_mosquitto()
    if binary is None:
        reason = "mosquitto binary not found (apt-get install mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the broker integration tests")
        pytest.skip(reason)
    port = port or free_port()
    log_path = directory / "mosquitto.log"
    config = directory / "mosquitto.conf"
    config.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence false",
                # As root, Mosquitto drops to user "mosquitto", which cannot write pytest's 0700 tmp dirs.
                *(["user root"] if os.geteuid() == 0 else []),
                f"log_dest file {log_path}",
                "log_type all",
                "",
            ]
        )
    )
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port("127.0.0.1", port, BROKER_START_TIMEOUT_S, process)
    except (RuntimeError, TimeoutError) as exc:
        process.kill()
        _, stderr = process.communicate(timeout=5)
        raise RuntimeError(f"mosquitto did not start: {exc}\n{stderr.decode(errors='replace')}") from exc
    return MosquittoBroker("127.0.0.1", port, log_path, process)


def stop_mosquitto(broker: MosquittoBroker) -> None:
    broker.process.terminate()
    try:
        broker.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        broker.process.kill()
        broker.process.wait(timeout=5)
    if broker.process.stderr is not None:
        broker.process.stderr.close()


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A fresh Mosquitto per test on a free loopback port (``.host``, ``.port``, ``.log()``)."""
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield broker
    finally:
        stop_mosquitto(broker)


@pytest.fixture(scope="session")
def mosquitto_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """One Mosquitto shared by a whole test session (cheaper; use unique client ids and topics)."""
    broker = start_mosquitto(tmp_path_factory.mktemp("mosquitto-session"))
    try:
        yield broker
    finally:
        stop_mosquitto(broker)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of an empty PostgreSQL database for the session: TEST_POSTGRES_URL, else a throwaway server.

    Without either the tests that need it are skipped locally and fail in CI; see ``tests/pg.py``.
    """
    from tests.pg import provide_postgres_url

    yield from provide_postgres_url()

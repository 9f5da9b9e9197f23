"""Helpers for the delivery tests (no tests here): a Mosquitto that can be SIGKILLed and restarted on its
persistence file, central's real MQTT ingest on a temp SQLite database, and the load generator process.

Mosquitto's persistence is a snapshot of its in-memory state, not a write-ahead log: ``autosave_interval 1``
with ``autosave_on_changes true`` writes it after every change (new session, subscription, queued message),
which is what a deployment that must survive a broker crash needs too. ``max_queued_messages 0`` lifts the
default cap of 1000 queued messages per offline client (beyond it Mosquitto silently drops QoS 1 messages).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from central.db import migrate
from central.db.models import EventRow
from central.db.session import Database
from central.messaging.ingest import Ingestor
from central.messaging.subscriber import MqttSubscriber
from edge_agent.contract import Topics
from tests.conftest import find_mosquitto, free_port, wait_for_port
from tests.paths import ROOT

TOPICS = Topics()
LOADGEN = ROOT / "scripts" / "outbox_loadgen.py"


@dataclass
class Broker:
    """A Mosquitto process that tests may kill and restart on the same port and persistence folder."""

    directory: Path
    port: int = field(default_factory=free_port)
    persistent: bool = True
    defaults: bool = False  # Mosquitto's own limits (max_queued_messages 1000), as an untuned install has
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            if os.environ.get("CI"):
                pytest.fail("mosquitto binary not found; CI must run the delivery tests")
            pytest.skip("mosquitto binary not found (apt-get install mosquitto)")
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"log_dest file {self.directory / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if not self.defaults:
            lines.append("max_queued_messages 0")
        if (
            os.geteuid() == 0
        ):  # mosquitto run as root drops to user 'mosquitto', who cannot write our temp dirs
            lines.append("user root")
        if self.persistent:
            lines += [
                "persistence true",
                f"persistence_location {self.directory}/",
                "autosave_interval 1",
                "autosave_on_changes true",
            ]
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port("127.0.0.1", self.port, 10.0, self.process)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final persistence write."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@contextmanager
def running_broker(directory: Path, *, persistent: bool = True) -> Iterator[Broker]:
    broker = Broker(directory, persistent=persistent)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class CentralIngest:
    """Central's real subscriber and ingestor writing to a migrated temp SQLite database."""

    def __init__(
        self, url: str, port: int, *, client_id: str | None = None, shared_group: str | None = None
    ) -> None:
        self.db = Database(url)
        self.ingestor = Ingestor(self.db, TOPICS)
        self.subscriber = MqttSubscriber(
            self.ingestor,
            TOPICS,
            host="127.0.0.1",
            port=port,
            client_id=client_id or f"central-test-{uuid.uuid4().hex[:8]}",
            shared_group=shared_group,
        )

    def start(self, timeout_s: float = 15.0) -> CentralIngest:
        self.subscriber.start()
        assert self.subscriber.wait_connected(timeout_s), "central ingest did not subscribe"
        return self

    def count(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(func.count()).select_from(EventRow)) or 0)

    def seqs(self) -> list[int]:
        """The ``seq`` measurement of every stored event (the load generator's index), sorted."""
        with self.db.session() as session:
            return sorted(int(m["seq"]) for m in session.scalars(select(EventRow.measurements)))

    def stop(self) -> None:
        self.subscriber.stop()
        self.db.dispose()


def central_db(tmp: Path, name: str = "central") -> str:
    url = f"sqlite:///{tmp / f'{name}.db'}"
    migrate.upgrade(url)
    return url


@contextmanager
def central_ingest(tmp: Path, port: int, **kw: Any) -> Iterator[CentralIngest]:
    ingest = CentralIngest(central_db(tmp), port, **kw).start()
    try:
        yield ingest
    finally:
        ingest.stop()


def node_config(tmp: Path, node_id: str, mqtt_port: int, **over: Any) -> Path:
    """An agent config for the load generator (the model and camera are never opened by the publisher)."""
    mqtt = {"host": "127.0.0.1", "port": mqtt_port, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}
    mqtt.update(over.pop("mqtt", {}))
    # Central acknowledges within well under a second here; 10 s of silence means the broker lost the event.
    outbox = {"retry_initial_s": 0.2, "retry_max_s": 1.0, "drain_timeout_s": 5.0, "ack_timeout_s": 10.0}
    outbox.update(over.pop("outbox", {}))
    cfg: dict[str, Any] = {
        "node_id": node_id,
        "mqtt": mqtt,
        "outbox": outbox,
        "model": {"path": str(tmp / "unused.onnx")},
        "evidence_dir": str(tmp / f"{node_id}-evidence"),
        "cameras": [{"id": "cam-1", "source": str(tmp / "unused.mp4")}],
    }
    cfg.update(over)
    path = tmp / f"{node_id}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def outbox_rows(tmp: Path) -> dict[str, int]:
    """Rows still owed to central in a node's outbox file, by class (read directly, as a technician would)."""
    with sqlite3.connect(tmp / "outbox.sqlite3") as db:
        rows = dict(db.execute("SELECT klass, COUNT(*) FROM messages GROUP BY klass").fetchall())
        rows["uploads"] = db.execute("SELECT COUNT(*) FROM uploads").fetchone()[0]
    return rows


def outbox_drops(tmp: Path) -> dict[str, int]:
    with sqlite3.connect(tmp / "outbox.sqlite3") as db:
        return {f"{k}.{r}": n for k, r, n in db.execute("SELECT klass, reason, n FROM drops")}


class Loadgen:
    """``scripts/outbox_loadgen.py`` as a real process; its JSON lines are collected as they come."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = config.with_suffix(f".{time.monotonic_ns()}.log")
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(LOADGEN), "--config", str(config), *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                continue

    def wait_json(self, key: str, timeout_s: float) -> dict[str, Any]:
        """The first JSON line with ``key`` (failing the test with the process log after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        for line in self.seen:
            if key in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if key in line:
                return line
        pytest.fail(f"load generator gave no {key!r} line in {timeout_s} s:\n{self.stderr()}")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"load generator still running after {timeout_s} s:\n{self.stderr()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextmanager
def loadgen(config: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Loadgen]:
    gen = Loadgen(config, *args, env=env)
    try:
        yield gen
    finally:
        gen.stop()

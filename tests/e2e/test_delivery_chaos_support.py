"""Helpers for the chaos tests (no tests here): a TCP proxy that cuts the node's link on demand, and central as a
real process (``central.cli``: API, evidence uploads, MQTT ingest) that tests SIGKILL and restart."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, wait_until
from tests.paths import ROOT

ADMIN_PASSWORD = "chaos-admin-passphrase"
NODE_TOKEN = "chaos-node-token-0123456789"


class LinkProxy:
    """A loopback TCP proxy between a node and its broker; ``cut()`` closes every connection at once, like a
    home Wi-Fi dropping (the node sees the link die and reconnects; the broker sees the socket close)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cuts = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
                upstream.settimeout(None)
            except OSError:  # the broker is down: the node's connect fails, as it would
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self) -> None:
        with self._lock:
            victims, self._sockets = self._sockets, []
        for s in victims:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.cuts += 1

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()
        self.cut()


class CentralProcess:
    """``central.cli`` on a fixed HTTP port, SQLite file and MQTT client id, so a restart resumes its session."""

    def __init__(self, tmp: Path, mqtt_port: int, *, embedded: bool = False, **env: str) -> None:
        self.tmp = tmp
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.db_path = tmp / "central.db"
        self.log = tmp / "central.log"
        self.env = {
            **os.environ,
            "STREETWATCH_DATABASE_URL": f"sqlite:///{self.db_path}",
            "STREETWATCH_DATA_DIR": str(tmp / "central"),
            "STREETWATCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "STREETWATCH_NODE_TOKEN": NODE_TOKEN,
            "STREETWATCH_MQTT_HOST": "127.0.0.1",
            "STREETWATCH_MQTT_PORT": str(mqtt_port),
            "STREETWATCH_MQTT_CLIENT_ID": "central-chaos-test",
            **env,
        }
        if embedded:  # central starts its own broker on mqtt_port
            self.env.pop("STREETWATCH_MQTT_HOST")
            self.env.pop("STREETWATCH_MQTT_PORT")
            self.env["STREETWATCH_EMBEDDED_MQTT_PORT"] = str(mqtt_port)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "--host", "127.0.0.1", "--port", str(self.http_port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(self.healthy, 90, 0.1, "central healthy and subscribed")

    def healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"central exited:\n{self.tail()}"
        try:
            r = httpx.get(f"{self.url}/healthz", timeout=2)
            return r.status_code == 200 and bool(r.json()["mqtt"]["connected"])
        except httpx.HTTPError:
            return False

    def admin(self) -> httpx.Client:
        """Logged in as the bootstrap admin (for enrollment tokens)."""
        client = httpx.Client(base_url=self.url, timeout=30)
        r = client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf_token"]  # every JSON write sends it
        return client

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=5).json()
        return body

    def dead_letters(self) -> list[str]:
        return [str(r[0]) for r in self._query("SELECT error FROM dead_letters ORDER BY id")]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def _query(self, sql: str) -> list[tuple[object, ...]]:
        if not self.db_path.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=30)) as db:
            return list(db.execute(sql).fetchall())

    def count(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM events")
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def seqs(self) -> list[int]:
        """The load generator's ``seq`` of every stored event, sorted (a duplicate would appear twice)."""
        rows = self._query("SELECT json_extract(measurements, '$.seq') FROM events")
        return sorted(int(r[0]) for r in rows)  # type: ignore[call-overload]

    def without_evidence(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM events WHERE json_array_length(evidence) = 0")
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def evidence_count(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM evidence")
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

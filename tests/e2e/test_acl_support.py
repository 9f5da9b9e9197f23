"""Helpers for the fleet e2e tests (no tests here): an authenticated Mosquitto driven by central's files, a
central process that manages them, enrollment through the real CLI, and a small synchronous MQTT probe.

The broker reads the ``password_file``/``acl_file`` central writes and central reloads it with SIGHUP through a
pid file (written here from the process, so the test does not depend on where Mosquitto may write one). As
root, Mosquitto would drop to the ``mosquitto`` user, which cannot read the 0640 files a root test writes;
``user root`` keeps it as is (ignored when not run as root).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from central.messaging.broker_auth import render_acl_file, render_password_file, stable_hash
from edge_agent.contract import Topics
from edge_agent.node.enroll import NodeCredentials, load_credentials
from tests.conftest import find_mosquitto, free_port, wait_for_port, wait_until
from tests.paths import ROOT

TOPICS = Topics()
CENTRAL_USER = "central"
CENTRAL_PASSWORD = "central-broker-password-0123456789"
ADMIN_PASSWORD = "fleet-e2e-admin-passphrase"
SHARED_NODE_TOKEN = "fleet-e2e-shared-token-0123456789"
TIMEOUT_S = 10.0


@dataclass
class AuthBroker:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def password_file(self) -> Path:
        return self.directory / "passwd"

    @property
    def acl_file(self) -> Path:
        return self.directory / "acl"

    @property
    def pid_file(self) -> Path:
        return self.directory / "mosquitto.pid"

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def auth_broker(directory: Path) -> Iterator[AuthBroker]:
    """Mosquitto with no anonymous access, on the files central would write for a fleet of no nodes yet."""
    binary = find_mosquitto()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto binary not found; CI must run the broker integration tests")
        pytest.skip("mosquitto binary not found (apt-get install mosquitto)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    broker_hash = stable_hash(CENTRAL_USER, CENTRAL_PASSWORD)
    (directory / "passwd").write_text(render_password_file(CENTRAL_USER, broker_hash, []))
    (directory / "acl").write_text(render_acl_file(TOPICS, CENTRAL_USER, []))
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous false",
        f"password_file {directory / 'passwd'}",
        f"acl_file {directory / 'acl'}",
        "persistence false",
        f"log_dest file {directory / 'mosquitto.log'}",
        "log_type all",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    (directory / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([binary, "-c", str(directory / "mosquitto.conf")], stderr=subprocess.DEVNULL)
    broker = AuthBroker(port, directory, proc)
    try:
        wait_for_port("127.0.0.1", port, TIMEOUT_S, proc)
        broker.pid_file.write_text(f"{proc.pid}\n")
        yield broker
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass
class CentralProcess:
    url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def admin(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=TIMEOUT_S)
        r = client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf_token"]  # every JSON write sends it
        return client


@contextmanager
def central_process(
    tmp: Path, broker: AuthBroker, extra_env: dict[str, str] | None = None
) -> Iterator[CentralProcess]:
    """``streetwatch-central`` managing the broker's files, ingesting through it with its own account."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_")}
    env.update(
        STREETWATCH_DATABASE_URL=f"sqlite:///{tmp / 'central.db'}",
        STREETWATCH_DATA_DIR=str(tmp / "central"),
        STREETWATCH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        STREETWATCH_NODE_TOKEN=SHARED_NODE_TOKEN,
        STREETWATCH_MQTT_HOST="127.0.0.1",
        STREETWATCH_MQTT_PORT=str(broker.port),
        STREETWATCH_MQTT_USERNAME=CENTRAL_USER,
        STREETWATCH_MQTT_PASSWORD=CENTRAL_PASSWORD,
        STREETWATCH_MQTT_CLIENT_ID=f"central-{port}",
        STREETWATCH_BROKER_PASSWORD_FILE=str(broker.password_file),
        STREETWATCH_BROKER_ACL_FILE=str(broker.acl_file),
        STREETWATCH_BROKER_PID_FILE=str(broker.pid_file),
        STREETWATCH_FLEET_SYNC_S="1",
    )
    env.update(extra_env or {})
    log = tmp / "central.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    central = CentralProcess(f"http://127.0.0.1:{port}", log, proc)

    def healthy() -> bool:
        assert proc.poll() is None, f"central exited early:\n{log.read_text()}"
        try:
            r = httpx.get(f"{central.url}/healthz", timeout=2)
            return r.status_code == 200 and bool(r.json()["mqtt"]["connected"])
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout_s=60, message="central healthy and subscribed with its broker account")
        yield central
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cli_enroll(central: CentralProcess, admin: httpx.Client, name: str, state: Path) -> NodeCredentials:
    """A one-time token from the API, then ``streetwatch-agent enroll`` as a technician would run it."""
    token = admin.post("/api/v1/enrollment-tokens").json()["token"]
    args = ["--central", central.url, "--token", "-", "--node-name", name, "--state-dir", str(state)]
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.node.cli", "enroll", *args],
        cwd=ROOT,
        input=token + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "enrolled as node" in done.stdout
    creds = load_credentials(state)
    assert creds is not None
    return creds


@dataclass
class Probe:
    """A synchronous MQTT client for assertions: CONNACK, SUBACK and PUBACK codes, received messages."""

    username: str
    password: str
    port: int
    v5: bool = False
    client_id: str = ""
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    connack: ReasonCode | None = None
    _events: dict[int, threading.Event] = field(default_factory=dict)
    _codes: dict[int, list[ReasonCode]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"probe-{self.username}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        self.client.username_pw_set(self.username, self.password)
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_subscribe = self._on_ack
        self.client.on_publish = self._on_puback
        self.client.on_message = self._on_message

    def connect(self) -> ReasonCode:
        """Connect and return the CONNACK reason (a failure code when the broker refuses)."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(TIMEOUT_S):
            raise TimeoutError("no CONNACK")
        assert self.connack is not None
        return self.connack

    def subscribe(self, topic: str) -> list[ReasonCode]:
        _, mid = self.client.subscribe(topic, qos=1)
        return self._wait(mid)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> ReasonCode | None:
        """Publish at QoS 1 and return the PUBACK reason (MQTT 5; None on 3.1.1, which has none)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        codes = self._wait(info.mid)
        return codes[0] if codes else None

    def received(self, topic: str, payload: bytes | None = None) -> bool:
        with self._lock:
            return any(t == topic and (payload is None or p == payload) for t, p in self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _wait(self, mid: int) -> list[ReasonCode]:
        with self._lock:
            event = self._events.setdefault(mid, threading.Event())
        if not event.wait(TIMEOUT_S):
            raise TimeoutError(f"no acknowledgement for message id {mid}")
        return self._codes.pop(mid, [])

    def _ack(self, mid: int, codes: list[ReasonCode]) -> None:
        with self._lock:
            self._codes[mid] = codes
            self._events.setdefault(mid, threading.Event()).set()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: Properties | None
    ) -> None:
        self.connack = rc
        self._connected.set()

    def _on_ack(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        codes: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        self._ack(mid, codes)

    def _on_puback(
        self, client: mqtt.Client, userdata: object, mid: int, rc: ReasonCode, props: Properties | None
    ) -> None:
        self._ack(mid, [rc] if self.v5 else [])

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))


@contextmanager
def probe(username: str, password: str, port: int, *, v5: bool = False) -> Iterator[Probe]:
    p = Probe(username, password, port, v5=v5)
    code = p.connect()
    assert not code.is_failure, f"{username} refused: {code}"
    try:
        yield p
    finally:
        p.close()

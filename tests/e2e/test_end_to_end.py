"""The spine through real parts: a real broker (Mosquitto, or central's embedded amqtt), central and the agent
as real processes, the real int8 YOLO11n on the real Omotesando clip with a zone over the left kerb.

Asserts central stored illegal-stopping events about vehicles standing in the zone, that the evidence it
serves hashes to what the event says, and that an officer's decision over HTTP is stored.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from edge_agent.geometry import point_in_polygon
from tests.conftest import free_port, wait_until
from tests.paths import MODEL_640, ROOT, TOKYO

pytestmark = pytest.mark.e2e

KERB = [[0.10, 0.96], [0.25, 0.96], [0.385, 0.62], [0.33, 0.62]]
ADMIN_PASSWORD = "e2e-officer-passphrase"
NODE_TOKEN = "e2e-node-token-0123456789"


@dataclass
class Central:
    url: str
    mqtt_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path


def start_central(tmp: Path, mqtt_host: str | None, mqtt_port: int) -> Central:
    port = free_port()
    env = dict(os.environ)
    env.update(
        STREETWATCH_DATABASE_URL=f"sqlite:///{tmp / 'central.db'}",
        STREETWATCH_DATA_DIR=str(tmp / "central"),
        STREETWATCH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        STREETWATCH_NODE_TOKEN=NODE_TOKEN,
        # This test follows an event from the camera to the officer; enrollment and the authenticated embedded
        # Mosquitto are tested in tests/e2e/test_embedded_broker.py and tests/central/messaging/test_workers.py.
        STREETWATCH_INGEST_REQUIRE_ENROLLMENT="false",
        STREETWATCH_EMBEDDED_BROKER="amqtt",
    )
    if mqtt_host:
        env.update(STREETWATCH_MQTT_HOST=mqtt_host, STREETWATCH_MQTT_PORT=str(mqtt_port))
    else:
        env.pop("STREETWATCH_MQTT_HOST", None)
        env.update(STREETWATCH_EMBEDDED_MQTT_HOST="127.0.0.1", STREETWATCH_EMBEDDED_MQTT_PORT=str(mqtt_port))
    log = tmp / "central.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, f"central exited early:\n{log.read_text()}"
        try:
            r = httpx.get(f"{url}/healthz", timeout=2)
            return r.status_code == 200 and r.json()["mqtt"]["connected"]
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout_s=60, message="central healthy and subscribed")
    return Central(url, mqtt_port, tmp / "central", proc, log)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_agent(tmp: Path, central: Central) -> subprocess.CompletedProcess[str]:
    cfg = {
        "node_id": "e2e-node",
        "central_url": central.url,
        "mqtt": {"host": "127.0.0.1", "port": central.mqtt_port},
        "model": {"path": str(MODEL_640)},
        "evidence_dir": str(tmp / "agent-evidence"),
        "cameras": [
            {
                "id": "omotesando-01",
                "source": str(TOKYO),
                "realtime": False,
                "detect_fps": 5,
                "zones": [{"id": "left-kerb", "polygon": KERB}],
                "rules": [
                    {"id": "no-stopping", "type": "illegal_stopping", "zone": "left-kerb", "min_dwell_s": 5}
                ],
            }
        ],
    }
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, STREETWATCH_NODE_TOKEN=NODE_TOKEN)
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.node.cli", "run", "--config", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(params=["mosquitto", "embedded"])
def central(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Central]:
    if request.param == "mosquitto":
        broker = request.getfixturevalue("mosquitto")
        c = start_central(tmp_path, broker.host, broker.port)
    else:
        c = start_central(tmp_path, None, free_port())
    try:
        yield c
    finally:
        code = stop(c.proc)
        assert code == 0, f"central did not stop cleanly ({code}):\n{c.log.read_text()[-3000:]}"


def test_kerbside_stopping_reaches_the_officer_and_is_decided(central: Central, tmp_path: Path) -> None:
    result = run_agent(tmp_path, central)
    assert result.returncode == 0, result.stderr[-3000:]

    client = httpx.Client(base_url=central.url, timeout=10)
    login = client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert login.status_code == 200
    client.headers["X-CSRF-Token"] = login.json()["csrf_token"]  # every JSON write sends it

    def stored() -> list[dict[str, object]]:
        r = client.get("/api/v1/events", params={"type": "illegal_stopping", "status": "all"})
        r.raise_for_status()
        events: list[dict[str, object]] = r.json()["events"]  # one keyset page (the queue's API)
        return events

    wait_until(lambda: len(stored()) > 0, timeout_s=30, message="events stored at central")
    events = stored()
    for ev in events:
        assert ev["node_id"] == "e2e-node" and ev["camera_id"] == "omotesando-01"
        assert ev["zone_id"] == "left-kerb" and ev["rule_id"] == "no-stopping"
        assert ev["measurements"]["dwell_s"] >= 5.0  # type: ignore[index]
        for obj in ev["objects"]:  # type: ignore[attr-defined]
            assert obj["label"] in {"car", "truck", "bus", "motorcycle"}
            box = obj["box"]
            anchor = ((box["x1"] + box["x2"]) / 2, box["y2"])
            # the vehicle stands at the kerb: its ground point is in (or within 2% of) the zone
            near = [(anchor[0] + dx, anchor[1] + dy) for dx in (-0.02, 0, 0.02) for dy in (-0.02, 0, 0.02)]
            assert any(point_in_polygon(p, [tuple(v) for v in KERB]) for p in near), anchor

    # Every START carries an annotated snapshot; the bytes central serves hash to the reference.
    starts = [ev for ev in events if ev["evidence"]]
    assert starts, "no event with evidence"
    for ev in starts:
        ref = ev["evidence"][0]  # type: ignore[index]
        assert ref["kind"] == "snapshot_annotated" and ref["content_type"] == "image/jpeg"
        wait_until(
            lambda ref=ref: client.get(f"/evidence/{ref['sha256']}").status_code == 200,
            timeout_s=10,
            message="evidence served",
        )
        body = client.get(f"/evidence/{ref['sha256']}").content
        assert hashlib.sha256(body).hexdigest() == ref["sha256"]
        assert len(body) == ref["size"] and body[:2] == b"\xff\xd8"
        on_disk = central.data_dir / "evidence" / ref["sha256"][:2] / ref["sha256"][2:4] / ref["sha256"]
        assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == ref["sha256"]

    # The review page shows the pending event with its snapshot.
    page = client.get("/review")
    assert page.status_code == 200
    assert f"/evidence/{starts[0]['evidence'][0]['sha256']}" in page.text  # type: ignore[index]

    # An officer confirms one over HTTP; the decision is stored with who and when.
    target = starts[0]["event_id"]
    version = client.get(f"/api/v1/events/{target}").json()["version"]  # a decision names the version it saw
    r = client.post(
        f"/api/v1/events/{target}/decision",
        json={"decision": "confirm", "reason": "kerb, 5 s+", "version": version},
    )
    assert r.status_code == 200, r.text
    detail = client.get(f"/api/v1/events/{target}").json()
    assert detail["review_status"] == "confirmed"
    (decision,) = detail["decisions"]
    assert decision["decision"] == "confirm" and decision["username"] == "admin" and decision["decided_at"]
    pending = client.get("/api/v1/events", params={"status": "pending", "type": "illegal_stopping"}).json()
    assert target not in {e["event_id"] for e in pending["events"]}

"""Evidence upload through a real central process: an upload interrupted by central being down completes after
retries, a corrupted file is refused by central (422) and its event still arrives, without that reference."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from edge_agent.config import load_config
from edge_agent.contract import EvidenceKind
from edge_agent.delivery.publisher import Publisher
from edge_agent.evidence.snapshot import EvidenceStore
from tests.central.factories import make_event
from tests.conftest import free_port, wait_until
from tests.e2e.test_delivery_support import node_config, running_broker
from tests.paths import ROOT

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "delivery-officer-passphrase"
NODE_TOKEN = "delivery-node-token-0123456789"
JPEG = b"\xff\xd8\xff\xe0" + b"kerbside snapshot " * 300 + b"\xff\xd9"


@contextmanager
def central(tmp: Path, http_port: int, mqtt_port: int) -> Iterator[str]:
    """``central.cli`` as a process on a fixed port, database and MQTT client id (so restarts resume)."""
    env = {
        **os.environ,
        "STREETWATCH_DATABASE_URL": f"sqlite:///{tmp / 'central.db'}",
        "STREETWATCH_DATA_DIR": str(tmp / "central"),
        "STREETWATCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "STREETWATCH_NODE_TOKEN": NODE_TOKEN,
        "STREETWATCH_MQTT_HOST": "127.0.0.1",
        "STREETWATCH_MQTT_PORT": str(mqtt_port),
        "STREETWATCH_MQTT_CLIENT_ID": "central-delivery-test",
        "STREETWATCH_INGEST_REQUIRE_ENROLLMENT": "false",  # enrollment: tests/central/messaging/test_workers.py
    }
    log = tmp / "central.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "central.cli",
            "--host",
            "127.0.0.1",
            "--port",
            str(http_port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{http_port}"

    def healthy() -> bool:
        assert proc.poll() is None, f"central exited early:\n{log.read_text()[-3000:]}"
        try:
            r = httpx.get(f"{url}/healthz", timeout=2)
            return r.status_code == 200 and bool(r.json()["mqtt"]["connected"])
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 60, 0.1, "central healthy and subscribed")
        yield url
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


def test_upload_survives_central_downtime_and_a_corrupt_file_is_refused_not_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETWATCH_NODE_TOKEN", NODE_TOKEN)
    http_port = free_port()
    with running_broker(tmp_path / "broker", persistent=False) as broker:
        with central(tmp_path, http_port, broker.port):
            pass  # central's MQTT session now exists on the broker: it queues events while central is down
        cfg = load_config(
            node_config(
                tmp_path,
                "ev-node",
                broker.port,
                central_url=f"http://127.0.0.1:{http_port}",
                outbox={"upload_rate_bytes_s": 200_000, "upload_burst_bytes": 4096},
                mqtt={"heartbeat_s": 1},
            )
        )
        store = EvidenceStore(cfg.evidence_dir)
        good = store.put(JPEG, EvidenceKind.SNAPSHOT_ANNOTATED, "image/jpeg")
        good2 = store.put(JPEG[:-2] + b"!\xff\xd9", EvidenceKind.SNAPSHOT, "image/jpeg")
        bad = store.put(JPEG + b"corrupt-me", EvidenceKind.SNAPSHOT_ANNOTATED, "image/jpeg")
        bad.path.write_bytes(bad.path.read_bytes()[:1000])  # truncated on disk, as after a power cut
        ev_good = make_event(node_id="ev-node", evidence=[good.ref])
        ev_bad = make_event(node_id="ev-node", evidence=[bad.ref, good2.ref])
        publisher = Publisher(cfg, ev_good.model)
        try:
            publisher.submit(ev_good, (good,))
            publisher.submit(ev_bad, (bad, good2))
            publisher.start()
            wait_until(
                lambda: publisher.stats.upload.retries >= 3, 30, 0.05, "uploads retried while central is down"
            )
            assert publisher.stats.published == 0, "an event went out before its evidence was accepted"
            with central(tmp_path, http_port, broker.port) as url:
                wait_until(lambda: publisher.pending == 0, 60, 0.1, "both events delivered")
                assert publisher.stats.upload.accepted == 2 and publisher.stats.upload.refused == 1
                (letter,) = publisher.outbox.dead_letters()
                assert letter["sha256"] == bad.ref.sha256 and letter["reason"] == "refused_by_central"
                assert "HTTP 422" in str(letter["detail"]) and "sha256 mismatch" in str(letter["detail"])
                assert publisher.outbox.stats().drops == {("evidence", "refused_by_central"): 1}

                officer = httpx.Client(base_url=url, timeout=10)
                r = officer.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
                assert r.status_code == 200
                officer.headers["X-CSRF-Token"] = r.json()["csrf_token"]

                def stored(event_id: object) -> dict[str, object] | None:
                    r = officer.get(f"/api/v1/events/{event_id}")
                    return r.json() if r.status_code == 200 else None

                got_good = wait_until(lambda: stored(ev_good.event_id), 30, 0.1, "good event at central")
                got_bad = wait_until(
                    lambda: stored(ev_bad.event_id), 30, 0.1, "corrupt-evidence event at central"
                )
                assert [e["sha256"] for e in got_good["evidence"]] == [good.ref.sha256]  # type: ignore[index]
                assert [e["sha256"] for e in got_bad["evidence"]] == [good2.ref.sha256]  # type: ignore[index]
                assert got_bad["measurements"]["evidence_refused"] == 1.0  # type: ignore[index]
                served = officer.get(f"/evidence/{good.ref.sha256}")
                assert (
                    served.status_code == 200
                    and hashlib.sha256(served.content).hexdigest() == good.ref.sha256
                )
                assert officer.get(f"/evidence/{bad.ref.sha256}").status_code == 404
                # Central refuses the corrupt bytes itself too (the node's dead letter is not a local guess).
                direct = httpx.put(
                    f"{url}/api/v1/evidence/{bad.ref.sha256}",
                    content=bad.path.read_bytes(),
                    headers={"Authorization": f"Bearer {NODE_TOKEN}", "Content-Type": "image/jpeg"},
                )
                assert direct.status_code == 422 and "sha256 mismatch" in direct.json()["detail"]
                assert bad.path.exists(), "the refused file stays on the node for a technician"
                # The node's heartbeats reach central's metrics, drop counters included.
                wait_until(
                    lambda: (
                        'streetwatch_node_outbox_dropped_total{node="ev-node",class="evidence",'
                        'reason="refused_by_central"} 1' in officer.get("/metrics").text
                    ),
                    30,
                    0.2,
                    "the node's heartbeat in central's /metrics",
                )
        finally:
            publisher.close(drain_timeout_s=0)

"""Central's side of delivery: two ingest workers share the events through an MQTT 5 shared subscription on
Mosquitto (each event stored once, every worker still sees every node's status and heartbeats), the setting
that turns it on, and heartbeat ingest into node metrics (here rather than in tests/central, which another
change owns)."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from central.db.models import DeadLetterRow
from central.db.session import Database
from central.messaging.ingest import Ingestor
from central.settings import Settings
from edge_agent.contract import Heartbeat, OutboxHealth
from tests.conftest import wait_until
from tests.e2e.test_delivery_support import (
    TOPICS,
    CentralIngest,
    central_db,
    loadgen,
    node_config,
    outbox_rows,
    running_broker,
)

pytestmark = pytest.mark.e2e


def test_shared_subscription_spreads_events_over_two_workers(tmp_path: Path) -> None:
    total = 400
    with running_broker(tmp_path / "broker", persistent=False) as broker:
        url = central_db(tmp_path)
        workers = [
            CentralIngest(url, broker.port, client_id=f"central-{name}", shared_group="central").start()
            for name in ("a", "b")
        ]
        try:
            # The node speaks MQTT 5 too (clean_start=False with a session expiry, PUBACK reason codes).
            config = node_config(
                tmp_path, "shared-node", broker.port, mqtt={"heartbeat_s": 1, "protocol": "5"}
            )
            with loadgen(config, "--count", str(total), "--batch", "50") as gen:
                wait_until(lambda: workers[0].count() == total, 60, 0.1, f"{total} events stored")
                wait_until(
                    lambda: all("shared-node" in w.ingestor.nodes.latest() for w in workers),
                    30,
                    0.1,
                    "a heartbeat at every worker",
                )
                # Both workers acknowledged their share end to end: the node forgot every event.
                wait_until(lambda: outbox_rows(tmp_path).get("violation", 0) == 0, 30, 0.1, "outbox emptied")
                gen.signal(signal.SIGTERM)
                assert gen.wait(30) == 0, gen.stderr()
            assert workers[0].seqs() == list(range(total))
            counts = [w.ingestor.counters.by_kind() for w in workers]
            events = [sum(n for (kind, _), n in c.items() if kind == "event") for c in counts]
            assert sum(events) == total and min(events) > 0, events  # shared: each event went to one worker
            for c in counts:  # status is a plain subscription: every worker saw the node's retained status
                assert sum(n for (kind, _), n in c.items() if kind == "status") >= 1, c
            metrics = "\n".join(workers[1].ingestor.nodes.prometheus_lines())
            assert 'streetwatch_node_outbox_depth{node="shared-node"}' in metrics
            assert 'streetwatch_node_heartbeat_timestamp_seconds{node="shared-node"}' in metrics
        finally:
            for w in workers:
                w.stop()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"mqtt_shared_group": "central"}, "needs an external broker", id="embedded-broker"),
        pytest.param({"mqtt_host": "mq", "mqtt_shared_group": "a/b"}, "should match pattern", id="bad-name"),
        pytest.param({"mqtt_host": "mq", "mqtt_shared_group": "central"}, None, id="ok"),
    ],
)
def test_shared_group_setting(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str], error: str | None
) -> None:
    for name in ("STREETWATCH_MQTT_HOST", "STREETWATCH_MQTT_SHARED_GROUP"):
        monkeypatch.delenv(name, raising=False)
    values = {"admin_password": "a long passphrase", "node_token": "n" * 20, **overrides}
    if error is None:
        assert Settings(**values).mqtt_shared_group == "central"  # type: ignore[arg-type]
    else:
        with pytest.raises(ValidationError, match=error):
            Settings(**values)  # type: ignore[arg-type]


def test_heartbeat_ingest_keeps_the_newest_and_dead_letters_garbage(tmp_path: Path) -> None:
    db = Database(central_db(tmp_path))
    ingestor = Ingestor(db, TOPICS)
    topic = TOPICS.heartbeat("node-1")

    def beat(at: datetime, node: str = "node-1") -> bytes:
        outbox = OutboxHealth(
            depth=3, uploads=1, bytes=2048, max_bytes=4096, dropped={"telemetry.cap_evicted": 2}
        )
        return Heartbeat(node_id=node, at=at, uptime_s=5.0, outbox=outbox, mqtt_reconnects=0).to_json()

    t0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    try:
        results = [
            ingestor.observe_heartbeat(topic, beat(t0)),
            ingestor.observe_heartbeat(topic, beat(t0 + timedelta(seconds=30))),
            ingestor.observe_heartbeat(topic, beat(t0)),  # a spooled one arriving late
            ingestor.observe_heartbeat(topic, beat(t0 + timedelta(seconds=30))),
            ingestor.observe_heartbeat(topic, b'{"schema": "streetwatch.heartbeat/1"}'),
            ingestor.observe_heartbeat(topic, beat(t0, node="node-2")),  # speaking for another node
        ]
        assert [r.value for r in results] == [
            "inserted",
            "updated",
            "stale",
            "duplicate",
            "dead_letter",
            "dead_letter",
        ]
        assert ingestor.nodes.latest()["node-1"][0].at == t0 + timedelta(seconds=30)
        with db.session() as session:
            errors = [row.error for row in session.scalars(select(DeadLetterRow))]
        assert "outbox: Field required" in errors[0] and "does not match topic node" in errors[1]
        lines = ingestor.nodes.prometheus_lines()
        assert (
            'streetwatch_node_outbox_dropped_total{node="node-1",class="telemetry",reason="cap_evicted"} 2'
            in lines
        )
        assert 'streetwatch_node_outbox_bytes{node="node-1"} 2048' in lines
        # An ingest call on the heartbeat topic is not how heartbeats arrive: it stays "unexpected" there.
        assert ingestor.ingest(topic, beat(t0)).value == "dead_letter"
    finally:
        db.dispose()

"""Delivery under failure, through real processes: Mosquitto SIGKILLed mid-stream, the agent SIGKILLed with a
full spool, a network cut without DISCONNECT (SIGSTOP), and the outbox cap while the broker is down.

The node side is ``scripts/outbox_loadgen.py`` (the real publisher and outbox, synthetic events); central is its
real MQTT subscriber and ingestor on a temp SQLite database. Every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import wait_until
from tests.e2e.test_delivery_support import (
    TOPICS,
    Broker,
    central_ingest,
    loadgen,
    node_config,
    outbox_drops,
    outbox_rows,
    running_broker,
)

pytestmark = pytest.mark.e2e


@pytest.mark.slow
def test_broker_sigkill_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    total, pause_s = 10_000, 2.0
    with running_broker(tmp_path / "broker") as broker, central_ingest(tmp_path, broker.port) as central:
        config = node_config(tmp_path, "load-node", broker.port)
        with loadgen(
            config, "--count", str(total), "--batch", "200", "--exit-when-drained", "--timeout", "240"
        ) as gen:
            gen.wait_json("spooled", 60)
            wait_until(lambda: central.count() >= total * 0.3, 120, 0.05, "30% of the events at central")
            broker.kill()
            at_kill = central.count()
            time.sleep(pause_s)  # the outage: the node keeps spooling and retrying meanwhile
            broker.start()
            assert gen.wait(240) == 0, gen.stderr()
            end = gen.wait_json("drained", 5)
        wait_until(lambda: central.count() == total, 120, 0.2, f"{total} events at central")
        assert at_kill < total, "the broker was killed after the last event: nothing was tested"
        assert central.seqs() == list(range(total))  # every one, none twice (event_id is the primary key)
        assert end["drained"] and end["connects"] >= 2
        assert outbox_rows(tmp_path) == {"uploads": 0}
        counts = central.ingestor.counters.summary()
        print(f"killed at {at_kill} events; ingest counters {json.dumps(counts)}")


class Watcher:
    """Watches a node's retained status and its heartbeats, recording when each arrived (monotonic time)."""

    def __init__(self, port: int, node: str) -> None:
        self.node = node
        self.states: list[tuple[float, str]] = []
        self.beats: list[tuple[float, dict[str, object]]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(TOPICS.status(node), 1), (TOPICS.heartbeat(node), 0)])
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        body = json.loads(msg.payload)
        with self._lock:
            if msg.topic == TOPICS.status(self.node):
                self.states.append((now, body["state"]))
            else:
                self.beats.append((now, body))

    def state(self) -> str | None:
        with self._lock:
            return self.states[-1][1] if self.states else None

    def state_since(self, state: str, after: float) -> float | None:
        with self._lock:
            return next((t for t, s in self.states if s == state and t >= after), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# Mosquitto 2.0.11 compares whole seconds and sweeps its clients for keepalive only every 6 s (src/keepalive.c:
# ``if(last_keepalive_check + 5 < db.now_s)``): the Will comes at most 1 + 6 s after 1.5 x keepalive of silence.
# (The embedded amqtt 0.12 broker never times a silent client out: its ``handle_read_timeout`` is a no-op.)
MOSQUITTO_SWEEP_SLACK_S = 7.0


@pytest.mark.slow
def test_silent_network_cut_turns_the_status_offline_within_keepalive(tmp_path: Path) -> None:
    """SIGSTOP freezes the agent without a DISCONNECT or a TCP reset, like a Wi-Fi that drops: the broker must
    notice on its own (no packet for 1.5 x keepalive) and publish the node's retained Last Will."""
    keepalive = 5
    with running_broker(tmp_path / "broker", persistent=False) as broker:
        config = node_config(
            tmp_path, "cut-node", broker.port, mqtt={"keepalive_s": keepalive, "heartbeat_s": 1}
        )
        watcher = Watcher(broker.port, "cut-node")
        try:
            with loadgen(config) as gen:
                wait_until(lambda: watcher.state() == "online", 30, message="status online")
                wait_until(lambda: len(watcher.beats) >= 2, 30, message="heartbeats")
                gen.signal(signal.SIGSTOP)
                stopped = time.monotonic()
                limit = 1.5 * keepalive + MOSQUITTO_SWEEP_SLACK_S
                wait_until(lambda: watcher.state_since("offline", stopped), limit + 5, 0.02, "status offline")
                offline = watcher.state_since("offline", stopped)
                assert offline is not None
                # The node's last packet is its last heartbeat (one a second; one may still be in transit at
                # the SIGSTOP, hence read after the Will arrived).
                silent = offline - watcher.beats[-1][0]
                print(
                    f"offline {offline - stopped:.2f} s after SIGSTOP, {silent:.2f} s after the last packet"
                )
                assert 1.5 * keepalive - 1.0 <= silent <= limit, broker.log()
                gen.signal(signal.SIGCONT)  # the Wi-Fi is back: the node reconnects and says so
                back = time.monotonic()
                wait_until(lambda: watcher.state_since("online", back), 30, message="online again")
                gen.signal(signal.SIGTERM)
                assert gen.wait(30) == 0, gen.stderr()
            wait_until(lambda: watcher.state() == "offline", 10, message="offline after a clean stop")
        finally:
            watcher.close()


@pytest.mark.slow
def test_agent_sigkill_with_a_full_spool_while_the_broker_is_down_delivers_everything(tmp_path: Path) -> None:
    total = 5_000
    broker = Broker(tmp_path / "broker", persistent=False)  # not started: the broker is down
    config = node_config(tmp_path, "spool-node", broker.port)
    with loadgen(config, "--count", str(total), "--batch", "100") as gen:
        assert gen.wait_json("spooled", 60)["depth"] == total
        time.sleep(0.5)  # let it try (and fail) to connect, as it would during an outage
        gen.signal(signal.SIGKILL)
        assert gen.wait(10) == -signal.SIGKILL
    assert outbox_rows(tmp_path) == {"violation": total, "uploads": 0}
    broker.start()
    try:
        with central_ingest(tmp_path, broker.port) as central:
            with loadgen(config, "--exit-when-drained", "--timeout", "120") as gen:
                assert gen.wait(150) == 0, gen.stderr()
            wait_until(lambda: central.count() == total, 60, 0.1, f"{total} events at central")
            assert central.seqs() == list(range(total))
    finally:
        broker.stop()
    assert outbox_rows(tmp_path) == {"uploads": 0}


def test_outbox_cap_with_the_broker_down_keeps_violations_and_counts_every_drop(tmp_path: Path) -> None:
    """40 heartbeats then 150 events into a 64 KiB spool: the heartbeats are evicted oldest first, then the
    newest events are refused; the drop counters, the rows left and what central finally gets all agree."""
    telemetry, events, cap = 40, 150, 64 * 1024
    broker = Broker(tmp_path / "broker", persistent=False)
    config = node_config(
        tmp_path, "cap-node", broker.port, outbox={"max_bytes": cap}, mqtt={"heartbeat_s": 3600}
    )
    with loadgen(config, "--telemetry", str(telemetry), "--count", str(events), "--batch", "10") as gen:
        spooled = gen.wait_json("spooled", 60)
        gen.signal(signal.SIGTERM)
        assert gen.wait(30) == 1  # not drained: the broker is down
    rows, drops = outbox_rows(tmp_path), outbox_drops(tmp_path)
    kept = rows.get("violation", 0)
    assert spooled["drops"] == drops
    assert rows.get("telemetry", 0) == 0, "all telemetry goes before any violation"
    assert drops["telemetry.cap_evicted"] + spooled["refused_telemetry"] == telemetry
    assert 0 < kept < events and drops["violation.cap_full"] == events - kept
    assert set(drops) <= {"telemetry.cap_evicted", "telemetry.cap_full", "violation.cap_full"}

    broker.start()
    config = node_config(
        tmp_path, "cap-node", broker.port, outbox={"max_bytes": cap}, mqtt={"heartbeat_s": 1}
    )
    try:
        with central_ingest(tmp_path, broker.port) as central, loadgen(config) as gen:
            wait_until(lambda: central.count() == kept, 60, 0.1, f"{kept} events at central")
            assert central.seqs() == list(range(kept)), "the oldest violations are the ones kept"

            def reported_drops() -> dict[str, int] | None:
                latest = central.ingestor.nodes.latest().get("cap-node")
                return dict(latest[0].outbox.dropped) if latest else None

            wait_until(reported_drops, 30, 0.1, "a heartbeat at central")
            assert reported_drops() == drops  # the node's drop metrics, as central sees them
            gen.signal(signal.SIGTERM)
            assert gen.wait(30) == 0, gen.stderr()
    finally:
        broker.stop()

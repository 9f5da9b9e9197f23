"""MQTT ingest through real brokers: Mosquitto (the production broker) and the embedded amqtt broker."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from central.app import create_app
from central.db.models import DeadLetterRow, EventRow, NodeStatusRow
from central.db.session import Database
from central.messaging.broker import BrokerStartError, EmbeddedBroker
from central.messaging.ingest import Ingestor
from central.messaging.subscriber import MqttSubscriber
from central.settings import Settings
from tests.central.factories import TOPICS, make_event, make_status
from tests.conftest import MosquittoBroker, free_port, wait_until

TIMEOUT_S = 10.0


def count(db: Database, model: type) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@contextmanager
def publisher(host: str, port: int) -> Iterator[mqtt.Client]:
    """A paho 2.x client like a node's: MQTT 3.1.1, network loop in a thread."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"test-node-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client.connect(host, port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def publish(client: mqtt.Client, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish at QoS 1 and wait for the broker's PUBACK."""
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(timeout=TIMEOUT_S)
    assert info.is_published(), f"no PUBACK for {topic}"


@pytest.fixture
def make_subscriber(ingestor: Ingestor) -> Iterator[Callable[..., MqttSubscriber]]:
    started: list[MqttSubscriber] = []

    def factory(host: str, port: int, client_id: str | None = None) -> MqttSubscriber:
        subscriber = MqttSubscriber(
            ingestor,
            TOPICS,
            host=host,
            port=port,
            client_id=client_id or f"central-test-{uuid.uuid4().hex[:8]}",
        )
        subscriber.start()
        started.append(subscriber)
        assert subscriber.wait_connected(TIMEOUT_S), "subscriber did not connect"
        return subscriber

    yield factory
    for subscriber in started:
        subscriber.stop()


def test_mosquitto_to_database(
    mosquitto: MosquittoBroker,
    make_subscriber: Callable[..., MqttSubscriber],
    ingestor: Ingestor,
    db: Database,
) -> None:
    make_subscriber(mosquitto.host, mosquitto.port)
    event = make_event()
    with publisher(mosquitto.host, mosquitto.port) as node:
        publish(node, TOPICS.events("node-1"), event.to_json())
        publish(node, TOPICS.events("node-1"), event.to_json())
        publish(node, TOPICS.events("node-1"), b'{"schema": "streetwatch.event/1", "event_id": ')
        publish(node, TOPICS.status("node-1"), make_status().to_json(), retain=True)
    wait_until(lambda: ingestor.counters.summary()["received"] == 4, TIMEOUT_S, message="4 messages ingested")
    assert count(db, EventRow) == 1
    assert count(db, DeadLetterRow) == 1
    assert count(db, NodeStatusRow) == 1
    summary = ingestor.counters.summary()
    assert (summary["ingested"], summary["duplicates"], summary["dead_letters"]) == (1, 1, 1)


def test_messages_published_while_central_is_down_are_delivered(
    mosquitto: MosquittoBroker,
    make_subscriber: Callable[..., MqttSubscriber],
    ingestor: Ingestor,
    db: Database,
) -> None:
    """clean_session=False + a stable client id: the broker queues QoS 1 events until central is back."""
    client_id = f"central-test-{uuid.uuid4().hex[:8]}"
    make_subscriber(mosquitto.host, mosquitto.port, client_id).stop()  # session exists, central is "down"
    event = make_event()
    with publisher(mosquitto.host, mosquitto.port) as node:
        publish(node, TOPICS.events("node-1"), event.to_json())
    make_subscriber(mosquitto.host, mosquitto.port, client_id)
    wait_until(lambda: count(db, EventRow) == 1, TIMEOUT_S, message="queued event delivered after restart")


def test_embedded_amqtt_relays_paho_qos1() -> None:
    """paho 2.x publisher -> amqtt -> paho 2.x subscriber, QoS 1 end to end."""
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    broker.start()
    received: list[tuple[str, bytes, int]] = []
    subscribed = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="sub", protocol=mqtt.MQTTv311
    )
    subscribed.on_message = lambda c, u, m: received.append((m.topic, bytes(m.payload), m.qos))
    try:
        subscribed.connect("127.0.0.1", port)
        subscribed.loop_start()
        granted: list[int] = []
        subscribed.on_subscribe = lambda c, u, m, codes, p: granted.extend(code.value for code in codes)
        subscribed.subscribe(TOPICS.all_events(), qos=1)
        wait_until(lambda: granted, TIMEOUT_S, message="SUBACK from amqtt")
        with publisher("127.0.0.1", port) as node:
            publish(node, TOPICS.events("node-1"), b"payload-1")
        wait_until(lambda: received, TIMEOUT_S, message="message relayed by amqtt")
        assert received == [(TOPICS.events("node-1"), b"payload-1", 1)]
    finally:
        subscribed.disconnect()
        subscribed.loop_stop()
        broker.stop()
    assert not broker.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_embedded_broker_reports_a_busy_port() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        broker = EmbeddedBroker("127.0.0.1", port)
        with pytest.raises(BrokerStartError, match=str(port)):
            broker.start()
        broker.stop()


def test_create_app_runs_embedded_broker_and_ingests(make_settings: Callable[..., Settings]) -> None:
    port = free_port()
    settings = make_settings(
        mqtt_enabled=True,
        embedded_mqtt_port=port,
        mqtt_client_id="central-test-app",
        ingest_require_enrollment=False,  # node-1 is not enrolled; enrollment is tested in test_workers.py
        embedded_broker="amqtt",  # the embedded Mosquitto: tests/e2e/test_delivery_embedded.py
    )
    app = create_app(settings)
    event = make_event()
    with TestClient(app) as client:
        health = client.get("/healthz").json()
        assert health["mqtt"] | {"port": port} == {
            "enabled": True,
            "connected": True,
            "embedded_broker": True,
            "host": "127.0.0.1",
            "port": port,
            "client_id": "central-test-app",
            "broker": f"amqtt (embedded, anonymous, no ACL) on 127.0.0.1:{port}",
        }
        with publisher("127.0.0.1", port) as node:
            publish(node, TOPICS.events("node-1"), event.to_json())
            publish(node, TOPICS.events("node-1"), event.to_json())
            publish(node, TOPICS.events("node-1"), b"not json")

        def ingest_counts() -> dict[str, int]:
            counts: dict[str, int] = client.get("/healthz").json()["ingest"]
            return counts

        wait_until(lambda: ingest_counts()["received"] == 3, TIMEOUT_S, message="3 messages through amqtt")
        counts = ingest_counts()
        assert (counts["ingested"], counts["duplicates"], counts["dead_letters"]) == (1, 1, 1)
        db: Database = app.state.central.db
        assert count(db, EventRow) == 1 and count(db, DeadLetterRow) == 1
        metrics = client.get("/metrics").text  # both connections of the process, counted per client
        assert 'streetwatch_mqtt_client_messages_total{client="ingest"} 3' in metrics
        assert 'streetwatch_mqtt_client_connects_total{client="fleet"} 1' in metrics
    # Lifespan exit stopped the subscriber and the broker: the port is closed again.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()

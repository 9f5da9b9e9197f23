"""The shared MQTT client: routing by topic filter, acknowledgements, counters, and a real Mosquitto round trip."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest

from central.messaging.client import BrokerAddress, MqttClient, connect_address
from central.settings import Settings
from tests.central.factories import TOPICS
from tests.conftest import MosquittoBroker, wait_until

TIMEOUT_S = 10.0
ADDRESS = BrokerAddress("127.0.0.1", 1, "unit")


class FakePaho:
    def __init__(self) -> None:
        self.acked: list[tuple[int, int]] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append((mid, qos))


def message(topic: str, qos: int = 1, mid: int = 7) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    msg.payload = b"{}"
    msg.qos = qos
    return msg


def deliver(client: MqttClient, msg: mqtt.MQTTMessage) -> FakePaho:
    fake = FakePaho()
    client._client = fake  # type: ignore[assignment]
    client._message_cb(fake, None, msg)  # type: ignore[arg-type]
    return fake


def test_messages_go_to_the_first_matching_handler_shared_filters_included() -> None:
    client = MqttClient("unit", ADDRESS, manual_ack=True)
    seen: list[tuple[str, str]] = []
    client.subscribe(f"$share/g/{TOPICS.all_events()}", 1, lambda m: seen.append(("events", m.topic)))
    client.subscribe(TOPICS.all_status(), 1, lambda m: seen.append(("status", m.topic)))
    client.subscribe(f"{TOPICS.prefix}/#", 0, lambda m: seen.append(("rest", m.topic)))
    for topic in (TOPICS.events("n1"), TOPICS.status("n2"), TOPICS.heartbeat("n3")):
        assert deliver(client, message(topic)).acked == []  # handlers ack themselves under manual_ack
    assert seen == [
        ("events", TOPICS.events("n1")),
        ("status", TOPICS.status("n2")),
        ("rest", TOPICS.heartbeat("n3")),
    ]
    assert client.subscriptions == [
        (f"$share/g/{TOPICS.all_events()}", 1),
        (TOPICS.all_status(), 1),
        (f"{TOPICS.prefix}/#", 0),
    ]
    assert client.stats.messages == 3


def test_unrouted_messages_and_failing_handlers_are_counted_not_fatal() -> None:
    client = MqttClient("unit", ADDRESS, manual_ack=True)

    def broken(msg: mqtt.MQTTMessage) -> None:
        raise RuntimeError("boom")

    client.subscribe(TOPICS.all_events(), 1, broken)
    assert deliver(client, message(TOPICS.events("n1"))).acked == []  # not committed: stays unacknowledged
    assert deliver(client, message("elsewhere/x", mid=9)).acked == [(9, 1)]  # nobody wants it: acknowledged
    assert (client.stats.handler_errors, client.stats.unrouted, client.stats.messages) == (1, 1, 2)


@pytest.mark.parametrize(("manual", "qos", "acked"), [(True, 1, [(7, 1)]), (True, 0, []), (False, 1, [])])
def test_ack_only_applies_to_manual_acknowledgement_at_qos1(
    manual: bool, qos: int, acked: list[tuple[int, int]]
) -> None:
    client = MqttClient("unit", ADDRESS, manual_ack=manual)
    client.subscribe(TOPICS.all_events(), 1, client.ack)
    assert deliver(client, message(TOPICS.events("n1"), qos=qos)).acked == acked


def test_subscribe_after_start_and_publish_while_disconnected() -> None:
    client = MqttClient("unit", ADDRESS)
    assert not client.publish("t", b"x")
    assert client.stats.publish_failures == 1
    client._started = True
    with pytest.raises(RuntimeError, match="before start"):
        client.subscribe("t", 1, lambda m: None)


def test_broker_address_of_settings(make_settings: Callable[..., Settings]) -> None:
    embedded = make_settings(
        embedded_mqtt_host="0.0.0.0", embedded_mqtt_port=1999, mqtt_client_id="central-a"
    )
    assert BrokerAddress.of(embedded, client_suffix="-fleet") == BrokerAddress(
        "127.0.0.1", 1999, "central-a-fleet"
    )
    external = make_settings(
        mqtt_host="mq",
        mqtt_port=8883,
        mqtt_username="central",
        mqtt_password="pw",
        mqtt_client_id="central-a",
    )
    assert BrokerAddress.of(external) == BrokerAddress("mq", 8883, "central-a", "central", "pw")
    assert connect_address("::") == "::1" and connect_address("10.0.0.5") == "10.0.0.5"


@pytest.mark.parametrize("mqtt5", [False, True], ids=["mqtt311", "mqtt5"])
def test_round_trip_through_mosquitto(mosquitto_session: MosquittoBroker, mqtt5: bool) -> None:
    """Two clients: one subscribes (shared on MQTT 5), the other publishes retained and plain at QoS 1."""
    mosquitto = mosquitto_session
    suffix = uuid.uuid4().hex[:8]
    connected: list[str] = []
    received: list[tuple[str, bytes]] = []
    receiver = MqttClient(
        "receiver",
        BrokerAddress(mosquitto.host, mosquitto.port, f"recv-{suffix}"),
        mqtt5=mqtt5,
        manual_ack=True,
        on_connected=lambda: connected.append("receiver"),
    )

    def handle(msg: mqtt.MQTTMessage) -> None:
        received.append((msg.topic, bytes(msg.payload)))
        receiver.ack(msg)

    events = TOPICS.all_events()
    receiver.subscribe(f"$share/g{suffix}/{events}" if mqtt5 else events, 1, handle)
    sender = MqttClient("sender", BrokerAddress(mosquitto.host, mosquitto.port, f"send-{suffix}"))
    receiver.start()
    sender.start()
    try:
        assert receiver.wait_connected(TIMEOUT_S) and sender.wait_connected(TIMEOUT_S)
        assert connected == ["receiver"]
        assert sender.publish(TOPICS.events(f"n-{suffix}"), b"one", qos=1)
        wait_until(lambda: received, TIMEOUT_S, message="message routed to the handler")
        assert received == [(TOPICS.events(f"n-{suffix}"), b"one")]
        assert (sender.stats.published, sender.stats.connects, receiver.stats.messages) == (1, 1, 1)
    finally:
        sender.stop()
        receiver.stop()
    assert not receiver.connected
    assert receiver.stats.connection_losses == 0  # a clean stop is not a loss

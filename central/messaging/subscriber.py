"""Central's ingest subscriber: receives events, node status and heartbeats and hands them to the ``Ingestor``.

The connection itself is a ``central.messaging.client.MqttClient``; durability comes from three choices together:

* a stable client id (``central-<hostname>``) with ``clean_session=False``, so the broker keeps central's
  subscriptions and queues QoS 1 messages while central is down or restarting;
* manual acknowledgement after a group commit: paho's thread only queues events and status messages for the
  ingest workers (``workers.py``), which commit many per transaction and then acknowledge each one to the
  broker and send each node its end-to-end ``acks`` (a dead letter counts as committed). A message that keeps
  failing while the database works is dead-lettered after a few attempts; while the database is down nothing
  is acknowledged, and the broker redelivers after a reconnect (idempotent ingest turns repeats into
  ``duplicate``);
* paho's own reconnect loop (``loop_start`` thread, backoff from 1 s to 60 s), also when the broker is not up
  yet at startup (``connect_async``).

MQTT 3.1.1 is used by default because it is what every broker (Mosquitto, EMQX, amqtt) speaks identically.
With ``shared_group`` set (``STREETWATCH_MQTT_SHARED_GROUP``), N ingest workers share the events through the
shared subscription ``$share/<group>/<prefix>/nodes/+/events``: the broker hands each event to one worker,
which is what spreads the database writes. Mosquitto only offers shared subscriptions to MQTT 5 clients, so the
subscriber then speaks MQTT 5 with ``clean_start=False`` and a session expiry (its persistent session). Status
and heartbeats stay *plain* subscriptions on every worker: retained messages are never delivered on a shared
subscription (MQTT 5, 4.8.2), so a fresh worker would not learn the nodes' current status; and both are small
(one heartbeat per node every 30 s) and idempotent, so every worker keeps a complete picture of node health.
Each worker needs its own stable client id (``STREETWATCH_MQTT_CLIENT_ID`` when they share a host).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

from central.messaging.client import DEFAULT_SESSION_EXPIRY_S, BrokerAddress, MqttClient
from central.messaging.ingest import Ingestor
from central.messaging.workers import IngestWorkers
from edge_agent.contract import Topics

log = logging.getLogger(__name__)

QOS = 1


class MqttSubscriber:
    """Subscribes to every node's events, status and heartbeats and hands each message to the ingestor."""

    def __init__(
        self,
        ingestor: Ingestor,
        topics: Topics,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 30,
        shared_group: str | None = None,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        workers: int = 1,
        batch_max: int = 500,
        batch_wait_s: float = 0.02,
        mqtt5: bool = False,
        housekeeping: Callable[[], object] | None = None,
    ) -> None:
        self._ingestor = ingestor
        self.shared_group = shared_group
        self._stopping = threading.Event()
        v5 = mqtt5 or shared_group is not None
        self.client = MqttClient(
            "ingest",
            BrokerAddress(host, port, client_id, username, password, keepalive_s),
            mqtt5=v5,
            session_expiry_s=session_expiry_s,
            manual_ack=True,
            receive_maximum=min(65535, max(batch_max * workers * 2, 20)) if v5 else None,
        )
        self.workers = IngestWorkers(
            ingestor,
            topics,
            ack=self.client.ack,
            publish=self.client.publish_nowait,
            workers=workers,
            batch_max=batch_max,
            batch_wait_s=batch_wait_s,
            housekeeping=housekeeping,
        )
        events = topics.all_events()
        if shared_group is not None:
            events = f"$share/{shared_group}/{events}"
        self.client.subscribe(events, QOS, self.ingest_message)
        self.client.subscribe(topics.all_status(), QOS, self.ingest_message)
        self.client.subscribe(topics.all_heartbeats(), 0, self.observe_heartbeat)

    @property
    def host(self) -> str:
        return self.client.address.host

    @property
    def port(self) -> int:
        return self.client.address.port

    @property
    def client_id(self) -> str:
        return self.client.address.client_id

    def subscriptions(self) -> list[tuple[str, int]]:
        """(topic filter, QoS): events (shared when a group is set), status and heartbeats (always plain)."""
        return self.client.subscriptions

    @property
    def connected(self) -> bool:
        """True while connected and subscribed (for /healthz)."""
        return self.client.connected

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected and subscribed (or the timeout passes); for startup checks and tests."""
        return self.client.wait_connected(timeout_s)

    def start(self) -> None:
        """Connect in the background and keep reconnecting; returns at once even if the broker is down."""
        self._stopping.clear()
        self.workers.start()
        self.client.start()

    def stop(self) -> None:
        """End pending retries, disconnect cleanly (the broker keeps the persistent session)."""
        self._stopping.set()
        self.workers.stop()
        self.client.stop()

    # -- handlers (paho's network thread) -------------------------------------------------------------------

    def observe_heartbeat(self, message: mqtt.MQTTMessage) -> None:
        """QoS 0 telemetry: nothing to acknowledge, and the next heartbeat supersedes a lost one."""
        self._ingestor.observe_heartbeat(message.topic, bytes(message.payload))

    def ingest_message(self, message: mqtt.MQTTMessage) -> None:
        """Queue for the ingest workers; they acknowledge it once committed (a dead letter counts)."""
        self.workers.submit(message)

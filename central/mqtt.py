"""Central's MQTT subscriber: receives events and node status and hands each message to the ``Ingestor``.

Durability comes from three choices working together:

* a stable client id (``central-<hostname>``) with ``clean_session=False``, so the broker keeps central's
  subscriptions and queues QoS 1 messages while central is down or restarting;
* manual acknowledgement: a message is acknowledged only after the ingestor has committed it (a dead letter
  counts as committed). A message that keeps failing while the database works (a bug, a poison message) is
  dead-lettered after a few attempts. If the database is unavailable the callback keeps retrying; paho's
  network thread is blocked meanwhile, the broker eventually drops the connection and redelivers the
  unacknowledged message after the reconnect, and idempotent ingest turns any repeat into a ``duplicate``;
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
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from central.ingest import Ingestor
from edge_agent.contract import Topics

log = logging.getLogger(__name__)

QOS = 1
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
RETRY_MAX_S = 30.0
# After this many failed attempts (about 7 s of backoff) a message is dead-lettered, if the database works.
QUARANTINE_AFTER_ATTEMPTS = 5
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600


class MqttSubscriber:
    """Subscribes to every node's events and status topics and hands each message to the ingestor."""

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
        sleep: Callable[[float], bool] | None = None,
        shared_group: str | None = None,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
    ) -> None:
        self._ingestor = ingestor
        self._topics = topics
        self.host = host
        self.port = port
        self.client_id = client_id
        self._keepalive_s = keepalive_s
        self.shared_group = shared_group
        self._v5 = shared_group is not None
        self._session_expiry_s = session_expiry_s
        self._stopping = threading.Event()
        # Waits between ingest retries; returns True when stop() was called (so retries end promptly).
        self._sleep = sleep or self._stopping.wait
        self._connected = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if self._v5 else False,  # v5: clean_start=False at connect
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            manual_ack=True,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._subscribe_mid: int | None = None
        self._started = False

    def subscriptions(self) -> list[tuple[str, int]]:
        """(topic filter, QoS): events (shared when a group is set), status and heartbeats (always plain)."""
        events = self._topics.all_events()
        if self.shared_group is not None:
            events = f"$share/{self.shared_group}/{events}"
        return [(events, QOS), (self._topics.all_status(), QOS), (self._topics.all_heartbeats(), 0)]

    @property
    def connected(self) -> bool:
        """True while connected and subscribed (for /healthz)."""
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected and subscribed (or the timeout passes); for startup checks and tests."""
        return self._connected.wait(timeout_s)

    def start(self) -> None:
        """Connect in the background and keep reconnecting; returns at once even if the broker is down."""
        if self._started:
            raise RuntimeError("subscriber already started")
        self._started = True
        log.info(
            "MQTT: connecting to %s:%d as %s (%s)",
            self.host,
            self.port,
            self.client_id,
            f"MQTT 5, shared group {self.shared_group}" if self._v5 else "MQTT 3.1.1",
        )
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._session_expiry_s
            self._client.connect_async(
                self.host, self.port, keepalive=self._keepalive_s, clean_start=False, properties=props
            )
        else:
            self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly (the broker keeps the persistent session) and join paho's thread."""
        if not self._started:
            return
        self._stopping.set()
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._started = False
        log.info("MQTT: subscriber stopped")

    # -- paho callbacks (run in paho's network thread) ------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("MQTT: connection to %s:%d refused: %s", self.host, self.port, reason_code)
            return
        log.info(
            "MQTT: connected to %s:%d (session %s)",
            self.host,
            self.port,
            "resumed" if flags.session_present else "new",
        )
        # Subscribe on every connect: harmless when the session was resumed, needed when it was not.
        wanted = self.subscriptions()
        if self._v5:
            result, mid = client.subscribe([(topic, SubscribeOptions(qos=qos)) for topic, qos in wanted])
        else:
            result, mid = client.subscribe(wanted)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.error("MQTT: subscribe failed: %s", mqtt.error_string(result))
            return
        self._subscribe_mid = mid

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("MQTT: broker refused the subscriptions: %s", ", ".join(refused))
            return
        log.info("MQTT: subscribed to %s", ", ".join(topic for topic, _ in self.subscriptions()))
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if self._stopping.is_set():
            log.info("MQTT: disconnected")
        else:
            log.warning("MQTT: connection lost (%s); reconnecting with backoff", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        # Any exception escaping a paho callback would kill the network thread, hence the broad handling.
        payload = bytes(message.payload)
        node = self._topics.node_of(message.topic)
        if node is not None and message.topic == self._topics.heartbeat(node):
            # QoS 0 telemetry: nothing to acknowledge, and the next heartbeat supersedes a lost one.
            try:
                self._ingestor.observe_heartbeat(message.topic, payload)
            except Exception:
                log.exception("MQTT: heartbeat on %s could not be recorded", message.topic)
            return
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                self._ingestor.ingest(message.topic, payload)
                break
            except Exception as exc:
                log.exception("MQTT: ingest of a message on %s failed (attempt %d)", message.topic, attempt)
                if attempt >= QUARANTINE_AFTER_ATTEMPTS and self._quarantine(
                    message.topic, payload, attempt, exc
                ):
                    break
            if self._sleep(delay):
                return  # stopping: leave it unacknowledged, the broker redelivers after restart
            delay = min(delay * 2, RETRY_MAX_S)
        if message.qos > 0:
            client.ack(message.mid, message.qos)

    def _quarantine(self, topic: str, payload: bytes, attempts: int, exc: Exception) -> bool:
        """Dead-letter a message that keeps failing so one poison message cannot block all ingest.

        During a database outage this fails too, and the message is simply retried until the database is back.
        """
        try:
            self._ingestor.quarantine(
                topic, payload, f"ingest failed {attempts} times: {type(exc).__name__}: {exc}"
            )
        except Exception:
            log.exception("MQTT: could not dead-letter the failing message either; will retry")
            return False
        return True

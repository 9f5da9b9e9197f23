"""Central's fleet MQTT connection: publishes desired configs (retained, QoS 1) and hears ``config/applied``.

Separate from the ingest subscriber (``central/mqtt.py``) on purpose: ingest may run as N shared-subscription
workers, but config publishing and the answers are small, idempotent and per node, so every central process
can hold one of these without coordinating. Persistent session (stable client id, ``clean_session=False``),
so answers sent while central restarts are delivered afterwards.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.contract import Topics

log = logging.getLogger(__name__)

QOS = 1
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60


class FleetLink:
    """One paho client: ``publish_retained`` for configs, ``on_applied(topic, payload)`` for the answers."""

    def __init__(
        self,
        topics: Topics,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str | None,
        password: str | None,
        on_applied: Callable[[str, bytes], None],
        on_connected: Callable[[], None] = lambda: None,
        keepalive_s: int = 30,
    ) -> None:
        self.host = host
        self.port = port
        self.applied_filter = f"{topics.prefix}/nodes/+/config/applied"
        self._on_applied = on_applied
        self._on_connected = on_connected
        self._keepalive_s = keepalive_s
        self._connected = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._connect_cb
        self._client.on_disconnect = self._disconnect_cb
        self._client.on_subscribe = self._subscribe_cb
        self._client.on_message = self._message_cb
        self._started = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def start(self) -> None:
        """Connect in the background; returns at once (the broker may be down; paho keeps trying)."""
        self._started = True
        self._client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        if not self._started:
            return
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._started = False

    def publish_retained(self, topic: str, payload: bytes, timeout_s: float) -> bool:
        """Publish retained at QoS 1 and wait (bounded) for the PUBACK; False when not delivered to the broker.

        An empty payload clears the retained message (MQTT's way to delete it).
        """
        if not self.connected:
            return False
        info = self._client.publish(topic, payload, qos=QOS, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("fleet MQTT: publish to %s failed: %s", topic, mqtt.error_string(info.rc))
            return False
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError) as err:
            log.warning("fleet MQTT: publish to %s failed: %s", topic, err)
            return False
        return info.is_published()

    # -- paho callbacks (paho's network thread) -------------------------------------------------------------

    def _connect_cb(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("fleet MQTT: connection to %s:%d refused: %s", self.host, self.port, reason_code)
            return
        client.subscribe(self.applied_filter, qos=QOS)

    def _subscribe_cb(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("fleet MQTT: broker refused the subscription to %s", self.applied_filter)
            return
        log.info(
            "fleet MQTT: connected to %s:%d, subscribed to %s", self.host, self.port, self.applied_filter
        )
        self._connected.set()
        try:
            self._on_connected()
        except Exception:
            log.exception("fleet MQTT: on_connected failed")

    def _disconnect_cb(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        log.info("fleet MQTT: disconnected (%s)", reason_code)

    def _message_cb(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:  # an exception escaping a paho callback would kill its network thread
            self._on_applied(message.topic, bytes(message.payload))
        except Exception:
            log.exception("fleet MQTT: answer on %s could not be handled", message.topic)

"""The one MQTT client central builds all its broker connections from (ingest, fleet, and what comes next).

An ``MqttClient`` is one paho client with central's conventions, so each user only says *what* it wants:

* ``subscribe(topic_filter, qos, handler)`` before ``start``: the handler gets every message whose topic
  matches the filter (a shared filter ``$share/<group>/<filter>`` is matched by its ``<filter>``). A handler
  that raises is logged and counted; it can never kill paho's network thread;
* ``publish(topic, payload, qos=..., retain=...)``: waits (bounded) for the broker's PUBACK at QoS 1;
* a persistent session with a stable client id (``clean_session=False``, or on MQTT 5 ``clean_start=False``
  with a session expiry), so the broker keeps the subscriptions and queues QoS 1 messages while central is
  down; subscribing again on every connect is harmless when the session was resumed;
* ``connect_async`` + paho's reconnect loop (backoff 1 s to 60 s), so a broker that is down at startup or
  goes away later is simply retried; ``connected`` is true once every subscription was granted;
* optional manual acknowledgement (``manual_ack=True``): a handler calls ``ack(message)`` once the message is
  safely committed, and an unacknowledged QoS 1 message is redelivered by the broker after a reconnect;
* ``stats`` counts connects, losses, messages, handler errors and publishes (``/metrics`` shows them), and
  every log line names the client (``MQTT ingest: ...``).

MQTT 3.1.1 is the default because every broker (Mosquitto, EMQX, amqtt) speaks it identically; MQTT 5 is
only needed for shared subscriptions on Mosquitto.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from central.settings import Settings

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
DEFAULT_PUBLISH_TIMEOUT_S = 5.0
# Where a local client reaches a broker bound to a wildcard address.
LOOPBACK_OF_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}

Handler = Callable[[mqtt.MQTTMessage], None]


def connect_address(bind_host: str) -> str:
    """Where a local client reaches a broker bound to ``bind_host`` (wildcard binds: via loopback)."""
    return LOOPBACK_OF_WILDCARD.get(bind_host, bind_host)


@dataclass(frozen=True)
class BrokerAddress:
    """Where and as whom a client connects."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: int = 30

    @classmethod
    def of(cls, settings: Settings, *, client_suffix: str = "") -> BrokerAddress:
        """Central's broker: the external one, or else the embedded one; the client id gets ``client_suffix``."""
        if settings.mqtt_host is not None:
            host, port = settings.mqtt_host, settings.mqtt_port
        else:
            host, port = connect_address(settings.embedded_mqtt_host), settings.embedded_mqtt_port
        return cls(
            host=host,
            port=port,
            client_id=settings.effective_mqtt_client_id + client_suffix,
            username=settings.mqtt_username,
            password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
        )


@dataclass
class ClientStats:
    """Counters of one client (failures are data); written by paho's thread and publishers, read by /metrics."""

    connects: int = 0
    connection_losses: int = 0
    refusals: int = 0  # connections or subscriptions the broker refused
    messages: int = 0
    handler_errors: int = 0
    unrouted: int = 0  # messages matching no registered filter
    published: int = 0
    publish_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass(frozen=True)
class Subscription:
    topic_filter: str  # as sent to the broker, ``$share/<group>/...`` included
    qos: int
    handler: Handler

    @property
    def match_filter(self) -> str:
        """The filter that message topics are matched against (a shared subscription's inner filter)."""
        if self.topic_filter.startswith("$share/"):
            return self.topic_filter.split("/", 2)[2]
        return self.topic_filter


class MqttClient:
    """One broker connection of central: topic handlers, publishing, reconnects, counters (see module doc)."""

    def __init__(
        self,
        name: str,
        address: BrokerAddress,
        *,
        mqtt5: bool = False,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        manual_ack: bool = False,
        on_connected: Callable[[], None] | None = None,
        receive_maximum: int | None = None,
    ) -> None:
        self.name = name
        self._receive_maximum = receive_maximum
        self.address = address
        self.mqtt5 = mqtt5
        self.stats = ClientStats()
        self._session_expiry_s = session_expiry_s
        self._manual_ack = manual_ack
        self._on_connected = on_connected
        self._subscriptions: list[Subscription] = []
        self._subscribe_mid: int | None = None
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._started = False
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=address.client_id,
            clean_session=None if mqtt5 else False,  # MQTT 5: clean_start=False at connect
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
            manual_ack=manual_ack,
        )
        if address.username is not None:
            self._client.username_pw_set(address.username, address.password)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client.on_connect = self._connect_cb
        self._client.on_subscribe = self._subscribe_cb
        self._client.on_disconnect = self._disconnect_cb
        self._client.on_message = self._message_cb

    # -- set up ---------------------------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, qos: int, handler: Handler) -> None:
        """Route messages matching ``topic_filter`` to ``handler`` (first registered match wins)."""
        if self._started:
            raise RuntimeError(f"MQTT {self.name}: subscribe before start()")
        self._subscriptions.append(Subscription(topic_filter, qos, handler))

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        """(topic filter, QoS) as sent to the broker."""
        return [(s.topic_filter, s.qos) for s in self._subscriptions]

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while connected and every subscription is granted."""
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected and subscribed (or the timeout passes); for startup checks and tests."""
        return self._connected.wait(timeout_s)

    def start(self) -> None:
        """Connect in the background and keep reconnecting; returns at once even if the broker is down."""
        if self._started:
            raise RuntimeError(f"MQTT {self.name}: already started")
        self._started = True
        self._stopping.clear()
        a = self.address
        log.info(
            "MQTT %s: connecting to %s:%d as %s (%s)",
            self.name,
            a.host,
            a.port,
            a.client_id,
            "MQTT 5" if self.mqtt5 else "MQTT 3.1.1",
        )
        if self.mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._session_expiry_s
            if self._receive_maximum is not None:
                # How many unacknowledged QoS 1 messages the broker may send us: the size of a group commit.
                props.ReceiveMaximum = self._receive_maximum
            self._client.connect_async(
                a.host, a.port, keepalive=a.keepalive_s, clean_start=False, properties=props
            )
        else:
            self._client.connect_async(a.host, a.port, keepalive=a.keepalive_s)
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
        log.info("MQTT %s: stopped", self.name)

    # -- messages -------------------------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S,
    ) -> bool:
        """Publish; at QoS > 0 wait (bounded) for the broker's acknowledgement. False when not delivered.

        An empty retained payload clears the retained message (MQTT's way to delete it).
        """
        if not self.connected:
            self.stats.publish_failures += 1
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        error: str | None = None
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            error = mqtt.error_string(info.rc)
        elif qos > 0:
            try:
                info.wait_for_publish(timeout=timeout_s)
            except (RuntimeError, ValueError) as err:
                error = str(err)
            else:
                if not info.is_published():
                    error = f"no acknowledgement within {timeout_s:g} s"
        if error is not None:
            self.stats.publish_failures += 1
            log.warning("MQTT %s: publish to %s failed: %s", self.name, topic, error)
            return False
        self.stats.published += 1
        return True

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1) -> bool:
        """Queue a publish in paho without waiting for the broker (paho resends QoS 1 after a reconnect while
        this process lives). False when paho refused it at once (not connected and QoS 0, payload too big)."""
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN) or (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0
        ):
            self.stats.publish_failures += 1
            return False
        self.stats.published += 1
        return True

    def ack(self, message: mqtt.MQTTMessage) -> None:
        """Acknowledge a QoS > 0 message (with ``manual_ack``: call once it is committed)."""
        if self._manual_ack and message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def _route(self, topic: str) -> Handler | None:
        for subscription in self._subscriptions:
            if mqtt.topic_matches_sub(subscription.match_filter, topic):
                return subscription.handler
        return None

    # -- paho callbacks (paho's network thread) -------------------------------------------------------------

    def _connect_cb(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        a = self.address
        if reason_code.is_failure:
            self.stats.refusals += 1
            log.error("MQTT %s: connection to %s:%d refused: %s", self.name, a.host, a.port, reason_code)
            return
        self.stats.connects += 1
        log.info(
            "MQTT %s: connected to %s:%d (session %s)",
            self.name,
            a.host,
            a.port,
            "resumed" if flags.session_present else "new",
        )
        if not self._subscriptions:
            self._ready()
            return
        # Subscribe on every connect: harmless when the session was resumed, needed when it was not.
        if self.mqtt5:
            wanted: list[tuple[str, SubscribeOptions]] | list[tuple[str, int]]
            wanted = [(s.topic_filter, SubscribeOptions(qos=s.qos)) for s in self._subscriptions]
        else:
            wanted = self.subscriptions
        result, mid = client.subscribe(wanted)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.error("MQTT %s: subscribe failed: %s", self.name, mqtt.error_string(result))
            return
        self._subscribe_mid = mid

    def _subscribe_cb(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [
            f"{topic_filter}: {code}"
            for (topic_filter, _), code in zip(self.subscriptions, reason_codes, strict=False)
            if code.is_failure
        ]
        if refused:
            self.stats.refusals += 1
            log.error("MQTT %s: broker refused the subscriptions: %s", self.name, ", ".join(refused))
            return
        log.info("MQTT %s: subscribed to %s", self.name, ", ".join(t for t, _ in self.subscriptions))
        self._ready()

    def _ready(self) -> None:
        self._connected.set()
        if self._on_connected is None:
            return
        try:
            self._on_connected()
        except Exception:
            log.exception("MQTT %s: on_connected failed", self.name)

    def _disconnect_cb(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if self._stopping.is_set():
            log.info("MQTT %s: disconnected", self.name)
            return
        self.stats.connection_losses += 1
        log.warning("MQTT %s: connection lost (%s); reconnecting with backoff", self.name, reason_code)

    def _message_cb(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.stats.messages += 1
        handler = self._route(message.topic)
        if handler is None:
            self.stats.unrouted += 1
            log.warning("MQTT %s: no handler for a message on %s; acknowledged", self.name, message.topic)
            self.ack(message)
            return
        try:  # an exception escaping a paho callback would kill its network thread
            handler(message)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("MQTT %s: message on %s could not be handled", self.name, message.topic)

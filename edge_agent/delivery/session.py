"""The node's MQTT session: persistent, announced, and reconnected with jittered backoff.

* **Persistent**: MQTT 3.1.1 with ``clean_session=False`` (every broker, the embedded amqtt included) or MQTT 5
  with ``clean_start=False`` and ``mqtt.session_expiry_s``, so QoS 1 messages in flight survive a reconnect
  (paho keeps them and resends them with DUP). Durability across process deaths is the outbox's job.
* **Announced**: the retained ``status`` says ``online`` with the software, model and config versions on every
  connect; the Last Will (retained, QoS 1) says ``offline`` when the connection dies without a DISCONNECT, and
  a clean shutdown publishes ``offline`` itself (a normal DISCONNECT discards the Will).
* **Reconnected** with exponential backoff and equal jitter, capped at ``mqtt.reconnect_max_s``. paho's own
  reconnect delay has no jitter, so it is set to zero and ours is slept in ``on_pre_connect`` (paho's network
  thread has nothing else to do while disconnected); without jitter a ward's nodes reconnect in lockstep after
  the broker or a shared uplink comes back.
* Acknowledgements are only handed over: the broker's PUBACKs (``acks``; paho calls ``on_publish`` holding its
  message lock) and central's end-to-end acknowledgements (``confirms``, digests from ``{prefix}/nodes/{node}/acks``,
  subscribed at QoS 1 on every connect); the publisher's sender thread does the outbox work.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import deque
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.contract import Acks, ModelRef, NodeState, NodeStatus, Topics, utcnow
from edge_agent.delivery.items import Backoff, DeliveryStats

log = logging.getLogger(__name__)

MQTT_PASSWORD_ENV = "STREETWATCH_MQTT_PASSWORD"


class MqttSession:
    """paho client, status/Last Will, reconnect backoff; counters go to the shared ``DeliveryStats``."""

    def __init__(
        self,
        cfg: AgentConfig,
        model: ModelRef,
        stats: DeliveryStats,
        *,
        stop: threading.Event,
        wake: Callable[[], None],
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.stats = stats
        self.topic = Topics(cfg.topic_prefix).status(cfg.node_id)
        self.acks_topic = Topics(cfg.topic_prefix).acks(cfg.node_id)
        self._stop = stop
        self._wake = wake
        self._backoff = Backoff(cfg.mqtt.reconnect_initial_s, cfg.mqtt.reconnect_max_s, rng)
        self.connect_delay = 0.0
        self.connected = threading.Event()
        self.epoch = 0  # connection generation: QoS 0 messages of an older one may never have left
        self.acks: deque[tuple[int, ReasonCode | None]] = deque()
        self.confirms: deque[str] = deque()  # digests central committed (end-to-end acknowledgements)
        self.bad_acks = 0  # unreadable messages on the acks topic (counted, logged)
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        m = self.cfg.mqtt
        v5 = m.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"node-{self.cfg.node_id}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,  # v5: clean_start=False at connect
            reconnect_on_failure=True,
        )
        if m.username:
            client.username_pw_set(m.username, os.environ.get(MQTT_PASSWORD_ENV))
        client.will_set(self.topic, self.status(NodeState.OFFLINE), qos=1, retain=True)
        client.max_inflight_messages_set(m.max_inflight)
        client.reconnect_delay_set(0, 0)  # our jittered backoff runs in on_pre_connect
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def status(self, state: NodeState) -> bytes:
        return NodeStatus(
            node_id=self.cfg.node_id,
            state=state,
            at=utcnow(),
            software=__version__,
            model=self.model,
            config_version=self.cfg.config_version,
        ).to_json()

    def start(self) -> None:
        """Connect in paho's network thread (returns at once; the broker may still be down)."""
        m = self.cfg.mqtt
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = m.session_expiry_s
            self.client.connect_async(
                m.host, m.port, keepalive=m.keepalive_s, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s)
        self.client.loop_start()

    def announce(self) -> None:
        """Publish the retained ``online`` status again (the model or config it names changed)."""
        if self.connected.is_set():
            self.client.publish(self.topic, self.status(NodeState.ONLINE), qos=1, retain=True)

    def say_offline(self, timeout_s: float) -> None:
        """Publish the retained ``offline`` status and wait (bounded) for the broker to take it."""
        info = self.client.publish(self.topic, self.status(NodeState.OFFLINE), qos=1, retain=True)
        info.wait_for_publish(timeout=timeout_s)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks (paho's network thread) -----------------------------------------------------------

    def _on_pre_connect(self, _client: mqtt.Client, _ud: object) -> None:
        delay, self.connect_delay = self.connect_delay, 0.0
        if delay > 0:
            self._stop.wait(delay)
        if self._stop.is_set():  # paho treats an OSError here as a failed attempt and then sees the stop
            raise ConnectionAbortedError("publisher is stopping")

    def _on_connect(
        self,
        client: mqtt.Client,
        _ud: object,
        flags: mqtt.ConnectFlags,
        rc: ReasonCode,
        _p: Properties | None,
    ) -> None:
        m = self.cfg.mqtt
        if rc.is_failure:
            log.error("mqtt connect to %s:%s refused: %s", m.host, m.port, rc)
            return
        self._backoff.reset()
        self.stats.connects += 1
        self.stats.connected = True
        session = "resumed" if flags.session_present else "new"
        log.info("mqtt connected to %s:%s (session %s)", m.host, m.port, session)
        client.publish(self.topic, self.status(NodeState.ONLINE), qos=1, retain=True)
        # Every connect: a broker that restarted without persistence forgot the subscription.
        client.subscribe(self.acks_topic, qos=1)
        self.connected.set()
        self._wake()

    def _on_connect_fail(self, _client: mqtt.Client, _ud: object) -> None:
        if self._stop.is_set():
            return
        self.stats.connect_failures += 1
        self.connect_delay = self._backoff.next_delay()
        m = self.cfg.mqtt
        log.warning("mqtt connect to %s:%s failed; retry in %.1f s", m.host, m.port, self.connect_delay)

    def _on_disconnect(
        self, _c: mqtt.Client, _ud: object, _f: mqtt.DisconnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        self.epoch += 1
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.stats.connected = False
        if self._stop.is_set():
            log.info("mqtt disconnected at shutdown")
            return
        if was_connected:
            self.stats.disconnects += 1
        self.connect_delay = self._backoff.next_delay()
        log.warning("mqtt connection lost (%s); reconnecting in %.1f s", rc, self.connect_delay)

    def _on_publish(self, _c: mqtt.Client, _ud: object, mid: int, rc: ReasonCode, _p: Properties) -> None:
        self.acks.append((mid, rc))
        self._wake()

    def _on_message(self, _c: mqtt.Client, _ud: object, message: mqtt.MQTTMessage) -> None:
        if message.topic != self.acks_topic:
            return
        try:
            acks = Acks.from_json(bytes(message.payload))
        except ValidationError as err:
            self.bad_acks += 1
            log.warning("unreadable acknowledgement from central ignored: %s", err.errors()[:1])
            return
        if acks.node_id != self.cfg.node_id:
            self.bad_acks += 1
            log.warning("acknowledgement for node %s on our topic ignored", acks.node_id)
            return
        self.confirms.extend(acks.digests)
        self._wake()

"""Deliver events to central: evidence bytes over HTTP first, then the event over MQTT at QoS 1.

Order matters: an event should never reference evidence central cannot fetch, so a message is published only
after its evidence was accepted (central re-hashes every upload). Delivery runs on its own thread so a slow
uplink never stalls detection. This version keeps the queue in memory; the durable SQLite outbox replaces it.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.contract import Event, ModelRef, NodeState, NodeStatus, Topics, utcnow
from edge_agent.evidence import EvidenceFile

log = logging.getLogger(__name__)

NODE_TOKEN_ENV = "STREETWATCH_NODE_TOKEN"
MQTT_PASSWORD_ENV = "STREETWATCH_MQTT_PASSWORD"


@dataclass(slots=True)
class DeliveryStats:
    """Counters for heartbeats and logs: every retry and reconnect is visible."""

    queued: int = 0
    published: int = 0
    uploads: int = 0
    upload_retries: int = 0
    publish_retries: int = 0
    connects: int = 0
    disconnects: int = 0
    connected: bool = False
    by_type: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outgoing:
    event: Event
    files: tuple[EvidenceFile, ...]


class Publisher:
    """MQTT session (status with Last Will, QoS 1 events) plus the HTTP evidence uploader."""

    def __init__(
        self,
        cfg: AgentConfig,
        model: ModelRef,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.topics = Topics(cfg.topic_prefix)
        self.stats = DeliveryStats()
        self._queue: queue.Queue[Outgoing | None] = queue.Queue()
        self._stop = threading.Event()
        self._sleep = sleep
        token = os.environ.get(NODE_TOKEN_ENV, "")
        self._http = http or httpx.Client(
            base_url=cfg.central_url,
            timeout=httpx.Timeout(30.0, connect=5.0),
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        self._connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"node-{cfg.node_id}",
            protocol=mqtt.MQTTv5 if cfg.mqtt.protocol == "5" else mqtt.MQTTv311,
            # 3.1.1: a persistent session so QoS 1 messages survive a reconnect (v5 uses clean_start below).
            clean_session=None if cfg.mqtt.protocol == "5" else False,
        )
        if cfg.mqtt.username:
            self.client.username_pw_set(cfg.mqtt.username, os.environ.get(MQTT_PASSWORD_ENV))
        self.client.will_set(
            self.topics.status(cfg.node_id), self._status(NodeState.OFFLINE), qos=1, retain=True
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 120)
        self._worker = threading.Thread(target=self._run, name="publisher", daemon=True)

    def _status(self, state: NodeState) -> bytes:
        return NodeStatus(
            node_id=self.cfg.node_id,
            state=state,
            at=utcnow(),
            software=__version__,
            model=self.model,
            config_version=self.cfg.config_version,
        ).to_json()

    def _on_connect(
        self, client: mqtt.Client, _ud: object, _flags: object, rc: ReasonCode, _props: Properties | None
    ) -> None:
        if rc.is_failure:
            log.error("mqtt connect refused: %s", rc)
            return
        self.stats.connects += 1
        self.stats.connected = True
        log.info("mqtt connected to %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)
        client.publish(
            self.topics.status(self.cfg.node_id), self._status(NodeState.ONLINE), qos=1, retain=True
        )
        self._connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _ud: object, _flags: object, rc: ReasonCode, _props: Properties | None
    ) -> None:
        self.stats.connected = False
        self._connected.clear()
        if self._stop.is_set() and not rc.is_failure:
            log.info("mqtt disconnected at shutdown")
            return
        self.stats.disconnects += 1
        log.warning("mqtt disconnected (%s); paho reconnects with backoff", rc)

    def start(self) -> None:
        m = self.cfg.mqtt
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 24 * 3600
            self.client.connect_async(
                m.host, m.port, keepalive=m.keepalive_s, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s)
        self.client.loop_start()
        self._worker.start()

    def submit(self, event: Event, files: tuple[EvidenceFile, ...] = ()) -> None:
        self.stats.queued += 1
        self._queue.put(Outgoing(event, files))

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(item)
            finally:
                self._queue.task_done()

    def _deliver(self, item: Outgoing) -> None:
        for f in item.files:
            self._retry(functools.partial(self._upload, f), "upload", item)
        payload = item.event.to_json()
        topic = self.topics.events(self.cfg.node_id)
        self._retry(lambda: self._publish(topic, payload), "publish", item)
        self.stats.published += 1
        self.stats.by_type[item.event.type.value] = self.stats.by_type.get(item.event.type.value, 0) + 1
        log.info(
            "event %s %s %s delivered (camera %s, zone %s)",
            item.event.event_id,
            item.event.type.value,
            item.event.phase.value,
            item.event.camera_id,
            item.event.zone_id,
        )

    def _retry(self, action: Callable[[], None], what: str, item: Outgoing) -> None:
        backoff = 1.0
        while True:
            try:
                action()
                return
            except (httpx.HTTPError, OSError, RuntimeError) as err:
                if what == "upload":
                    self.stats.upload_retries += 1
                else:
                    self.stats.publish_retries += 1
                if self._stop.is_set():
                    log.error("giving up %s of event %s at shutdown: %s", what, item.event.event_id, err)
                    raise
                delay = min(120.0, backoff) * random.uniform(0.5, 1.0)
                log.warning(
                    "%s of event %s failed (%s); retry in %.1fs", what, item.event.event_id, err, delay
                )
                self._sleep(delay)
                backoff *= 2

    def _upload(self, f: EvidenceFile) -> None:
        data = f.path.read_bytes()
        r = self._http.put(
            f"/api/v1/evidence/{f.ref.sha256}", content=data, headers={"Content-Type": f.ref.content_type}
        )
        if r.status_code in (200, 201):
            self.stats.uploads += 1
            return
        if r.status_code in (401, 403, 413, 422):
            # Not fixable by retrying soon, but evidence must not be lost: keep retrying with long backoff.
            raise RuntimeError(f"central refused evidence {f.ref.sha256}: {r.status_code} {r.text[:200]}")
        r.raise_for_status()

    def _publish(self, topic: str, payload: bytes) -> None:
        if not self._connected.wait(timeout=30.0):
            raise RuntimeError("not connected to the broker")
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
        info.wait_for_publish(timeout=30.0)
        if not info.is_published():
            raise RuntimeError("broker did not acknowledge the event within 30 s")

    def close(self, drain_timeout_s: float = 30.0) -> None:
        """Deliver what is queued (bounded by ``drain_timeout_s``), say offline, and disconnect."""
        deadline = time.monotonic() + drain_timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._queue.unfinished_tasks:
            log.error("shutdown with %d event(s) undelivered", self._queue.unfinished_tasks)
        self._stop.set()
        self._queue.put(None)
        self._worker.join(timeout=5.0)
        if self.stats.connected:
            info = self.client.publish(
                self.topics.status(self.cfg.node_id), self._status(NodeState.OFFLINE), qos=1, retain=True
            )
            info.wait_for_publish(timeout=5.0)
        self.client.disconnect()
        self.client.loop_stop()
        self._http.close()

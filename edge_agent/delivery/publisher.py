"""Deliver events to central through the durable outbox: evidence over HTTP first, then the event over MQTT.

``submit`` only writes to the outbox (``edge_agent/delivery/outbox.py``) and returns; three threads do the rest:

* the **uploader** sends spooled evidence to central, throttled, snapshots before clips (``uploader.py``);
* the **sender** publishes every message whose evidence central accepted, at QoS 1, keeping at most
  ``mqtt.max_inflight`` unacknowledged by the broker (paho's window is set to the same number, so nothing queues
  in paho's memory). The broker's PUBACK only frees the window: a row leaves the outbox when *central* says it
  committed it (end-to-end acknowledgement on ``{prefix}/nodes/{node}/acks``, by ``message_digest``). A row is
  published again only when central confirmed a newer one (``outbox.ack_gap_s``: lost on the way) or stayed
  silent for ``outbox.ack_timeout_s`` (doubling per resend); at most ``outbox.max_unconfirmed`` rows await
  central at once (flow control: a backlog drains at central's pace instead of flooding the broker). It also
  spools a heartbeat every ``mqtt.heartbeat_s`` (QoS 0, telemetry class);
* **paho's network thread** keeps the MQTT session (``session.py``): persistent, retained ``status`` with an
  ``offline`` Last Will, reconnects with jittered exponential backoff.

Unacknowledged QoS 1 messages stay in paho's session across reconnects (paho resends them with DUP); if the
process dies they are still in the outbox and published again at the next start. Central's ingest is
idempotent on ``event_id`` and acknowledges duplicates too, so at-least-once is enough. An event whose evidence central refused for good is
published without that reference and with the measurement ``evidence_refused`` (see ``uploader.py``).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
import paho.mqtt.client as mqtt

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.contract import Event, ModelRef, Topics, message_digest
from edge_agent.delivery.heartbeat import CameraSample, HeartbeatBuilder
from edge_agent.delivery.items import (
    DeliveryStats,
    DropReason,
    Item,
    MessageClass,
    TokenBucket,
    UploadSpec,
    final_payload,
    outbox_path,
)
from edge_agent.delivery.outbox import Outbox
from edge_agent.delivery.session import MqttSession
from edge_agent.delivery.uploader import EvidenceUploader
from edge_agent.evidence.snapshot import EvidenceFile

log = logging.getLogger(__name__)

NODE_TOKEN_ENV = "STREETWATCH_NODE_TOKEN"
# MQTT 5 PUBACK codes worth retrying (unspecified error, quota exceeded); other failures are final.
RETRYABLE_PUBACK: Final = frozenset({0x80, 0x97})
TICK_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class _InFlight:
    row: int
    qos: int
    klass: MessageClass
    label: str
    epoch: int


class Publisher:
    """The node's delivery: outbox, evidence uploader, MQTT session with status/LWT, and heartbeats."""

    def __init__(
        self,
        cfg: AgentConfig,
        model: ModelRef,
        *,
        http: httpx.Client | None = None,
        outbox: Outbox | None = None,
        cameras: Callable[[], Sequence[CameraSample]] = tuple,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.topics = Topics(cfg.topic_prefix)
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._upload_wake = threading.Event()
        self._draining = False
        o = cfg.outbox
        self.outbox = outbox or Outbox(
            outbox_path(cfg),
            max_bytes=o.max_bytes,
            synchronous=o.synchronous,
            retry_initial_s=o.retry_initial_s,
            retry_max_s=o.retry_max_s,
            ack_timeout_s=o.ack_timeout_s,
            ack_timeout_max_s=o.ack_timeout_max_s,
            ack_gap_s=o.ack_gap_s,
            rng=rng,
        )
        token = os.environ.get(NODE_TOKEN_ENV, "")
        self._http = http or httpx.Client(
            base_url=cfg.central_url,
            timeout=httpx.Timeout(30.0, connect=5.0),
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        bucket = None
        if o.upload_rate_bytes_s is not None:
            bucket = TokenBucket(o.upload_rate_bytes_s, o.upload_burst_bytes, sleep=self._stop.wait)
        self.uploader = EvidenceUploader(self.outbox, self._http, bucket=bucket, on_accepted=self._wake.set)
        self.stats = DeliveryStats(upload=self.uploader.stats)
        self.heartbeats = HeartbeatBuilder(
            cfg.node_id,
            software=__version__,
            config_version=cfg.config_version,
            cameras=cameras,
            outbox=self.outbox.stats,
            reconnects=lambda: self.stats.disconnects,
            disk_path=self.outbox.path.parent,
            clock=clock,
            model=model,
        )
        self._next_purge = clock()
        self._inflight: dict[int, _InFlight] = {}
        # The retained status says 'online' at connect; the first heartbeat follows one interval later.
        self._next_heartbeat = clock() + cfg.mqtt.heartbeat_s
        self.session = MqttSession(cfg, model, self.stats, stop=self._stop, wake=self._wake.set, rng=rng)
        self.client = self.session.client
        self._threads = [
            threading.Thread(target=self._send_loop, name="outbox-sender", daemon=True),
            threading.Thread(
                target=self.uploader.run, args=(self._stop, self._upload_wake), name="uploader", daemon=True
            ),
        ]
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("publisher already started")
        self._started = True
        log.info("outbox %s: %s", self.outbox.path, _describe(self.outbox))
        self.session.start()
        for t in self._threads:
            t.start()

    def submit(self, event: Event, files: tuple[EvidenceFile, ...] = ()) -> None:
        """Spool one event with its evidence (durable when this returns); delivery happens in the background."""
        self.submit_many([(event, files)])

    def submit_many(self, batch: Iterable[tuple[Event, tuple[EvidenceFile, ...]]]) -> None:
        """Spool several events in one transaction (one fsync)."""
        topic = self.topics.events(self.cfg.node_id)
        items = [
            Item(
                topic=topic,
                payload=event.to_json(),
                klass=MessageClass.VIOLATION,
                qos=1,
                key=str(event.event_id),
                label=f"event {event.event_id} {event.type.value} {event.phase.value}",
                uploads=tuple(
                    UploadSpec(f.ref.sha256, f.ref.kind.value, f.ref.content_type, f.ref.size, f.path)
                    for f in files
                ),
            )
            for event, files in batch
        ]
        try:
            self.outbox.put_many(items)
        except Exception:
            # The disk is full or failing: nothing else can keep these events; count and say so loudly.
            self.stats.spool_failures += len(items)
            log.exception("could not spool %d event(s); they are lost", len(items))
            return
        self.stats.queued += len(items)
        self._upload_wake.set()
        self._wake.set()

    @property
    def http(self) -> httpx.Client:
        """The HTTP client to central with the node's token (evidence uploads; commands reuse it)."""
        return self._http

    @property
    def pending(self) -> int:
        """Messages still in the outbox (in flight included)."""
        return self.outbox.depth()

    def close(self, drain_timeout_s: float | None = None) -> None:
        """Deliver what is spooled while connected (bounded), say offline, disconnect; the rest stays spooled."""
        timeout = self.cfg.outbox.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        deadline = time.monotonic() + timeout
        self._draining = True
        while (
            self._started
            and self.outbox.depth()
            and self.session.connected.is_set()
            and time.monotonic() < deadline
        ):
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._upload_wake.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=10.0)
        if self.session.connected.is_set():
            self._settle()
            self.session.say_offline(timeout_s=5.0)
        left = self.outbox.depth()
        if left:
            log.warning("shutdown with %d message(s) spooled; they are delivered after the next start", left)
        self.session.stop()
        self.outbox.close()
        self._http.close()

    # -- sender ---------------------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            try:
                self._settle()
                if not self._draining and self._clock() >= self._next_heartbeat:
                    self._spool_heartbeat()
                if self._clock() >= self._next_purge:
                    self._next_purge = self._clock() + TICK_S
                    self._republish_unconfirmed()
                if self.session.connected.is_set():
                    self._fill_window()
            except Exception:  # the thread must survive anything (a full disk, a bug) and keep trying
                log.exception("outbox sender failed; continuing")
                self._stop.wait(TICK_S)

    def _republish_unconfirmed(self) -> None:
        n = self.outbox.requeue_unconfirmed()
        if n:
            self.stats.republished += n
            log.warning(
                "publishing %d message(s) again: the broker acknowledged them but central did not within its "
                "timeout (a broker that lost them, or central down); central ignores duplicates",
                n,
            )

    def _spool_heartbeat(self) -> None:
        self._next_heartbeat = self._clock() + self.cfg.mqtt.heartbeat_s
        beat = self.heartbeats.build()
        item = Item(
            self.topics.heartbeat(self.cfg.node_id),
            beat.to_json(),
            MessageClass.TELEMETRY,
            0,
            None,
            "heartbeat",
        )
        if self.outbox.put(item).id is not None:
            self.stats.heartbeats += 1

    def _fill_window(self) -> None:
        free = self.cfg.mqtt.max_inflight - len(self._inflight)
        if free <= 0:
            return
        # Flow control: what central has not confirmed yet is bounded, so a backlog drains at central's pace.
        free = min(
            free, self.cfg.outbox.max_unconfirmed - len(self._inflight) - self.outbox.awaiting_central()
        )
        if free <= 0:
            return
        busy = {f.row for f in self._inflight.values()}
        ready = self.outbox.ready_messages(free, exclude=busy)
        payloads = {m.id: final_payload(m) for m in ready}
        # Digests are committed before the bytes leave: central's acknowledgement may beat our PUBACK.
        self.outbox.published_many([(m.id, message_digest(payloads[m.id])) for m in ready if m.qos > 0])
        for m in ready:
            try:
                info = self.client.publish(m.topic, payloads[m.id], qos=m.qos)
            except ValueError as err:  # e.g. larger than MQTT allows: it can never be sent
                self.outbox.dead_message(m.id, DropReason.REFUSED_BY_BROKER, f"paho refused it: {err}")
                continue
            # QoS 1 without a connection stays queued in paho's session and goes out after the reconnect.
            if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and m.qos > 0):
                self._inflight[info.mid] = _InFlight(m.id, m.qos, m.klass, m.label, self.session.epoch)
                if m.klass is MessageClass.VIOLATION:
                    self.stats.sent += 1
            else:
                self.stats.publish_retries += 1
                delay = self.outbox.retry_message(m.id, mqtt.error_string(info.rc))
                log.warning(
                    "publish of %s failed (%s); retry in %.1f s", m.label, mqtt.error_string(info.rc), delay
                )

    def _settle(self) -> None:
        """Apply what paho handed over: central's confirmations (rows forgotten), the broker's PUBACKs (rows
        awaiting central, one commit), retries and refusals."""
        confirms: list[str] = []
        while self.session.confirms:
            confirms.append(self.session.confirms.popleft())
        if confirms:
            self.stats.confirmed += self.outbox.confirmed(confirms)
        acked: list[_InFlight] = []
        while self.session.acks:
            mid, rc = self.session.acks.popleft()
            flight = self._inflight.pop(mid, None)
            if flight is None:
                continue  # the status message, or a QoS 0 message from a connection already given up
            if rc is None or not rc.is_failure:
                acked.append(flight)
            elif rc.value in RETRYABLE_PUBACK:
                self.stats.publish_retries += 1
                self.outbox.retry_message(flight.row, f"broker: {rc}")
            else:
                self.stats.refused_by_broker += 1
                self.outbox.dead_message(flight.row, DropReason.REFUSED_BY_BROKER, f"broker: {rc}")
        # QoS 0 messages sent on a connection that has since died may never have left: send them again.
        for mid, flight in list(self._inflight.items()):
            if flight.qos == 0 and flight.epoch != self.session.epoch:
                del self._inflight[mid]
        if not acked:
            return
        self.outbox.acked(f.row for f in acked)
        for f in acked:
            if f.klass is MessageClass.VIOLATION:
                self.stats.published += 1
                kind = f.label.split(" ")[2] if f.label.count(" ") >= 2 else "event"
                self.stats.by_type[kind] = self.stats.by_type.get(kind, 0) + 1
                log.info("%s delivered", f.label)


def _describe(outbox: Outbox) -> str:
    s = outbox.stats()
    drops = ", ".join(f"{k}.{r}={n}" for (k, r), n in sorted(s.drops.items())) or "none"
    return (
        f"{s.messages[MessageClass.VIOLATION]} event(s), {s.messages[MessageClass.TELEMETRY]} telemetry, "
        f"{s.uploads} upload(s) waiting, {s.bytes} of {s.max_bytes} bytes; drops: {drops}"
    )

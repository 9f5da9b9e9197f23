"""Ingest workers: group commit between paho's network thread and the database, acknowledged after the commit.

paho hands every event and status message to ``IngestWorkers.submit`` (it only queues, so paho's thread keeps
reading). N worker threads each take up to ``batch_max`` queued messages (waiting at most ``batch_wait_s`` for
the batch to fill), apply them in one transaction (``Ingestor.ingest_batch``: one commit, one fsync), and only
then

* acknowledge each message to the broker (manual PUBACK, so the broker redelivers anything not committed), and
* tell each node which of its events central committed: one QoS 1 ``Acks`` message per node per batch on
  ``{prefix}/nodes/{node}/acks`` carrying their ``message_digest``. The node forgets an event only then
  (docs/delivery.md). Duplicates and dead letters are acknowledged too: central has decided about them.

A batch that keeps failing while the database is up falls back to one message at a time, and a message that
still fails after ``QUARANTINE_AFTER_ATTEMPTS`` is dead-lettered (kind ``poison``) so it cannot block ingest.
While the database is down, batches are retried with backoff and nothing is acknowledged.

More throughput: more workers in one process (PostgreSQL; SQLite has one writer at a time anyway) and more
processes sharing ``$share/<group>/...`` (``STREETWATCH_MQTT_SHARED_GROUP``); the database's unique keys keep
concurrent ingest idempotent.

``lag_s`` is the age of the oldest message received but not yet committed; ``/healthz`` turns unhealthy when
it exceeds the stall threshold (ingest stuck on a locked or unreachable database).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from central.messaging.ingest import Ingestor, IngestResult
from edge_agent.contract import MAX_ACK_DIGESTS, Acks, Topics, message_digest, utcnow

log = logging.getLogger(__name__)

RETRY_MAX_S = 30.0
# After this many failed attempts (about 7 s of backoff) a message is dead-lettered, if the database works.
QUARANTINE_AFTER_ATTEMPTS = 5


Message = mqtt.MQTTMessage


@dataclass
class WorkerStats:
    """Counters for ``/metrics`` and ``/healthz`` (written by the workers, read by requests)."""

    batches: int = 0
    messages: int = 0
    batch_failures: int = 0
    quarantined: int = 0
    acks_published: int = 0
    acks_failed: int = 0
    largest_batch: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass(frozen=True, slots=True)
class _Queued:
    at: float
    message: Message


class IngestWorkers:
    """A queue and N threads doing group commits (see module doc)."""

    def __init__(
        self,
        ingestor: Ingestor,
        topics: Topics,
        *,
        ack: Callable[[Message], None],
        publish: Callable[[str, bytes], bool],
        workers: int = 1,
        batch_max: int = 500,
        batch_wait_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], bool] | None = None,
        housekeeping: Callable[[], object] | None = None,
        housekeeping_s: float = 300.0,
    ) -> None:
        if workers < 1 or batch_max < 1:
            raise ValueError("workers and batch_max must be >= 1")
        self._ingestor = ingestor
        self._topics = topics
        self._ack = ack
        self._publish = publish
        self.workers = workers
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self._clock = clock
        self._queue: queue.Queue[_Queued] = queue.Queue()
        self._stopping = threading.Event()
        # Waits between retries; True when stop() was called (so retries end promptly).
        self._sleep = sleep or self._stopping.wait
        self._threads: list[threading.Thread] = []
        self._busy: dict[int, float] = {}  # worker index -> receive time of its batch's oldest message
        self._lock = threading.Lock()
        self.stats = WorkerStats()
        self.last_commit: float | None = None
        self._housekeeping = housekeeping  # e.g. dead-letter retention; worker 0 runs it every housekeeping_s
        self._housekeeping_s = housekeeping_s
        self._next_housekeeping = clock()

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(i,), name=f"ingest-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking batches; what is queued stays unacknowledged and the broker redelivers it."""
        self._stopping.set()
        for t in self._threads:
            t.join(timeout_s)
        self._threads = []

    def submit(self, message: Message) -> None:
        """Queue a message (paho's network thread): never blocks, never touches the database."""
        self._queue.put(_Queued(self._clock(), message))

    # -- health ---------------------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def lag_s(self) -> float:
        """Age of the oldest message received and not yet committed (0 when none is waiting)."""
        now = self._clock()
        with self._lock:
            oldest = list(self._busy.values())
        with self._queue.mutex:
            if self._queue.queue:
                oldest.append(self._queue.queue[0].at)
        return max(0.0, now - min(oldest)) if oldest else 0.0

    # -- workers --------------------------------------------------------------------------------------------

    def _run(self, index: int) -> None:
        while not self._stopping.is_set():
            if index == 0 and self._housekeeping is not None and self._clock() >= self._next_housekeeping:
                self._next_housekeeping = self._clock() + self._housekeeping_s
                try:
                    self._housekeeping()
                except Exception:  # the database may be down; next round
                    log.exception("ingest housekeeping failed")
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            deadline = self._clock() + self.batch_wait_s
            while len(batch) < self.batch_max:
                left = deadline - self._clock()
                try:
                    batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._lock:
                self._busy[index] = first.at
            try:
                self._commit([q.message for q in batch])
            except Exception:  # a worker must survive anything; its messages stay unacknowledged
                log.exception("ingest worker %d failed on a batch of %d", index, len(batch))
            finally:
                with self._lock:
                    self._busy.pop(index, None)

    def _commit(self, batch: Sequence[Message]) -> None:
        items = [(m.topic, bytes(m.payload)) for m in batch]
        delay = 0.5
        for attempt in (1, 2):
            try:
                results = self._ingestor.ingest_batch(items)
            except Exception:
                self.stats.batch_failures += 1
                log.exception("ingest of a batch of %d failed (attempt %d)", len(batch), attempt)
                if self._sleep(delay):
                    return  # stopping: unacknowledged, the broker redelivers
                delay *= 2
                continue
            self._done(batch, results)
            return
        for message, item in zip(batch, items, strict=True):  # find the one that fails, ingest the others
            if self._stopping.is_set():
                return
            result = self._one(*item)
            if result is None:
                return
            self._done([message], [result])

    def _one(self, topic: str, payload: bytes) -> IngestResult | None:
        """One message with retries; dead-lettered after a few failures if the database works. None: stopping."""
        delay, attempt = 0.5, 0
        while True:
            attempt += 1
            try:
                return self._ingestor.ingest(topic, payload)
            except Exception as exc:
                log.exception("MQTT: ingest of a message on %s failed (attempt %d)", topic, attempt)
                if attempt >= QUARANTINE_AFTER_ATTEMPTS:
                    try:
                        reason = f"ingest failed {attempt} times: {type(exc).__name__}: {exc}"
                        result = self._ingestor.quarantine(topic, payload, reason)
                    except Exception:
                        log.exception("MQTT: could not dead-letter the failing message either; will retry")
                    else:
                        self.stats.quarantined += 1
                        return result
            if self._sleep(delay):
                return None
            delay = min(delay * 2, RETRY_MAX_S)

    def _done(self, batch: Sequence[Message], results: Sequence[IngestResult]) -> None:
        """After the commit: PUBACK every message, then tell each node what central now holds."""
        for message in batch:
            self._ack(message)
        self.stats.batches += 1
        self.stats.messages += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self.last_commit = self._clock()
        by_node: dict[str, list[str]] = {}
        for message in batch:
            node = self._topics.node_of(message.topic)
            if node is not None and message.topic == self._topics.events(node):
                by_node.setdefault(node, []).append(message_digest(bytes(message.payload)))
        now = utcnow()
        for node, digests in by_node.items():
            for start in range(0, len(digests), MAX_ACK_DIGESTS):
                acks = Acks(node_id=node, digests=digests[start : start + MAX_ACK_DIGESTS], at=now)
                if self._publish(self._topics.acks(node), acks.to_json()):
                    self.stats.acks_published += 1
                else:  # the node republishes after its timeout and gets acknowledged then
                    self.stats.acks_failed += 1

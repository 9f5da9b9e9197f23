"""Value types and small policies shared by the delivery modules (outbox, uploader, publisher).

Kept apart from ``outbox.py`` so the storage module stays about storage, and so tests and the load generator
can build items without opening a database.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from edge_agent.contract import Event

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig

log = logging.getLogger(__name__)


class MessageClass(StrEnum):
    """Priority class of a spooled message: violations are kept over telemetry when the cap is reached."""

    VIOLATION = "violation"
    TELEMETRY = "telemetry"


class DropReason(StrEnum):
    """Why something left the spool without being delivered (the ``drops`` table counts each)."""

    CAP_EVICTED = "cap_evicted"  # telemetry removed to make room for a newer item
    CAP_FULL = "cap_full"  # a new item (or its evidence) refused because the spool is full
    REFUSED_BY_CENTRAL = "refused_by_central"  # permanent HTTP refusal of an upload (422, 413, 415)
    MISSING_FILE = "missing_file"  # the evidence file is gone from the node's disk
    REFUSED_BY_BROKER = "refused_by_broker"  # MQTT 5 PUBACK with a permanent failure code


@dataclass(frozen=True, slots=True)
class UploadSpec:
    """Evidence bytes an event references, already on disk under ``path`` (content-addressed)."""

    sha256: str
    kind: str
    content_type: str
    size: int
    path: Path


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to spool: an MQTT message and the uploads that must be accepted before it is published."""

    topic: str
    payload: bytes
    klass: MessageClass
    qos: Literal[0, 1] = 1
    key: str | None = None
    label: str = ""
    uploads: tuple[UploadSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class PutResult:
    """What ``put_many`` did with one item: its row id (None: refused) and the evidence it had to shed."""

    id: int | None
    shed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """A spooled message ready to publish; ``stripped`` are evidence hashes that will never reach central."""

    id: int
    topic: str
    payload: bytes
    qos: int
    klass: MessageClass
    key: str | None
    label: str
    attempts: int
    stripped: frozenset[str]


@dataclass(frozen=True, slots=True)
class Upload:
    """A spooled evidence upload."""

    id: int
    message_id: int
    sha256: str
    kind: str
    content_type: str
    size: int
    path: Path
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Depth (not yet acknowledged, by class) and drops, for heartbeats and logs."""

    messages: dict[MessageClass, int]
    uploads: int
    bytes: int
    max_bytes: int
    oldest_created_at: float | None
    drops: dict[tuple[str, str], int]
    awaiting_central: int = 0  # the broker acknowledged them, central has not yet (they stay spooled)
    unconfirmed_resent: int = 0  # republished because central never acknowledged them (exact across restarts)

    @property
    def depth(self) -> int:
        return sum(self.messages.values())


def backoff_delay(
    attempt: int, initial_s: float, max_s: float, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with equal jitter: attempt n waits in [d/2, d], d = min(max_s, initial_s * 2**n).

    The jitter keeps a ward's nodes from retrying in lockstep after a shared outage (thundering herd).

    >>> [backoff_delay(n, 1.0, 8.0, rng=lambda: 1.0) for n in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    >>> backoff_delay(3, 1.0, 8.0, rng=lambda: 0.0)
    4.0
    """
    d = min(max_s, initial_s * 2.0 ** min(max(attempt, 0), 60))
    return d / 2.0 + rng() * d / 2.0


def fsync_path(path: Path) -> None:
    """Make a file and its directory entry durable (before a spool row references it).

    A missing file is only logged here: its upload is dead-lettered when it is attempted.
    """
    try:
        for target in (path, path.parent):
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as err:
        log.warning("could not fsync evidence %s: %s", path, err)


class Backoff:
    """Stateful ``backoff_delay``: the n-th consecutive failure waits attempt n's delay; success resets.

    >>> b = Backoff(1.0, 120.0, rng=lambda: 1.0)
    >>> [round(b.next_delay()) for _ in range(9)]
    [1, 2, 4, 8, 16, 32, 64, 120, 120]
    """

    def __init__(self, initial_s: float, max_s: float, rng: Callable[[], float] = random.random) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng
        self.attempt = 0

    def next_delay(self) -> float:
        delay = backoff_delay(self.attempt, self.initial_s, self.max_s, self._rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class TokenBucket:
    """Caps a node's upload bandwidth: ``rate`` bytes/s on average, bursts of at most ``capacity`` bytes.

    A node's uplink is a resident's Wi-Fi shared with the cameras and the household; a node catching up after
    an outage must not saturate it. ``take`` blocks through the injected ``sleep`` (a stop event's ``wait`` in
    the agent, a recorder in tests) until the bytes are allowed.

    >>> slept = []
    >>> t = [0.0]
    >>> bucket = TokenBucket(1000, 500, clock=lambda: t[0], sleep=slept.append)
    >>> bucket.take(500), bucket.take(250), slept
    (0.0, 0.25, [0.25])
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.tokens = capacity
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self, n: int) -> float:
        """Spend ``n`` bytes' worth of tokens, waiting as needed; returns the seconds waited."""
        waited = 0.0
        with self._lock:
            while n > 0:
                part = min(n, self.capacity)
                self._refill()
                wait = max(0.0, (part - self.tokens) / self.rate)
                if wait > 0:
                    self._sleep(wait)
                    waited += wait
                    # Credit the wait asked for: a fake sleep (tests) does not move the clock, and a sleep cut
                    # short only happens at shutdown, when the upload is abandoned anyway.
                    self._last = max(self._last, self._clock())
                    self.tokens += wait * self.rate
                    self.tokens = min(self.capacity, self.tokens)
                self.tokens -= part
                n -= int(part)
        return waited


def outbox_path(cfg: AgentConfig) -> Path:
    """Where the spool lives: ``outbox.path``, else ``outbox.sqlite3`` beside the evidence folder."""
    return cfg.outbox.path or cfg.evidence_dir.parent / "outbox.sqlite3"


@dataclass(slots=True)
class UploadStats:
    """Counters for heartbeats and logs."""

    accepted: int = 0
    retries: int = 0
    refused: int = 0
    bytes_sent: int = 0
    throttled_s: float = 0.0


@dataclass(slots=True)
class DeliveryStats:
    """Counters for heartbeats and logs: every retry, reconnect and refusal is visible."""

    upload: UploadStats
    queued: int = 0
    published: int = 0
    publish_retries: int = 0
    republished: int = 0  # messages published again because central did not acknowledge them in time
    sent: int = 0  # event publishes handed to MQTT (first tries and republishes): the cost of delivery
    confirmed: int = 0  # messages central acknowledged end to end (then forgotten)
    refused_by_broker: int = 0
    spool_failures: int = 0
    heartbeats: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    connected: bool = False
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def uploads(self) -> int:
        return self.upload.accepted

    @property
    def upload_retries(self) -> int:
        return self.upload.retries


def final_payload(m: Message) -> bytes:
    """The bytes to publish: an event loses references to evidence central refused for good (and says so)."""
    if not m.stripped:
        return m.payload
    try:
        event = Event.from_json(m.payload)
    except ValidationError:
        return m.payload
    kept = [ref for ref in event.evidence if ref.sha256 not in m.stripped]
    refused = len(event.evidence) - len(kept)
    if not refused:
        return m.payload
    measurements = {**event.measurements, "evidence_refused": float(refused)}
    return event.model_copy(update={"evidence": kept, "measurements": measurements}).to_json()

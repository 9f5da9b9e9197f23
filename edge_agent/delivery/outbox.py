"""The node's durable delivery spool: SQLite in WAL mode, one file, written before anything is sent.

Why SQLite: a crash-safe, single-file, transactional store that ships with Python and is robust on SD cards;
the spool is small (rows reference evidence files, they do not copy them) and has one writer process.

Durability. A row is committed before the message or upload it describes is attempted. An upload row goes when
central accepted the bytes (HTTP 2xx); a QoS 1 message row goes only when *central* acknowledged it end to end
(``confirmed``: its ``message_digest`` came back on ``{prefix}/nodes/{node}/acks`` after central's commit), never
at the broker's PUBACK. With WAL, ``synchronous=FULL`` fsyncs the log at every commit, so a committed row
survives ``kill -9`` *and* power loss; ``NORMAL`` survives ``kill -9`` but power loss may roll back the last
commits -- never corrupt the file. FULL is the default because the spool is the only copy of an event once the
camera moved on; acknowledgements are batched into one commit. Evidence files are fsynced before the row that
references them commits, so after a power cut a row never points at a file that did not reach the disk.

Broker crashes and queue limits. The broker's PUBACK only moves a row to *awaiting central* (``acked``): a broker
killed without persistence, or one that silently drops what exceeds its queue limits, loses messages it
acknowledged. A row awaiting central is published again (``requeue_unconfirmed``) when central confirmed a row
published ``ack_gap_s`` later (a gap), or after ``ack_timeout_s`` of silence (doubling per resend, capped at
``ack_timeout_max_s``), and counted (``unconfirmed_resent``): that count is how broker drops become visible. Nothing else is republished, so a flapping link costs no duplicates
beyond paho's own DUP resends of what was in flight.

Ordering. Messages leave in insertion order among those that are *ready*: every upload of the message is done,
its retry time has come, and no earlier message with the same ``key`` (the event id) is still waiting -- so
phases of one event reach central in order (a late ``start`` would be ``stale`` there and its snapshot lost),
while a message waiting for a slow clip does not hold back other events. Uploads go snapshots first, clips
after, oldest event first.

Cap. ``max_bytes`` bounds payloads plus evidence not yet accepted. When a new item does not fit: the oldest
telemetry is evicted first; telemetry that still does not fit is refused; a violation that still does not fit
sheds its evidence (clips first, then the largest) and, only if even the bare event does not fit, is refused.
Violations already spooled are never evicted: a promise made is kept, the newest arrival pays. Every drop is
counted in the ``drops`` table in the same transaction (exact across restarts) and logged.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from edge_agent.delivery.items import (
    DropReason,
    Item,
    Message,
    MessageClass,
    OutboxStats,
    PutResult,
    Upload,
    backoff_delay,
    fsync_path,
)
from edge_agent.delivery.schema import MIGRATE_FROM_1, SCHEMA, SCHEMA_VERSION

log = logging.getLogger(__name__)


def _message(r: tuple[Any, ...], stripped: frozenset[str]) -> Message:
    return Message(r[0], r[1], r[2], r[3], MessageClass(r[4]), r[5], r[6], r[7], stripped)


class OutboxError(RuntimeError):
    """The spool file cannot be used (written by a newer schema, unreadable)."""


class Outbox:
    """The spool. Thread-safe: one connection guarded by a lock (all operations are short transactions)."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        clock: Callable[[], float] = time.time,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 120.0,
        ack_timeout_s: float = 60.0,
        ack_timeout_max_s: float = 600.0,
        ack_gap_s: float = 10.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.ack_timeout_s = ack_timeout_s
        self.ack_timeout_max_s = max(ack_timeout_s, ack_timeout_max_s)
        self.ack_gap_s = ack_gap_s
        # The publish time of the newest message central confirmed: anything published ack_gap_s before it and
        # still unconfirmed was lost on the way (central commits a node's messages roughly in order).
        self._confirmed_watermark = 0.0
        self._fsync_files = synchronous == "FULL"
        self._clock = clock
        self._retry = (retry_initial_s, retry_max_s)
        self._rng = rng
        self._lock = threading.Lock()
        self._bytes = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise OutboxError(
                    f"{path} was written by a newer agent (schema {version} > {SCHEMA_VERSION})"
                )
            if version == 1:
                self._db.executescript(MIGRATE_FROM_1)
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # A restart is a natural retry point; it also heals retry times set under a wrong wall clock
            # (a Pi without RTC boots in 1970 or in the future until NTP answers). Rows awaiting central keep
            # waiting (their timeout republishes them); a future timestamp is clamped to now.
            with self._tx():
                now = self._clock()
                self._db.execute("UPDATE messages SET not_before = 0")
                self._db.execute("UPDATE messages SET acked_at = ? WHERE acked_at > ?", (now, now))
                self._db.execute("UPDATE uploads SET not_before = 0")
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise OutboxError(f"cannot open the outbox {path}: {err}") from err
        self._bytes = int(
            self._db.execute(
                "SELECT (SELECT COALESCE(SUM(length(payload)), 0) FROM messages)"
                " + (SELECT COALESCE(SUM(size), 0) FROM uploads)"
            ).fetchone()[0]
        )

    # -- writing ------------------------------------------------------------------------------------------

    def put(self, item: Item) -> PutResult:
        return self.put_many([item])[0]

    def put_many(self, items: Sequence[Item]) -> list[PutResult]:
        """Spool items in one transaction (one fsync), applying the cap policy to each in order."""
        if self._fsync_files:
            for path in {u.path for item in items for u in item.uploads}:
                fsync_path(path)
        results: list[PutResult] = []
        with self._lock, self._tx():
            now = self._clock()
            for item in items:
                results.append(self._put_one(item, now))
        return results

    def _put_one(self, item: Item, now: float) -> PutResult:
        uploads = list({u.sha256: u for u in item.uploads}.values())
        need = len(item.payload) + sum(u.size for u in uploads)
        if self._bytes + need > self.max_bytes:
            self._evict_telemetry(self._bytes + need - self.max_bytes)
        shed: list[str] = []
        if self._bytes + need > self.max_bytes:
            if item.klass is MessageClass.TELEMETRY:
                self._count_drop(MessageClass.TELEMETRY.value, DropReason.CAP_FULL, 1)
                log.warning(
                    "outbox full (%d bytes): telemetry %s refused", self._bytes, item.label or item.topic
                )
                return PutResult(None)
            # Clips first (largest, least essential), then the rest largest first.
            for spec in sorted(uploads, key=lambda u: (u.kind != "clip", -u.size)):
                if self._bytes + need <= self.max_bytes:
                    break
                uploads.remove(spec)
                need -= spec.size
                shed.append(spec.sha256)
            if self._bytes + need > self.max_bytes:
                self._count_drop(MessageClass.VIOLATION.value, DropReason.CAP_FULL, 1)
                log.error(
                    "outbox full (%d of %d bytes, all violations): %s refused",
                    self._bytes,
                    self.max_bytes,
                    item.label or item.topic,
                )
                return PutResult(None)
        cur = self._db.execute(
            "INSERT INTO messages (klass, topic, payload, qos, key, label, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (item.klass.value, item.topic, item.payload, item.qos, item.key, item.label, now),
        )
        row_id = int(cur.lastrowid or 0)
        self._db.executemany(
            "INSERT INTO uploads (message_id, sha256, kind, content_type, size, path) VALUES (?, ?, ?, ?, ?, ?)",
            [(row_id, u.sha256, u.kind, u.content_type, u.size, str(u.path)) for u in uploads],
        )
        for sha in shed:
            spec = next(u for u in item.uploads if u.sha256 == sha)
            self._dead_upload(row_id, sha, str(spec.path), DropReason.CAP_FULL, "outbox full", now)
            log.error("outbox full: %s evidence %s of %s not spooled", spec.kind, sha[:12], item.label)
        self._bytes += need
        return PutResult(row_id, tuple(shed))

    def _delete_oldest(self, where: str, order: str, excess: float, *params: object) -> tuple[int, int]:
        """Delete rows matching ``where`` in ``order`` until ``excess`` bytes are freed; (rows, bytes)."""
        rows = self._db.execute(
            f"SELECT id, length(payload) FROM messages WHERE {where} ORDER BY {order}", params
        )
        victims, freed = [], 0
        for row_id, size in rows.fetchall():
            if freed >= excess:
                break
            victims.append((row_id,))
            freed += int(size)
        self._db.executemany("DELETE FROM messages WHERE id = ?", victims)
        self._bytes -= freed
        return len(victims), freed

    def _evict_telemetry(self, excess: int) -> None:
        where = "klass = 'telemetry' AND acked_at IS NULL"
        evicted, freed = self._delete_oldest(where, "id", excess)
        if evicted:
            self._count_drop(MessageClass.TELEMETRY.value, DropReason.CAP_EVICTED, evicted)
            log.warning("outbox full: evicted the %d oldest telemetry message(s) (%d bytes)", evicted, freed)

    # -- reading --------------------------------------------------------------------------------------------

    def ready_messages(self, limit: int, exclude: Iterable[int] = ()) -> list[Message]:
        """Up to ``limit`` messages ready to publish, oldest first, skipping ``exclude`` (already in flight)."""
        skip = set(exclude)
        with self._lock:
            rows = self._db.execute(
                "SELECT m.id, m.topic, m.payload, m.qos, m.klass, m.key, m.label, m.attempts FROM messages AS m"
                " WHERE m.acked_at IS NULL AND m.not_before <= ?"
                " AND NOT EXISTS (SELECT 1 FROM uploads AS u WHERE u.message_id = m.id)"
                " AND (m.key IS NULL OR NOT EXISTS (SELECT 1 FROM messages AS p"
                "      WHERE p.key = m.key AND p.id < m.id AND p.acked_at IS NULL))"
                " ORDER BY m.id LIMIT ?",
                (self._clock(), limit + len(skip)),
            ).fetchall()
            rows = [r for r in rows if r[0] not in skip][:limit]
            stripped: dict[int, set[str]] = {}
            if rows:
                marks = ",".join("?" * len(rows))
                for message_id, sha in self._db.execute(
                    f"SELECT message_id, sha256 FROM dead_letters WHERE what = 'upload' AND message_id IN ({marks})",
                    [r[0] for r in rows],
                ):
                    stripped.setdefault(int(message_id), set()).add(str(sha))
        return [_message(r, frozenset(stripped.get(r[0], ()))) for r in rows]

    def next_upload(self) -> Upload | None:
        """The upload to try now: snapshots before clips, then the oldest event; None when none is due."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, message_id, sha256, kind, content_type, size, path, attempts FROM uploads"
                " WHERE not_before <= ? ORDER BY (kind = 'clip'), message_id, id LIMIT 1",
                (self._clock(),),
            ).fetchone()
        if row is None:
            return None
        return Upload(row[0], row[1], row[2], row[3], row[4], row[5], Path(row[6]), row[7])

    def next_due_in(self, table: Literal["messages", "uploads"]) -> float | None:
        """Seconds until the earliest row of ``table`` may be tried (0: now); None when the table is empty."""
        with self._lock:
            pending = " WHERE acked_at IS NULL" if table == "messages" else ""
            row = self._db.execute(f"SELECT MIN(not_before) FROM {table}{pending}").fetchone()
        return None if row[0] is None else max(0.0, float(row[0]) - self._clock())

    def stats(self) -> OutboxStats:
        with self._lock:
            violations, telemetry, awaiting, uploads, oldest, resent = self._db.execute(
                "SELECT (SELECT COUNT(*) FROM messages WHERE klass = 'violation'),"
                " (SELECT COUNT(*) FROM messages WHERE klass = 'telemetry'),"
                " (SELECT COUNT(*) FROM messages WHERE acked_at IS NOT NULL), (SELECT COUNT(*) FROM uploads),"
                " (SELECT MIN(created_at) FROM messages),"
                " (SELECT COALESCE(SUM(n), 0) FROM counters WHERE name = 'unconfirmed_resent')"
            ).fetchone()
            drops = {(k, r): n for k, r, n in self._db.execute("SELECT klass, reason, n FROM drops")}
            total = self._bytes
        return OutboxStats(
            {MessageClass.VIOLATION: violations, MessageClass.TELEMETRY: telemetry},
            uploads,
            total,
            self.max_bytes,
            oldest,
            drops,
            awaiting,
            resent,
        )

    def depth(self) -> int:
        """Messages central has not acknowledged yet (awaiting the broker or central): what a node still owes."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def dead_letters(self) -> list[dict[str, object]]:
        """Everything dead-lettered on this node (for technicians and tests), oldest first."""
        with self._lock:
            cur = self._db.execute(
                "SELECT id, at, what, message_id, sha256, path, topic, reason, detail FROM dead_letters ORDER BY id"
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # -- outcomes -------------------------------------------------------------------------------------------

    def published_many(self, rows: Sequence[tuple[int, str]]) -> None:
        """These rows' bytes are about to go to MQTT: remember each digest (what central will acknowledge)."""
        if not rows:
            return
        with self._lock, self._tx():
            now = self._clock()
            self._db.executemany(
                "UPDATE messages SET digest = ?, published_at = ? WHERE id = ?",
                [(d, now, i) for i, d in rows],
            )

    def acked(self, ids: Iterable[int]) -> int:
        """The broker acknowledged these rows (one commit for the batch): QoS 0 rows are done and removed;
        QoS 1 rows only start *awaiting central* (``confirmed`` removes them). Returns how many changed."""
        batch = list(ids)
        if not batch:
            return 0
        marks = ",".join("?" * len(batch))
        with self._lock, self._tx():
            removed, freed = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM messages WHERE id IN ({marks}) AND qos = 0",
                batch,
            ).fetchone()
            self._db.execute(f"DELETE FROM messages WHERE id IN ({marks}) AND qos = 0", batch)
            cur = self._db.execute(
                f"UPDATE messages SET acked_at = ? WHERE id IN ({marks}) AND acked_at IS NULL",
                [self._clock(), *batch],
            )
            self._bytes -= int(freed)
        return int(removed) + cur.rowcount

    def confirmed(self, digests: Iterable[str]) -> int:
        """Central committed the messages with these digests: forget them (one commit); returns how many."""
        batch = list(set(digests))
        if not batch:
            return 0
        removed = 0
        with self._lock, self._tx():
            for start in range(0, len(batch), 500):  # SQLite's bound-parameter limit
                part = batch[start : start + 500]
                marks = ",".join("?" * len(part))
                n, freed, newest = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0), MAX(published_at) FROM messages"
                    f" WHERE digest IN ({marks})",
                    part,
                ).fetchone()
                if newest is not None:
                    self._confirmed_watermark = max(self._confirmed_watermark, float(newest))
                self._db.execute(f"DELETE FROM messages WHERE digest IN ({marks})", part)
                self._bytes -= int(freed)
                removed += int(n)
        return removed

    def awaiting_central(self) -> int:
        """Rows the broker acknowledged that central has not (the publisher bounds them: flow control)."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM messages WHERE acked_at IS NOT NULL").fetchone()
        return int(row[0])

    def requeue_unconfirmed(self) -> int:
        """Publish again what the broker acknowledged but central did not; returns how many. A row goes again

        * when central confirmed a message published more than ``ack_gap_s`` after it (a gap: the broker
          lost this one -- central commits a node's messages roughly in order), or
        * after ``ack_timeout_s`` without central's word at all, the wait doubling with every resend of the
          row (capped), so a central that is down for an hour is not flooded with copies when it returns."""
        now = self._clock()
        gap_before = self._confirmed_watermark - self.ack_gap_s
        with self._lock, self._tx():
            rows = self._db.execute(
                "SELECT id, acked_at, resends, published_at FROM messages"
                " WHERE acked_at IS NOT NULL AND (acked_at <= ? OR published_at < ?)",
                (now - self.ack_timeout_s, gap_before),
            ).fetchall()
            due = [
                (int(r[0]),)
                for r in rows
                if (r[3] is not None and float(r[3]) < gap_before)
                or float(r[1]) + min(self.ack_timeout_s * 2 ** min(int(r[2]), 16), self.ack_timeout_max_s)
                <= now
            ]
            self._db.executemany(
                "UPDATE messages SET acked_at = NULL, not_before = 0, resends = resends + 1 WHERE id = ?", due
            )
            if due:
                self._db.execute(
                    "INSERT INTO counters (name, n) VALUES ('unconfirmed_resent', ?)"
                    " ON CONFLICT (name) DO UPDATE SET n = n + excluded.n",
                    (len(due),),
                )
        return len(due)

    def retry_message(self, message_id: int, error: str) -> float:
        """A publish failed transiently: try again after a jittered backoff; returns the delay."""
        return self._retry_row("messages", message_id, error)

    def dead_message(self, message_id: int, reason: DropReason, detail: str) -> None:
        """A publish was refused for good (MQTT 5 failure code): keep the bytes locally, count the drop."""
        with self._lock, self._tx():
            row = self._db.execute(
                "SELECT klass, topic, payload FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                return
            self._db.execute(
                "INSERT INTO dead_letters (at, what, message_id, topic, payload, reason, detail)"
                " VALUES (?, 'message', ?, ?, ?, ?, ?)",
                (self._clock(), message_id, row[1], row[2], reason.value, detail),
            )
            self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            self._bytes -= len(row[2])
            self._count_drop(str(row[0]), reason, 1)
        log.error("message %d on %s dead-lettered: %s (%s)", message_id, row[1], reason.value, detail)

    def upload_done(self, sha256: str) -> int:
        """Central accepted these bytes: every upload row of that hash is done; returns how many."""
        with self._lock, self._tx():
            sizes = self._db.execute("SELECT size FROM uploads WHERE sha256 = ?", (sha256,)).fetchall()
            self._db.execute("DELETE FROM uploads WHERE sha256 = ?", (sha256,))
            self._bytes -= sum(int(s[0]) for s in sizes)
        return len(sizes)

    def retry_upload(self, upload_id: int, error: str) -> float:
        """An upload failed transiently (central down, 5xx, timeout): retry later; returns the delay."""
        return self._retry_row("uploads", upload_id, error)

    def dead_upload(self, upload_id: int, reason: DropReason, detail: str) -> None:
        """An upload can never succeed: dead-letter it so its event is published without that reference."""
        with self._lock, self._tx():
            row = self._db.execute(
                "SELECT message_id, sha256, path, size FROM uploads WHERE id = ?", (upload_id,)
            ).fetchone()
            if row is None:
                return
            self._db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
            self._bytes -= int(row[3])
            self._dead_upload(int(row[0]), str(row[1]), str(row[2]), reason, detail, self._clock())
        log.error("evidence %s dead-lettered: %s (%s)", str(row[1])[:12], reason.value, detail)

    # -- internals ------------------------------------------------------------------------------------------

    def _dead_upload(
        self, message_id: int, sha256: str, path: str, reason: DropReason, detail: str, now: float
    ) -> None:
        self._db.execute(
            "INSERT INTO dead_letters (at, what, message_id, sha256, path, reason, detail)"
            " VALUES (?, 'upload', ?, ?, ?, ?, ?)",
            (now, message_id, sha256, path, reason.value, detail),
        )
        self._count_drop("evidence", reason, 1)

    def _retry_row(self, table: Literal["messages", "uploads"], row_id: int, error: str) -> float:
        with self._lock, self._tx():
            row = self._db.execute(f"SELECT attempts FROM {table} WHERE id = ?", (row_id,)).fetchone()
            if row is None:
                return 0.0
            delay = backoff_delay(int(row[0]), *self._retry, rng=self._rng)
            self._db.execute(
                f"UPDATE {table} SET attempts = attempts + 1, not_before = ?, last_error = ? WHERE id = ?",
                (self._clock() + delay, error[:500], row_id),
            )
        return delay

    def _count_drop(self, klass: str, reason: DropReason, n: int) -> None:
        self._db.execute(
            "INSERT INTO drops (klass, reason, n) VALUES (?, ?, ?)"
            " ON CONFLICT (klass, reason) DO UPDATE SET n = n + excluded.n",
            (klass, reason.value, n),
        )

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; on error ``ROLLBACK`` and restore the in-memory byte count."""
        saved = self._bytes
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._bytes = saved
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""Evidence uploads from the outbox to central: ``PUT /api/v1/evidence/{sha256}`` with the node's bearer token.

Central re-hashes every upload and answers 201 (stored) or 200 (already had it), so retrying is always safe.
What each answer means for the spooled row, and why:

* **2xx** -- accepted: every upload row of that hash is done, its events may be published.
* **422 / 413 / 415** (hash mismatch or empty body, too large, content type) -- the same bytes will be refused
  forever. The row is dead-lettered on the node (reason ``refused_by_central``; the file stays on disk and the
  dead letter says where) and the event is published *without* that reference. Blocking would hold every later
  phase of the event forever for bytes that are already lost (typically a file truncated by a power cut);
  publishing the reference would show officers evidence central cannot serve; dropping the event would throw
  away a valid observation (time, place, objects, measurements). The publisher marks such an event with the
  measurement ``evidence_refused`` so the review page can tell.
* **missing local file** -- the same, reason ``missing_file``.
* **401 / 403** -- a wrong or revoked node token: an operator fixes the configuration, nothing is lost
  meanwhile. Retried with the capped backoff and logged as an error every time.
* **anything else** (connection refused, timeout, 5xx, 429) -- transient: retried with jittered backoff.

Bandwidth: a token bucket caps the node's upload rate; snapshots go before clips (the outbox orders them), so
a long clip never delays the snapshot an officer needs first.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import BinaryIO, Final

import httpx

from edge_agent.delivery.items import DropReason, TokenBucket, Upload, UploadStats
from edge_agent.delivery.outbox import Outbox

log = logging.getLogger(__name__)

PERMANENT_STATUSES: Final = frozenset({413, 415, 422})
CHUNK_BYTES: Final = 64 * 1024
IDLE_WAIT_S: Final = 5.0


class UploadOutcome(StrEnum):
    ACCEPTED = "accepted"
    RETRY = "retry"
    DEAD = "dead"


class EvidenceUploader:
    """Uploads spooled evidence one file at a time, throttled, and records each outcome in the outbox."""

    def __init__(
        self,
        outbox: Outbox,
        http: httpx.Client,
        *,
        bucket: TokenBucket | None = None,
        on_accepted: Callable[[], None] = lambda: None,
    ) -> None:
        self.outbox = outbox
        self.http = http
        self.bucket = bucket
        self.stats = UploadStats()
        self._on_accepted = on_accepted

    def upload(self, up: Upload) -> UploadOutcome:
        """Try one upload now and record the outcome (accepted, retry later, or dead-lettered)."""
        try:
            f = up.path.open("rb")
        except FileNotFoundError:
            self.outbox.dead_upload(up.id, DropReason.MISSING_FILE, f"{up.path} is gone")
            self.stats.refused += 1
            return UploadOutcome.DEAD
        except OSError as err:
            return self._retry(up, f"cannot read {up.path}: {err}")
        with f:
            size = _size_of(f)
            try:
                response = self.http.put(
                    f"/api/v1/evidence/{up.sha256}",
                    content=self._body(f),
                    # The kind tells central to restrict an unblurred original before its bytes are readable.
                    headers={
                        "Content-Type": up.content_type,
                        "Content-Length": str(size),
                        "X-Evidence-Kind": str(up.kind),
                    },
                )
            except (httpx.HTTPError, OSError) as err:
                return self._retry(up, f"{type(err).__name__}: {err}")
        status = response.status_code
        if 200 <= status < 300:
            self.outbox.upload_done(up.sha256)
            self.stats.accepted += 1
            log.info(
                "evidence %s (%s, %d bytes) accepted by central (%d)", up.sha256[:12], up.kind, size, status
            )
            self._on_accepted()
            return UploadOutcome.ACCEPTED
        detail = f"HTTP {status}: {response.text[:300]}"
        if status in PERMANENT_STATUSES:
            self.outbox.dead_upload(up.id, DropReason.REFUSED_BY_CENTRAL, detail)
            self.stats.refused += 1
            self._on_accepted()  # its event may now be published without the reference
            return UploadOutcome.DEAD
        if status in (401, 403):
            log.error("central refused the node token for evidence %s: %s", up.sha256[:12], detail)
        return self._retry(up, detail)

    def _body(self, f: BinaryIO) -> Iterator[bytes]:
        while chunk := f.read(CHUNK_BYTES):
            if self.bucket is not None:
                self.stats.throttled_s += self.bucket.take(len(chunk))
            self.stats.bytes_sent += len(chunk)
            yield chunk

    def _retry(self, up: Upload, error: str) -> UploadOutcome:
        delay = self.outbox.retry_upload(up.id, error)
        self.stats.retries += 1
        log.warning(
            "upload of evidence %s failed (attempt %d: %s); retry in %.1f s",
            up.sha256[:12],
            up.attempts + 1,
            error,
            delay,
        )
        return UploadOutcome.RETRY

    def run(self, stop: threading.Event, wake: threading.Event) -> None:
        """Upload whatever is due until ``stop``; sleeps until the next retry is due or ``wake`` is set."""
        while not stop.is_set():
            try:
                up = self.outbox.next_upload()
                if up is not None:
                    self.upload(up)
                    continue
                due = self.outbox.next_due_in("uploads")
            except Exception:  # the thread must survive anything (a full disk, a bug) and keep trying
                log.exception("uploader failed; continuing")
                due = IDLE_WAIT_S
            wake.wait(IDLE_WAIT_S if due is None else min(max(due, 0.05), IDLE_WAIT_S))
            wake.clear()


def _size_of(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size

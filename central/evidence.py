"""Content-addressed evidence store on the local filesystem.

Evidence is what an officer's decision rests on, so central never trusts the hash a node claims: the bytes are
re-hashed while they stream in, and only a match is kept. Files are written to a temporary name in the same
filesystem, fsynced, then atomically renamed into ``ab/cd/<sha256>``, so a crash leaves either nothing or a
complete file, never a truncated one under a valid name. Uploading the same bytes twice is harmless.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from central.db.models import EvidenceRow
from edge_agent.contract import utcnow

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ALLOWED_CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "video/mp4"})


class EvidenceError(Exception):
    """An upload central refuses; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class StoredEvidence:
    """The outcome of an upload."""

    sha256: str
    size: int
    content_type: str
    created: bool  # False: central already had these bytes


class PendingUpload:
    """Bytes being received into a temp file while their SHA-256 and size are computed."""

    def __init__(self, file: BinaryIO, path: Path, max_bytes: int) -> None:
        self._file = file
        self.path = path
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk; refuses (413) as soon as the upload grows past the limit."""
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise EvidenceError(413, f"evidence larger than the limit of {self._max_bytes} bytes")
        self._hash.update(chunk)
        self._file.write(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Flush and fsync the temp file so the rename that follows publishes durable bytes."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        """Remove the temp file (on any failure)."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class EvidenceStore:
    """Evidence files under ``root/ab/cd/<sha256>`` plus one ``evidence`` row per file."""

    def __init__(self, root: Path, *, max_bytes: int, clock: Callable[[], datetime] = utcnow) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._clock = clock
        self._tmp = root / "tmp"

    @staticmethod
    def relative_path(sha256: str) -> Path:
        """Two levels of fan-out keep directories small (256 x 256 buckets)."""
        return Path(sha256[:2]) / sha256[2:4] / sha256

    def path_of(self, sha256: str) -> Path:
        """Where the bytes of ``sha256`` live (whether or not they exist yet)."""
        check_sha256(sha256)
        return self.root / self.relative_path(sha256)

    def delete(self, sha256: str) -> None:
        """Remove the bytes of ``sha256`` (retention); absent bytes are fine."""
        self.path_of(sha256).unlink(missing_ok=True)

    def begin(self) -> PendingUpload:
        """Start receiving an upload into a temp file on the same filesystem as the store."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self._tmp)
        return PendingUpload(os.fdopen(fd, "wb"), Path(name), self.max_bytes)

    def commit(
        self, session: Session, upload: PendingUpload, claimed_sha256: str, content_type: str
    ) -> StoredEvidence:
        """Verify the hash, move the file into place and record it; 422 (nothing kept) on mismatch."""
        try:
            check_sha256(claimed_sha256)
            if upload.size == 0:
                raise EvidenceError(422, "empty upload")
            actual = upload.sha256
            if actual != claimed_sha256:
                raise EvidenceError(
                    422, f"sha256 mismatch: the URL says {claimed_sha256} but the body hashes to {actual}"
                )
            upload.finish()
            final = self.path_of(actual)
            created = not final.exists()
            if created:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(upload.path, final)
                _fsync_dir(final.parent)
            else:
                upload.discard()
        except BaseException:
            upload.discard()
            raise
        row = session.get(EvidenceRow, actual)
        if row is None:  # also heals a file that landed on disk before a crash skipped its row
            session.add(
                EvidenceRow(
                    sha256=actual,
                    content_type=content_type,
                    size=upload.size,
                    stored_at=self._clock(),
                    path=self.relative_path(actual).as_posix(),
                )
            )
            created = True
        if created:
            log.info("stored evidence %s (%s, %d bytes)", actual, content_type, upload.size)
        return StoredEvidence(actual, upload.size, row.content_type if row else content_type, created)


def check_sha256(value: str) -> None:
    """Refuse anything that is not a lower-case hex SHA-256 (also keeps paths inside the store)."""
    if not SHA256_RE.fullmatch(value):
        raise EvidenceError(422, "sha256 must be 64 lower-case hex characters")


def check_content_type(value: str | None) -> str:
    """The bare MIME type of a ``Content-Type`` header, if it is one central accepts (else 415)."""
    media_type = (value or "").split(";", 1)[0].strip().lower()
    if media_type not in ALLOWED_CONTENT_TYPES:
        allowed = ", ".join(sorted(ALLOWED_CONTENT_TYPES))
        raise EvidenceError(415, f"Content-Type {value!r} not accepted; use one of {allowed}")
    return media_type


def _fsync_dir(path: Path) -> None:
    """Persist a rename: the directory entry must reach the disk too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

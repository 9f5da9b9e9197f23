"""Evidence in any S3-compatible object store (AWS S3, MinIO, Ceph RGW) via boto3, content-addressed as on disk.

Same contract as the filesystem ``EvidenceStore``: an upload streams into a local temp file while its SHA-256 is
computed (central never trusts the hash a node claims), and only a match is stored, under
``<prefix>ab/cd/<sha256>`` -- so the key *is* the content and uploading the same bytes twice is harmless. The
object also carries the hash as ``x-amz-meta-sha256`` and S3's own ``ChecksumSHA256`` where the store supports
it, so the bytes are checked again on arrival at the store. Reads stream the object in chunks to the
authorised user (``open``); nothing is staged on central's disk.

Configuration comes from the environment, never from files in the repository: ``STREETWATCH_S3_BUCKET``,
``STREETWATCH_S3_PREFIX`` (e.g. ``evidence/``), ``STREETWATCH_S3_ENDPOINT_URL`` (MinIO/Ceph: their URL; AWS:
unset), ``STREETWATCH_S3_REGION``, and the credentials boto3 reads itself (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, an instance profile...).

Retention: ``central.retention.purge_evidence`` (cases, audit) deletes through ``store.delete``, so it works on
S3 too; ``apply_retention`` here is the same policy with an injectable ``locked`` hook (default: the hashes
cases hold, ``central.cases.locked_evidence``). Locked evidence is never deleted whatever its age.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.db.models import EvidenceRow
from central.evidence import EvidenceError, EvidenceStore, PendingUpload, StoredEvidence, check_sha256
from edge_agent.contract import utcnow

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class S3Location:
    """Where evidence goes: bucket, key prefix, endpoint (MinIO/Ceph) and region."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None


def make_client(location: S3Location) -> Any:
    """A boto3 S3 client; credentials come from boto3's usual chain (environment, profile, instance role)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=location.endpoint_url,
        region_name=location.region or "us-east-1",
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
    )


class S3EvidenceStore(EvidenceStore):
    """``EvidenceStore`` whose committed bytes live in S3 (temp files stay local while hashing)."""

    def __init__(
        self,
        location: S3Location,
        tmp_root: Path,
        *,
        max_bytes: int,
        client: Any | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(tmp_root, max_bytes=max_bytes, clock=clock)
        self.location = location
        self.client = client or make_client(location)

    def key_of(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self.location.prefix}{self.relative_path(sha256).as_posix()}"

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.location.bucket, Key=self.key_of(sha256))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def commit(
        self, session: Session, upload: PendingUpload, claimed_sha256: str, content_type: str
    ) -> StoredEvidence:
        """Verify the hash, put the object (unless the store has it) and record it; 422 on mismatch."""
        import base64

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
            created = not self.exists(actual)
            if created:
                with upload.path.open("rb") as body:
                    self.client.put_object(
                        Bucket=self.location.bucket,
                        Key=self.key_of(actual),
                        Body=body,
                        ContentType=content_type,
                        ContentLength=upload.size,
                        ChecksumSHA256=base64.b64encode(bytes.fromhex(actual)).decode(),
                        Metadata={"sha256": actual},
                    )
        finally:
            upload.discard()
        row = session.get(EvidenceRow, actual)
        if row is None:
            session.add(
                EvidenceRow(
                    sha256=actual,
                    content_type=content_type,
                    size=upload.size,
                    stored_at=self._clock(),
                    path=self.key_of(actual),
                )
            )
            created = True
        if created:
            log.info("stored evidence %s in s3://%s (%d bytes)", actual, self.location.bucket, upload.size)
        return StoredEvidence(actual, upload.size, row.content_type if row else content_type, created)

    def open(self, sha256: str) -> Iterator[bytes]:
        """The object's bytes in chunks (for a streaming response); ``EvidenceError(404)`` when absent."""
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.location.bucket, Key=self.key_of(sha256))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise EvidenceError(404, "evidence not found") from err
            raise
        body = obj["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(CHUNK_BYTES)
            finally:
                body.close()

        return chunks()

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.location.bucket, Key=self.key_of(sha256))


def case_locked_hashes(session: Session) -> set[str]:
    """Evidence hashes held by a case (never deleted by retention): ``central.cases.locked_evidence``."""
    from central.cases import locked_evidence

    return set(locked_evidence(session))


def apply_retention(
    session: Session,
    store: S3EvidenceStore,
    cutoff: datetime,
    *,
    locked: Callable[[Session], set[str]] = case_locked_hashes,
    limit: int = 1000,
) -> tuple[int, int]:
    """Delete evidence stored before ``cutoff`` that no case locks; returns (deleted, kept because locked)."""
    held = locked(session)
    rows = session.scalars(
        select(EvidenceRow).where(EvidenceRow.stored_at < cutoff).order_by(EvidenceRow.stored_at).limit(limit)
    ).all()
    deleted = kept = 0
    for row in rows:
        if row.sha256 in held:
            kept += 1
            continue
        store.delete(row.sha256)
        session.delete(row)
        deleted += 1
    if deleted or kept:
        log.info("evidence retention: %d deleted, %d kept (locked by a case)", deleted, kept)
    return deleted, kept

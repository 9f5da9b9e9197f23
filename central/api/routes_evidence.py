"""Evidence upload (nodes, bearer token) and download (logged-in users).

``PUT /api/v1/evidence/{sha256}`` is idempotent: nodes retry uploads from their outbox until they get a 2xx,
and the same bytes again answer ``200`` instead of ``201``. Responses carry a JSON ``detail`` on every refusal
so the node's log says why (wrong token, hash mismatch, too big, wrong type).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from central import audit
from central.api.deps import ApiUser, CentralDep, DbSession, NodeAuth
from central.api.schemas import ErrorOut, EvidenceUploadOut
from central.context import Central
from central.db.models import EvidenceRow
from central.evidence import (
    EvidenceError,
    PendingUpload,
    StoredEvidence,
    check_content_type,
    check_sha256,
)
from central.evidence_s3 import S3EvidenceStore
from central.scope import evidence_in_scope, scope_of

router = APIRouter(tags=["evidence"])

_ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorOut} for code in (401, 413, 415, 422)}


def _commit(central: Central, upload: PendingUpload, sha256: str, content_type: str) -> StoredEvidence:
    # Runs in the thread pool: fsync and the database write must not stall the event loop.
    try:
        with central.db.session() as session:
            return central.evidence.commit(session, upload, sha256, content_type)
    except IntegrityError:
        # A concurrent upload of the same bytes recorded the row first; the file is identical either way.
        return StoredEvidence(upload.sha256, upload.size, content_type, created=False)


@router.put(
    "/api/v1/evidence/{sha256}",
    response_model=EvidenceUploadOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": EvidenceUploadOut, "description": "Already stored."}, **_ERRORS},
)
async def upload_evidence(
    sha256: str,
    request: Request,
    central: CentralDep,
    node: NodeAuth,  # the shared node token or an enrolled node's own token (401 otherwise)
    content_type: Annotated[str | None, Header()] = None,
    content_length: Annotated[int | None, Header()] = None,
) -> JSONResponse:
    """Store the request body under its SHA-256 after re-hashing it (body = raw bytes)."""
    try:
        check_sha256(sha256)
        media_type = check_content_type(content_type)
        if content_length is not None and content_length > central.evidence.max_bytes:
            raise EvidenceError(413, f"evidence larger than the limit of {central.evidence.max_bytes} bytes")
        upload = central.evidence.begin()
        try:
            # Small buffered writes into the page cache are cheap; the slow fsync happens in _commit.
            async for chunk in request.stream():
                upload.write(chunk)
        except BaseException:
            upload.discard()
            raise
        stored = await run_in_threadpool(_commit, central, upload, sha256, media_type)
    except EvidenceError as exc:
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)
    body = EvidenceUploadOut(
        sha256=stored.sha256, size=stored.size, content_type=stored.content_type, created=stored.created
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status.HTTP_201_CREATED if stored.created else status.HTTP_200_OK,
    )


@router.get("/evidence/{sha256}", response_class=FileResponse)
def get_evidence(sha256: str, user: ApiUser, db: DbSession, central: CentralDep) -> Response:
    """The stored bytes, for users whose wards hold an event referencing them (404 otherwise); audited.

    Content-addressed, so the browser may cache them privately for good.
    """
    try:
        check_sha256(sha256)
    except EvidenceError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such evidence") from None
    if not evidence_in_scope(db, scope_of(db, user.username, user.role), sha256):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such evidence")
    row = db.get(EvidenceRow, sha256)
    store = central.evidence
    if isinstance(store, S3EvidenceStore):  # streamed from the object store, never staged on disk
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such evidence")
        try:
            chunks = store.open(sha256)
        except EvidenceError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such evidence") from None
        audit.record(db, user.username, "evidence.view", f"evidence:{sha256}", {}, at=central.clock())
        db.commit()
        return StreamingResponse(
            chunks,
            media_type=row.content_type,
            headers={
                "Content-Length": str(row.size),
                "Cache-Control": "private, max-age=31536000, immutable",
                "X-Content-Type-Options": "nosniff",
            },
        )
    path = central.evidence.path_of(sha256)
    if row is None or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such evidence")
    audit.record(db, user.username, "evidence.view", f"evidence:{sha256}", {}, at=central.clock())
    db.commit()
    return FileResponse(
        path,
        media_type=row.content_type,
        headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )

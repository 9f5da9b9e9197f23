"""Evidence upload: bearer token, re-hashing, size limit, idempotency, atomic storage; login to download."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import EvidenceRow
from central.db.session import Database
from central.evidence import EvidenceError, EvidenceStore
from central.settings import Settings
from tests.central.conftest import NODE_TOKEN, login
from tests.central.factories import JPEG_BYTES, TOPICS, make_event, sha256_of

AUTH = {"Authorization": f"Bearer {NODE_TOKEN}", "Content-Type": "image/jpeg"}


def stored_files(settings: Settings) -> list[Path]:
    """Evidence files on disk, excluding the temp folder (which must be empty anyway)."""
    root = settings.evidence_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def put(client: TestClient, sha: str, body: bytes, headers: dict[str, str] | None = None):
    return client.put(f"/api/v1/evidence/{sha}", content=body, headers=AUTH if headers is None else headers)


def test_upload_then_same_bytes_again(client: TestClient, settings: Settings) -> None:
    sha = sha256_of(JPEG_BYTES)
    first = put(client, sha, JPEG_BYTES)
    assert first.status_code == 201, first.text
    assert first.json() == {
        "sha256": sha,
        "size": len(JPEG_BYTES),
        "content_type": "image/jpeg",
        "created": True,
    }
    again = put(client, sha, JPEG_BYTES)
    assert again.status_code == 200
    assert again.json()["created"] is False
    [path] = stored_files(settings)
    assert path == settings.evidence_dir / sha[:2] / sha[2:4] / sha
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha  # what is stored re-hashes


def test_hash_mismatch_is_422_and_nothing_is_kept(
    client: TestClient, settings: Settings, db: Database
) -> None:
    claimed = sha256_of(b"something else")
    response = put(client, claimed, JPEG_BYTES)
    assert response.status_code == 422
    assert "sha256 mismatch" in response.json()["detail"]
    assert stored_files(settings) == []
    with db.session() as session:
        assert session.scalars(select(EvidenceRow)).all() == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Content-Type": "image/jpeg"}, id="no-token"),
        pytest.param(
            {"Authorization": "Bearer wrong-token-wrong-token", "Content-Type": "image/jpeg"}, id="wrong"
        ),
        pytest.param({"Authorization": NODE_TOKEN, "Content-Type": "image/jpeg"}, id="no-bearer-scheme"),
        pytest.param({"Authorization": f"Basic {NODE_TOKEN}", "Content-Type": "image/jpeg"}, id="basic"),
    ],
)
def test_bad_token_is_401(client: TestClient, settings: Settings, headers: dict[str, str]) -> None:
    response = put(client, sha256_of(JPEG_BYTES), JPEG_BYTES, headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stored_files(settings) == []


@pytest.mark.parametrize(
    ("sha", "content_type", "body", "status"),
    [
        pytest.param("ABC", "image/jpeg", JPEG_BYTES, 422, id="bad-hash-format"),
        pytest.param(sha256_of(JPEG_BYTES).upper(), "image/jpeg", JPEG_BYTES, 422, id="upper-case-hash"),
        pytest.param(sha256_of(JPEG_BYTES), "text/html", JPEG_BYTES, 415, id="wrong-type"),
        pytest.param(sha256_of(b""), "image/png", b"", 422, id="empty"),
        pytest.param(sha256_of(b"x" * 70_000), "video/mp4", b"x" * 70_000, 413, id="too-big"),
    ],
)
def test_refused_uploads(
    client: TestClient, settings: Settings, sha: str, content_type: str, body: bytes, status: int
) -> None:
    headers = {**AUTH, "Content-Type": content_type}
    response = put(client, sha, body, headers)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert stored_files(settings) == []


def test_streamed_body_over_the_limit_is_refused_without_content_length(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    store = EvidenceStore(tmp_path / "ev", max_bytes=10)
    upload = store.begin()
    upload.write(b"12345")
    with pytest.raises(EvidenceError) as info:
        upload.write(b"678901")
    assert info.value.status_code == 413
    upload.discard()
    assert not any(p.is_file() for p in (tmp_path / "ev").rglob("*"))


def test_content_type_parameters_are_accepted(client: TestClient) -> None:
    body = b"\x89PNG fake"
    response = put(client, sha256_of(body), body, {**AUTH, "Content-Type": "image/png; charset=binary"})
    assert response.status_code == 201
    assert response.json()["content_type"] == "image/png"


def test_download_requires_login_and_serves_the_bytes(client: TestClient) -> None:
    sha = sha256_of(JPEG_BYTES)
    assert put(client, sha, JPEG_BYTES).status_code == 201
    # Bytes are served only through an event that references them (scoping: central/scope.py).
    event = make_event()
    client.app.state.central.ingestor.ingest(TOPICS.events(event.node_id), event.to_json())  # type: ignore[attr-defined]
    assert client.get(f"/evidence/{sha}").status_code == 401
    login(client)
    response = client.get(f"/evidence/{sha}")
    assert response.status_code == 200
    assert response.content == JPEG_BYTES
    assert response.headers["content-type"] == "image/jpeg"
    assert client.get(f"/evidence/{'0' * 64}").status_code == 404
    assert client.get("/evidence/..%2F..%2Fetc%2Fpasswd").status_code == 404

"""The S3 evidence store against a real S3-compatible server (moto's standalone server, started on a free port):
upload with re-hash, refusal of a mismatch, streaming to an authorised user through the API, and retention
that never deletes evidence locked by a case."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from central.app import create_app
from central.db.models import EvidenceRow
from central.db.session import Database
from central.evidence import EvidenceError
from central.evidence_s3 import S3EvidenceStore, S3Location, apply_retention, make_client
from central.settings import Settings
from edge_agent.contract import EvidenceRef
from tests.central.conftest import ADMIN_PASSWORD, NODE_TOKEN, FakeClock
from tests.central.factories import TOPICS, make_event
from tests.conftest import free_port, wait_until

JPEG = b"\xff\xd8\xff\xe0" + b"kerbside " * 500 + b"\xff\xd9"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    binary = shutil.which("moto_server") or str(Path(os.sys.executable).parent / "moto_server")  # type: ignore[attr-defined]
    if not Path(binary).exists():
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, 0.1, "moto server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def location(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> S3Location:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    bucket = f"evidence-{abs(hash(request.node.name)) % 10**8}"
    loc = S3Location(bucket, "city/evidence/", s3_endpoint)
    make_client(loc).create_bucket(Bucket=bucket)
    return loc


def upload(store: S3EvidenceStore, db: Database, data: bytes, claimed: str | None = None) -> object:
    pending = store.begin()
    for i in range(0, len(data), 1000):
        pending.write(data[i : i + 1000])
    with db.session() as session:
        return store.commit(session, pending, claimed or hashlib.sha256(data).hexdigest(), "image/jpeg")


def test_upload_is_rehashed_content_addressed_and_stored_once(
    location: S3Location, db: Database, tmp_path: Path, clock: FakeClock
) -> None:
    store = S3EvidenceStore(location, tmp_path / "tmp", max_bytes=1 << 20, clock=clock)
    sha = hashlib.sha256(JPEG).hexdigest()
    first, again = upload(store, db, JPEG), upload(store, db, JPEG)
    assert first.created and not again.created  # type: ignore[attr-defined]
    client = make_client(location)
    obj = client.get_object(Bucket=location.bucket, Key=f"city/evidence/{sha[:2]}/{sha[2:4]}/{sha}")
    assert obj["Body"].read() == JPEG and obj["Metadata"]["sha256"] == sha
    with pytest.raises(EvidenceError) as err:
        upload(store, db, JPEG + b"tampered", claimed=sha)
    assert err.value.status_code == 422
    listed = client.list_objects_v2(Bucket=location.bucket)["Contents"]
    assert len(listed) == 1  # the mismatch left nothing behind
    assert b"".join(store.open(sha)) == JPEG
    assert not list((tmp_path / "tmp").glob("*/*"))  # no temp file left on central's disk


def test_retention_deletes_old_evidence_but_never_what_a_case_locks(
    location: S3Location, db: Database, tmp_path: Path, clock: FakeClock
) -> None:
    store = S3EvidenceStore(location, tmp_path / "tmp", max_bytes=1 << 20, clock=clock)
    old_free, old_locked = JPEG + b"1", JPEG + b"2"
    upload(store, db, old_free)
    upload(store, db, old_locked)
    clock.advance(40 * 86_400)
    fresh = JPEG + b"3"
    upload(store, db, fresh)
    locked = {hashlib.sha256(old_locked).hexdigest()}
    with db.session() as session:
        deleted, kept = apply_retention(
            session, store, clock.now - timedelta(days=30), locked=lambda _s: locked
        )
    assert (deleted, kept) == (1, 1)
    assert not store.exists(hashlib.sha256(old_free).hexdigest())
    assert store.exists(hashlib.sha256(old_locked).hexdigest()) and store.exists(
        hashlib.sha256(fresh).hexdigest()
    )
    with db.session() as session:
        assert {r.sha256 for r in session.query(EvidenceRow)} == locked | {hashlib.sha256(fresh).hexdigest()}


def test_evidence_is_uploaded_and_streamed_through_the_api(
    location: S3Location, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        s3_bucket=location.bucket, s3_prefix=location.prefix, s3_endpoint_url=location.endpoint_url
    )
    sha = hashlib.sha256(JPEG).hexdigest()
    app = create_app(settings)
    with TestClient(app) as client:
        node = {"Authorization": f"Bearer {NODE_TOKEN}", "Content-Type": "image/jpeg"}
        assert client.put(f"/api/v1/evidence/{sha}", content=JPEG, headers=node).status_code == 201
        bad = client.put(f"/api/v1/evidence/{'0' * 64}", content=JPEG, headers=node)
        assert bad.status_code == 422
        # An event references the bytes: who may read the event may read its evidence.
        event = make_event(
            evidence=[
                EvidenceRef(kind="snapshot_annotated", sha256=sha, content_type="image/jpeg", size=len(JPEG))
            ]
        )
        app.state.central.ingestor.ingest(TOPICS.events("node-1"), event.to_json())
        assert client.get(f"/evidence/{sha}").status_code == 401  # not logged in
        assert (
            client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code
            == 200
        )
        r = client.get(f"/evidence/{sha}")
        assert r.status_code == 200 and r.content == JPEG and r.headers["content-type"] == "image/jpeg"


def test_central_retention_purges_s3_objects_through_the_store(
    location: S3Location, db: Database, tmp_path: Path, clock: FakeClock
) -> None:
    """issue 9's ``purge_evidence`` (cases, audit) deletes through ``store.delete``: objects go from S3 too."""
    from central.retention import purge_evidence

    store = S3EvidenceStore(location, tmp_path / "tmp", max_bytes=1 << 20, clock=clock)
    upload(store, db, JPEG)
    clock.advance(40 * 86_400)
    with db.session() as session:
        purged = purge_evidence(session, store, before=clock.now - timedelta(days=30), now=clock.now)
    assert purged.deleted == 1 and not store.exists(hashlib.sha256(JPEG).hexdigest())

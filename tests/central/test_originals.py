"""Unblurred originals: stored on central, never behind the plain evidence URL, readable only by a privileged role
with a reason, every view an audit row (API and page)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow, RestrictedEvidenceRow, Role
from central.db.session import Database
from edge_agent.contract import EvidenceKind, EvidenceRef
from tests.central.conftest import NODE_TOKEN, login
from tests.central.factories import JPEG_BYTES, make_event, sha256_of, snapshot_ref
from tests.central.test_api import ingest
from tests.central.test_web import csrf_from
from tests.central.workspace import PASSWORD, add_user, add_wards

ORIGINAL = b"\xff\xd8\xff\xe0" + b"unblurred original with faces" * 30 + b"\xff\xd9"
SHA = sha256_of(ORIGINAL)
REASON = "court request 2026/118: identify the driver"


def original_ref() -> EvidenceRef:
    return EvidenceRef(
        kind=EvidenceKind.SNAPSHOT_ORIGINAL, sha256=SHA, content_type="image/jpeg", size=len(ORIGINAL)
    )


def upload(client: TestClient, data: bytes, kind: str | None) -> None:
    headers = {"Authorization": f"Bearer {NODE_TOKEN}", "Content-Type": "image/jpeg"}
    if kind:
        headers["X-Evidence-Kind"] = kind
    response = client.put(f"/api/v1/evidence/{sha256_of(data)}", content=data, headers=headers)
    assert response.status_code in (200, 201), response.text


def views(db: Database) -> list[AuditRow]:
    with db.session() as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.action == "evidence.view_original")))


@pytest.fixture
def event_id(client: TestClient, db: Database) -> str:
    """An event of ward w1 with a blurred snapshot and its restricted original, both uploaded; users of every
    role in that ward (so what refuses them is the privilege, not the ward scope)."""
    add_wards(db)
    upload(client, JPEG_BYTES, "snapshot_annotated")
    upload(client, ORIGINAL, "snapshot_original")
    event = make_event(evidence=[snapshot_ref(), original_ref()])
    ingest(client, event)
    for name, role in (("officer", Role.OFFICER), ("operator", Role.OPERATOR), ("tech", Role.TECHNICIAN)):
        add_user(db, name, role.value, ("w1",))
    return str(event.event_id)


@pytest.mark.parametrize("who", ["admin", "officer"])
def test_the_plain_evidence_url_never_serves_an_original(client: TestClient, event_id: str, who: str) -> None:
    if who == "admin":
        login(client)
    else:
        login(client, who, PASSWORD)
    assert client.get(f"/evidence/{SHA}").status_code == 404
    assert client.get(f"/evidence/{sha256_of(JPEG_BYTES)}").status_code == 200  # the blurred one is fine


@pytest.mark.parametrize("who", ["officer", "operator", "tech"])
def test_roles_without_the_privilege_are_refused_and_nothing_is_audited(
    client: TestClient, db: Database, event_id: str, who: str
) -> None:
    login(client, who, PASSWORD)
    response = client.post(f"/api/v1/events/{event_id}/originals/{SHA}", json={"reason": REASON})
    assert response.status_code == 403
    assert ORIGINAL not in response.content
    listed = client.get(f"/api/v1/events/{event_id}").json()["evidence"]
    assert [e["kind"] for e in listed] == ["snapshot_annotated"]  # the original is not even listed
    assert views(db) == []


def test_admin_needs_a_reason_then_gets_the_bytes_and_each_view_is_audited(
    admin: TestClient, db: Database, event_id: str
) -> None:
    url = f"/api/v1/events/{event_id}/originals/{SHA}"
    assert admin.post(url, json={"reason": "   "}).status_code == 422
    assert admin.post(url, json={}).status_code == 422
    assert views(db) == []
    listed = admin.get(f"/api/v1/events/{event_id}").json()["evidence"]
    original = next(e for e in listed if e["kind"] == "snapshot_original")
    assert original["url"] is None  # no plain URL even for the privileged

    for n in (1, 2):
        response = admin.post(url, json={"reason": REASON})
        assert response.status_code == 200
        assert response.content == ORIGINAL
        assert response.headers["cache-control"] == "no-store"
        rows = views(db)
        assert len(rows) == n
        assert rows[-1].username == "admin"
        assert rows[-1].target == f"evidence:{SHA}"
        assert rows[-1].detail["reason"] == REASON
        assert rows[-1].detail["event_id"] == event_id


def test_a_hash_that_is_not_this_events_original_is_404(admin: TestClient, event_id: str) -> None:
    blurred = sha256_of(JPEG_BYTES)
    response = admin.post(f"/api/v1/events/{event_id}/originals/{blurred}", json={"reason": REASON})
    assert response.status_code == 404


def test_an_event_naming_an_original_restricts_it_before_the_bytes_arrive(
    client: TestClient, db: Database
) -> None:
    """Order does not matter: the event arrives first, the node uploads without the kind header later."""
    ingest(client, make_event(evidence=[original_ref()]))
    with db.session() as session:
        assert session.get(RestrictedEvidenceRow, SHA) is not None
    upload(client, ORIGINAL, None)
    login(client)
    assert client.get(f"/evidence/{SHA}").status_code == 404


def test_the_event_page_offers_the_original_only_to_the_privileged(
    client: TestClient, db: Database, event_id: str
) -> None:
    login(client, "officer", PASSWORD)
    page = client.get(f"/events/{event_id}")
    assert page.status_code == 200
    assert f"/originals/{SHA}" not in page.text
    token = csrf_from(page.text)
    refused = client.post(f"/events/{event_id}/originals/{SHA}", data={"reason": REASON, "csrf_token": token})
    assert refused.status_code == 403
    assert ORIGINAL not in refused.content
    client.post("/logout", data={"csrf_token": token})

    login(client)
    page = client.get(f"/events/{event_id}")
    assert f"/events/{event_id}/originals/{SHA}" in page.text
    token = csrf_from(page.text)
    short = client.post(f"/events/{event_id}/originals/{SHA}", data={"reason": "look", "csrf_token": token})
    assert short.status_code == 422
    no_csrf = client.post(f"/events/{event_id}/originals/{SHA}", data={"reason": REASON})
    assert no_csrf.status_code == 403
    assert views(db) == []
    ok = client.post(f"/events/{event_id}/originals/{SHA}", data={"reason": REASON, "csrf_token": token})
    assert ok.status_code == 200
    assert ok.content == ORIGINAL
    assert [r.username for r in views(db)] == ["admin"]

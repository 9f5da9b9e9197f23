"""Pages: login, the review queue, the event page and the decision form (with CSRF and audit)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow, DecisionRow, EventRow
from central.db.session import Database
from central.messaging.ingest import Ingestor
from edge_agent.contract import Event, EventType, EvidenceKind, EvidenceRef
from tests.central.conftest import ADMIN_PASSWORD, NODE_TOKEN, FakeClock, login
from tests.central.factories import JPEG_BYTES, TOPICS, make_event, sha256_of, snapshot_ref

TOPIC = TOPICS.events("node-1")


def ingest(client: TestClient, event: Event) -> None:
    ingestor: Ingestor = client.app.state.central.ingestor  # type: ignore[attr-defined]
    ingestor.ingest(TOPIC, event.to_json())


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_login_page_and_wrong_password(client: TestClient) -> None:
    assert client.get("/login").status_code == 200
    response = client.post("/login", data={"username": "admin", "password": "wrong-password"})
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_unknown_user_fails_like_a_wrong_password(client: TestClient) -> None:
    response = client.post("/login", data={"username": "nobody", "password": ADMIN_PASSWORD})
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/review", "/events/abc", "/review?status=all"])
def test_pages_redirect_to_login(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/")


def test_login_form_redirects_to_next_but_never_offsite(client: TestClient) -> None:
    ok = client.post(
        "/login",
        data={"username": "admin", "password": ADMIN_PASSWORD, "next": "/review?status=all"},
        follow_redirects=False,
    )
    assert (ok.status_code, ok.headers["location"]) == (303, "/review?status=all")
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/review").text)})
    evil = client.post(
        "/login",
        data={"username": "admin", "password": ADMIN_PASSWORD, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert evil.headers["location"] == "/review"


def test_root_redirects_to_review(admin: TestClient) -> None:
    response = admin.get("/", follow_redirects=False)
    assert response.headers["location"] == "/review"


def test_review_lists_pending_event_with_snapshot(admin: TestClient) -> None:
    with_snapshot = make_event(camera_id="cam-7")
    without = make_event(camera_id="cam-8", evidence=[])
    ingest(admin, with_snapshot)
    ingest(admin, without)
    page = admin.get("/review").text
    assert "cam-7" in page and "cam-8" in page
    assert "snapshot pending" in page  # nothing uploaded yet
    sha = sha256_of(JPEG_BYTES)
    upload = admin.put(
        f"/api/v1/evidence/{sha}",
        content=JPEG_BYTES,
        headers={"Authorization": f"Bearer {NODE_TOKEN}", "Content-Type": "image/jpeg"},
    )
    assert upload.status_code == 201
    page = admin.get("/review").text
    assert f'<img src="/evidence/{sha}"' in page
    assert "1 m 15 s" in page  # dwell_s = 75


def test_review_filters_by_status_and_type(admin: TestClient) -> None:
    ingest(admin, make_event(camera_id="cam-stop", event_type=EventType.ILLEGAL_STOPPING))
    ingest(admin, make_event(camera_id="cam-wrong", event_type=EventType.WRONG_WAY))
    page = admin.get("/review?type=wrong_way").text
    assert "cam-wrong" in page and "cam-stop" not in page
    assert "cam-stop" not in admin.get("/review?status=confirmed").text
    assert admin.get("/review?status=bogus").status_code == 422


def test_confirm_stores_user_time_and_audit(admin: TestClient, db: Database, clock: FakeClock) -> None:
    event = make_event()
    ingest(admin, event)
    page = admin.get(f"/events/{event.event_id}")
    assert page.status_code == 200
    clock.advance(42)
    response = admin.post(
        f"/events/{event.event_id}/decision",
        data={"decision": "confirm", "version": "1", "reason": "", "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert (response.status_code, response.headers["location"]) == (303, "/review")
    with db.session() as session:
        [decision] = session.scalars(select(DecisionRow)).all()
        assert (decision.username, decision.decision, decision.reason) == ("admin", "confirm", None)
        assert decision.decided_at == clock.now
        row = session.get(EventRow, str(event.event_id))
        assert row is not None and row.review_status == "confirmed"
        audit = session.scalars(select(AuditRow).where(AuditRow.action == "event.confirm")).one()
        assert (audit.username, audit.target, audit.at) == ("admin", f"event:{event.event_id}", clock.now)
        assert audit.detail == {
            "reason": None,
            "previous_status": "pending",
            "status": "confirmed",
            "version": 1,
        }
    detail = admin.get(f"/events/{event.event_id}").text
    assert "Confirm" in detail and "admin" in detail


def test_dismiss_without_reason_is_refused(admin: TestClient, db: Database) -> None:
    event = make_event()
    ingest(admin, event)
    token = csrf_from(admin.get(f"/events/{event.event_id}").text)
    response = admin.post(
        f"/events/{event.event_id}/decision",
        data={"decision": "dismiss", "version": "1", "reason": "  ", "csrf_token": token},
    )
    assert response.status_code == 422
    assert "A dismissal needs a reason." in response.text
    with db.session() as session:
        assert session.scalars(select(DecisionRow)).all() == []
        row = session.get(EventRow, str(event.event_id))
        assert row is not None and row.review_status == "pending"
    ok = admin.post(
        f"/events/{event.event_id}/decision",
        data={"decision": "dismiss", "version": "1", "reason": "delivery van, allowed", "csrf_token": token},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert "delivery van, allowed" in admin.get(f"/events/{event.event_id}").text


def test_decision_without_csrf_token_is_refused(admin: TestClient, db: Database) -> None:
    event = make_event()
    ingest(admin, event)
    response = admin.post(f"/events/{event.event_id}/decision", data={"decision": "confirm"})
    assert response.status_code == 403
    with db.session() as session:
        assert session.scalars(select(DecisionRow)).all() == []


def test_unknown_event_page_is_404(admin: TestClient) -> None:
    assert admin.get("/events/00000000-0000-0000-0000-000000000000").status_code == 404


def test_language_switch_is_remembered(admin: TestClient) -> None:
    assert "Hàng chờ xem xét" in admin.get("/review?lang=vi").text
    assert "Hàng chờ xem xét" in admin.get("/review").text
    assert "Review queue" in admin.get("/review?lang=en").text


def test_logout_ends_the_session(client: TestClient) -> None:
    login(client)
    token = csrf_from(client.get("/review").text)
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_security_headers_on_pages(client: TestClient) -> None:
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_event_page_in_vietnamese_without_decision_form_for_technicians(
    client: TestClient, db: Database
) -> None:
    from central.db.models import Role, UserRow, UserWardRow
    from central.security import hash_password
    from tests.central.factories import T0
    from tests.central.workspace import add_wards

    add_wards(db)  # node-1/cam-1 (make_event's camera) stands in ward w1
    with db.session() as session:
        session.add(
            UserRow(
                username="tech",
                password_hash=hash_password("tech-password-1"),
                role=Role.TECHNICIAN.value,
                created_at=T0,
                updated_at=T0,
            )
        )
        session.flush()
        session.add(UserWardRow(username="tech", ward_id="w1"))
    event = make_event()
    ingest(client, event)
    login(client, "tech", "tech-password-1")
    page = client.get(f"/events/{event.event_id}?lang=vi")
    assert page.status_code == 200
    assert "Dừng đỗ sai quy định" in page.text  # the event type, translated
    assert "/decision" not in page.text


def test_stylesheet_is_served_locally(client: TestClient) -> None:
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert "text/css" in response.headers["content-type"]


def test_event_page_plays_the_clip_and_shows_crops(admin: TestClient) -> None:
    clip = b"\x00\x00\x00\x20ftypisom" + b"fake-mp4-bytes" * 50
    crop = b"\xff\xd8\xff\xe0" + b"crop" * 30 + b"\xff\xd9"
    refs = [
        snapshot_ref(),
        EvidenceRef(
            kind=EvidenceKind.CROP, sha256=sha256_of(crop), content_type="image/jpeg", size=len(crop)
        ),
        EvidenceRef(kind=EvidenceKind.CLIP, sha256=sha256_of(clip), content_type="video/mp4", size=len(clip)),
    ]
    event = make_event(camera_id="cam-clip", evidence=refs)
    ingest(admin, event)
    page = admin.get(f"/events/{event.event_id}").text
    assert "<video" not in page  # nothing uploaded yet: no broken player
    for data, ctype in ((clip, "video/mp4"), (crop, "image/jpeg")):
        r = admin.put(
            f"/api/v1/evidence/{sha256_of(data)}",
            content=data,
            headers={"Authorization": f"Bearer {NODE_TOKEN}", "Content-Type": ctype},
        )
        assert r.status_code == 201
    page = admin.get(f"/events/{event.event_id}").text
    assert f'<video controls preload="metadata" src="/evidence/{sha256_of(clip)}"' in page
    assert f'<img src="/evidence/{sha256_of(crop)}"' in page
    served = admin.get(f"/evidence/{sha256_of(clip)}")
    assert served.headers["content-type"] == "video/mp4" and served.content == clip

"""JSON API: login, listing/filtering, detail, decisions, dead letters, health and metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow, Role, UserRow, UserWardRow, WardRow
from central.db.session import Database
from central.messaging.ingest import Ingestor
from central.security import hash_password
from edge_agent.contract import Event, EventType, Phase
from tests.central.conftest import ADMIN_PASSWORD, FakeClock, login
from tests.central.factories import T0, TOPICS, make_event

TOPIC = TOPICS.events("node-1")


def ingestor_of(client: TestClient) -> Ingestor:
    return client.app.state.central.ingestor  # type: ignore[attr-defined,no-any-return]


def ingest(client: TestClient, event: Event) -> None:
    ingestor_of(client).ingest(TOPIC, event.to_json())


def add_user(db: Database, username: str, role: Role, password: str = "officer-password-1") -> None:
    with db.session() as session:
        session.add(
            UserRow(
                username=username,
                password_hash=hash_password(password),
                role=role.value,
                created_at=T0,
                updated_at=T0,
            )
        )
        session.flush()
        if session.get(WardRow, "w1") is not None:
            session.add(UserWardRow(username=username, ward_id="w1"))


def test_api_requires_login(client: TestClient) -> None:
    for path in ["/api/v1/events", "/api/v1/events/x", "/api/v1/dead-letters", "/api/v1/me"]:
        assert client.get(path).status_code == 401, path
    assert client.post("/api/v1/events/x/decision", json={"decision": "confirm"}).status_code == 401


def test_api_login(client: TestClient, db: Database) -> None:
    bad = client.post("/api/v1/login", json={"username": "admin", "password": "nope-nope"})
    assert bad.status_code == 401
    good = client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    body = good.json()
    assert (body["username"], body["role"], body["wards"]) == ("admin", "admin", [])
    assert len(body["csrf_token"]) >= 32
    assert client.get("/api/v1/me").json()["username"] == "admin"
    with db.session() as session:
        actions = [row.action for row in session.scalars(select(AuditRow).order_by(AuditRow.id))]
    assert actions == ["user.bootstrap", "login.failed", "login"]
    assert client.post("/api/v1/logout").status_code == 403  # no CSRF header
    assert client.post("/api/v1/logout", headers={"X-CSRF-Token": body["csrf_token"]}).status_code == 204
    assert client.get("/api/v1/me").status_code == 401


def test_list_and_filter_events(admin: TestClient) -> None:
    older = make_event(camera_id="cam-a", started_at=T0.replace(hour=7), observed_at=T0.replace(hour=7))
    newer = make_event(camera_id="cam-b", event_type=EventType.WRONG_WAY)
    ingest(admin, older)
    ingest(admin, newer)
    listed = admin.get("/api/v1/events").json()["events"]
    assert [e["camera_id"] for e in listed] == ["cam-a", "cam-b"]  # oldest first: nothing waits forever
    assert [e["camera_id"] for e in admin.get("/api/v1/events?order=newest").json()["events"]] == [
        "cam-b",
        "cam-a",
    ]
    assert listed[0]["review_status"] == "pending" and listed[0]["version"] == 1
    assert listed[0]["evidence"][0]["stored"] is False and listed[0]["evidence"][0]["url"] is None
    assert [e["camera_id"] for e in admin.get("/api/v1/events?type=wrong_way").json()["events"]] == ["cam-b"]
    assert admin.get("/api/v1/events?status=confirmed").json()["events"] == []
    first = admin.get("/api/v1/events?limit=1").json()
    assert len(first["events"]) == 1 and first["next_cursor"]
    second = admin.get("/api/v1/events", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [e["camera_id"] for e in second["events"]] == ["cam-b"] and second["next_cursor"] is None
    assert admin.get("/api/v1/events?status=nope").status_code == 422
    assert admin.get("/api/v1/events?limit=0").status_code == 422
    assert admin.get("/api/v1/events?cursor=garbage").status_code == 422


def test_event_detail_and_decisions(admin: TestClient, clock: FakeClock) -> None:
    event = make_event(phase=Phase.START)
    ingest(admin, event)
    url = f"/api/v1/events/{event.event_id}"
    detail = admin.get(url).json()
    assert detail["event_id"] == str(event.event_id)
    assert detail["measurements"] == {"dwell_s": 75.0}
    assert detail["model"] == {"name": "yolo11n.onnx", "sha256": "a" * 64}
    assert detail["decisions"] == []
    refused = admin.post(f"{url}/decision", json={"decision": "dismiss", "version": 1})
    assert refused.status_code == 422 and "reason" in refused.json()["detail"]
    assert admin.post(f"{url}/decision", json={"decision": "maybe", "version": 1}).status_code == 422
    assert admin.post(f"{url}/decision", json={"decision": "confirm"}).status_code == 422  # no version
    escalated = admin.post(
        f"{url}/decision", json={"decision": "escalate", "reason": "needs a captain", "version": 1}
    ).json()
    assert (escalated["review_status"], escalated["escalated"], escalated["version"]) == ("pending", True, 2)
    clock.advance(60)
    stale = admin.post(f"{url}/decision", json={"decision": "dismiss", "reason": "ambulance", "version": 1})
    assert stale.status_code == 409
    dismissed = admin.post(
        f"{url}/decision", json={"decision": "dismiss", "reason": "ambulance", "version": 2}
    )
    assert dismissed.json()["review_status"] == "dismissed"
    assert [(d["decision"], d["username"]) for d in dismissed.json()["decisions"]] == [
        ("escalate", "admin"),
        ("dismiss", "admin"),
    ]
    assert dismissed.json()["decisions"][1]["decided_at"].startswith(clock.now.isoformat()[:19])
    assert admin.get("/api/v1/events/does-not-exist").status_code == 404


def test_role_rules(client: TestClient, db: Database) -> None:
    from tests.central.workspace import add_wards

    add_wards(db)  # make_event's node-1/cam-1 stands in ward w1
    event = make_event()
    ingest(client, event)
    add_user(db, "tech", Role.TECHNICIAN)
    add_user(db, "officer", Role.OFFICER)
    login(client, "tech", "officer-password-1")
    decision = {"decision": "confirm", "version": 1}
    assert client.post(f"/api/v1/events/{event.event_id}/decision", json=decision).status_code == 403
    assert client.get("/api/v1/dead-letters").status_code == 200
    login(client, "officer", "officer-password-1")
    assert client.get("/api/v1/dead-letters").status_code == 403
    ok = client.post(f"/api/v1/events/{event.event_id}/decision", json=decision)
    assert ok.json()["decisions"][0]["username"] == "officer"


def test_dead_letters_listed_newest_first(admin: TestClient) -> None:
    ingestor_of(admin).ingest(TOPIC, b"first bad")
    ingestor_of(admin).ingest(TOPIC, b"\xffsecond bad")
    letters = admin.get("/api/v1/dead-letters").json()
    assert [letter["payload_b64"] for letter in letters] == ["/3NlY29uZCBiYWQ=", "Zmlyc3QgYmFk"]
    assert letters[0]["payload"] == "\ufffdsecond bad"
    assert "Invalid JSON" in letters[0]["error"]


def test_healthz_and_metrics(client: TestClient) -> None:
    ingest(client, make_event())
    ingestor_of(client).ingest(TOPIC, b"bad")
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["db"] == {"ok": True}
    assert body["mqtt"]["enabled"] is False
    assert (body["ingest"]["ingested"], body["ingest"]["dead_letters"]) == (1, 1)
    metrics = client.get("/metrics").text
    assert 'streetwatch_ingest_messages_total{kind="event",result="inserted"} 1' in metrics
    assert 'streetwatch_ingest_messages_total{kind="event",result="dead_letter"} 1' in metrics


def test_admin_bootstrap_updates_password_on_restart(make_settings, clock: FakeClock) -> None:
    from central.app import create_app

    with TestClient(create_app(make_settings(), clock=clock)):
        pass
    new_password = "a-brand-new-password"
    with TestClient(create_app(make_settings(admin_password=new_password), clock=clock)) as client:
        assert (
            client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code
            == 401
        )
        assert (
            client.post("/api/v1/login", json={"username": "admin", "password": new_password}).status_code
            == 200
        )

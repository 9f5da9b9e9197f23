"""Fleet API: enrollment tokens, enrollment, revocation, per-node upload tokens, the technician page."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow, EnrollmentTokenRow, NodeRow, Role, UserRow
from central.db.session import Database
from central.messaging.broker_auth import verify_mosquitto_hash
from central.security import hash_password
from tests.central.conftest import NODE_TOKEN, FakeClock, login
from tests.central.factories import JPEG_BYTES, T0, sha256_of

PASSWORD = "fleet-user-password-1"


def add_user(db: Database, username: str, role: Role) -> None:
    with db.session() as session:
        session.add(
            UserRow(
                username=username,
                password_hash=hash_password(PASSWORD),
                role=role.value,
                created_at=T0,
                updated_at=T0,
            )
        )


def new_token(client: TestClient, **body: Any) -> str:
    response = client.post("/api/v1/enrollment-tokens", json=body or None)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    return str(response.json()["token"])


def enroll(client: TestClient, token: str, name: str = "Hoàn Kiếm box 3") -> Any:
    return client.post("/api/v1/enroll", json={"token": token, "node_name": name})


def upload(client: TestClient, token: str) -> int:
    response = client.put(
        f"/api/v1/evidence/{sha256_of(JPEG_BYTES)}",
        content=JPEG_BYTES,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"},
    )
    return response.status_code


@pytest.mark.parametrize(
    ("role", "code"),
    [(Role.ADMIN, 201), (Role.TECHNICIAN, 201), (Role.OPERATOR, 403), (Role.OFFICER, 403)],
)
def test_only_admins_and_technicians_create_enrollment_tokens(
    client: TestClient, db: Database, role: Role, code: int
) -> None:
    assert client.post("/api/v1/enrollment-tokens").status_code == 401
    add_user(db, "someone", role)
    login(client, "someone", PASSWORD)
    assert client.post("/api/v1/enrollment-tokens").status_code == code


def test_enrollment_issues_credentials_once_and_stores_only_hashes(admin: TestClient, db: Database) -> None:
    token = new_token(admin)
    response = enroll(admin, token)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["node_id"].startswith("hoan-kiem-box-3-") and body["mqtt_username"] == body["node_id"]
    assert body["topic_prefix"] == "sw/v1"
    assert body["broker"] == {"managed": False, "reloaded": False, "error": None}
    assert len({body["mqtt_password"], body["http_token"], token}) == 3
    with db.session() as session:
        node = session.get(NodeRow, body["node_id"])
        assert node is not None and node.name == "Hoàn Kiếm box 3" and node.enrolled_by == "admin"
        assert node.http_token_hash == hashlib.sha256(body["http_token"].encode()).hexdigest()
        assert node.mqtt_password_hash is not None
        assert verify_mosquitto_hash(node.mqtt_password_hash, body["mqtt_password"])
        stored = session.scalar(select(EnrollmentTokenRow))
        assert stored is not None and stored.token_hash != token and stored.node_id == node.node_id
        actions = [r.action for r in session.scalars(select(AuditRow).order_by(AuditRow.id))]
    assert actions[-2:] == ["enrollment_token.create", "node.enroll"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("reused", "enrollment token already used"),
        ("expired", "enrollment token expired"),
        ("unknown", "unknown enrollment token"),
    ],
)
def test_enrollment_token_is_single_use_short_lived_and_must_exist(
    admin: TestClient, db: Database, clock: FakeClock, case: str, reason: str
) -> None:
    token = new_token(admin, ttl_s=120)
    if case == "reused":
        assert enroll(admin, token).status_code == 201
    elif case == "expired":
        clock.advance(121)
    else:
        token = "x" * 43
    response = enroll(admin, token, "second box")
    assert (response.status_code, response.json()["detail"]) == (401, reason)
    with db.session() as session:
        failed = session.scalars(select(AuditRow).where(AuditRow.action == "node.enroll.failed")).all()
        assert [r.detail["reason"] for r in failed] == [reason]
        assert len(session.scalars(select(NodeRow)).all()) == (1 if case == "reused" else 0)


def test_token_lifetime_is_capped_by_the_setting(admin: TestClient, clock: FakeClock) -> None:
    response = admin.post("/api/v1/enrollment-tokens", json={"ttl_s": 86_400})
    assert datetime.fromisoformat(response.json()["expires_at"]) == clock.now + timedelta(seconds=900)
    assert admin.post("/api/v1/enrollment-tokens", json={"ttl_s": 5}).status_code == 422


def test_node_token_uploads_evidence_until_revoked(admin: TestClient) -> None:
    node = enroll(admin, new_token(admin)).json()
    assert upload(admin, node["http_token"]) == 201
    assert upload(admin, NODE_TOKEN) == 200  # the shared token keeps working (demo, not yet enrolled)
    revoked = admin.post(f"/api/v1/nodes/{node['node_id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["node"]["revoked_at"] is not None
    assert upload(admin, node["http_token"]) == 401
    assert upload(admin, "not-a-token-at-all") == 401
    again = admin.post(f"/api/v1/nodes/{node['node_id']}/revoke")
    assert again.json()["node"]["revoked_at"] == revoked.json()["node"]["revoked_at"]  # idempotent
    assert admin.post("/api/v1/nodes/nope/revoke").status_code == 404


@pytest.mark.parametrize(
    ("role", "revoke_code", "list_code"),
    [(Role.TECHNICIAN, 200, 200), (Role.OPERATOR, 403, 200), (Role.OFFICER, 403, 403)],
)
def test_roles_of_the_node_routes(
    admin: TestClient, db: Database, role: Role, revoke_code: int, list_code: int
) -> None:
    node_id = enroll(admin, new_token(admin)).json()["node_id"]
    add_user(db, "someone", role)
    login(admin, "someone", PASSWORD)
    assert admin.get("/api/v1/nodes").status_code == list_code
    assert admin.post(f"/api/v1/nodes/{node_id}/revoke").status_code == revoke_code


def test_list_nodes_shows_config_state(admin: TestClient) -> None:
    node_id = enroll(admin, new_token(admin), "Box A").json()["node_id"]
    nodes = admin.get("/api/v1/nodes").json()
    assert [(n["node_id"], n["config_state"], n["revoked_at"]) for n in nodes] == [(node_id, "none", None)]
    assert admin.get(f"/api/v1/nodes/{node_id}").json()["name"] == "Box A"
    assert admin.get("/api/v1/nodes/unknown").status_code == 404


def test_technician_page_creates_a_token_and_revokes(
    client: TestClient, db: Database, make_settings: Callable[..., Any]
) -> None:
    add_user(db, "tech", Role.TECHNICIAN)
    login(client, "tech", PASSWORD)
    page = client.get("/nodes")
    assert page.status_code == 200 and "New enrollment token" in page.text
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/nodes/enrollment-token", data={"csrf_token": "wrong"}).status_code == 403
    shown = client.post("/nodes/enrollment-token", data={"csrf_token": csrf})
    assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
    token = shown.text.split('<code id="enrollment-token">')[1].split("</code>")[0]
    node_id = enroll(client, token, "Ngã tư Sở").json()["node_id"]
    listed = client.get("/nodes?lang=vi")
    assert node_id in listed.text and "Ngã tư Sở" in listed.text and "Thu hồi" in listed.text
    revoked = client.post(f"/nodes/{node_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False)
    assert revoked.status_code == 303
    assert "Đã thu hồi" in client.get("/nodes").text


def test_officers_see_no_fleet_page(client: TestClient, db: Database) -> None:
    add_user(db, "officer", Role.OFFICER)
    login(client, "officer", PASSWORD)
    page = client.get("/nodes")
    assert page.status_code == 403 and "may not manage nodes" in page.text
    assert client.get("/nodes", follow_redirects=False).status_code == 403
    client.post("/api/v1/logout")
    assert client.get("/nodes", follow_redirects=False).status_code == 303  # to /login


def test_two_nodes_racing_for_one_token_enroll_once(
    admin: TestClient, db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second claim runs after the first committed but had read the token before: only one node."""
    from central.fleet import enrollment

    token = new_token(admin)
    real_node_id_for = enrollment.node_id_for
    raced: list[str] = []

    def node_id_for_racing(name: str) -> str:
        if not raced:  # between the racer's read of the token and its claim, the other node gets it
            raced.append("other")
            with db.session() as other:
                raced.append(
                    enrollment.enroll_node(other, token=token, node_name="winner", now=clock()).node_id
                )
        return real_node_id_for(name)

    monkeypatch.setattr(enrollment, "node_id_for", node_id_for_racing)
    with db.sessionmaker() as session, pytest.raises(enrollment.FleetError, match="already used"):
        enrollment.enroll_node(session, token=token, node_name="loser", now=clock())
    with db.session() as session:
        assert [n.name for n in session.scalars(select(NodeRow))] == ["winner"]

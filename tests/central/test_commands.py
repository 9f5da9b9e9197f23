"""Commands at central: args checked with the node's model, stored, audited, answered, timed out, dead-lettered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow, DeadLetterRow, NodeCommandRow, Role
from central.db.session import Database
from central.fleet.commands import CommandCenter
from edge_agent.contract import Command, CommandResult, CommandState
from tests.central.conftest import FakeClock, login
from tests.central.factories import TOPICS
from tests.central.test_nodes import PASSWORD, add_user, enroll, new_token
from tests.central.test_nodes_config import fleet_of

SHA = "b" * 64


@dataclass
class FakeLink:
    """Stands in for the fleet's MqttClient: records publishes (the broker path is in tests/e2e)."""

    connected: bool = True
    accept: bool = True
    sent: list[tuple[str, bytes]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, **_: Any) -> bool:
        self.sent.append((topic, payload))
        return self.accept

    def stop(self) -> None:
        self.connected = False


@pytest.fixture
def node_id(admin: TestClient) -> str:
    return str(enroll(admin, new_token(admin)).json()["node_id"])


@pytest.fixture
def link(admin: TestClient) -> FakeLink:
    fake = FakeLink()
    fleet_of(admin).link = fake  # type: ignore[assignment]
    return fake


def answer(cmd: Command, state: CommandState, **over: Any) -> bytes:
    fields: dict[str, Any] = {
        "request_id": cmd.request_id,
        "node_id": cmd.node_id,
        "name": cmd.name,
        "state": state,
        "at": cmd.issued_at,
    }
    fields.update(over)
    return CommandResult(**fields).to_json()


def sent_command(link: FakeLink) -> Command:
    return Command.from_json(link.sent[-1][1])


def test_send_publishes_a_valid_command_and_audits_it(
    admin: TestClient, node_id: str, link: FakeLink, db: Database
) -> None:
    r = admin.post(
        f"/api/v1/nodes/{node_id}/commands", json={"name": "snapshot", "args": {"cameras": ["c1"]}}
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["state"] == "sent" and not out["final"]
    topic, _ = link.sent[-1]
    cmd = sent_command(link)
    assert topic == TOPICS.cmd(node_id)
    assert str(cmd.request_id) == out["request_id"] and cmd.args == {
        "cameras": ["c1"],
        "max_age_s": 10.0,
        "quality": 90,
    }
    assert (cmd.expires_at - cmd.issued_at) == timedelta(seconds=30)
    with db.session() as s:
        audit = s.scalars(select(AuditRow).where(AuditRow.action == "node.cmd")).one()
        assert audit.username == "admin" and audit.detail["request_id"] == out["request_id"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"name": "reboot"}, 422, "name: unknown command 'reboot'"),
        (
            {"name": "snapshot", "args": {"quality": 500}},
            422,
            "args.quality: Input should be less than or equal to 100",
        ),
        ({"name": "snapshot", "args": {"x": 1}}, 422, "args.x: Extra inputs are not permitted"),
    ],
)
def test_invalid_commands_are_refused_before_anything_is_sent(
    admin: TestClient, node_id: str, link: FakeLink, body: dict[str, Any], status: int, detail: str
) -> None:
    r = admin.post(f"/api/v1/nodes/{node_id}/commands", json=body)
    assert r.status_code == status and detail in r.json()["detail"], r.text
    assert link.sent == []


def test_unknown_node_is_404_and_roles_are_checked(admin: TestClient, db: Database, link: FakeLink) -> None:
    assert admin.post("/api/v1/nodes/nope/commands", json={"name": "snapshot"}).status_code == 404
    add_user(db, "olga", Role.OFFICER)
    login(admin, "olga", PASSWORD)
    assert admin.post("/api/v1/nodes/nope/commands", json={"name": "snapshot"}).status_code == 403


def test_answers_progress_then_ok_and_a_late_progress_changes_nothing(
    admin: TestClient, node_id: str, link: FakeLink, db: Database
) -> None:
    request_id = admin.post(f"/api/v1/nodes/{node_id}/commands", json={"name": "snapshot"}).json()[
        "request_id"
    ]
    cmd = sent_command(link)
    center = fleet_of(admin).commands
    topic = TOPICS.cmd_result(node_id)
    center.handle_result(topic, answer(cmd, CommandState.PROGRESS, progress=0.5, message="uploading c1"))
    view = center.get(request_id)
    assert view is not None and (view.state, view.progress, view.message) == ("progress", 0.5, "uploading c1")
    snap = {
        "camera_id": "c1",
        "sha256": SHA,
        "width": 960,
        "height": 540,
        "captured_at": cmd.issued_at.isoformat(),
    }
    center.handle_result(topic, answer(cmd, CommandState.OK, result={"snapshots": [snap]}))
    center.handle_result(topic, answer(cmd, CommandState.PROGRESS, progress=0.9))
    out = admin.get(f"/api/v1/commands/{request_id}").json()
    assert out["state"] == "ok" and out["final"] and out["result"]["snapshots"][0]["sha256"] == SHA
    assert out["progress"] == 1.0
    with db.session() as s:
        assert s.scalars(select(AuditRow.action).where(AuditRow.action == "node.cmd.ok")).all() == [
            "node.cmd.ok"
        ]


def test_refusal_reason_is_kept(admin: TestClient, node_id: str, link: FakeLink) -> None:
    request_id = admin.post(f"/api/v1/nodes/{node_id}/commands", json={"name": "snapshot"}).json()[
        "request_id"
    ]
    cmd = sent_command(link)
    fleet_of(admin).commands.handle_result(
        TOPICS.cmd_result(node_id), answer(cmd, CommandState.REFUSED, reason="cameras: unknown camera(s) c9")
    )
    out = admin.get(f"/api/v1/commands/{request_id}").json()
    assert (out["state"], out["reason"]) == ("refused", "cameras: unknown camera(s) c9")


@pytest.mark.parametrize(
    "bad",
    [
        lambda cmd, node: (TOPICS.cmd_result(node), b"{not json"),
        lambda cmd, node: (TOPICS.cmd_result("other-node"), answer(cmd, CommandState.OK)),
        lambda cmd, node: (TOPICS.cmd_result(node), answer(cmd, CommandState.OK, request_id=uuid.uuid4())),
        lambda cmd, node: (TOPICS.cmd_result(node), answer(cmd, CommandState.OK, result={"snapshots": "x"})),
    ],
)
def test_unusable_answers_become_dead_letters(
    admin: TestClient, node_id: str, link: FakeLink, db: Database, bad: Any
) -> None:
    request_id = admin.post(f"/api/v1/nodes/{node_id}/commands", json={"name": "snapshot"}).json()[
        "request_id"
    ]
    topic, payload = bad(sent_command(link), node_id)
    fleet_of(admin).commands.handle_result(topic, payload)
    with db.session() as s:
        assert len(s.scalars(select(DeadLetterRow)).all()) == 1
    view = fleet_of(admin).commands.get(request_id)
    assert view is not None and view.state == "sent"


def test_no_answer_before_the_deadline_is_a_timeout_and_a_late_answer_is_still_recorded(
    admin: TestClient, node_id: str, link: FakeLink, clock: FakeClock
) -> None:
    r = admin.post(f"/api/v1/nodes/{node_id}/commands", json={"name": "snapshot", "timeout_s": 5})
    request_id = r.json()["request_id"]
    center: CommandCenter = fleet_of(admin).commands
    assert center.expire_overdue() == 0
    clock.advance(6)
    assert center.expire_overdue() == 1
    view = center.get(request_id)
    assert view is not None and view.state == "timeout"
    assert view.reason == "no answer from the node before the deadline"
    center.handle_result(
        TOPICS.cmd_result(node_id), answer(sent_command(link), CommandState.OK, result={"snapshots": []})
    )
    view = center.get(request_id)
    assert view is not None and view.state == "ok"


def test_wait_returns_at_the_deadline_with_a_timeout(
    admin: TestClient, node_id: str, link: FakeLink, clock: FakeClock
) -> None:
    request_id = admin.post(
        f"/api/v1/nodes/{node_id}/commands", json={"name": "snapshot", "timeout_s": 1}
    ).json()["request_id"]
    center = fleet_of(admin).commands
    view = center.wait(request_id, 0.05)
    assert view is not None and view.state == "sent"
    clock.advance(2)
    view = center.wait(request_id, 5)
    assert view is not None and view.state == "timeout"


def test_a_command_the_broker_did_not_take_is_unsent(
    admin: TestClient, node_id: str, link: FakeLink, db: Database
) -> None:
    link.accept = False
    out = admin.post(f"/api/v1/nodes/{node_id}/commands", json={"name": "snapshot"}).json()
    assert (out["state"], out["reason"]) == ("unsent", "not sent: publish failed")
    with db.session() as s:
        row = s.get(NodeCommandRow, out["request_id"])
        assert row is not None and row.finished_at is not None


def test_a_snapshot_frame_is_served_to_zone_editors_only_for_the_node_that_sent_it(
    admin: TestClient, node_id: str, link: FakeLink, db: Database
) -> None:
    import hashlib

    from tests.central.conftest import NODE_TOKEN

    jpeg = b"\xff\xd8\xff\xe0 a frame \xff\xd9"
    sha = hashlib.sha256(jpeg).hexdigest()
    up = admin.put(
        f"/api/v1/evidence/{sha}",
        content=jpeg,
        headers={"Authorization": f"Bearer {NODE_TOKEN}", "Content-Type": "image/jpeg"},
    )
    assert up.status_code == 201, up.text
    assert admin.get(f"/nodes/{node_id}/snapshots/{sha}").status_code == 404  # no command brought it back yet
    admin.post(f"/api/v1/nodes/{node_id}/commands", json={"name": "snapshot"})
    cmd = sent_command(link)
    snap = {
        "camera_id": "c1",
        "sha256": sha,
        "width": 2,
        "height": 2,
        "captured_at": cmd.issued_at.isoformat(),
    }
    fleet_of(admin).commands.handle_result(
        TOPICS.cmd_result(node_id), answer(cmd, CommandState.OK, result={"snapshots": [snap]})
    )
    r = admin.get(f"/nodes/{node_id}/snapshots/{sha}")
    assert r.status_code == 200 and r.content == jpeg and r.headers["content-type"] == "image/jpeg"
    assert admin.get(f"/nodes/other-node/snapshots/{sha}").status_code == 404
    add_user(db, "olga", Role.OFFICER)
    login(admin, "olga", PASSWORD)
    assert admin.get(f"/nodes/{node_id}/snapshots/{sha}").status_code == 403

"""Remote config at central: validated with the node's rules before it is accepted, versioned, answers recorded."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow, DeadLetterRow, NodeConfigRow, NodeStatusRow, Role
from central.db.session import Database
from central.fleet.service import Fleet
from edge_agent.contract import ConfigApplied
from tests.central.conftest import login
from tests.central.factories import T0, TOPICS
from tests.central.test_nodes import PASSWORD, add_user, enroll, new_token

KERB = [[0.10, 0.96], [0.25, 0.96], [0.385, 0.62], [0.33, 0.62]]


def config_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"path": "models/yolo11n.onnx"},
        "cameras": [
            {
                "id": "cam-1",
                "source": "rtsp://10.0.0.5/stream1",
                "zones": [{"id": "kerb", "polygon": KERB}],
                "rules": [{"id": "no-stop", "type": "illegal_stopping", "zone": "kerb", "min_dwell_s": 20}],
            }
        ],
    }
    body.update(overrides)
    return body


def camera(**overrides: Any) -> list[dict[str, Any]]:
    cam = config_body()["cameras"][0]
    cam.update(overrides)
    return [cam]


def fleet_of(client: TestClient) -> Fleet:
    return client.app.state.fleet  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def node_id(admin: TestClient) -> str:
    return str(enroll(admin, new_token(admin)).json()["node_id"])


def answer(node: str, version: int | None, running: int, error: str | None = None) -> bytes:
    return ConfigApplied(
        node_id=node, version=version, ok=error is None, error=error, running_version=running, at=T0
    ).to_json()


def test_a_valid_config_is_stored_with_the_next_version(admin: TestClient, node_id: str) -> None:
    response = admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body(config_version=99))
    assert response.status_code == 201, response.text
    assert response.json() == {"node_id": node_id, "version": 1, "published": False}  # no broker in this test
    second = admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body(node_id=node_id))
    assert second.json()["version"] == 2
    stored = admin.get(f"/api/v1/nodes/{node_id}/config").json()
    assert stored["version"] == 2 and stored["created_by"] == "admin"
    assert stored["config"]["node_id"] == node_id and stored["config"]["config_version"] == 2
    assert stored["config"]["cameras"][0]["rules"][0]["min_dwell_s"] == 20
    assert stored["node"]["config_state"] == "pending" and stored["node"]["desired_version"] == 2


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            config_body(
                cameras=camera(
                    zones=[{"id": "kerb", "polygon": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}]
                )
            ),
            "cameras.0.zones.0.polygon",
            "self-intersecting",
        ),
        (
            config_body(cameras=camera(rules=[{"id": "r", "type": "teleport", "zone": "kerb"}])),
            "cameras.0.rules.0",
            "teleport",
        ),
        (config_body(cameraz=[]), "cameraz", "Extra inputs are not permitted"),
        (config_body(cameras=[]), "cameras", "at least 1"),
        (config_body(node_id="someone-else"), "node_id", "someone-else"),
    ],
    ids=["self-intersecting-zone", "unknown-rule-type", "unknown-key", "no-camera", "other-node"],
)
def test_an_invalid_config_is_refused_with_the_field_named(
    admin: TestClient, db: Database, node_id: str, body: dict[str, Any], field: str, words: str
) -> None:
    response = admin.put(f"/api/v1/nodes/{node_id}/config", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert field in detail and words in detail, detail
    with db.session() as session:
        assert session.scalars(select(NodeConfigRow)).all() == []
    assert admin.get(f"/api/v1/nodes/{node_id}").json()["desired_version"] is None


def test_the_version_is_newer_than_what_the_node_reported(
    admin: TestClient, db: Database, node_id: str
) -> None:
    with db.session() as session:
        session.add(
            NodeStatusRow(
                node_id=node_id, state="online", at=T0, software="0.1.0", config_version=7, received_at=T0
            )
        )
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body()).json()["version"] == 8


def test_configs_for_revoked_or_unknown_nodes_are_refused(admin: TestClient, node_id: str) -> None:
    admin.post(f"/api/v1/nodes/{node_id}/revoke")
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body()).status_code == 409
    assert admin.put("/api/v1/nodes/ghost/config", json=config_body()).status_code == 404
    assert admin.get(f"/api/v1/nodes/{node_id}/config").status_code == 404


@pytest.mark.parametrize(
    ("role", "code"), [(Role.OPERATOR, 201), (Role.TECHNICIAN, 201), (Role.OFFICER, 403)]
)
def test_who_may_push_configs(admin: TestClient, db: Database, node_id: str, role: Role, code: int) -> None:
    add_user(db, "someone", role)
    login(admin, "someone", PASSWORD)
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body()).status_code == code


ALREADY = "config_version: 1 already runs, with other content"
BAD_RULE = "cameras.0.rules.0: unknown rule type"


@pytest.mark.parametrize(
    ("answers", "state", "applied", "desired"),
    [
        ([(1, 1, None)], "applied", 1, 1),
        ([(1, 0, BAD_RULE)], "failed", 0, 1),
        ([(1, 0, BAD_RULE), (1, 1, None)], "applied", 1, 1),
        ([(1, 1, None), (0, 1, "config_version: 0 is older than the running 1")], "applied", 1, 1),
        (
            [(2, 1, "cameras.0.rules.0: bad"), (1, 1, None)],
            "applied",
            1,
            1,
        ),  # an answer to someone else's push
        # The node already ran a version 1 of its own (its file config): same content goes out as version 2.
        ([(1, 1, ALREADY)], "pending", 1, 2),
        ([(1, 1, ALREADY), (2, 2, None)], "applied", 2, 2),
        ([(1, 5, "config_version: 1 is older than the running 5")], "pending", 5, 6),
        ([(1, 1, ALREADY), (2, 1, BAD_RULE)], "failed", 1, 2),  # renumbered once, then a real refusal stays
    ],
    ids=[
        "applied",
        "refused",
        "applied-after-retry",
        "stale-answer-later",
        "foreign-version",
        "version-taken",
        "version-taken-then-applied",
        "node-ahead",
        "version-taken-then-refused",
    ],
)
def test_the_nodes_answers_are_recorded(
    admin: TestClient,
    db: Database,
    node_id: str,
    answers: list[tuple[int, int, str | None]],
    state: str,
    applied: int,
    desired: int,
) -> None:
    admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body())
    for version, running, err in answers:
        fleet_of(admin).handle_applied(TOPICS.config_applied(node_id), answer(node_id, version, running, err))
    node = admin.get(f"/api/v1/nodes/{node_id}").json()
    last_error = answers[-1][2]
    assert (node["config_state"], node["applied_version"], node["desired_version"]) == (
        state,
        applied,
        desired,
    )
    assert node["answer_error"] == last_error
    assert fleet_of(admin).stats.answers == len(answers)
    stored = admin.get(f"/api/v1/nodes/{node_id}/config").json()
    assert stored["version"] == desired and stored["config"]["config_version"] == desired
    assert stored["config"]["cameras"][0]["rules"][0]["min_dwell_s"] == 20  # same content, renumbered
    with db.session() as session:
        restamps = session.scalars(select(AuditRow).where(AuditRow.action == "node.config.restamp")).all()
    assert len(restamps) == (1 if desired > 1 else 0)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TOPICS.config_applied("{node}"), b"not json", "invalid ConfigApplied"),
        (TOPICS.config_applied("{node}"), answer("other-node", 1, 1), "does not match the topic"),
        (
            TOPICS.config_applied("{node}"),
            b'{"schema": "streetwatch.config-applied/1", "ok": true}',
            "invalid",
        ),
        ("elsewhere/config/applied", answer("x", 1, 1), "not a config/applied topic"),
    ],
    ids=["not-json", "other-node", "missing-fields", "foreign-topic"],
)
def test_bad_answers_become_dead_letters(
    admin: TestClient, db: Database, node_id: str, topic: str, payload: bytes, reason: str
) -> None:
    fleet_of(admin).handle_applied(topic.replace("{node}", node_id), payload)
    with db.session() as session:
        letters = session.scalars(select(DeadLetterRow)).all()
    assert len(letters) == 1 and reason in letters[0].error
    assert fleet_of(admin).stats.answers_invalid == 1


def test_answers_of_unknown_nodes_are_counted_not_recorded(admin: TestClient) -> None:
    fleet_of(admin).handle_applied(TOPICS.config_applied("ghost"), answer("ghost", 1, 1))
    assert fleet_of(admin).stats.answers_unknown_node == 1

"""Enrollment end to end: the node's ``edge_agent.node.enroll`` against the real central app (TestClient is httpx)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central.db.models import NodeRow
from central.db.session import Database
from central.messaging.broker_auth import verify_mosquitto_hash
from edge_agent.node.enroll import EnrollError, credentials_path, enroll, load_credentials
from tests.central.conftest import FakeClock
from tests.central.test_nodes import new_token, upload

CENTRAL = "http://testserver"


def test_the_node_enrolls_and_keeps_its_secrets_0600(admin: TestClient, db: Database, tmp_path: Path) -> None:
    state = tmp_path / "state"
    creds = enroll(CENTRAL, new_token(admin), "Cầu Giấy 7", state, http=admin)
    path = credentials_path(state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert load_credentials(state) == creds
    assert creds.node_id.startswith("cau-giay-7-") and creds.central_url == CENTRAL
    with db.session() as session:
        node = session.get(NodeRow, creds.node_id)
        assert node is not None and node.mqtt_password_hash is not None
        assert verify_mosquitto_hash(node.mqtt_password_hash, creds.mqtt_password.get_secret_value())
        assert creds.http_token.get_secret_value() not in (node.http_token_hash or "")
    assert upload(admin, creds.http_token.get_secret_value()) == 201


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("reused", "(401): enrollment token already used"),
        ("expired", "(401): enrollment token expired"),
        ("revoked-then-reused", "(401): enrollment token already used"),
    ],
)
def test_refused_enrollments_say_why_and_write_nothing(
    admin: TestClient, clock: FakeClock, tmp_path: Path, case: str, reason: str
) -> None:
    token = new_token(admin)
    if case == "expired":
        clock.advance(901)
    else:
        first = enroll(CENTRAL, token, "first", tmp_path / "first", http=admin)
        if case.startswith("revoked"):
            admin.post(f"/api/v1/nodes/{first.node_id}/revoke")
            assert upload(admin, first.http_token.get_secret_value()) == 401  # revoked node refused
    with pytest.raises(EnrollError, match=re.escape(reason)):
        enroll(CENTRAL, token, "second", tmp_path / "second", http=admin)
    assert not credentials_path(tmp_path / "second").exists()


def test_an_enrolled_node_does_not_spend_a_token_by_mistake(admin: TestClient, tmp_path: Path) -> None:
    enroll(CENTRAL, new_token(admin), "box", tmp_path, http=admin)
    token = new_token(admin)
    with pytest.raises(EnrollError, match="already enrolled"):
        enroll(CENTRAL, token, "box", tmp_path, http=admin)
    again = enroll(CENTRAL, token, "box", tmp_path, http=admin, force=True)  # the token was not spent
    assert load_credentials(tmp_path) == again

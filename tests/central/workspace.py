"""Builders for the officers' workspace tests: wards, placed cameras, users of every role, events with evidence.

Everything goes in through the real paths: users through ``central.users.create_user``, cameras through the
registry, events through the ingestor (the MQTT handler's code), evidence bytes through the node upload route.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from central import cameras, users
from central.db.models import WardRow
from central.db.session import Database
from central.db.wards import CameraRow
from central.ingest import Ingestor
from edge_agent.contract import Event
from tests.central.conftest import NODE_TOKEN, login
from tests.central.factories import T0, TOPICS, sha256_of

PASSWORD = "green-mango-bicycle-41"
ROLES = ("officer", "supervisor", "operator", "technician", "admin")
# ward -> (node, camera) placed in it
WARDS = {"w1": ("node-1", "cam-1"), "w2": ("node-2", "cam-2")}


def add_wards(db: Database) -> None:
    """Wards w1 and w2, each with one camera placed in it."""
    with db.session() as session:
        for ward, (node, camera) in WARDS.items():
            session.add(WardRow(ward_id=ward, name=f"Ward {ward}", created_at=T0))
            session.flush()
            session.add(
                CameraRow(
                    node_id=node,
                    camera_id=camera,
                    name=f"{camera} corner",
                    ward_id=ward,
                    location="",
                    notes="",
                    updated_at=T0,
                    updated_by="admin",
                )
            )


def add_user(db: Database, username: str, role: str, wards: tuple[str, ...]) -> None:
    with db.session() as session:
        users.create_user(
            session,
            username=username,
            role=role,
            password=PASSWORD,
            wards=list(wards),
            actor="admin",
            now=T0,
            must_change_password=False,
        )


def client_as(client: TestClient, username: str) -> TestClient:
    """Another browser (own cookie jar) logged in as ``username``."""
    other = TestClient(client.app)
    if username == "admin":
        login(other)
    else:
        login(other, username, PASSWORD)
    return other


def ingestor_of(client: TestClient) -> Ingestor:
    return client.app.state.central.ingestor  # type: ignore[attr-defined, no-any-return]


def ingest(client: TestClient, event: Event) -> str:
    result = ingestor_of(client).ingest(TOPICS.events(event.node_id), event.to_json())
    return result.value


def upload(client: TestClient, data: bytes, content_type: str = "image/jpeg") -> str:
    sha = sha256_of(data)
    response = TestClient(client.app).put(
        f"/api/v1/evidence/{sha}",
        content=data,
        headers={"Authorization": f"Bearer {NODE_TOKEN}", "Content-Type": content_type},
    )
    assert response.status_code in (200, 201), response.text
    return sha


def place(db: Database, node: str, camera: str, ward: str) -> None:
    with db.session() as session:
        cameras.update_camera(
            session,
            node,
            camera,
            name=camera,
            ward_id=ward,
            location="",
            notes="",
            actor="admin",
            now=datetime(2025, 3, 1, tzinfo=UTC),
        )

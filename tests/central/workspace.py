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
from central.messaging.ingest import Ingestor
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


def event_rows(
    n: int, *, start: datetime, wards: dict[str, tuple[str, str]] = WARDS, seed: int = 7
) -> list[dict]:
    """``n`` event rows for a bulk INSERT (seeding large queues fast): types, labels, statuses, minutes apart."""
    import random
    import uuid
    from datetime import timedelta

    from edge_agent.contract import EventType

    rng = random.Random(seed)
    types = [t.value for t in EventType]
    labels = ["car", "motorcycle", "truck", "person", "bus"]
    ward_ids = sorted(wards)
    rows = []
    for i in range(n):
        ward = ward_ids[i % len(ward_ids)]
        node, camera = wards[ward]
        at = start + timedelta(seconds=37 * i)
        label = labels[rng.randrange(len(labels))]
        status = rng.choice(["pending", "pending", "confirmed", "dismissed"])
        rows.append(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "node_id": node,
                "camera_id": camera,
                "zone_id": f"zone-{i % 7}",
                "rule_id": "rule-1",
                "type": types[i % len(types)],
                "phase": "end",
                "started_at": at,
                "observed_at": at,
                "ended_at": at,
                "objects": [{"track_id": i, "label": label, "score": 0.8, "box": [0.1, 0.1, 0.2, 0.2]}],
                "measurements": {
                    "dwell_s": float(30 + i % 200),
                    "speed_kmh": 40.0 + i % 40,
                    "limit_kmh": 50.0,
                },
                "evidence": [],
                "model_name": "yolo11n.onnx",
                "model_sha256": "a" * 64,
                "config_version": 1,
                "received_at": at,
                "updated_at": at,
                "review_status": status,
                "ward_id": ward,
                "version": 1,
                "claimed_by": None,
                "claimed_until": None,
                "escalated": False,
                "decided_at": at + timedelta(minutes=5) if status != "pending" else None,
                "labels": f",{label},",
                "changed_after_decision": False,
            }
        )
    return rows


def seed_events(db: Database, rows: list[dict]) -> None:
    from sqlalchemy import insert

    from central.db.models import EventRow

    with db.session() as session:
        for start in range(0, len(rows), 2000):
            session.execute(insert(EventRow), rows[start : start + 2000])

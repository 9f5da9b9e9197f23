"""The ward and camera registry (SQLite and PostgreSQL): cameras learned from events, placed by an admin on
the cameras page (their events move to the ward, audited), refused for other roles; the 'wards' CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow
from central.db.session import Database
from central.db.wards import CameraRow
from central.settings import Settings
from tests.central.conftest import ADMIN_PASSWORD, NODE_TOKEN, SECRET_KEY
from tests.central.factories import make_event
from tests.central.workspace import add_user, client_as, ingest
from tests.paths import ROOT


def _csrf(c: TestClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/cameras").text)
    assert match
    return match.group(1)


def test_admin_places_a_camera_and_its_events_follow(admin: TestClient, db: Database) -> None:
    event = make_event(node_id="node-5", camera_id="cam-new")
    ingest(admin, event)  # unknown camera: registered, no ward yet
    with db.session() as s:
        camera = s.get(CameraRow, ("node-5", "cam-new"))
        assert camera is not None and camera.ward_id is None
    made = admin.post(
        "/wards",
        data={"ward_id": "ben-nghe", "name": "Phường Bến Nghé", "csrf_token": _csrf(admin)},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    add_user(db, "lan", "officer", ("ben-nghe",))
    officer = client_as(admin, "lan")
    assert officer.get(f"/events/{event.event_id}").status_code == 404
    placed = admin.post(
        "/cameras/node-5/cam-new",
        data={
            "name": "Lê Lợi corner",
            "ward_id": "ben-nghe",
            "location": "Lê Lợi / Pasteur",
            "notes": "hosted by the pharmacy",
            "csrf_token": _csrf(admin),
        },
        follow_redirects=False,
    )
    assert placed.status_code == 303
    assert officer.get(f"/events/{event.event_id}").status_code == 200
    page = officer.get("/cameras").text
    assert "Lê Lợi corner" in page and "hosted by the pharmacy" in page
    refused = officer.post(
        "/cameras/node-5/cam-new", data={"name": "x", "ward_id": "", "csrf_token": _csrf(officer)}
    )
    assert refused.status_code == 403
    with db.session() as s:
        rows = s.scalars(select(AuditRow).where(AuditRow.action == "camera.update")).all()
        assert len(rows) == 1 and rows[0].detail["events_moved"] == 1
        assert rows[0].detail["after"]["ward"] == "ben-nghe"


def test_wards_cli(settings: Settings, db: Database) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_")}
    env.update(
        STREETWATCH_DATABASE_URL=settings.database_url,
        STREETWATCH_DATA_DIR=str(settings.data_dir),
        STREETWATCH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        STREETWATCH_NODE_TOKEN=NODE_TOKEN,
        STREETWATCH_SECRET_KEY=SECRET_KEY,
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "central.cli", "wards", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
            check=False,
        )

    assert cli("add", "ben-nghe", "--name", "Phường Bến Nghé").returncode == 0
    again = cli("add", "ben-nghe")
    assert again.returncode == 1 and "already exists" in again.stderr
    missing = cli("place", "node-1", "cam-1", "ben-nghe")
    assert missing.returncode == 1 and "no camera node-1/cam-1" in missing.stderr
    with db.session() as s:
        from central.messaging.ingest import camera_ward

        camera_ward(s, "node-1", "cam-1", datetime.now(UTC))  # the camera's first event registers it
    placed = cli("place", "node-1", "cam-1", "ben-nghe")
    assert placed.returncode == 0 and "placed in ben-nghe" in placed.stdout
    listing = cli("list").stdout
    assert "ward ben-nghe\tPhường Bến Nghé" in listing and "camera node-1/cam-1\tben-nghe" in listing


def test_an_accepted_node_config_registers_its_cameras(admin: TestClient, db: Database) -> None:
    from tests.central.test_nodes import enroll, new_token
    from tests.central.test_nodes_config import camera, config_body

    node_id = str(enroll(admin, new_token(admin)).json()["node_id"])
    body = config_body(cameras=camera(name="Lê Lợi / Pasteur"))
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=body).status_code == 201
    with db.session() as s:
        row = s.get(CameraRow, (node_id, "cam-1"))
        assert row is not None and (row.name, row.ward_id) == ("Lê Lợi / Pasteur", None)
    assert "Lê Lợi / Pasteur" in admin.get("/cameras").text

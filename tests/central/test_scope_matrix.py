"""Authorization matrix through HTTP, on SQLite and PostgreSQL: every route of the workspace x every role x an
event/case/evidence of the user's own ward and of another ward.

Reads of another ward answer 404 (the same as an unknown id), lists and counts never include it, and evidence
bytes are served only for the user's wards. Writes additionally follow the role: operators and technicians
read but neither claim nor decide; only supervisors and admins reopen. Admins see every ward.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from central.db.session import Database
from tests.central.factories import JPEG_BYTES, make_event, snapshot_ref
from tests.central.workspace import ROLES, WARDS, add_user, add_wards, client_as, ingest, upload

DECIDERS = {"officer", "supervisor", "admin"}
REOPENERS = {"supervisor", "admin"}


def _world(admin: TestClient, db: Database) -> dict[str, dict[str, str]]:
    """Per ward: events to read, claim, decide and reopen (decided by the admin), a case, evidence."""
    add_wards(db)
    world: dict[str, dict[str, str]] = {}
    for ward, (node, camera) in WARDS.items():
        image = JPEG_BYTES + ward.encode()  # distinct bytes per ward
        sha = upload(admin, image)
        ids = {}
        for name in ("read", "claim", "decide", "reopen"):
            event = make_event(node_id=node, camera_id=camera, evidence=[snapshot_ref(image)])
            assert ingest(admin, event) == "inserted"
            ids[name] = str(event.event_id)
        version = admin.get(f"/api/v1/events/{ids['reopen']}").json()["version"]
        decided = admin.post(
            f"/api/v1/events/{ids['reopen']}/decision", json={"decision": "confirm", "version": version}
        )
        assert decided.status_code == 200, decided.text
        case = admin.post(
            "/cases",
            data={"title": f"case {ward}", "ward_id": ward, "csrf_token": _csrf(admin)},
            follow_redirects=False,
        )
        assert case.status_code == 303, case.text
        ids["case"] = case.headers["location"].rsplit("/", 1)[1]
        ids["sha"] = sha
        ids["camera"] = camera
        world[ward] = ids
    return world


def _csrf(client: TestClient) -> str:
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/cases").text)
    assert match
    return match.group(1)


def _reads(c: TestClient, ids: dict[str, str]) -> dict[str, int]:
    return {
        "event page": c.get(f"/events/{ids['read']}").status_code,
        "event api": c.get(f"/api/v1/events/{ids['read']}").status_code,
        "evidence bytes": c.get(f"/evidence/{ids['sha']}").status_code,
        "case page": c.get(f"/cases/{ids['case']}").status_code,
        "case export": c.get(f"/cases/{ids['case']}/export.zip").status_code,
    }


def _writes(c: TestClient, ids: dict[str, str]) -> dict[str, int]:
    claim = c.post(f"/api/v1/events/{ids['claim']}/claim").status_code
    got = c.get(f"/api/v1/events/{ids['decide']}")
    version = got.json()["version"] if got.status_code == 200 else 1
    decide = c.post(
        f"/api/v1/events/{ids['decide']}/decision", json={"decision": "confirm", "version": version}
    ).status_code
    got = c.get(f"/api/v1/events/{ids['reopen']}")
    version = got.json()["version"] if got.status_code == 200 else 1
    reopen = c.post(
        f"/api/v1/events/{ids['reopen']}/reopen", json={"reason": "wrong plate read", "version": version}
    ).status_code
    return {"claim": claim, "decide": decide, "reopen": reopen}


@pytest.mark.parametrize("role", ROLES)
def test_every_route_for_every_role_own_and_other_ward(admin: TestClient, db: Database, role: str) -> None:
    world = _world(admin, db)
    if role == "admin":
        user = admin
    else:
        add_user(db, f"u-{role}", role, ("w1",))
        user = client_as(admin, f"u-{role}")
    own, other = world["w1"], world["w2"]

    own_reads = _reads(user, own)
    assert own_reads == dict.fromkeys(own_reads, 200), own_reads
    other_reads = _reads(user, other)
    expected_other = 200 if role == "admin" else 404
    assert other_reads == dict.fromkeys(other_reads, expected_other), other_reads

    # The bytes themselves, not just a status: own ward's image comes back intact.
    assert user.get(f"/evidence/{own['sha']}").content == JPEG_BYTES + b"w1"

    # Lists, search, live counts and statistics never include another ward's events.
    listed = {e["event_id"] for e in user.get("/api/v1/events", params={"status": "all"}).json()["events"]}
    assert own["read"] in listed
    assert (other["read"] in listed) is (role == "admin")
    searched = user.get("/api/v1/events", params={"status": "all", "ward": "w2"}).json()["events"]
    assert bool(searched) is (role == "admin")
    page = user.get("/review", params={"status": "all"}).text
    assert own["read"] in page and (other["read"] in page) is (role == "admin")
    after = datetime(2000, 1, 1, tzinfo=UTC).isoformat()
    new = user.get("/review/updates", params={"after": after, "status": "all"}).json()["new"]
    assert new == (8 if role == "admin" else 4)
    stats = user.get("/stats", params={"days": 14}).text
    assert "node-1/cam-1" in stats and ("node-2/cam-2" in stats) is (role == "admin")
    cases = user.get("/cases").text
    assert "case w1" in cases and ("case w2" in cases) is (role == "admin")

    own_writes = _writes(user, own)
    assert own_writes == {
        "claim": 200 if role in DECIDERS else 403,
        "decide": 200 if role in DECIDERS else 403,
        "reopen": 200 if role in REOPENERS else 403,
    }, own_writes
    other_writes = _writes(user, other)
    if role == "admin":
        assert other_writes == {"claim": 200, "decide": 200, "reopen": 200}
    else:
        assert other_writes == dict.fromkeys(other_writes, 404), other_writes


def test_a_user_without_wards_sees_nothing(admin: TestClient, db: Database) -> None:
    world = _world(admin, db)
    add_user(db, "nowhere", "officer", ())
    user = client_as(admin, "nowhere")
    for ids in world.values():
        assert set(_reads(user, ids).values()) == {404}
    assert user.get("/api/v1/events", params={"status": "all"}).json()["events"] == []


def test_events_of_an_unplaced_camera_are_admin_only(admin: TestClient, db: Database) -> None:
    add_wards(db)
    add_user(db, "lan", "officer", ("w1",))
    event = make_event(node_id="node-9", camera_id="cam-new")
    ingest(admin, event)
    officer = client_as(admin, "lan")
    assert officer.get(f"/events/{event.event_id}").status_code == 404
    assert admin.get(f"/events/{event.event_id}").status_code == 200

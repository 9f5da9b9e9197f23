"""Review integrity through HTTP on SQLite and PostgreSQL: claims with a lease, versioned decisions (stale ->
409), decided events changed only by a supervisor's audited reopen, and node messages after a decision kept as
history without touching the decided facts (conflicting duplicates dead-lettered)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow, DeadLetterRow
from central.db.session import Database
from central.db.wards import EventHistoryRow
from edge_agent.contract import EventObject, NormBox, Phase
from tests.central.conftest import FakeClock
from tests.central.factories import T0, make_event
from tests.central.workspace import add_user, add_wards, client_as, ingest


def _two_officers(admin: TestClient, db: Database) -> tuple[TestClient, TestClient, str]:
    add_wards(db)
    add_user(db, "lan", "officer", ("w1",))
    add_user(db, "minh", "officer", ("w1",))
    event = make_event(node_id="node-1", camera_id="cam-1", dwell_s=45.0)
    assert ingest(admin, event) == "inserted"
    return client_as(admin, "lan"), client_as(admin, "minh"), str(event.event_id)


def _version(c: TestClient, event_id: str) -> int:
    return int(c.get(f"/api/v1/events/{event_id}").json()["version"])


def _actions(db: Database, event_id: str) -> list[str]:
    with db.session() as s:
        return list(
            s.scalars(
                select(AuditRow.action).where(AuditRow.target == f"event:{event_id}").order_by(AuditRow.id)
            )
        )


def test_a_claim_is_visible_and_blocks_the_second_officer(admin: TestClient, db: Database) -> None:
    lan, minh, eid = _two_officers(admin, db)
    assert lan.post(f"/api/v1/events/{eid}/claim").status_code == 200
    seen = minh.get(f"/api/v1/events/{eid}").json()
    assert seen["claimed_by"] == "lan"
    assert "Claimed by lan" in minh.get(f"/events/{eid}").text
    refused = minh.post(f"/api/v1/events/{eid}/claim")
    assert (refused.status_code, refused.json()["detail"]) == (409, "claimed by lan")
    version = seen["version"]
    blocked = minh.post(f"/api/v1/events/{eid}/decision", json={"decision": "confirm", "version": version})
    assert blocked.status_code == 409
    done = lan.post(f"/api/v1/events/{eid}/decision", json={"decision": "confirm", "version": version})
    assert done.status_code == 200 and done.json()["claimed_by"] is None
    late = minh.post(
        f"/api/v1/events/{eid}/decision", json={"decision": "dismiss", "reason": "no", "version": version}
    )
    assert late.status_code == 409  # the confirmed decision stands
    assert lan.get(f"/api/v1/events/{eid}").json()["review_status"] == "confirmed"
    assert _actions(db, eid) == ["event.claim", "event.confirm"]


def test_a_stale_version_is_refused_with_409_and_shown_on_the_page(admin: TestClient, db: Database) -> None:
    lan, minh, eid = _two_officers(admin, db)
    page = minh.get(f"/events/{eid}").text  # minh opens the event (version 1)
    version = int(re.search(r'name="version" value="(\d+)"', page).group(1))  # type: ignore[union-attr]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert (
        lan.post(  # meanwhile lan escalates: still pending, but a new version
            f"/api/v1/events/{eid}/decision", json={"decision": "escalate", "version": version}
        ).status_code
        == 200
    )
    response = minh.post(
        f"/events/{eid}/decision",
        data={"decision": "confirm", "version": str(version), "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 409
    assert "This event changed since you opened it" in response.text
    assert minh.get(f"/api/v1/events/{eid}").json()["review_status"] == "pending"


def test_the_lease_runs_out(admin: TestClient, db: Database, clock: FakeClock) -> None:
    lan, minh, eid = _two_officers(admin, db)
    assert lan.post(f"/api/v1/events/{eid}/claim").status_code == 200
    clock.advance(599)
    assert minh.post(f"/api/v1/events/{eid}/claim").status_code == 409
    clock.advance(2)
    assert minh.post(f"/api/v1/events/{eid}/claim").status_code == 200


def test_keys_are_armed_only_on_a_claimed_event(admin: TestClient, db: Database) -> None:
    lan, _minh, eid = _two_officers(admin, db)
    assert 'data-claimed="1"' not in lan.get(f"/events/{eid}").text
    lan.post(f"/api/v1/events/{eid}/claim")
    assert 'data-claimed="1"' in lan.get(f"/events/{eid}").text


def test_only_a_supervisor_reopens_with_a_reason(admin: TestClient, db: Database) -> None:
    lan, _minh, eid = _two_officers(admin, db)
    add_user(db, "hoa", "supervisor", ("w1",))
    chief = client_as(admin, "hoa")
    v = _version(lan, eid)
    lan.post(f"/api/v1/events/{eid}/decision", json={"decision": "confirm", "version": v})
    v = _version(lan, eid)
    assert lan.post(f"/api/v1/events/{eid}/reopen", json={"reason": "x", "version": v}).status_code == 403
    assert chief.post(f"/api/v1/events/{eid}/reopen", json={"reason": "", "version": v}).status_code == 422
    reopened = chief.post(f"/api/v1/events/{eid}/reopen", json={"reason": "plate misread", "version": v})
    assert reopened.status_code == 200
    body = reopened.json()
    assert body["review_status"] == "pending"
    assert [d["decision"] for d in body["decisions"]] == ["confirm", "reopen"]
    assert body["decisions"][-1]["reason"] == "plate misread"
    assert _actions(db, eid)[-1] == "event.reopen"


def test_escalated_events_come_first_for_supervisors(admin: TestClient, db: Database) -> None:
    lan, _minh, first = _two_officers(admin, db)
    at = T0 + timedelta(minutes=30)
    later = make_event(node_id="node-1", camera_id="cam-1", zone_id="z-2", started_at=at, observed_at=at)
    ingest(admin, later)
    lan.post(f"/api/v1/events/{later.event_id}/decision", json={"decision": "escalate", "version": 1})
    add_user(db, "hoa", "supervisor", ("w1",))
    chief = client_as(admin, "hoa")
    assert [e["event_id"] for e in lan.get("/api/v1/events?status=pending").json()["events"]] == [
        first,
        str(later.event_id),
    ]
    assert [e["event_id"] for e in chief.get("/api/v1/events?status=pending").json()["events"]] == [
        str(later.event_id),
        first,
    ]


def test_a_later_phase_after_the_decision_changes_nothing_decided(admin: TestClient, db: Database) -> None:
    lan, _minh, eid = _two_officers(admin, db)
    event = make_event(node_id="node-1", camera_id="cam-1", dwell_s=45.0)
    event = event.model_copy(update={"event_id": uuid.UUID(eid)})
    lan.post(f"/api/v1/events/{eid}/claim")
    lan.post(f"/api/v1/events/{eid}/decision", json={"decision": "confirm", "version": _version(lan, eid)})
    bicycle = EventObject(track_id=7, label="bicycle", score=0.5, box=NormBox(x1=0.1, y1=0.2, x2=0.3, y2=0.4))
    later = event.model_copy(
        update={
            "phase": Phase.UPDATE,
            "observed_at": event.observed_at.replace(second=30),
            "measurements": {"dwell_s": 1.0},
            "objects": [bicycle],
        }
    )
    assert ingest(admin, later) == "history"
    after = lan.get(f"/api/v1/events/{eid}").json()
    assert after["review_status"] == "confirmed"
    assert after["measurements"] == {"dwell_s": 45.0}
    assert [o["label"] for o in after["objects"]] == ["car"]
    assert after["changed_after_decision"] is True
    page = lan.get(f"/events/{eid}").text
    assert "Changed after the decision" in page
    change = page[page.index('id="changed-after-decision"') :]
    dwell_row = change[change.index('data-field="dwell_s"') :].split("</tr>")[0]
    assert "<td>45 s</td>" in dwell_row and "<td>1 s</td>" in dwell_row
    objects_row = change[change.index('data-field="objects"') :].split("</tr>")[0]
    assert "Car" in objects_row and "Bicycle" in objects_row
    with db.session() as s:
        kept = s.scalars(select(EventHistoryRow).where(EventHistoryRow.event_id == eid)).all()
        assert [(h.phase, h.measurements) for h in kept] == [("update", {"dwell_s": 1.0})]

    assert ingest(admin, later) == "duplicate"  # the same message again: QoS 1 redelivery, nothing new
    conflicting = later.model_copy(update={"measurements": {"dwell_s": 3.0}})
    assert ingest(admin, conflicting) == "dead_letter"
    with db.session() as s:
        errors = s.scalars(select(DeadLetterRow.error)).all()
    assert any("different message with the same phase" in e for e in errors)


def test_before_a_decision_a_conflicting_duplicate_is_dead_lettered(admin: TestClient, db: Database) -> None:
    add_wards(db)
    event = make_event(node_id="node-1", camera_id="cam-1", dwell_s=45.0)
    assert ingest(admin, event) == "inserted"
    assert ingest(admin, event) == "duplicate"
    assert ingest(admin, event.model_copy(update={"measurements": {"dwell_s": 9.0}})) == "dead_letter"
    newer = event.model_copy(
        update={"phase": Phase.UPDATE, "observed_at": event.observed_at.replace(second=40)}
    )
    assert ingest(admin, newer) == "updated"
    assert admin.get(f"/api/v1/events/{event.event_id}").json()["version"] == 2

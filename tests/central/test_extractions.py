"""Footage requests at central: validation, which node has the camera, and states from the node's answers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from central.db.models import ExtractionRow, ExtractionState, NodeCommandRow, NodeRow
from central.db.session import Database
from central.fleet.extractions import camera_nodes, follow_command
from central.messaging.ingest import Ingestor
from edge_agent.contract import CameraHealth, Heartbeat, OutboxHealth
from tests.central.conftest import FakeClock
from tests.central.factories import TOPICS


def enroll(db: Database, clock: FakeClock, node_id: str = "n1") -> None:
    with db.session() as s:
        s.add(
            NodeRow(
                node_id=node_id, name=node_id, mqtt_username=node_id, enrolled_at=clock.now, enrolled_by="a"
            )
        )


def hear(ingestor: Ingestor, clock: FakeClock, node_id: str, camera: str) -> None:
    beat = Heartbeat(
        node_id=node_id,
        at=clock.now,
        uptime_s=1,
        cameras=[CameraHealth(camera_id=camera, fps=5, detect_fps=1, frames_dropped=0, decode_errors=0)],
        outbox=OutboxHealth(depth=0, uploads=0, bytes=0, max_bytes=1),
        mqtt_reconnects=0,
    )
    ingestor.observe_heartbeat(TOPICS.heartbeat(node_id), beat.to_json())


def test_requests_are_checked_and_an_unreachable_node_means_not_available(
    admin: TestClient, clock: FakeClock
) -> None:
    central = admin.app.state.central  # type: ignore[attr-defined]
    enroll(central.db, clock)
    hear(central.ingestor, clock, "n1", "cam-7")
    hear(central.ingestor, clock, "stranger", "cam-9")  # heard but not enrolled: no commands to it
    with central.db.session() as s:
        assert camera_nodes(s) == {"cam-7": "n1"}
    start = (clock.now - timedelta(minutes=10)).isoformat()
    end = (clock.now - timedelta(minutes=9)).isoformat()
    cases = [
        ({"camera_id": "cam-9", "start": start, "end": end, "reason": "theft"}, 404, "no enrolled node"),
        ({"camera_id": "cam-7", "start": start, "end": end, "reason": "x"}, 422, "reason"),
        ({"camera_id": "cam-7", "start": end, "end": start, "reason": "theft"}, 422, "after the start"),
        (
            {
                "camera_id": "cam-7",
                "start": start,
                "end": (clock.now + timedelta(hours=2)).isoformat(),
                "reason": "abc",
            },
            422,
            "at most",
        ),
    ]
    for body, code, words in cases:
        r = admin.post("/api/v1/extractions", json=body)
        assert r.status_code == code and words in str(r.json()["detail"]), (body, r.text)
    # MQTT is off in this app: the command cannot be sent, the request ends not-available with the reason
    r = admin.post(
        "/api/v1/extractions", json={"camera_id": "cam-7", "start": start, "end": end, "reason": "theft"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "not-available" and "could not be reached" in r.json()["message"]
    page = admin.get("/extractions?lang=vi")
    assert page.status_code == 200 and "không có" in page.text and "cam-7" in page.text


@pytest.mark.parametrize(
    ("state", "message", "reason", "expected", "expected_message"),
    [
        (
            "progress",
            "recording-found: 2 segment(s)",
            None,
            ExtractionState.RECORDING_FOUND,
            "recording-found: 2 segment(s)",
        ),
        ("progress", "uploading 1000 bytes", None, ExtractionState.UPLOADING, "uploading 1000 bytes"),
        (
            "refused",
            "",
            "not-available: outside retention: covers x",
            ExtractionState.NOT_AVAILABLE,
            "outside retention: covers x",
        ),
        ("refused", "", "camera_id: unknown camera", ExtractionState.FAILED, "camera_id: unknown camera"),
        (
            "failed",
            "",
            "RuntimeError: ffmpeg could not cut",
            ExtractionState.FAILED,
            "RuntimeError: ffmpeg could not cut",
        ),
        (
            "timeout",
            "",
            "no answer",
            ExtractionState.NOT_AVAILABLE,
            "the node did not answer (offline?): no answer",
        ),
    ],
)
def test_the_extraction_follows_its_command(
    db: Database,
    clock: FakeClock,
    state: str,
    message: str,
    reason: str | None,
    expected: ExtractionState,
    expected_message: str,
) -> None:
    enroll(db, clock)
    with db.session() as s:
        s.add(
            NodeCommandRow(
                request_id="r1", node_id="n1", name="extract", args={}, state=state, message=message, reason=reason,
                created_at=clock.now, created_by="o", expires_at=clock.now, updated_at=clock.now,
            )
        )  # fmt: skip
        s.add(
            ExtractionRow(
                id="x1", node_id="n1", camera_id="c", start_at=clock.now, end_at=clock.now, reason="r",
                requested_by="o", requested_at=clock.now, state="requested", request_id="r1", updated_at=clock.now,
            )
        )  # fmt: skip
    with db.session() as s:
        command = s.get(NodeCommandRow, "r1")
        assert command is not None
        row = follow_command(s, command, None, now=clock.now)
        assert row is not None and (row.state, row.message) == (expected.value, expected_message)

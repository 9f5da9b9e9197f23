"""Ingest: idempotent upsert per event_id, phase ordering, dead letters for everything unacceptable."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import func, select

from central.db.models import DeadLetterRow, EventRow, NodeStatusRow
from central.db.session import Database
from central.messaging.ingest import MAX_DEAD_LETTER_BYTES, Ingestor, IngestResult
from edge_agent.contract import EvidenceKind, EvidenceRef, NodeState, Phase, uuid7
from tests.central.conftest import FakeClock
from tests.central.factories import T0, TOPICS, make_event, make_status, snapshot_ref

EVENTS_TOPIC = TOPICS.events("node-1")
STATUS_TOPIC = TOPICS.status("node-1")


def count(db: Database, model: type) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def event_row(db: Database, event_id: object) -> EventRow:
    with db.session() as session:
        row = session.get(EventRow, str(event_id))
        assert row is not None
        return row


def dead_letters(db: Database) -> list[DeadLetterRow]:
    with db.session() as session:
        return list(session.scalars(select(DeadLetterRow).order_by(DeadLetterRow.id)))


def test_valid_event_is_inserted(ingestor: Ingestor, db: Database, clock: FakeClock) -> None:
    event = make_event()
    assert ingestor.ingest(EVENTS_TOPIC, event.to_json()) is IngestResult.INSERTED
    row = event_row(db, event.event_id)
    assert (row.node_id, row.camera_id, row.type, row.phase) == (
        "node-1",
        "cam-1",
        "illegal_stopping",
        "start",
    )
    assert row.started_at == T0 and row.started_at.tzinfo is not None
    assert row.received_at == clock.now
    assert row.measurements == {"dwell_s": 75.0}
    assert row.objects[0]["label"] == "car"
    assert row.evidence == [snapshot_ref().model_dump(mode="json")]
    assert (row.model_name, row.config_version, row.review_status) == ("yolo11n.onnx", 3, "pending")
    assert count(db, DeadLetterRow) == 0


def test_same_payload_twice_is_one_row_and_a_duplicate(
    ingestor: Ingestor, db: Database, clock: FakeClock
) -> None:
    payload = make_event().to_json()
    assert ingestor.ingest(EVENTS_TOPIC, payload) is IngestResult.INSERTED
    clock.advance(5)
    assert ingestor.ingest(EVENTS_TOPIC, payload) is IngestResult.DUPLICATE
    assert count(db, EventRow) == 1
    row = event_row(db, json.loads(payload)["event_id"])
    assert row.updated_at == row.received_at  # the duplicate changed nothing
    assert ingestor.counters.summary()["duplicates"] == 1


def test_start_then_end_updates_the_row(ingestor: Ingestor, db: Database, clock: FakeClock) -> None:
    event_id = uuid7()
    start = make_event(event_id=event_id, phase=Phase.START)
    end = make_event(event_id=event_id, phase=Phase.END, observed_after_s=120, dwell_s=120.0)
    assert ingestor.ingest(EVENTS_TOPIC, start.to_json()) is IngestResult.INSERTED
    clock.advance(120)
    assert ingestor.ingest(EVENTS_TOPIC, end.to_json()) is IngestResult.UPDATED
    assert count(db, EventRow) == 1
    row = event_row(db, event_id)
    assert row.phase == "end"
    assert row.ended_at == end.ended_at
    assert row.measurements == {"dwell_s": 120.0}
    assert row.updated_at == clock.now and row.received_at < row.updated_at


@pytest.mark.parametrize(
    ("first", "late", "late_result"),
    [
        (Phase.END, Phase.START, IngestResult.STALE),
        (Phase.END, Phase.UPDATE, IngestResult.STALE),
        (Phase.UPDATE, Phase.START, IngestResult.STALE),
    ],
)
def test_late_earlier_phase_never_regresses(
    ingestor: Ingestor, db: Database, first: Phase, late: Phase, late_result: IngestResult
) -> None:
    event_id = uuid7()
    newer = make_event(event_id=event_id, phase=first, observed_after_s=60, dwell_s=60.0)
    older = make_event(event_id=event_id, phase=late, observed_after_s=30, dwell_s=30.0)
    assert ingestor.ingest(EVENTS_TOPIC, newer.to_json()) is IngestResult.INSERTED
    assert ingestor.ingest(EVENTS_TOPIC, older.to_json()) is late_result
    row = event_row(db, event_id)
    assert row.phase == first.value
    assert row.measurements == {"dwell_s": 60.0}


def test_updates_in_order_apply_and_evidence_accumulates(ingestor: Ingestor, db: Database) -> None:
    event_id = uuid7()
    clip = EvidenceRef(kind=EvidenceKind.CLIP, sha256="c" * 64, content_type="video/mp4", size=1000)
    messages = [
        make_event(event_id=event_id, phase=Phase.START),
        make_event(event_id=event_id, phase=Phase.UPDATE, observed_after_s=30, dwell_s=30.0),
        make_event(event_id=event_id, phase=Phase.UPDATE, observed_after_s=60, dwell_s=60.0),
        make_event(event_id=event_id, phase=Phase.END, observed_after_s=90, evidence=[clip]),
    ]
    results = [ingestor.ingest(EVENTS_TOPIC, m.to_json()) for m in messages]
    assert results == [IngestResult.INSERTED] + [IngestResult.UPDATED] * 3
    row = event_row(db, event_id)
    assert [ref["kind"] for ref in row.evidence] == ["snapshot_annotated", "clip"]


@pytest.mark.parametrize(
    ("topic", "payload", "error_fragment"),
    [
        pytest.param(EVENTS_TOPIC, b"{not json", "Invalid JSON", id="malformed-json"),
        pytest.param(EVENTS_TOPIC, b"\xff\xfe\x00garbage", "Invalid JSON", id="binary-garbage"),
        pytest.param(EVENTS_TOPIC, b"", "Invalid JSON", id="empty"),
        pytest.param(
            EVENTS_TOPIC,
            json.dumps({**json.loads(make_event().to_json()), "phase": "middle"}).encode(),
            "phase",
            id="bad-phase",
        ),
        pytest.param(
            EVENTS_TOPIC,
            json.dumps(
                {k: v for k, v in json.loads(make_event().to_json()).items() if k != "camera_id"}
            ).encode(),
            "camera_id: Field required",
            id="missing-field",
        ),
        pytest.param(
            EVENTS_TOPIC,
            json.dumps({**json.loads(make_event().to_json()), "surprise": 1}).encode(),
            "surprise: Extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param(
            TOPICS.events("node-2"),
            make_event(node_id="node-1").to_json(),
            "does not match topic node 'node-2'",
            id="node-speaks-for-another",
        ),
        pytest.param(STATUS_TOPIC, b'{"state": "sleepy"}', "state", id="bad-status"),
        pytest.param(
            TOPICS.status("node-9"),
            make_status(node_id="node-1").to_json(),
            "does not match topic node 'node-9'",
            id="status-for-another-node",
        ),
        pytest.param("sw/v1/nodes/node-1/heartbeat", b"{}", "unexpected topic", id="unexpected-topic"),
        pytest.param("other/topic", b"{}", "unexpected topic", id="foreign-topic"),
    ],
)
def test_bad_input_becomes_a_dead_letter(
    ingestor: Ingestor, db: Database, clock: FakeClock, topic: str, payload: bytes, error_fragment: str
) -> None:
    assert ingestor.ingest(topic, payload) is IngestResult.DEAD_LETTER
    [letter] = dead_letters(db)
    assert error_fragment in letter.error
    assert letter.topic == topic
    assert base64.b64decode(letter.payload_b64) == payload
    assert letter.payload == payload.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    assert letter.payload_size == len(payload)
    assert letter.received_at == clock.now
    assert count(db, EventRow) == 0
    assert ingestor.counters.summary()["dead_letters"] == 1


def test_text_the_database_cannot_hold_never_raises(ingestor: Ingestor, db: Database) -> None:
    """A NUL inside a JSON string is valid for the contract; PostgreSQL refuses it, SQLite stores it."""
    event = make_event()
    payload = event.to_json().replace(b'"label":"car"', b'"label":"car\\u0000"')
    assert b"\\u0000" in payload
    postgres = db.engine.dialect.name == "postgresql"
    expected = IngestResult.DEAD_LETTER if postgres else IngestResult.INSERTED
    assert ingestor.ingest(EVENTS_TOPIC, payload) is expected
    assert count(db, EventRow) + count(db, DeadLetterRow) == 1
    if postgres:
        assert "database refused the event" in dead_letters(db)[0].error


def test_event_id_reused_for_another_camera_is_a_dead_letter(ingestor: Ingestor, db: Database) -> None:
    event_id = uuid7()
    ingestor.ingest(EVENTS_TOPIC, make_event(event_id=event_id).to_json())
    hijack = make_event(event_id=event_id, camera_id="cam-2", phase=Phase.UPDATE, observed_after_s=10)
    assert ingestor.ingest(EVENTS_TOPIC, hijack.to_json()) is IngestResult.DEAD_LETTER
    assert "camera_id='cam-1'" in dead_letters(db)[0].error
    assert event_row(db, event_id).camera_id == "cam-1"


def test_huge_dead_letter_is_truncated_but_recorded(ingestor: Ingestor, db: Database) -> None:
    payload = b"x" * (MAX_DEAD_LETTER_BYTES + 10)
    assert ingestor.ingest(EVENTS_TOPIC, payload) is IngestResult.DEAD_LETTER
    [letter] = dead_letters(db)
    assert letter.payload_size == len(payload)
    assert len(base64.b64decode(letter.payload_b64)) == MAX_DEAD_LETTER_BYTES
    assert "truncated" in letter.error


def test_node_status_upsert_and_ordering(ingestor: Ingestor, db: Database) -> None:
    online = make_status(at=T0)
    offline = make_status(state=NodeState.OFFLINE, at=T0.replace(minute=5))
    assert ingestor.ingest(STATUS_TOPIC, online.to_json()) is IngestResult.INSERTED
    assert ingestor.ingest(STATUS_TOPIC, online.to_json()) is IngestResult.DUPLICATE
    assert ingestor.ingest(STATUS_TOPIC, offline.to_json()) is IngestResult.UPDATED
    assert ingestor.ingest(STATUS_TOPIC, online.to_json()) is IngestResult.STALE
    with db.session() as session:
        row = session.get(NodeStatusRow, "node-1")
        assert row is not None
        assert (row.state, row.at, row.software, row.config_version) == ("offline", offline.at, "0.1.0", 3)
        assert row.model_name == "yolo11n.onnx"
    assert ingestor.counters.summary()["statuses"] == 2


def test_counters_summarise_by_result(ingestor: Ingestor) -> None:
    event = make_event()
    ingestor.ingest(EVENTS_TOPIC, event.to_json())
    ingestor.ingest(EVENTS_TOPIC, event.to_json())
    ingestor.ingest(EVENTS_TOPIC, b"nope")
    summary = ingestor.counters.summary()
    assert summary["received"] == 3
    assert (summary["ingested"], summary["duplicates"], summary["dead_letters"]) == (1, 1, 1)
    assert ingestor.counters.by_kind()[("event", "inserted")] == 1

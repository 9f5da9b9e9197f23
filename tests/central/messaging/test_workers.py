"""Group commit and its guarantees: acknowledged (to the broker and to the node) only after the commit, idempotent
under two racing workers on SQLite and PostgreSQL, only enrolled nodes count, oversized events refused."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from central.db.models import DeadLetterRow, EventRow, NodeRow
from central.db.session import Database
from central.messaging.ingest import MAX_DEAD_LETTER_BYTES, Ingestor, IngestResult
from central.messaging.workers import IngestWorkers
from edge_agent.contract import Acks, Phase, message_digest, uuid7
from tests.central.conftest import FakeClock
from tests.central.factories import T0, TOPICS, make_event, make_status


def message(topic: str, payload: bytes, mid: int = 7, qos: int = 1) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    msg.payload = payload
    msg.qos = qos
    return msg


class Recorder:
    """Stands in for the MQTT client: records PUBACKs and the acks published to nodes."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes]] = []

    def ack(self, msg: mqtt.MQTTMessage) -> None:
        self.acked.append(msg.mid)

    def publish(self, topic: str, payload: bytes) -> bool:
        self.published.append((topic, payload))
        return True


class FlakyIngestor:
    """Fails like a database outage or a poison message ``failures`` times, then succeeds."""

    def __init__(self, failures: int, quarantine_works: bool = True) -> None:
        self.failures = failures
        self.quarantine_works = quarantine_works
        self.calls = 0
        self.quarantined: list[str] = []

    def ingest(self, topic: str, payload: bytes) -> IngestResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("boom")
        return IngestResult.INSERTED

    def ingest_batch(self, messages: list[tuple[str, bytes]]) -> list[IngestResult]:
        return [self.ingest(t, p) for t, p in messages]

    def quarantine(self, topic: str, payload: bytes, error: str) -> IngestResult:
        if not self.quarantine_works:
            raise RuntimeError("database is down")
        self.quarantined.append(error)
        return IngestResult.DEAD_LETTER


@pytest.mark.parametrize(
    ("failures", "quarantine_works", "stop_after_waits", "acked", "waits", "quarantined"),
    [
        pytest.param(0, True, None, [7], [], 0, id="ok-first-time"),
        # two batch attempts, then the message alone
        pytest.param(3, True, None, [7], [0.5, 1.0, 0.5], 0, id="acked-after-db-recovers"),
        pytest.param(100, True, None, [7], [0.5, 1.0, 0.5, 1.0, 2.0, 4.0], 1, id="poison-dead-lettered"),
        pytest.param(
            100, False, 6, [], [0.5, 1.0, 0.5, 1.0, 2.0, 4.0], 0, id="db-down-stop-leaves-it-unacked"
        ),
    ],
)
def test_message_is_acknowledged_only_once_committed(
    failures: int,
    quarantine_works: bool,
    stop_after_waits: int | None,
    acked: list[int],
    waits: list[float],
    quarantined: int,
) -> None:
    slept: list[float] = []

    def fake_sleep(seconds: float) -> bool:  # True when "stop" was requested
        slept.append(seconds)
        return stop_after_waits is not None and len(slept) >= stop_after_waits

    flaky = FlakyIngestor(failures, quarantine_works)
    rec = Recorder()
    workers = IngestWorkers(flaky, TOPICS, ack=rec.ack, publish=rec.publish, sleep=fake_sleep)  # type: ignore[arg-type]
    payload = make_event().to_json()
    workers._commit([message(TOPICS.events("node-1"), payload)])
    assert rec.acked == acked
    assert slept == waits  # exponential backoff between attempts, no real sleeping
    assert len(flaky.quarantined) == quarantined
    if quarantined:
        assert flaky.quarantined[0].startswith("ingest failed 5 times: RuntimeError: boom")
    # The node hears about its event exactly when the broker does: after the commit.
    assert [t for t, _ in rec.published] == ([TOPICS.acks("node-1")] if acked else [])


def test_one_commit_acknowledges_the_batch_and_tells_each_node_its_digests(ingestor: Ingestor) -> None:
    rec = Recorder()
    workers = IngestWorkers(ingestor, TOPICS, ack=rec.ack, publish=rec.publish)
    a1, a2, b1 = make_event().to_json(), make_event().to_json(), make_event(node_id="node-2").to_json()
    batch = [
        message(TOPICS.events("node-1"), a1, 1),
        message(TOPICS.events("node-1"), a2, 2),
        message(TOPICS.events("node-2"), b1, 3),
        message(TOPICS.status("node-1"), make_status().to_json(), 4),
        message(TOPICS.events("node-1"), a1, 5),  # a duplicate is acknowledged too: central decided about it
    ]
    workers._commit(batch)
    assert rec.acked == [1, 2, 3, 4, 5] and workers.stats.batches == 1
    acks = {topic: Acks.from_json(payload) for topic, payload in rec.published}
    assert set(acks) == {TOPICS.acks("node-1"), TOPICS.acks("node-2")}  # no acks for status messages
    assert acks[TOPICS.acks("node-1")].digests == [message_digest(a1), message_digest(a2), message_digest(a1)]
    assert acks[TOPICS.acks("node-2")].digests == [message_digest(b1)]
    summary = ingestor.counters.summary()
    assert (summary["inserted"], summary["duplicates"], summary["statuses"]) == (3, 1, 1)


def test_lag_is_the_age_of_the_oldest_uncommitted_message(ingestor: Ingestor) -> None:
    now = [100.0]
    rec = Recorder()
    workers = IngestWorkers(ingestor, TOPICS, ack=rec.ack, publish=rec.publish, clock=lambda: now[0])
    assert workers.lag_s() == 0.0
    workers.submit(message(TOPICS.events("node-1"), make_event().to_json()))
    now[0] += 90.0  # e.g. the database is locked and no worker commits
    assert workers.lag_s() == 90.0 and workers.queued == 1


def enroll(db: Database, node_id: str, *, revoked: bool = False) -> None:
    with db.session() as session:
        session.add(
            NodeRow(
                node_id=node_id,
                name=node_id,
                mqtt_username=f"node-{node_id}",
                enrolled_at=T0,
                enrolled_by="admin",
                revoked_at=T0 + timedelta(hours=1) if revoked else None,
                revoked_by="admin" if revoked else None,
            )
        )


def dead_letter_errors(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(DeadLetterRow.error).order_by(DeadLetterRow.id)))


def count(db: Database, model: type) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_only_enrolled_nodes_count(db: Database, clock: FakeClock) -> None:
    ingestor = Ingestor(db, TOPICS, clock=clock, require_enrollment=True)
    enroll(db, "node-1")
    enroll(db, "node-old", revoked=True)
    good, ghost, gone = make_event(), make_event(node_id="ghost-7"), make_event(node_id="node-old")
    results = ingestor.ingest_batch(
        [
            (TOPICS.events("node-1"), good.to_json()),
            (TOPICS.events("ghost-7"), ghost.to_json()),
            (TOPICS.events("node-old"), gone.to_json()),
        ]
    )
    assert results == [IngestResult.INSERTED, IngestResult.DEAD_LETTER, IngestResult.DEAD_LETTER]
    assert count(db, EventRow) == 1
    errors = dead_letter_errors(db)
    assert errors[0] == "node 'ghost-7' is not enrolled"
    assert errors[1].startswith("node 'node-old' was revoked at ")


def test_an_oversized_event_is_dead_lettered_truncated(db: Database, clock: FakeClock) -> None:
    ingestor = Ingestor(db, TOPICS, clock=clock, max_event_bytes=100_000)
    event = make_event()
    huge = event.model_copy(update={"measurements": {f"m{i}": float(i) for i in range(20_000)}}).to_json()
    assert len(huge) > 100_000
    assert ingestor.ingest(TOPICS.events("node-1"), huge) is IngestResult.DEAD_LETTER
    assert count(db, EventRow) == 0
    [error] = dead_letter_errors(db)
    assert error == (
        f"event of {len(huge)} bytes exceeds the maximum of 100000 bytes "
        f"(payload truncated to {MAX_DEAD_LETTER_BYTES} of {len(huge)} bytes)"
    )


def test_two_workers_racing_on_the_same_ids_keep_one_row_each_in_phase_order(
    db: Database, clock: FakeClock
) -> None:
    """Two ingestors with their own engines (as two processes would have) get the same 3 phases of 60 events,
    in different orders and batches, released together: the database decides, so every event ends as one row
    in its ``end`` phase with the evidence of all phases, and every message is accounted for exactly once."""
    events = []
    for _ in range(60):
        eid = uuid7()
        events.append(
            [
                make_event(event_id=eid, phase=Phase.START),
                make_event(event_id=eid, phase=Phase.UPDATE, observed_after_s=5),
                make_event(event_id=eid, phase=Phase.END, observed_after_s=10),
            ]
        )
    messages = [(TOPICS.events("node-1"), e.to_json()) for phases in events for e in phases]
    rng = random.Random(12)
    orders = [rng.sample(messages, len(messages)) for _ in range(2)]
    engines = [Database(db.url) for _ in range(2)]
    ingestors = [Ingestor(d, TOPICS, clock=clock) for d in engines]
    barrier = threading.Barrier(2)
    results: list[list[IngestResult]] = [[], []]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait(5)
            order = orders[i]
            for start in range(0, len(order), 15):
                results[i] += ingestors[i].ingest_batch(order[start : start + 15])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for d in engines:
        d.dispose()
    assert not errors, errors
    assert count(db, EventRow) == 60 and count(db, DeadLetterRow) == 0
    with db.session() as session:
        assert set(session.scalars(select(EventRow.phase))) == {"end"}
    every = results[0] + results[1]
    assert every.count(IngestResult.INSERTED) == 60  # exactly one insert per id, whoever won
    assert len(every) == 2 * len(messages)
    applied = every.count(IngestResult.INSERTED) + every.count(IngestResult.UPDATED)
    assert 60 <= applied <= 180 and IngestResult.DEAD_LETTER not in every


def test_dead_letters_are_pruned_by_age_then_by_quota(db: Database, clock: FakeClock) -> None:
    from central.messaging.retention import prune_dead_letters

    ingestor = Ingestor(db, TOPICS, clock=clock)
    for i in range(3):
        ingestor.dead_letter(TOPICS.events("node-1"), b"old %d" % i, "bad")
    clock.advance(40 * 86_400)
    for i in range(5):
        ingestor.dead_letter(TOPICS.events("node-1"), b"new %d" % i, "bad")
    assert prune_dead_letters(db, clock.now, retention_days=30, max_rows=3) == 3 + 2
    with db.session() as session:
        kept = list(session.scalars(select(DeadLetterRow.payload).order_by(DeadLetterRow.id)))
    assert kept == ["new 2", "new 3", "new 4"]  # the newest within the quota


def test_healthz_reports_the_lag_and_turns_unhealthy_when_ingest_stalls(make_settings) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from central.app import create_app

    app = create_app(make_settings(ingest_stall_s=60))
    now = [1000.0]
    with TestClient(app) as client:
        central = app.state.central
        rec = Recorder()
        workers = IngestWorkers(
            central.ingestor, TOPICS, ack=rec.ack, publish=rec.publish, clock=lambda: now[0]
        )
        central.subscriber = SimpleNamespace(
            connected=True, host="mq", port=1883, client_id="c", workers=workers
        )
        try:
            assert client.get("/healthz").status_code == 200
            workers.submit(message(TOPICS.events("node-1"), make_event().to_json()))  # no worker running
            now[0] += 30.0
            body = client.get("/healthz").json()
            assert body["ingest"]["lag_s"] == 30.0 and body["ingest"]["queued"] == 1
            now[0] += 31.0  # the database is locked: nothing commits for over a minute
            r = client.get("/healthz")
            assert r.status_code == 503 and r.json()["ingest"]["stalled"] is True
        finally:
            central.subscriber = None

"""The durable outbox: ordering, acknowledgement, survival of a reopen, the cap policy and its drop counters,
and the backoff and bandwidth policies -- all on an injected clock, without sleeping."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.delivery.items import (
    Backoff,
    DropReason,
    Item,
    MessageClass,
    TokenBucket,
    UploadSpec,
    backoff_delay,
)
from edge_agent.delivery.outbox import Outbox, OutboxError

V, T = MessageClass.VIOLATION, MessageClass.TELEMETRY


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_outbox(tmp_path: Path, clock: Clock) -> Iterator[type[Outbox]]:
    opened: list[Outbox] = []

    def factory(max_bytes: int = 1 << 20, **kw: object) -> Outbox:
        box = Outbox(tmp_path / "outbox.sqlite3", max_bytes=max_bytes, clock=clock, rng=lambda: 1.0, **kw)  # type: ignore[arg-type]
        opened.append(box)
        return box

    yield factory  # type: ignore[misc]
    for box in opened:
        with contextlib.suppress(sqlite3.ProgrammingError):
            box.close()


def event(n: int, key: str | None = None, size: int = 100, uploads: tuple[UploadSpec, ...] = ()) -> Item:
    return Item(
        "sw/v1/nodes/n/events", b"e%d" % n + b"." * (size - len(b"e%d" % n)), V, 1, key, f"e{n}", uploads
    )


def beat(n: int, size: int = 100) -> Item:
    return Item("sw/v1/nodes/n/heartbeat", b"h%d" % n + b"." * (size - len(b"h%d" % n)), T, 0, None, f"h{n}")


def upload(tmp_path: Path, name: str, size: int, kind: str = "snapshot_annotated") -> UploadSpec:
    path = tmp_path / name
    path.write_bytes(b"x" * size)
    return UploadSpec(
        sha256=name * (64 // len(name)), kind=kind, content_type="image/jpeg", size=size, path=path
    )


def labels(box: Outbox, limit: int = 100, exclude: tuple[int, ...] = ()) -> list[str]:
    return [m.label for m in box.ready_messages(limit, exclude)]


def test_messages_leave_in_order_and_only_when_acknowledged(make_outbox) -> None:
    box = make_outbox()
    ids = [r.id for r in box.put_many([event(i) for i in range(5)])]
    assert labels(box) == ["e0", "e1", "e2", "e3", "e4"]
    assert labels(box, 2) == ["e0", "e1"]
    assert labels(box, 2, exclude=(ids[0], ids[1])) == ["e2", "e3"]  # in flight are skipped
    assert box.acked([ids[1], ids[3]]) == 2
    assert labels(box) == ["e0", "e2", "e4"]
    assert box.acked([ids[1]]) == 0  # a repeated ack is harmless
    # The broker's PUBACK is not central's word: every row is still owed.
    assert box.depth() == 5 and box.stats().bytes == 500 and box.stats().awaiting_central == 2
    box.published_many([(ids[1], "d1"), (ids[3], "d3")])
    assert box.confirmed(["d1", "d3", "unknown"]) == 2  # central committed them: forgotten
    assert box.confirmed(["d1"]) == 0  # a repeated acknowledgement is harmless
    assert box.depth() == 3 and box.stats().bytes == 300 and box.stats().awaiting_central == 0


def test_phases_of_one_event_leave_in_order_and_uploads_gate_only_their_event(make_outbox, tmp_path) -> None:
    box = make_outbox()
    snap = upload(tmp_path, "a", 1000)
    start, _other, _end = box.put_many(
        [event(0, "ev-1", uploads=(snap,)), event(1, "ev-2"), event(2, "ev-1")]
    )
    # e0 waits for its snapshot; e2 (same event) waits for e0; e1 (another event) goes.
    assert labels(box) == ["e1"]
    assert box.stats().bytes == 1300
    assert box.upload_done(snap.sha256) == 1
    assert labels(box) == ["e0", "e1"]
    box.acked([start.id])  # type: ignore[list-item]
    assert labels(box) == ["e1", "e2"]


def test_uploads_go_snapshots_first_then_clips_oldest_event_first(make_outbox, tmp_path) -> None:
    box = make_outbox()
    clip = upload(tmp_path, "c", 5000, "clip")
    s1, s2 = upload(tmp_path, "1", 10), upload(tmp_path, "2", 10)
    box.put_many([event(0, "a", uploads=(clip, s1)), event(1, "b", uploads=(s2,))])
    order = []
    while (up := box.next_upload()) is not None:
        order.append(up.kind)
        box.upload_done(up.sha256)
    assert order == ["snapshot_annotated", "snapshot_annotated", "clip"]
    assert box.stats().uploads == 0 and labels(box) == ["e0", "e1"]


def test_rows_the_broker_acknowledged_wait_for_central_and_come_back_after_its_timeout(
    make_outbox, clock
) -> None:
    """A broker may acknowledge and then lose a message (killed without persistence, queue limits): a row stays
    until central acknowledges its digest; after ``ack_timeout_s`` of silence it is published again (the wait
    doubling per resend), counted as ``unconfirmed_resent``. Reconnects republish nothing."""
    box = make_outbox(ack_timeout_s=10.0, ack_timeout_max_s=15.0)
    e0, _e1, h2 = box.put_many([event(0, "k"), event(1, "k"), beat(2)])
    box.published_many([(e0.id, "d0")])  # type: ignore[list-item]
    assert box.acked([e0.id, h2.id]) == 2  # type: ignore[list-item]
    assert labels(box) == ["e1"]  # e1 no longer waits for e0; the heartbeat (QoS 0) is gone for good
    assert box.depth() == 2 and box.stats().awaiting_central == 1 and box.stats().bytes == 200
    clock.now += 9.0
    assert box.requeue_unconfirmed() == 0
    clock.now += 1.0
    assert box.requeue_unconfirmed() == 1  # central silent for 10 s: e0 goes again, before e1
    assert labels(box) == ["e0"] and box.stats().unconfirmed_resent == 1
    box.acked([e0.id])  # type: ignore[list-item]
    clock.now += 14.0
    assert box.requeue_unconfirmed() == 0  # second wait: 20 s capped at 15 s
    clock.now += 1.0
    assert box.requeue_unconfirmed() == 1
    box.acked([e0.id])  # type: ignore[list-item]
    assert box.confirmed(["d0"]) == 1
    assert box.stats().unconfirmed_resent == 2 and box.depth() == 1 and labels(box) == ["e1"]


def test_a_gap_in_central_acknowledgements_republishes_at_once(make_outbox, clock) -> None:
    """Central confirmed e2, published 6 s after e0 and e1: e0 (still unconfirmed) was lost between the broker
    and central and goes again without waiting for the timeout; e1, published within the gap, waits."""
    box = make_outbox(ack_timeout_s=60.0, ack_gap_s=5.0)
    e0, e1, e2 = box.put_many([event(0), event(1), event(2)])
    box.published_many([(e0.id, "d0")])  # type: ignore[list-item]
    clock.now += 2.0
    box.published_many([(e1.id, "d1")])  # type: ignore[list-item]
    clock.now += 4.0
    box.published_many([(e2.id, "d2")])  # type: ignore[list-item]
    box.acked([e0.id, e1.id, e2.id])  # type: ignore[list-item]
    assert box.requeue_unconfirmed() == 0 and box.awaiting_central() == 3
    assert box.confirmed(["d2"]) == 1
    assert box.requeue_unconfirmed() == 1 and labels(box) == ["e0"]
    assert box.awaiting_central() == 1 and box.stats().unconfirmed_resent == 1


def test_rows_awaiting_central_are_never_evicted_and_survive_a_reopen(make_outbox, clock) -> None:
    box = make_outbox(max_bytes=300)
    rows = box.put_many([event(0), event(1), beat(2)])
    box.acked([rows[0].id, rows[1].id])  # type: ignore[list-item]
    assert box.put(event(3)).id is not None  # the heartbeat makes room, not the events central may lack
    assert labels(box) == ["e3"] and box.stats().drops == {("telemetry", "cap_evicted"): 1}
    box.close()
    again = make_outbox(max_bytes=300)
    assert again.depth() == 3 and again.stats().awaiting_central == 2  # still waiting after a restart


def test_refused_upload_is_dead_lettered_and_its_event_goes_without_it(make_outbox, tmp_path) -> None:
    box = make_outbox()
    bad, good = upload(tmp_path, "b", 10), upload(tmp_path, "g", 10)
    box.put(event(0, "ev", uploads=(bad, good)))
    up = box.next_upload()
    assert up is not None and up.sha256 == bad.sha256
    box.dead_upload(up.id, DropReason.REFUSED_BY_CENTRAL, "HTTP 422: sha256 mismatch")
    assert labels(box) == []  # the good one is still pending
    box.upload_done(good.sha256)
    (msg,) = box.ready_messages(10)
    assert msg.stripped == {bad.sha256}
    (letter,) = box.dead_letters()
    assert (letter["what"], letter["sha256"], letter["reason"]) == (
        "upload",
        bad.sha256,
        "refused_by_central",
    )
    assert letter["path"] == str(bad.path) and "422" in str(letter["detail"])
    assert box.stats().drops == {("evidence", "refused_by_central"): 1}
    assert box.stats().bytes == 100


def test_transient_failures_back_off_on_the_clock(make_outbox, clock, tmp_path) -> None:
    box = make_outbox(retry_initial_s=2.0, retry_max_s=5.0)
    snap = upload(tmp_path, "s", 10)
    (row,) = box.put_many([event(0, "k", uploads=(snap,))])
    up = box.next_upload()
    assert up is not None
    delays = []
    for _ in range(4):  # rng -> 1.0: the top of each jitter range
        delays.append(box.retry_upload(up.id, "ConnectError"))
        assert box.next_upload() is None
        assert box.next_due_in("uploads") == pytest.approx(delays[-1])
        clock.now += delays[-1]
        up = box.next_upload()
        assert up is not None and up.attempts == len(delays)
    assert delays == [2.0, 4.0, 5.0, 5.0]
    box.upload_done(snap.sha256)
    assert box.retry_message(row.id, "no connection") == 2.0  # type: ignore[arg-type]
    assert labels(box) == []
    clock.now += 2.0
    assert labels(box) == ["e0"]


def test_everything_survives_a_reopen_and_retry_times_reset(make_outbox, clock, tmp_path) -> None:
    box = make_outbox(max_bytes=10_000)
    snap = upload(tmp_path, "s", 1000)
    rows = box.put_many([event(0, "a", uploads=(snap,)), event(1), beat(2), beat(3, size=5000)])
    box.retry_message(rows[1].id, "later")  # type: ignore[arg-type]
    box.put(event(4, size=5000))  # evicts h2 (the oldest telemetry) then h3
    box.close()
    again = make_outbox(max_bytes=10_000)
    assert labels(again) == ["e1", "e4"]  # e1's retry time was reset by the restart
    assert again.stats().bytes == 1000 + 100 + 100 + 5000
    assert again.stats().drops == {("telemetry", "cap_evicted"): 2}
    up = again.next_upload()
    assert up is not None and up.path == snap.path


@pytest.mark.parametrize(
    ("cap", "queue", "expected_left", "expected_drops", "expected_shed"),
    [
        pytest.param(1000, ["h0", "h1", "e2"], ["h0", "h1", "e2"], {}, [], id="fits"),
        pytest.param(
            300,
            ["h0", "h1", "h2", "e3"],
            ["h1", "h2", "e3"],
            {("telemetry", "cap_evicted"): 1},
            [],
            id="oldest-telemetry-first",
        ),
        pytest.param(
            300,
            ["h0", "e1", "h2", "e3", "e4"],
            ["e1", "e3", "e4"],
            {("telemetry", "cap_evicted"): 2},
            [],
            id="all-telemetry-evicted",
        ),
        pytest.param(
            300,
            ["e0", "e1", "e2", "h3", "e4"],
            ["e0", "e1", "e2"],
            {("telemetry", "cap_full"): 1, ("violation", "cap_full"): 1},
            [],
            id="violations-kept-newest-refused",
        ),
        pytest.param(
            300,
            ["e0", "h1", "h2", "e3+clip", "e4"],
            ["e0", "e3+clip", "e4"],
            {("telemetry", "cap_evicted"): 2, ("evidence", "cap_full"): 1},
            ["clip"],
            id="clip-shed-before-the-event",
        ),
        pytest.param(
            250,
            ["e0", "e1+snap+clip"],
            ["e0", "e1+snap+clip"],
            {("evidence", "cap_full"): 2},
            ["clip", "snap"],
            id="all-evidence-shed-then-bare-event",
        ),
    ],
)
def test_cap_policy(make_outbox, tmp_path, cap, queue, expected_left, expected_drops, expected_shed) -> None:
    """Every item is 100 bytes; ``+clip`` adds 150 bytes of clip and ``+snap`` 60 bytes of snapshot."""
    box = make_outbox(max_bytes=cap)
    clip = upload(tmp_path, "c", 150, "clip")
    snap = upload(tmp_path, "s", 60)
    shed: list[str] = []
    for name in queue:
        base = name.split("+")[0]
        n = int(base[1:])
        extra = tuple(u for tag, u in (("clip", clip), ("snap", snap)) if f"+{tag}" in name)
        item = beat(n) if base[0] == "h" else event(n, uploads=extra)
        item = Item(item.topic, item.payload, item.klass, item.qos, item.key, name, item.uploads)
        result = box.put(item)
        shed += ["clip" if s == clip.sha256 else "snap" for s in result.shed]
    left = [m.label for m in box.ready_messages(100)]
    assert left == expected_left
    assert box.stats().drops == expected_drops
    assert shed == expected_shed
    assert box.stats().bytes <= cap
    assert sum(1 for d in box.dead_letters() if d["reason"] == "cap_full") == len(expected_shed)


def test_a_failed_batch_rolls_back_rows_and_byte_count(make_outbox) -> None:
    box = make_outbox()
    bad = Item("t", b"x" * 10, V, 2, None, "bad")  # type: ignore[arg-type]  # qos 2 violates the CHECK
    with pytest.raises(sqlite3.IntegrityError):
        box.put_many([event(0), bad])
    assert box.depth() == 0 and box.stats().bytes == 0


def test_a_spool_from_a_newer_agent_is_refused(tmp_path, make_outbox) -> None:
    make_outbox().close()
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(OutboxError, match="newer agent"):
        make_outbox()


def test_wal_and_synchronous_mode_are_set(make_outbox, tmp_path) -> None:
    box = make_outbox(synchronous="FULL")
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.parametrize(
    ("attempt", "initial", "cap", "low", "high"),
    [
        (0, 1.0, 120.0, 0.5, 1.0),
        (1, 1.0, 120.0, 1.0, 2.0),
        (5, 1.0, 120.0, 16.0, 32.0),
        (6, 1.0, 120.0, 32.0, 64.0),
        (7, 1.0, 120.0, 60.0, 120.0),  # capped: 128 -> 120
        (1000, 1.0, 120.0, 60.0, 120.0),  # no overflow
        (3, 0.25, 1.0, 0.5, 1.0),
    ],
)
def test_backoff_jitter_stays_within_half_to_full_delay(attempt, initial, cap, low, high) -> None:
    assert backoff_delay(attempt, initial, cap, rng=lambda: 0.0) == pytest.approx(low)
    assert backoff_delay(attempt, initial, cap, rng=lambda: 1.0) == pytest.approx(high)
    assert low <= backoff_delay(attempt, initial, cap) <= high


def test_backoff_schedule_grows_caps_and_resets() -> None:
    b = Backoff(1.0, 120.0, rng=lambda: 0.5)  # the middle of each range: 0.75 d
    schedule = [b.next_delay() for _ in range(10)]
    assert schedule == pytest.approx([0.75, 1.5, 3, 6, 12, 24, 48, 90, 90, 90])
    b.reset()
    assert b.next_delay() == pytest.approx(0.75)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


@pytest.mark.parametrize(
    ("rate", "capacity", "takes", "expected_waits"),
    [
        pytest.param(1000, 1000, [1000, 500, 500], [0.0, 0.5, 0.5], id="burst-then-rate"),
        pytest.param(1000, 250, [1000], [0.75], id="bigger-than-bucket-goes-in-parts"),
        pytest.param(100, 100, [50, 50, 100], [0.0, 0.0, 1.0], id="exact"),
    ],
)
def test_token_bucket_paces_uploads(rate, capacity, takes, expected_waits) -> None:
    clock = Clock(0.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    bucket = TokenBucket(rate, capacity, clock=clock, sleep=sleep)
    assert [bucket.take(n) for n in takes] == pytest.approx(expected_waits)
    assert clock.now == pytest.approx(sum(expected_waits))


def test_token_bucket_refills_while_idle() -> None:
    clock = Clock(0.0)
    bucket = TokenBucket(1000, 1000, clock=clock, sleep=lambda s: None)
    assert bucket.take(1000) == 0.0
    clock.now += 0.6
    assert bucket.take(1000) == pytest.approx(0.4)

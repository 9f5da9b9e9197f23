"""Fleet health: heartbeats stored and pruned, liveness from status + heartbeat age, pages and API."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central.db.models import NodeHeartbeatRow, NodeRow
from central.db.session import Database
from central.fleet.charts import node_charts
from central.fleet.health import (
    Enrollment,
    HeartbeatRecorder,
    Liveness,
    fleet_node,
    fleet_overview,
    heartbeat_history,
)
from central.messaging.ingest import Ingestor, IngestResult
from edge_agent.contract import (
    CameraHealth,
    Heartbeat,
    NodeState,
    NodeStatus,
    OutboxHealth,
)
from tests.central.conftest import FakeClock
from tests.central.factories import MODEL, TOPICS

STALE_S = 90.0


def beat(node: str, at: datetime, fps: float = 9.5, depth: int = 3) -> Heartbeat:
    return Heartbeat(
        node_id=node,
        at=at,
        uptime_s=120.0,
        software="0.9.0",
        config_version=4,
        model=MODEL,
        cameras=[
            CameraHealth(
                camera_id="cam-1",
                fps=fps,
                detect_fps=2.0,
                frames_dropped=7,
                decode_errors=1,
                reconnects=2,
                inference_ms_p50=40.0,
                inference_ms_p95=85.0,
            )
        ],
        outbox=OutboxHealth(
            depth=depth, uploads=0, bytes=1000, max_bytes=10_000, dropped={"telemetry.cap": 2}
        ),
        mqtt_reconnects=1,
        disk_free_bytes=5 << 30,
        cpu_temp_c=61.0,
    )


def status(node: str, state: NodeState, at: datetime) -> bytes:
    return NodeStatus(
        node_id=node, state=state, at=at, software="0.9.0", model=MODEL, config_version=4
    ).to_json()


@pytest.fixture
def wired(ingestor: Ingestor, db: Database, clock: FakeClock) -> HeartbeatRecorder:
    recorder = HeartbeatRecorder(db, retention_s=3600, clock=lambda: 0.0)
    ingestor.heartbeat_sink = recorder.record
    return recorder


def observe(ingestor: Ingestor, b: Heartbeat) -> IngestResult:
    return ingestor.observe_heartbeat(TOPICS.heartbeat(b.node_id), b.to_json())


def test_an_unenrolled_node_heard_on_the_broker_is_listed(
    ingestor: Ingestor, db: Database, clock: FakeClock, wired: HeartbeatRecorder
) -> None:
    assert ingestor.ingest(TOPICS.status("demo-box"), status("demo-box", NodeState.ONLINE, clock.now))
    assert observe(ingestor, beat("demo-box", clock.now)) is IngestResult.INSERTED
    with db.session() as s:
        nodes = fleet_overview(s, clock.now, STALE_S)
    assert [(n.node_id, n.enrollment, n.liveness) for n in nodes] == [
        ("demo-box", Enrollment.UNENROLLED, Liveness.ONLINE)
    ]
    only = nodes[0]
    assert only.heartbeat is not None and only.heartbeat.cameras[0].reconnects == 2
    assert only.model_sha256 == MODEL.sha256 and only.software == "0.9.0" and only.config_version == 4


@pytest.mark.parametrize(
    ("state", "beat_age_s", "expected"),
    [
        (NodeState.ONLINE, 10, Liveness.ONLINE),
        (NodeState.ONLINE, 200, Liveness.STALE),  # connected but silent: a hung agent
        (NodeState.OFFLINE, 200, Liveness.OFFLINE),  # the Last Will
        (None, 10, Liveness.ONLINE),  # heartbeats only (status not retained yet)
        (None, 200, Liveness.UNKNOWN),
    ],
)
def test_liveness_from_status_and_heartbeat_age(
    ingestor: Ingestor,
    db: Database,
    clock: FakeClock,
    wired: HeartbeatRecorder,
    state: NodeState | None,
    beat_age_s: float,
    expected: Liveness,
) -> None:
    observe(ingestor, beat("n1", clock.now))
    if state is not None:
        ingestor.ingest(TOPICS.status("n1"), status("n1", state, clock.now + timedelta(seconds=1)))
    clock.advance(beat_age_s)
    with db.session() as s:
        node = fleet_node(s, "n1", clock.now, STALE_S)
    assert node is not None and node.liveness is expected
    assert node.attention == (expected in (Liveness.OFFLINE, Liveness.STALE))


def test_enrolled_and_revoked_nodes_are_told_apart(db: Database, clock: FakeClock) -> None:
    with db.session() as s:
        for node_id, revoked in (("a", None), ("b", clock.now)):
            s.add(
                NodeRow(
                    node_id=node_id,
                    name=f"Box {node_id}",
                    mqtt_username=f"node-{node_id}",
                    enrolled_at=clock.now,
                    enrolled_by="admin",
                    revoked_at=revoked,
                )
            )
    with db.session() as s:
        found = {n.node_id: (n.enrollment, n.liveness, n.name) for n in fleet_overview(s, clock.now, STALE_S)}
    assert found == {
        "a": (Enrollment.ENROLLED, Liveness.UNKNOWN, "Box a"),
        "b": (Enrollment.REVOKED, Liveness.UNKNOWN, "Box b"),
    }


def test_history_is_kept_in_order_and_pruned_to_the_retention(
    ingestor: Ingestor, db: Database, clock: FakeClock, wired: HeartbeatRecorder
) -> None:
    start = clock.now
    for i in range(10):
        observe(ingestor, beat("n1", start + timedelta(minutes=10 * i), fps=float(i)))
    late = beat("n1", start + timedelta(minutes=5))  # a spooled heartbeat arriving after newer ones
    assert observe(ingestor, late) is IngestResult.STALE
    with db.session() as s:
        history = heartbeat_history(s, "n1", start - timedelta(hours=1))
    assert [b.cameras[0].fps for b in history] == [float(i) for i in range(10)]
    removed = wired.prune(start + timedelta(minutes=90) + wired.retention)  # keep >= start + 90 min
    assert removed == 9
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(NodeHeartbeatRow)) == 1
        latest = fleet_node(s, "n1", clock.now, STALE_S)
    assert latest is not None and latest.heartbeat is not None and latest.heartbeat.cameras[0].fps == 9.0


def test_a_database_failure_never_raises_out_of_the_heartbeat_path(
    ingestor: Ingestor, db: Database, clock: FakeClock, wired: HeartbeatRecorder
) -> None:
    db.dispose()
    wired._db = Database("sqlite:////nonexistent-dir/x.db")  # an unreachable database
    assert observe(ingestor, beat("n1", clock.now)) is IngestResult.INSERTED  # memory still sees it
    assert wired.failures == 1


def test_charts_draw_a_line_per_camera_and_break_at_gaps(clock: FakeClock) -> None:
    beats = [beat("n1", clock.now + timedelta(seconds=30 * i), fps=float(i % 5)) for i in range(6)]
    beats.append(beat("n1", clock.now + timedelta(hours=1), fps=4.0))  # an outage: a gap, not a ramp
    charts = {c.key: c for c in node_charts(beats)}
    fps = charts["chart_fps"]
    assert [s.label for s in fps.series] == ["cam-1"] and len(fps.series[0].polylines) == 2
    assert fps.series[0].last == 4.0
    assert all(0.0 <= float(xy.split(",")[1]) <= 60.0 for xy in fps.series[0].polylines[0].split())
    assert charts["chart_temperature"].series[0].last == 61.0
    assert node_charts([])[0].empty


def test_fleet_pages_and_api(admin: TestClient, clock: FakeClock) -> None:
    central = admin.app.state.central  # type: ignore[attr-defined]
    ingestor: Ingestor = central.ingestor
    ingestor.ingest(TOPICS.status("demo-box"), status("demo-box", NodeState.ONLINE, clock.now))
    for i in range(3):
        observe(ingestor, beat("demo-box", clock.now + timedelta(seconds=30 * i), fps=8.0 + i))
    clock.advance(60)

    listed = admin.get("/api/v1/fleet").json()
    assert [(n["node_id"], n["enrollment"], n["liveness"]) for n in listed] == [
        ("demo-box", "unenrolled", "online")
    ]
    assert listed[0]["heartbeat"]["cameras"][0]["fps"] == 10.0
    assert len(admin.get("/api/v1/fleet/demo-box/heartbeats").json()) == 3

    page = admin.get("/fleet?lang=vi")
    assert page.status_code == 200 and 'data-node-id="demo-box"' in page.text
    assert "chưa đăng ký" in page.text and 'href="/fleet"' in page.text  # linked from the navigation
    node_page = admin.get("/fleet/demo-box?lang=en")
    assert node_page.status_code == 200 and "<polyline" in node_page.text and "not enrolled" in node_page.text
    assert admin.get("/fleet/nope").status_code == 404

    ingestor.ingest(TOPICS.status("demo-box"), status("demo-box", NodeState.OFFLINE, clock.now))
    partial = admin.get("/fleet?partial=1")
    assert 'data-liveness="offline"' in partial.text and "<html" not in partial.text


def test_the_last_will_turns_a_node_offline_although_its_time_is_older(
    ingestor: Ingestor, db: Database, clock: FakeClock, wired: HeartbeatRecorder
) -> None:
    connected = clock.now
    will = status("n1", NodeState.OFFLINE, connected)  # registered at connect, before 'online' was sent
    assert ingestor.ingest(
        TOPICS.status("n1"), status("n1", NodeState.ONLINE, connected + timedelta(seconds=1))
    )
    clock.advance(10)
    observe(ingestor, beat("n1", clock.now))
    clock.advance(5)
    assert ingestor.ingest(TOPICS.status("n1"), will) is IngestResult.UPDATED
    with db.session() as s:
        node = fleet_node(s, "n1", clock.now, STALE_S)
    assert node is not None and node.liveness is Liveness.OFFLINE
    # the node reconnects: its new 'online' is newer than anything stored, so it applies again
    clock.advance(5)
    assert (
        ingestor.ingest(TOPICS.status("n1"), status("n1", NodeState.ONLINE, clock.now))
        is IngestResult.UPDATED
    )
    with db.session() as s:
        node = fleet_node(s, "n1", clock.now, STALE_S)
    assert node is not None and node.liveness is Liveness.ONLINE

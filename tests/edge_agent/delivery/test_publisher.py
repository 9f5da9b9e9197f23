"""The publisher's decisions without a network: evidence upload outcomes (HTTP mocked), the in-flight window
and acknowledgements (paho's publish replaced), reconnect backoff, republishing after a connection loss, the
stripping of refused evidence, and heartbeat contents -- on injected clocks, without sleeping."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from edge_agent.config import parse_config
from edge_agent.contract import Acks, Event, EvidenceKind, Heartbeat, OutboxHealth, message_digest, utcnow
from edge_agent.delivery.heartbeat import CameraSample, HeartbeatBuilder, LatencyWindow, cpu_temperature
from edge_agent.delivery.items import (
    DropReason,
    Item,
    Message,
    MessageClass,
    OutboxStats,
    TokenBucket,
    UploadSpec,
    final_payload,
)
from edge_agent.delivery.outbox import Outbox
from edge_agent.delivery.publisher import Publisher
from edge_agent.delivery.uploader import EvidenceUploader, UploadOutcome
from edge_agent.evidence.snapshot import EvidenceStore
from tests.central.factories import MODEL, make_event, snapshot_ref


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(tmp_path: Path, **over: Any) -> Any:
    data: dict[str, Any] = {
        "node_id": "node-1",
        "model": {"path": str(tmp_path / "m.onnx")},
        "evidence_dir": str(tmp_path / "evidence"),
        "cameras": [{"id": "cam-1", "source": "rtsp://cam/1"}],
        "mqtt": {"max_inflight": 2, "reconnect_initial_s": 1.0, "reconnect_max_s": 8.0},
        "outbox": {"ack_timeout_s": 30.0},
    }
    data.update(over)
    return parse_config(data)


# -- evidence uploads ---------------------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3", clock=Clock(), rng=lambda: 1.0)
    yield box
    box.close()


def spool_snapshot(box: Outbox, tmp_path: Path, data: bytes = b"\xff\xd8jpeg bytes\xff\xd9") -> UploadSpec:
    ref = EvidenceStore(tmp_path / "evidence").put(data, EvidenceKind.SNAPSHOT_ANNOTATED, "image/jpeg")
    spec = UploadSpec(ref.ref.sha256, ref.ref.kind.value, ref.ref.content_type, ref.ref.size, ref.path)
    box.put(Item("sw/v1/nodes/node-1/events", b"{}", MessageClass.VIOLATION, 1, "k", "e0", (spec,)))
    return spec


@pytest.mark.parametrize(
    ("answer", "outcome", "drops", "left"),
    [
        pytest.param(201, UploadOutcome.ACCEPTED, {}, 0, id="201-stored"),
        pytest.param(200, UploadOutcome.ACCEPTED, {}, 0, id="200-already-there"),
        pytest.param(422, UploadOutcome.DEAD, {("evidence", "refused_by_central"): 1}, 0, id="422-mismatch"),
        pytest.param(413, UploadOutcome.DEAD, {("evidence", "refused_by_central"): 1}, 0, id="413-too-big"),
        pytest.param(415, UploadOutcome.DEAD, {("evidence", "refused_by_central"): 1}, 0, id="415-type"),
        pytest.param(401, UploadOutcome.RETRY, {}, 1, id="401-token-fix-and-retry"),
        pytest.param(503, UploadOutcome.RETRY, {}, 1, id="503-retry"),
        pytest.param(httpx.ConnectError("refused"), UploadOutcome.RETRY, {}, 1, id="central-down"),
        pytest.param("missing", UploadOutcome.DEAD, {("evidence", "missing_file"): 1}, 0, id="file-gone"),
    ],
)
def test_upload_outcomes(
    outbox: Outbox, tmp_path: Path, answer: object, outcome: UploadOutcome, drops, left
) -> None:
    spec = spool_snapshot(outbox, tmp_path)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(int(answer), json={"detail": "sha256 mismatch"})  # type: ignore[call-overload]

    if answer == "missing":
        spec.path.unlink()
    http = httpx.Client(base_url="http://central", transport=httpx.MockTransport(handler))
    uploader = EvidenceUploader(outbox, http)
    up = outbox.next_upload()
    assert up is not None
    assert uploader.upload(up) is outcome
    assert outbox.stats().uploads == left and outbox.stats().drops == drops
    if seen:  # what central receives: the bytes under their hash, with the content type and exact length
        request = seen[0]
        assert request.url.path == f"/api/v1/evidence/{spec.sha256}"
        assert request.headers["content-type"] == "image/jpeg"
        assert request.headers["content-length"] == str(spec.size)
        assert hashlib.sha256(request.read()).hexdigest() == spec.sha256
    if outcome is UploadOutcome.RETRY:
        assert outbox.next_upload() is None and outbox.next_due_in("uploads") == pytest.approx(1.0)
    if outcome is UploadOutcome.DEAD:
        assert [m.stripped for m in outbox.ready_messages(5)] == [{spec.sha256}]


def test_uploads_are_paced_by_the_token_bucket(outbox: Outbox, tmp_path: Path) -> None:
    spool_snapshot(outbox, tmp_path, data=b"x" * 300_000)
    clock, slept = Clock(0.0), []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    bucket = TokenBucket(100_000, 65_536, clock=clock, sleep=sleep)
    http = httpx.Client(
        base_url="http://central",
        transport=httpx.MockTransport(lambda r: (r.read(), httpx.Response(201))[1]),
    )
    uploader = EvidenceUploader(outbox, http, bucket=bucket)
    up = outbox.next_upload()
    assert up is not None and uploader.upload(up) is UploadOutcome.ACCEPTED
    # 300,000 bytes at 100 kB/s with a 64 KiB burst: (300,000 - 65,536) / 100,000 s of waiting.
    assert sum(slept) == pytest.approx((300_000 - 65_536) / 100_000)
    assert uploader.stats.throttled_s == pytest.approx(sum(slept)) and uploader.stats.bytes_sent == 300_000


def test_refused_evidence_is_stripped_from_the_published_event() -> None:
    refs = [snapshot_ref(b"keep"), snapshot_ref(b"drop")]
    event = make_event(evidence=refs)
    keep, drop = refs[0].sha256, refs[1].sha256
    message = _message(event.to_json(), stripped=frozenset({drop}))
    out = Event.from_json(final_payload(message))
    assert [r.sha256 for r in out.evidence] == [keep]
    assert out.measurements == {**event.measurements, "evidence_refused": 1.0}
    assert final_payload(_message(event.to_json())) == event.to_json()


def _message(payload: bytes, stripped: frozenset[str] = frozenset()) -> Message:
    return Message(1, "t", payload, 1, MessageClass.VIOLATION, "k", "e", 0, stripped)


# -- MQTT window, acknowledgements, reconnects ----------------------------------------------------------------


class FakeInfo:
    def __init__(self, mid: int, rc: int = mqtt.MQTT_ERR_SUCCESS) -> None:
        self.mid, self.rc = mid, rc


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator[tuple[Publisher, list[tuple[str, bytes, int]], Clock]]:
    clock = Clock()
    box = Outbox(tmp_path / "outbox.sqlite3", clock=clock, rng=lambda: 1.0, ack_timeout_s=30.0)
    pub = Publisher(config(tmp_path), MODEL, outbox=box, clock=clock, rng=lambda: 1.0)
    sent: list[tuple[str, bytes, int]] = []

    def fake_publish(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> FakeInfo:
        sent.append((topic, payload, qos))
        return FakeInfo(len(sent))

    pub.client.publish = fake_publish  # type: ignore[assignment,method-assign]
    pub.session.connected.set()
    yield pub, sent, clock
    box.close()


def ack(pub: Publisher, mid: int, code: int = 0) -> None:
    pub.session._on_publish(pub.client, None, mid, ReasonCode(PacketTypes.PUBACK, identifier=code), None)  # type: ignore[arg-type]


def central_ack(pub: Publisher, payloads: list[bytes], node: str = "node-1") -> None:
    """Central's end-to-end acknowledgement arriving on the node's acks topic (as paho hands it over)."""
    msg = mqtt.MQTTMessage(topic=pub.topics.acks("node-1").encode())
    msg.payload = Acks(node_id=node, digests=[message_digest(p) for p in payloads], at=utcnow()).to_json()
    pub.session._on_message(pub.client, None, msg)


def test_window_is_bounded_and_rows_leave_only_when_central_acknowledged(publisher) -> None:
    pub, sent, _clock = publisher
    pub.submit_many([(make_event(), ()) for _ in range(5)])
    pub._fill_window()
    assert len(sent) == 2 and pub.pending == 5  # max_inflight = 2
    pub._fill_window()
    assert len(sent) == 2  # nothing more until an acknowledgement
    ack(pub, 1)
    pub._settle()
    # The broker's PUBACK frees the window but the row stays: only central's word removes it.
    assert pub.pending == 5 and pub.stats.published == 1 and pub.outbox.stats().awaiting_central == 1
    pub._fill_window()
    assert len(sent) == 3
    central_ack(pub, [sent[0][1], sent[1][1]])  # central may even be faster than the broker's PUBACK
    pub._settle()
    assert pub.pending == 3 and pub.stats.confirmed == 2 and pub.outbox.stats().awaiting_central == 0
    central_ack(pub, [sent[2][1]], node="node-2")  # names another node: ignored
    central_ack(pub, [sent[2][1]])
    pub._settle()
    assert pub.pending == 2 and pub.session.bad_acks == 1


@pytest.mark.parametrize(
    ("code", "pending", "dead"),
    [
        pytest.param(0x00, 1, 0, id="success-awaits-central"),
        pytest.param(0x10, 1, 0, id="no-matching-subscribers-is-still-an-ack"),
        pytest.param(0x97, 1, 0, id="quota-exceeded-retried"),
        pytest.param(0x87, 0, 1, id="not-authorized-dead-lettered"),
    ],
)
def test_mqtt5_puback_reason_codes(publisher, code: int, pending: int, dead: int) -> None:
    pub, _sent, _clock = publisher
    pub.submit(make_event())
    pub._fill_window()
    ack(pub, 1, code)
    pub._settle()
    assert pub.pending == pending
    assert pub.outbox.stats().drops == (
        {("violation", DropReason.REFUSED_BY_BROKER.value): 1} if dead else {}
    )


def test_flow_control_bounds_what_awaits_central(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "outbox.sqlite3", clock=clock, rng=lambda: 1.0)
    cfg = config(tmp_path, mqtt={"max_inflight": 5}, outbox={"max_unconfirmed": 3})
    pub = Publisher(cfg, MODEL, outbox=box, clock=clock, rng=lambda: 1.0)
    sent: list[bytes] = []
    pub.client.publish = lambda t, p, qos=0, retain=False: (sent.append(p), FakeInfo(len(sent)))[1]  # type: ignore[assignment,method-assign]
    pub.session.connected.set()
    pub.submit_many([(make_event(), ()) for _ in range(6)])
    pub._fill_window()
    assert len(sent) == 3  # the window of 5 is cut to what central may owe us
    for mid in (1, 2, 3):
        ack(pub, mid)
    pub._settle()
    pub._fill_window()
    assert len(sent) == 3  # the broker took them, central has not: no more
    central_ack(pub, sent[:2])
    pub._settle()
    pub._fill_window()
    assert len(sent) == 5
    box.close()


def test_only_what_central_never_acknowledged_goes_again_and_reconnects_cost_nothing(publisher) -> None:
    pub, sent, clock = publisher
    pub.submit_many([(make_event(), ()) for _ in range(2)])
    pub._fill_window()
    ack(pub, 1)
    ack(pub, 2)
    pub._settle()
    central_ack(pub, [sent[0][1]])  # central committed the first; the broker lost the second
    pub._settle()
    flags = mqtt.DisconnectFlags(is_disconnect_packet_from_server=False)
    pub.session._on_disconnect(
        pub.client, None, flags, ReasonCode(PacketTypes.DISCONNECT, identifier=0x80), None
    )
    pub.session.connected.set()  # reconnected: no blind republishing
    pub._republish_unconfirmed()
    pub._fill_window()
    assert len(sent) == 2 and pub.pending == 1
    clock.now += 30.0  # central silent for ack_timeout_s: the second goes again, the same bytes
    pub._republish_unconfirmed()
    pub._fill_window()
    assert pub.stats.republished == 1 and [p for _, p, _ in sent[2:]] == [sent[1][1]]
    assert pub.outbox.stats().unconfirmed_resent == 1 and pub.stats.sent == 3
    ack(pub, 3)
    central_ack(pub, [sent[2][1]])
    pub._settle()
    assert pub.pending == 0


def test_reconnect_delays_grow_with_jitter_cap_and_reset(publisher) -> None:
    pub, _sent, _clock = publisher
    flags = mqtt.DisconnectFlags(is_disconnect_packet_from_server=False)
    lost = ReasonCode(PacketTypes.DISCONNECT, identifier=0x80)
    delays = []
    for _ in range(6):
        pub.session._on_connect_fail(pub.client, None)
        delays.append(pub.session.connect_delay)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # rng -> top of the [d/2, d] range; capped at 8 s
    ok = ReasonCode(PacketTypes.CONNACK, identifier=0)
    pub.client.publish = lambda *a, **k: FakeInfo(99)  # type: ignore[assignment,method-assign]
    pub.session._on_connect(pub.client, None, mqtt.ConnectFlags(session_present=True), ok, None)
    pub.session._on_disconnect(pub.client, None, flags, lost, None)
    assert pub.session.connect_delay == 1.0 and pub.stats.disconnects == 1 and pub.stats.connect_failures == 6


def test_qos0_heartbeat_from_a_dead_connection_is_sent_again(publisher) -> None:
    pub, sent, _clock = publisher
    pub._spool_heartbeat()
    pub._fill_window()
    assert len(sent) == 1 and sent[0][2] == 0
    flags = mqtt.DisconnectFlags(is_disconnect_packet_from_server=False)
    pub.session._on_disconnect(
        pub.client, None, flags, ReasonCode(PacketTypes.DISCONNECT, identifier=0x80), None
    )
    pub.session.connected.set()
    pub._settle()  # the heartbeat may never have left: forget it was in flight
    pub._fill_window()
    assert len(sent) == 2 and sent[1] == sent[0]
    ack(pub, 2)
    pub._settle()
    assert pub.pending == 0 and pub.outbox.stats().awaiting_central == 0  # QoS 0 is done at the broker


# -- heartbeats -----------------------------------------------------------------------------------------------


def test_heartbeat_reports_rates_latency_outbox_disk_and_temperature(tmp_path: Path) -> None:
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text("48312\n")
    clock = Clock(100.0)
    counters = {"frames": 0, "detected": 0}
    window = LatencyWindow()
    for ms in (80.0, 90.0, 100.0, 400.0):
        window.record(ms)
    stats = OutboxStats(
        messages={MessageClass.VIOLATION: 3, MessageClass.TELEMETRY: 1},
        uploads=2,
        bytes=4096,
        max_bytes=1 << 20,
        oldest_created_at=990.0,
        drops={("telemetry", "cap_evicted"): 4},
    )

    def cameras() -> list[CameraSample]:
        return [
            CameraSample(
                "cam-1",
                counters["frames"],
                counters["detected"],
                3,
                1,
                window.percentile(50),
                window.percentile(95),
            )
        ]

    builder = HeartbeatBuilder(
        "node-1",
        software="0.1.0",
        config_version=4,
        cameras=cameras,
        outbox=lambda: stats,
        reconnects=lambda: 2,
        disk_path=tmp_path,
        clock=clock,
        wall_seconds=lambda: 1000.0,
        thermal_root=tmp_path / "thermal",
    )
    first = builder.build()
    clock.now += 10.0
    counters.update(frames=250, detected=50)
    beat = Heartbeat.from_json(builder.build().to_json())  # survives the wire
    assert first.cameras[0].fps == 0.0  # no interval yet
    (cam,) = beat.cameras
    assert (cam.fps, cam.detect_fps, cam.frames_dropped, cam.decode_errors) == (25.0, 5.0, 3, 1)
    assert (cam.inference_ms_p50, cam.inference_ms_p95) == (90.0, 400.0)
    assert beat.uptime_s == 10.0 and beat.mqtt_reconnects == 2 and beat.config_version == 4
    assert (beat.outbox.depth, beat.outbox.uploads, beat.outbox.bytes, beat.outbox.oldest_age_s) == (
        4,
        2,
        4096,
        10.0,
    )
    assert beat.outbox.dropped == {"telemetry.cap_evicted": 4}
    assert beat.cpu_temp_c == pytest.approx(48.312) and beat.disk_free_bytes is not None


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        pytest.param({}, None, id="no-thermal-zones"),
        pytest.param({"acpitz": "30000"}, 30.0, id="only-a-board-zone"),
        pytest.param({"acpitz": "30000", "x86_pkg_temp": "55000"}, 55.0, id="cpu-zone-preferred"),
        pytest.param({"cpu-thermal": "garbage"}, None, id="unreadable"),
    ],
)
def test_cpu_temperature(tmp_path: Path, zones: dict[str, str], expected: float | None) -> None:
    for i, (kind, value) in enumerate(zones.items()):
        zone = tmp_path / f"thermal_zone{i}"
        zone.mkdir()
        (zone / "type").write_text(kind)
        (zone / "temp").write_text(value)
    assert cpu_temperature(tmp_path) == expected


def test_bad_drop_counter_names_are_refused_by_the_contract() -> None:
    with pytest.raises(ValidationError, match=r"class\.reason"):
        OutboxHealth(depth=0, uploads=0, bytes=0, max_bytes=1, dropped={"Bad Key": 1})

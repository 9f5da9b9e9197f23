"""The agent's /metrics and /healthz: a real server on a free port over typed live objects, scraped with urllib
and parsed strictly as the Prometheus text format."""

from __future__ import annotations

import doctest
import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from edge_agent.capture.reader import CaptureHealth
from edge_agent.node.metrics import (
    CONTENT_TYPE,
    Exposition,
    MetricsServer,
    escape_label_value,
    render_metrics,
)
from edge_agent.node.probe import Probe
from tests.conftest import free_port
from tests.edge_agent.node.test_metrics_support import SHA, Live, Scrape, busy_live, cam_health, get, parse


@pytest.fixture(scope="module")
def scraped() -> Scrape:
    """One scrape of the busy node, shared by the read-only checks."""
    live = busy_live()
    server = MetricsServer(Probe(live.sources(), camera_down_s=30.0), "127.0.0.1", free_port())
    server.start()
    try:
        code, _, body = get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.stop()
    assert code == 200
    return parse(body)


@pytest.fixture
def served() -> Iterator[tuple[Live, str]]:
    live = busy_live()
    server = MetricsServer(Probe(live.sources(), camera_down_s=30.0), "127.0.0.1", free_port())
    server.start()
    try:
        yield live, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


# -- tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("two\nlines", "two\\nlines"),
        ('all "\\\n', 'all \\"\\\\\\n'),
    ],
)
def test_label_values_are_escaped(raw: str, escaped: str) -> None:
    assert escape_label_value(raw) == escaped
    e = Exposition()
    e.declare("m", "gauge", "help")
    e.add("m", 1, {"camera": raw})
    assert parse(e.render()).value("m", camera=raw) == 1


@pytest.mark.parametrize(
    ("name", "labels", "error"),
    [
        ("bad-name", None, ValueError),
        ("m", {"bad-label": "x"}, ValueError),
        ("m", {"__reserved": "x"}, ValueError),
    ],
)
def test_invalid_names_are_refused(name: str, labels: dict[str, str] | None, error: type[Exception]) -> None:
    e = Exposition()
    with pytest.raises(error):
        e.declare(name, "gauge", "h")
        e.add(name, 1, labels)


def test_scrape_is_valid_text_format_with_every_family(served: tuple[Live, str]) -> None:
    _, base = served
    code, content_type, body = get(base + "/metrics")
    assert code == 200 and content_type == CONTENT_TYPE
    s = parse(body)
    expected = {
        "streetwatch_agent_camera_frames_total": "counter",
        "streetwatch_agent_camera_detected_total": "counter",
        "streetwatch_agent_camera_frames_skipped_total": "counter",
        "streetwatch_agent_camera_frames_dropped_total": "counter",
        "streetwatch_agent_camera_decode_errors_total": "counter",
        "streetwatch_agent_camera_reconnects_total": "counter",
        "streetwatch_agent_camera_stalls_total": "counter",
        "streetwatch_agent_camera_last_frame_age_seconds": "gauge",
        "streetwatch_agent_camera_fps": "gauge",
        "streetwatch_agent_camera_inference_ms": "gauge",
        "streetwatch_agent_events_queued_total": "counter",
        "streetwatch_agent_events_published_total": "counter",
        "streetwatch_agent_uploads_total": "counter",
        "streetwatch_agent_uploads_refused_total": "counter",
        "streetwatch_agent_retries_total": "counter",
        "streetwatch_agent_outbox_depth": "gauge",
        "streetwatch_agent_outbox_bytes": "gauge",
        "streetwatch_agent_outbox_dropped_total": "counter",
        "streetwatch_agent_mqtt_connected": "gauge",
        "process_resident_memory_bytes": "gauge",
        "process_cpu_seconds_total": "counter",
        "streetwatch_agent_uptime_seconds": "gauge",
    }
    for name, kind in expected.items():
        assert s.types.get(name) == kind, name
        assert name in s.names(), f"{name} has no sample"


@pytest.mark.parametrize(
    ("name", "labels", "value"),
    [
        ("streetwatch_agent_camera_frames_total", {"camera": "cam-a"}, 1000),
        ("streetwatch_agent_camera_detected_total", {"camera": "cam-a"}, 30),
        ("streetwatch_agent_camera_frames_skipped_total", {"camera": "cam-a", "reason": "no_motion"}, 12),
        ("streetwatch_agent_camera_frames_skipped_total", {"camera": "cam-a", "reason": "not_due"}, 5),
        ("streetwatch_agent_camera_frames_dropped_total", {"camera": "cam-a", "reason": "overload"}, 2),
        ("streetwatch_agent_camera_frames_dropped_total", {"camera": "cam-a", "reason": "stale"}, 1),
        ("streetwatch_agent_camera_frames_dropped_total", {"camera": "cam-a", "reason": "unseen"}, 40),
        ("streetwatch_agent_camera_decode_errors_total", {"camera": "cam-a"}, 3),
        ("streetwatch_agent_camera_reconnects_total", {"camera": "cam-a"}, 2),
        ("streetwatch_agent_camera_stalls_total", {"camera": "cam-a"}, 1),
        ("streetwatch_agent_camera_last_frame_age_seconds", {"camera": "cam-a"}, 0.5),
        ("streetwatch_agent_camera_fps", {"camera": "cam-a"}, 14.5),
        ("streetwatch_agent_camera_inference_ms", {"camera": "cam-a", "quantile": "0.5"}, 50),
        ("streetwatch_agent_camera_inference_ms", {"camera": "cam-a", "quantile": "0.95"}, 95),
        ("streetwatch_agent_camera_events_total", {"camera": "cam-a", "phase": "start"}, 2),
        ("streetwatch_agent_camera_up", {"camera": "cam-a"}, 1),
        ("streetwatch_agent_camera_state", {"camera": "cam-a", "state": "reading"}, 1),
        ("streetwatch_agent_camera_state", {"camera": "cam-a", "state": "backoff"}, 0),
        # the second camera: an id full of characters to escape, no frame yet, reconnecting
        ("streetwatch_agent_camera_up", {"camera": 'odd "cam"\\n'}, 0),
        ("streetwatch_agent_camera_state", {"camera": 'odd "cam"\\n', "state": "backoff"}, 1),
        ("streetwatch_agent_camera_detected_total", {"camera": 'odd "cam"\\n'}, 0),
        ("streetwatch_agent_events_queued_total", {}, 5),
        ("streetwatch_agent_events_published_total", {}, 4),
        ("streetwatch_agent_uploads_total", {}, 8),
        ("streetwatch_agent_uploads_refused_total", {}, 1),
        ("streetwatch_agent_retries_total", {"kind": "upload"}, 3),
        ("streetwatch_agent_retries_total", {"kind": "publish"}, 6),
        ("streetwatch_agent_outbox_depth", {"class": "violation"}, 3),
        ("streetwatch_agent_outbox_depth", {"class": "telemetry"}, 1),
        ("streetwatch_agent_outbox_uploads", {}, 2),
        ("streetwatch_agent_outbox_bytes", {}, 4096),
        ("streetwatch_agent_outbox_max_bytes", {}, 1 << 20),
        ("streetwatch_agent_outbox_dropped_total", {"class": "telemetry", "reason": "cap_evicted"}, 4),
        ("streetwatch_agent_outbox_dropped_total", {"class": "violation", "reason": "cap_full"}, 1),
        ("streetwatch_agent_mqtt_connected", {}, 1),
        ("streetwatch_agent_uptime_seconds", {}, 100),
        ("streetwatch_agent_detector_up", {}, 1),
        ("streetwatch_agent_detector_batches_total", {}, 25),
        ("streetwatch_agent_detector_seconds_total", {}, 1.5),
        ("streetwatch_agent_config_version", {}, 7),
        (
            "streetwatch_agent_last_event_timestamp_seconds",
            {},
            datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp(),
        ),
        ("process_start_time_seconds", {}, 1_700_000_000),
        (
            "streetwatch_agent_info",
            {
                "node": "node-1",
                "version": "0.1.0",
                "model": "yolo.onnx",
                "model_sha256": SHA,
                "backend": "openvino",
                "backend_version": "2026.4.1",
            },
            1,
        ),
    ],
)
def test_values_come_from_the_live_objects(
    scraped: Scrape, name: str, labels: dict[str, str], value: float
) -> None:
    assert scraped.value(name, **labels) == pytest.approx(value)


def test_a_scrape_reads_the_objects_as_they_are_now(served: tuple[Live, str]) -> None:
    live, base = served
    before = parse(get(base + "/metrics")[2])
    live.cams[0] = cam_health("cam-a", frames=1500)
    live.delivery.connected = False
    live.delivery.queued += 1
    after = parse(get(base + "/metrics")[2])
    assert before.value("streetwatch_agent_camera_frames_total", camera="cam-a") == 1000
    assert after.value("streetwatch_agent_camera_frames_total", camera="cam-a") == 1500
    assert after.value("streetwatch_agent_mqtt_connected") == 0
    assert after.value("streetwatch_agent_events_queued_total") == 6
    assert before.value("process_resident_memory_bytes") > 1 << 20


def test_an_unreadable_outbox_is_reported_not_fatal(served: tuple[Live, str]) -> None:
    live, base = served
    live.outbox_error = RuntimeError("Cannot operate on a closed database.")
    code, _, body = get(base + "/metrics")
    s = parse(body)
    assert code == 200
    assert s.value("streetwatch_agent_outbox_readable") == 0
    assert "streetwatch_agent_outbox_depth" not in s.names()
    assert s.value("streetwatch_agent_events_queued_total") == 5


@pytest.mark.parametrize(
    ("cams", "alive", "code", "reason"),
    [
        ([cam_health("a", age=1.0)], True, 200, None),
        ([cam_health("a", age=1.0), cam_health("b", state="backoff", age=None)], True, 200, None),
        ([cam_health("a", age=1.0)], False, 503, "detector loop is not running"),
        (
            [cam_health("a", state="backoff", age=31.0)],
            True,
            503,
            "no camera delivered a frame in the last 30 s",
        ),
        ([cam_health("a", state="opening", age=None)], True, 503, "no camera has delivered a frame yet"),
    ],
)
def test_healthz(cams: list[CaptureHealth], alive: bool, code: int, reason: str | None) -> None:
    live = Live(cams=cams, alive=alive)
    server = MetricsServer(Probe(live.sources(), camera_down_s=30.0), "127.0.0.1", free_port())
    server.start()
    try:
        got, content_type, body = get(f"http://127.0.0.1:{server.port}/healthz")
    finally:
        server.stop()
    answer = json.loads(body)
    assert got == code and content_type == "application/json"
    assert answer["status"] == ("ok" if code == 200 else "unhealthy")
    assert answer["reasons"] == ([] if reason is None else [reason])


def test_a_hung_detector_loop_is_unhealthy_but_an_idle_one_is_not() -> None:
    live = Live(cams=[cam_health("a", age=0.5)])
    probe = Probe(live.sources(), camera_down_s=30.0, stuck_s=90.0)
    live.now += 60.0
    assert probe.detector_problem() is None  # no batch for 60 s: still within the allowance
    live.now += 40.0  # 100 s without a batch while frames arrive: hung
    assert (
        probe.detector_problem()
        == "detector loop completed no batch for 100 s while cameras delivered frames"
    )
    assert render_metrics(probe).count("streetwatch_agent_detector_up 0") == 1
    live.loop.batches += 1  # it moved again
    assert probe.detector_problem() is None
    live.now += 200.0
    live.cams = [cam_health("a", state="backoff", age=250.0)]  # idle because no camera delivers: not hung
    assert probe.detector_problem() is None


def test_unknown_paths_are_404(served: tuple[Live, str]) -> None:
    _, base = served
    assert get(base + "/nope")[0] == 404


def test_a_busy_port_raises_oserror() -> None:
    live = Live(cams=[cam_health("a")])
    first = MetricsServer(Probe(live.sources(), camera_down_s=30.0), "127.0.0.1", free_port())
    first.start()
    try:
        second = MetricsServer(Probe(live.sources(), camera_down_s=30.0), "127.0.0.1", first.port)
        with pytest.raises(OSError):
            second.start()
    finally:
        first.stop()


@pytest.mark.parametrize(
    "name", ["edge_agent.node.metrics", "edge_agent.node.sdnotify", "edge_agent.node.status"]
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
    assert result.attempted > 0

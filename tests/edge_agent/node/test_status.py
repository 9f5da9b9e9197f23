"""The status file and `streetwatch-agent status`: round trip, exit codes on an injected clock, where the file is
looked for, and the agent side (``HealthServices``) writing it from live objects."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from edge_agent.config import parse_config
from edge_agent.node import status as status_mod
from edge_agent.node.cli import main
from edge_agent.node.health import HealthServices
from edge_agent.node.probe import Probe
from edge_agent.node.sdnotify import Notifier
from edge_agent.node.status import (
    STATUS_FILE,
    AgentStatus,
    CameraStatus,
    DeliveryStatus,
    read_status,
    resolve_state_dir,
    status_command,
    write_status,
)
from tests.conftest import free_port
from tests.edge_agent.node.test_metrics_support import Live, cam_health

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def camera(camera_id: str = "cam-1", **over: object) -> CameraStatus:
    base: dict[str, object] = dict(
        camera_id=camera_id,
        state="reading",
        fps=15.0,
        last_frame_age_s=0.2,
        frames=9000,
        detected=3000,
        dropped=12,
        decode_errors=0,
        reconnects=1,
        open_failures=0,
        stalls=0,
        inference_ms_p95=80.0,
    )
    base.update(over)
    return CameraStatus.model_validate(base)


def delivery(**over: object) -> DeliveryStatus:
    base: dict[str, object] = dict(
        mqtt_connected=True,
        mqtt_down_s=None,
        outbox_depth=2,
        outbox_uploads=1,
        outbox_bytes=2 << 20,
        outbox_max_bytes=256 << 20,
        outbox_oldest_age_s=3.0,
        queued=40,
        published=38,
        uploads=70,
        upload_refused=0,
        dropped={"telemetry.cap_evicted": 2},
    )
    base.update(over)
    return DeliveryStatus.model_validate(base)


def healthy(**over: object) -> AgentStatus:
    base: dict[str, object] = dict(
        state="running",
        written_at=T0,
        interval_s=5.0,
        camera_down_s=30.0,
        mqtt_down_s=300.0,
        pid=4242,
        node_id="ward7-node3",
        software="0.1.0",
        model="yolo11n_coco_640_int8dyn.onnx",
        model_sha256="81d6d2affeb367e3a535ce4fcf5891ebf9cc562fac0a0da019bbc5e1bcc46d44",
        config_version=12,
        started_at=T0 - timedelta(hours=3),
        uptime_s=3 * 3600.0,
        detector_alive=True,
        detector_batches=50_000,
        cameras=[camera("cam-1"), camera("cam-2")],
        delivery=delivery(),
        last_event_at=T0 - timedelta(minutes=4),
        metrics_url="http://127.0.0.1:9464/metrics",
    )
    base.update(over)
    return AgentStatus.model_validate(base)


def run_status(state_dir: Path, now: datetime, *flags: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = status_command(None, state_dir, as_json="--json" in flags, now=lambda: now, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_round_trip_is_atomic_and_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "state" / STATUS_FILE
    first, second = healthy(), healthy(config_version=13)
    write_status(path, first)
    write_status(path, second)
    got, raw = read_status(path)
    assert got == second
    assert json.loads(raw)["schema"] == "streetwatch.agent-status/1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == [STATUS_FILE]  # no temp file left behind


def test_newer_fields_are_ignored_by_an_older_reader(tmp_path: Path) -> None:
    data = json.loads(healthy().to_json())
    data["gpu_temp_c"] = 61.0
    (tmp_path / STATUS_FILE).write_text(json.dumps(data))
    assert run_status(tmp_path, T0)[0] == 0


CASES: list[tuple[str, Callable[[], AgentStatus], float, int, str | None]] = [
    ("healthy", healthy, 1.0, 0, None),
    ("written exactly 3 intervals ago", healthy, 15.0, 0, None),
    ("stale file", healthy, 16.0, 1, "status file is 16 s old"),
    ("agent stopped", lambda: healthy(state="stopped"), 1.0, 1, "the agent stopped at 2024-05-01 12:00:00Z"),
    ("detector down", lambda: healthy(detector_alive=False, detector_problem="detector loop is not running"), 1.0, 1,
     "detector: detector loop is not running"),
    ("camera silent too long", lambda: healthy(cameras=[camera(), camera("cam-2", state="backoff", last_frame_age_s=31.0)]),
     1.0, 1, "camera cam-2 down: no frame for 31 s (backoff)"),
    ("camera silent within the allowance", lambda: healthy(cameras=[camera(last_frame_age_s=29.0)]), 1.0, 0, None),
    ("camera never delivered, agent old", lambda: healthy(cameras=[camera(state="opening", last_frame_age_s=None)]), 1.0,
     1, "camera cam-1 down: no frame since start (opening)"),
    ("camera not yet delivered, agent young",
     lambda: healthy(uptime_s=10.0, cameras=[camera(state="opening", last_frame_age_s=None)]), 1.0, 0, None),
    ("camera ended", lambda: healthy(cameras=[camera(state="ended", error="camera cam-1: reader crashed")]), 1.0, 1,
     "camera cam-1 ended: camera cam-1: reader crashed"),
    ("mqtt down briefly", lambda: healthy(delivery=delivery(mqtt_connected=False, mqtt_down_s=299.0)), 1.0, 0, None),
    ("mqtt down long", lambda: healthy(delivery=delivery(mqtt_connected=False, mqtt_down_s=301.0)), 1.0, 1,
     "MQTT broker unreachable for 5 min"),
    ("outbox unreadable", lambda: healthy(delivery=delivery(outbox_depth=None, outbox_error="disk I/O error")), 1.0, 1,
     "outbox unreadable: disk I/O error"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "age_s", "code", "problem"), CASES, ids=[c[0] for c in CASES])
def test_status_exit_codes(
    tmp_path: Path, name: str, make: Callable[[], AgentStatus], age_s: float, code: int, problem: str | None
) -> None:
    write_status(tmp_path / STATUS_FILE, make())
    got, out, err = run_status(tmp_path, T0 + timedelta(seconds=age_s))
    assert (got, err) == (code, "")
    assert out.splitlines()[0] == f"node ward7-node3: {'UNHEALTHY' if code else 'healthy'}"
    problems = [line.strip().removeprefix("PROBLEM: ") for line in out.splitlines() if "PROBLEM:" in line]
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_summary_has_what_a_technician_needs(tmp_path: Path) -> None:
    write_status(tmp_path / STATUS_FILE, healthy())
    _, out, _ = run_status(tmp_path, T0 + timedelta(seconds=2))
    for text in (
        "software 0.1.0, model yolo11n_coco_640_int8dyn.onnx (81d6d2affeb3), config v12",
        "up 3 h 0 min",
        "cam-1",
        "15.0 fps, last frame 0.2 s ago, decode errors 0, reconnects 1",
        "mqtt: connected; outbox: 2 message(s), 1 upload(s), 2.0 of 256.0 MiB, oldest 3.0 s",
        "last event: 2024-05-01 11:56:00Z (4 min ago)",
        "metrics: http://127.0.0.1:9464/metrics",
    ):
        assert text in out, text


def test_json_prints_the_file_as_written(tmp_path: Path) -> None:
    write_status(tmp_path / STATUS_FILE, healthy(state="stopped"))
    code, out, _ = run_status(tmp_path, T0, "--json")
    assert code == 1
    assert out == (tmp_path / STATUS_FILE).read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no status file"), ("{not json", "cannot read"), ('{"schema": "other/1"}', "cannot read")],
)
def test_missing_or_broken_file_exits_3(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / STATUS_FILE).write_text(content)
    code, out, err = run_status(tmp_path, T0)
    assert (code, out) == (3, "")
    assert message in err and str(tmp_path / STATUS_FILE) in err


def write_config(tmp_path: Path, **over: object) -> Path:
    cfg: dict[str, object] = {
        "node_id": "n1",
        "model": {"path": "m.onnx"},
        "evidence_dir": "data/evidence",
        "cameras": [{"id": "c1", "source": "rtsp://cam/1"}],
    }
    cfg.update(over)
    path = tmp_path / "conf" / "agent.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({}, "conf/data"),  # beside the outbox, which is beside the evidence folder
        ({"outbox": {"path": "spool/outbox.sqlite3"}}, "conf/spool"),
        ({"state": {"dir": "st"}}, "conf/st"),
    ],
)
def test_state_dir_from_config(tmp_path: Path, over: dict[str, object], expected: str) -> None:
    assert resolve_state_dir(write_config(tmp_path, **over), None) == tmp_path / expected


def test_state_dir_without_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_state_dir(None, tmp_path / "given") == tmp_path / "given"
    assert resolve_state_dir(None, None, {"STREETWATCH_STATE_DIR": "/srv/sw"}) == Path("/srv/sw")
    monkeypatch.setattr(status_mod, "DEFAULT_CONFIG", tmp_path / "absent.yaml")
    assert resolve_state_dir(None, None, {}) == Path("var/agent")
    monkeypatch.setattr(status_mod, "DEFAULT_CONFIG", write_config(tmp_path, state={"dir": "/srv/x"}))
    assert resolve_state_dir(None, None, {}) == Path("/srv/x")


def test_cli_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, state={"dir": str(tmp_path / "st")})
    assert main(["status", "--config", str(cfg)]) == 3
    write_status(tmp_path / "st" / STATUS_FILE, healthy(written_at=datetime.now(UTC)))
    assert main(["status", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.startswith("node ward7-node3: healthy\n")
    assert main(["status", "--state-dir", str(tmp_path / "st"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["node_id"] == "ward7-node3"
    bad = write_config(tmp_path, cameras=[])
    assert main(["status", "--config", str(bad)]) == 2
    with pytest.raises(SystemExit):
        main(["status", "--config", str(cfg), "--state-dir", str(tmp_path)])


# -- the agent side -----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t


def services(tmp_path: Path, live: Live, **metrics: object) -> HealthServices:
    cfg = parse_config(
        {
            "node_id": "node-1",
            "model": {"path": "m.onnx"},
            "cameras": [{"id": "c1", "source": "rtsp://cam/1"}],
            "state": {"dir": str(tmp_path), "status_interval_s": 5, "camera_down_s": 30},
            "metrics": {"port": 0, **metrics},
        }
    )
    probe = Probe(live.sources(), camera_down_s=30.0)
    return HealthServices(probe, cfg, notifier=Notifier(None), wall=Clock(), pid=99)


def test_tick_writes_what_the_live_objects_say(tmp_path: Path) -> None:
    live = Live(cams=[cam_health("c1", age=0.4), cam_health("c2", state="backoff", age=40.0)])
    svc = services(tmp_path, live)
    svc.tick()
    got, _ = read_status(tmp_path / STATUS_FILE)
    assert (got.node_id, got.pid, got.state, got.config_version, got.uptime_s) == (
        "node-1",
        99,
        "running",
        7,
        100.0,
    )
    assert [(c.camera_id, c.state, c.last_frame_age_s, c.dropped) for c in got.cameras] == [
        ("c1", "reading", 0.4, 40),
        ("c2", "backoff", 40.0, 40),
    ]
    assert (got.delivery.outbox_depth, got.delivery.dropped) == (
        4,
        {"telemetry.cap_evicted": 4, "violation.cap_full": 1},
    )
    assert got.last_event_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    code, out, _ = run_status(tmp_path, T0)
    assert code == 1 and "camera c2 down: no frame for 40 s (backoff)" in out


def test_mqtt_down_time_follows_the_connection(tmp_path: Path) -> None:
    live = Live(cams=[cam_health("c1")])
    svc = services(tmp_path, live)  # started at 900, now 1000, never connected
    assert svc.snapshot("running").delivery.mqtt_down_s == 100.0
    live.delivery.connected = True
    assert svc.snapshot("running").delivery.mqtt_down_s is None
    live.delivery.connected = False
    live.now += 20
    assert svc.snapshot("running").delivery.mqtt_down_s == 0.0  # the first look after the loss
    live.now += 400
    assert svc.snapshot("running").delivery.mqtt_down_s == 400.0


def test_stop_leaves_a_stopped_status_and_a_busy_port_is_data(tmp_path: Path) -> None:
    live = Live(cams=[cam_health("c1")])
    port = free_port()
    holder = services(tmp_path / "a", live, port=port)
    holder.start()
    try:
        svc = services(tmp_path / "b", live, port=port)
        svc.start()
        svc.stop()
    finally:
        holder.stop()
    got, _ = read_status(tmp_path / "b" / STATUS_FILE)
    assert got.state == "stopped" and got.metrics_url is None
    assert got.metrics_error is not None and f"cannot listen on 127.0.0.1:{port}" in got.metrics_error
    held, _ = read_status(tmp_path / "a" / STATUS_FILE)
    assert held.metrics_url == f"http://127.0.0.1:{port}/metrics"


def test_an_unwritable_state_dir_does_not_stop_the_agent(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    live = Live(cams=[cam_health("c1")])
    svc = services(blocker, live)  # the state "folder" is a file
    assert svc.tick().state == "running"
    assert not os.path.isdir(blocker)

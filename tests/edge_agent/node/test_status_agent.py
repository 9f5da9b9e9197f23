"""A real agent process on the real model and street clip, watched as systemd and a technician watch it:
READY/WATCHDOG/STOPPING on a notify socket, /metrics and /healthz over HTTP, and `streetwatch-agent status`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port, wait_until
from tests.edge_agent.node.test_metrics_support import get, parse
from tests.paths import MODEL_640, ROOT, TOKYO


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.node.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(120.0)  # the model loads before READY
    try:
        yield sock
    finally:
        sock.close()


def test_agent_reports_to_systemd_prometheus_and_the_technician(
    tmp_path: Path, notify: socket.socket
) -> None:
    port = free_port()
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node_id": "n1",
                "model": {"path": str(MODEL_640)},
                "evidence_dir": str(tmp_path / "state" / "evidence"),
                "mqtt": {"host": "127.0.0.1", "port": free_port()},  # no broker: delivery spools
                "metrics": {"port": port},
                "state": {"status_interval_s": 1},
                "cameras": [{"id": "cam-1", "source": str(TOKYO), "loop": True}],
            }
        )
    )
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent.node.cli",
            "--log-level",
            "WARNING",
            "run",
            "--config",
            str(config),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        first = notify.recv(4096).decode()
        assert first.startswith("READY=1\nSTATUS=") and "/1 camera(s) reading" in first, first
        assert notify.recv(4096).decode().startswith("WATCHDOG=1\n")

        base = f"http://127.0.0.1:{port}"

        def detected() -> bool:
            s = parse(get(base + "/metrics")[2])
            return s.value("streetwatch_agent_camera_detected_total", camera="cam-1") > 0

        wait_until(detected, timeout_s=60, message="the first detection in /metrics")
        scrape = parse(get(base + "/metrics")[2])
        assert scrape.value("streetwatch_agent_camera_frames_total", camera="cam-1") > 0
        assert scrape.value("streetwatch_agent_mqtt_connected") == 0
        assert scrape.value("streetwatch_agent_detector_up") == 1
        code, _, body = get(base + "/healthz")
        assert (code, json.loads(body)["status"]) == (200, "ok")

        status = cli("status", "--config", str(config))
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.startswith("node n1: healthy")
        assert "\n    cam-1 " in status.stdout  # its state may be 'opening' for a moment: the clip loops
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    tail = []
    notify.settimeout(0.0)
    while True:
        try:
            tail.append(notify.recv(4096).decode())
        except BlockingIOError:
            break
    assert any(m.startswith("STOPPING=1") for m in tail), tail
    after = cli("status", "--config", str(config))
    assert after.returncode == 1
    assert "PROBLEM: the agent stopped at" in after.stdout

"""systemd notify protocol against a real AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.config import parse_config
from edge_agent.node.health import HealthServices
from edge_agent.node.probe import Probe
from edge_agent.node.sdnotify import Notifier
from tests.edge_agent.node.test_metrics_support import Live, cam_health


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket, as systemd offers one; yields it and its address for NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10.0)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def messages(sock: socket.socket) -> list[dict[str, str]]:
    """Every datagram already queued (sends are synchronous, so nothing is in flight), parsed."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                return out
            out.append(dict(line.split("=", 1) for line in data.decode().split("\n")))
    finally:
        sock.settimeout(10.0)


def services(tmp_path: Path, live: Live, notifier: Notifier | None = None) -> HealthServices:
    cfg = parse_config(
        {
            "node_id": "node-1",
            "model": {"path": "m.onnx"},
            "cameras": [{"id": "c1", "source": "rtsp://cam/1"}],
            "state": {"dir": str(tmp_path / "state"), "status_interval_s": 5},
            "metrics": {"port": 0},
        }
    )
    return HealthServices(Probe(live.sources(), camera_down_s=30.0), cfg, notifier=notifier)


def test_ready_and_watchdog_arrive_while_the_detector_loop_lives(
    tmp_path: Path, systemd: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = systemd
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    live = Live(cams=[cam_health("c1")])
    svc = services(tmp_path, live)  # the notifier comes from the environment, as under systemd
    assert svc.period_s == 2.0  # twice per watchdog interval, more often than the status interval
    svc.tick()
    svc.tick()
    got = messages(sock)
    assert [m.get("READY") for m in got] == ["1", None, None]
    assert [m.get("WATCHDOG") for m in got] == [None, "1", "1"]
    assert got[0]["STATUS"] == "1/1 camera(s) reading, outbox 4, mqtt disconnected"

    live.alive = False  # the detector loop died: no more pings, so systemd restarts the agent
    svc.tick()
    assert messages(sock) == []
    svc.stop()
    assert [m.get("STOPPING") for m in messages(sock)] == ["1"]


def test_ready_waits_for_a_live_detector_loop(tmp_path: Path, systemd: tuple[socket.socket, str]) -> None:
    sock, address = systemd
    live = Live(cams=[cam_health("c1")], alive=False)
    svc = services(tmp_path, live, Notifier(address))
    svc.tick()
    assert messages(sock) == []
    live.alive = True
    svc.tick()
    assert [sorted(m) for m in messages(sock)] == [["READY", "STATUS"], ["STATUS", "WATCHDOG"]]


def test_the_background_thread_pings(tmp_path: Path, systemd: tuple[socket.socket, str]) -> None:
    sock, address = systemd
    svc = services(tmp_path, Live(cams=[cam_health("c1")]), Notifier(address, watchdog_s=0.2))
    svc.start()
    try:
        first = sock.recv(4096).decode()  # the tick in start()
        later = [sock.recv(4096).decode() for _ in range(2)]  # the thread's rounds (blocking reads)
    finally:
        svc.stop()
    assert first.startswith("READY=1\n")
    assert all(m.startswith("WATCHDOG=1\n") for m in later)


def test_abstract_namespace_address() -> None:
    name = f"streetwatch-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10.0)
        assert Notifier("@" + name).send("READY=1", "STATUS=a\nb")
        assert sock.recv(4096) == b"READY=1\nSTATUS=a b"


@pytest.mark.parametrize(
    ("env", "enabled", "watchdog_s"),
    [
        ({}, False, None),
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, True, None),
        ({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000"}, True, 30.0),
        (
            {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},
            True,
            None,
        ),
        ({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "soon"}, True, None),
    ],
)
def test_from_env(env: dict[str, str], enabled: bool, watchdog_s: float | None) -> None:
    n = Notifier.from_env(env, pid=1234)
    assert (n.enabled, n.watchdog_s) == (enabled, watchdog_s)


@pytest.mark.parametrize("address", [None, "/nonexistent/notify", "vsock:2:1234"])
def test_no_socket_is_a_quiet_false(address: str | None) -> None:
    n = Notifier(address)
    assert n.ready("x") is False and n.watchdog("x") is False

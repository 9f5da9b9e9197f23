"""The camera reader against real network servers: GStreamer's RTSP server serving the real clip (stopped,
restarted on the same port, frozen) and a small HTTP MJPEG server.

The RTSP server runs under the system python (``tests/rtsp_server.py``); without its Debian packages the RTSP
tests are skipped locally and fail in CI (``CI`` set), as the broker tests do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import cv2
import pytest

from edge_agent.capture.reader import CameraReader, CaptureSet
from edge_agent.config import CaptureConfig
from tests.conftest import free_port, wait_for_port, wait_until
from tests.paths import ROOT, TOKYO

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = ROOT / "tests" / "rtsp_server.py"
APT_PACKAGES = (
    "python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)
# Fast retries so a restart is noticed within a second; short FFmpeg timeouts bound every blocked call.
SETTINGS = CaptureConfig(
    reconnect_initial_s=0.1, reconnect_max_s=0.5, open_timeout_s=3.0, read_timeout_s=3.0, stall_timeout_s=30.0
)


def require_rtsp_server() -> None:
    reason = None
    if not Path(SYSTEM_PYTHON).exists():
        reason = f"{SYSTEM_PYTHON} not found"
    else:
        check = subprocess.run(
            [SYSTEM_PYTHON, str(SERVER), "--check", "--port", "0", "--file", str(TOKYO)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check.returncode != 0:
            last = ((check.stdout + check.stderr).strip().splitlines() or ["no output"])[-1]
            reason = f"GStreamer RTSP server unavailable ({last})"
    if reason is not None:
        reason += f"; apt-get install {APT_PACKAGES}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the RTSP capture tests")
        pytest.skip(reason)


@dataclass
class RtspServer:
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        assert self.process is None
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--path", "/cam", "--file", str(TOKYO)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", self.port, 15.0, self.process)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)  # in case a test froze it
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    require_rtsp_server()
    if not TOKYO.is_file():
        pytest.skip(f"clip missing: {TOKYO} (make assets)")
    server = RtspServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_rtsp_stream_survives_a_server_restart(rtsp_server: RtspServer) -> None:
    reader = CameraReader("rtsp-1", rtsp_server.url, SETTINGS)
    reader.start()
    try:
        wait_until(lambda: reader.stats.frames >= 15, timeout_s=10.0, message="15 frames over RTSP")
        first = reader.take()
        assert first is not None and (first.width, first.height) == (960, 540)
        assert reader.health().fps > 5.0

        rtsp_server.stop()
        wait_until(lambda: reader.stats.decode_errors >= 1, timeout_s=10.0, message="the reader to notice")
        before = reader.stats.frames
        rtsp_server.start()  # same port
        wait_until(lambda: reader.stats.reconnects >= 1, timeout_s=10.0, message="a reconnect")
        wait_until(lambda: reader.stats.frames >= before + 15, timeout_s=10.0, message="frames after restart")
        after = reader.take()
        assert after is not None and after.index > first.index and after.mono > first.mono
        h = reader.health()
        assert h.reconnects >= 1 and h.frames >= before + 15 and h.stalls == 0 and h.error is None
        assert h.last_frame_age_s is not None and h.last_frame_age_s < 2.0
    finally:
        reader.stop()


def test_rtsp_frozen_server_trips_the_watchdog(rtsp_server: RtspServer) -> None:
    """SIGSTOP freezes the server with the connection open: reads hang until the watchdog restarts the reader;
    after SIGCONT frames flow again."""
    settings = SETTINGS.model_copy(
        update={"stall_timeout_s": 1.0, "read_timeout_s": 20.0, "open_timeout_s": 20.0}
    )
    reader = CameraReader("rtsp-1", rtsp_server.url, settings)
    captures = CaptureSet([reader], watchdog_interval_s=0.1)
    captures.start()
    assert rtsp_server.process is not None
    try:
        wait_until(lambda: reader.stats.frames >= 10, timeout_s=10.0, message="10 frames over RTSP")
        rtsp_server.process.send_signal(signal.SIGSTOP)
        wait_until(lambda: reader.stats.stalls >= 1, timeout_s=10.0, message="the watchdog to fire")
        frozen_at = reader.stats.frames
        rtsp_server.process.send_signal(signal.SIGCONT)
        wait_until(lambda: reader.stats.frames >= frozen_at + 10, timeout_s=15.0, message="frames after thaw")
        assert reader.health().stalls == 1  # the restarted reader waits for its own open timeout
    finally:
        rtsp_server.process.send_signal(signal.SIGCONT)
        captures.stop()


# -- HTTP MJPEG -------------------------------------------------------------------------------------------


def jpeg_frames(n: int) -> list[bytes]:
    cap = cv2.VideoCapture(str(TOKYO))
    out: list[bytes] = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(cv2.imencode(".jpg", cv2.resize(img, (480, 270)))[1].tobytes())
    cap.release()
    return out


class MjpegHandler(BaseHTTPRequestHandler):
    frames: ClassVar[list[bytes]] = []
    stop: ClassVar[threading.Event] = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        try:
            while not self.stop.wait(1 / 25):
                jpg = self.frames[i % len(self.frames)]
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(len(jpg)).encode()
                    + b"\r\n\r\n"
                    + jpg
                    + b"\r\n"
                )
                i += 1
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_mjpeg_stream_is_read() -> None:
    if not TOKYO.is_file():
        pytest.skip(f"clip missing: {TOKYO}")
    MjpegHandler.frames = jpeg_frames(10)
    MjpegHandler.stop = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), MjpegHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    reader = CameraReader("mjpeg-1", url, SETTINGS)
    reader.start()
    try:
        wait_until(lambda: reader.stats.frames >= 10, timeout_s=10.0, message="10 MJPEG frames")
        frame = reader.take()
        assert frame is not None and (frame.width, frame.height) == (480, 270)
        assert reader.health().error is None
    finally:
        reader.stop()
        MjpegHandler.stop.set()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":  # pragma: no cover - manual run
    sys.exit(pytest.main([__file__, "-q"]))

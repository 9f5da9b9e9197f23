"""Footage extraction through real parts: an enrolled agent process replaying a real clip records it in rolling
segments (real ffmpeg), an officer requests 10 s at central, the node cuts and uploads the clip over an
authenticated Mosquitto + HTTP; a request outside the retention is answered not-available with the reason.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text

from tests.conftest import wait_until
from tests.e2e.test_acl_support import ADMIN_PASSWORD, auth_broker, central_process, cli_enroll
from tests.e2e.test_review_ui import chromium  # noqa: F401 - the browser fixture
from tests.paths import MODEL_640, ROOT, TOKYO

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CAMERA = "omotesando-01"
FPS = 5
BUDGET = 1_500_000  # about 20 s of this clip at 640 px, 5 fps: the replay outgrows it within a minute
SHOTS = Path(os.environ["UI_SCREENSHOT_DIR"]) if os.environ.get("UI_SCREENSHOT_DIR") else None


@pytest.fixture
def recording_agent(tmp_path: Path) -> Iterator[tuple[str, httpx.Client, str, Path]]:
    with auth_broker(tmp_path / "broker") as broker, central_process(tmp_path, broker) as central:
        admin = central.admin()
        state = tmp_path / "node-state"
        creds = cli_enroll(central, admin, "Omotesando corner", state)
        cfg = {
            "node_id": "unenrolled",
            "central_url": central.url,
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": 10, "heartbeat_s": 2},
            "evidence_dir": str(tmp_path / "evidence"),
            "metrics": {"port": 0},
            "state": {"dir": str(state)},
            "model": {"path": str(MODEL_640)},
            "recording": {
                "enabled": True,
                "dir": str(tmp_path / "rec"),
                "segment_s": 4,
                "fps": FPS,
                "max_width": 640,
                "max_bytes": BUDGET,
            },
            "cameras": [
                {"id": CAMERA, "source": str(TOKYO), "realtime": True, "loop": True, "detect_fps": 1}
            ],
        }
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log = (tmp_path / "agent.log").open("wb")
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.node.cli", "run", "--config", str(path)],
            cwd=ROOT, env={k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_")},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield central.url, admin, creds.node_id, tmp_path
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-3000:]
        finally:
            agent.terminate()
            agent.wait(timeout=60)
            log.close()


def request(admin: httpx.Client, start: datetime, end: datetime, reason: str) -> dict[str, Any]:
    r = admin.post(
        "/api/v1/extractions",
        json={"camera_id": CAMERA, "start": start.isoformat(), "end": end.isoformat(), "reason": reason},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    extraction_id = r.json()["id"]

    def final() -> dict[str, Any] | None:
        x = dict(admin.get(f"/api/v1/extractions/{extraction_id}").json())
        return x if x["state"] in ("ready", "not-available", "failed") else None

    return dict(
        wait_until(final, timeout_s=180, interval_s=0.5, message=f"extraction {extraction_id} to end")
    )


def test_an_officer_gets_ten_seconds_of_a_camera_and_nothing_outside_the_retention(
    chromium: Browser,  # noqa: F811 - the fixture imported above
    recording_agent: tuple[str, httpx.Client, str, Path],
) -> None:
    url, admin, _node, tmp = recording_agent
    segments = tmp / "rec" / CAMERA

    def recorded_s() -> float:
        names = sorted(p.name for p in segments.glob("*.mp4")) if segments.is_dir() else []
        if not names:
            return 0.0
        first, last = int(names[0].split("-")[0]), int(names[-1].split("-")[1].split(".")[0])
        return (last - first) / 1000.0

    wait_until(lambda: recorded_s() >= 16, timeout_s=180, interval_s=1, message="16 s of footage recorded")
    first = min(p.name for p in segments.glob("*.mp4"))

    def oldest_deleted() -> bool:
        names = [p.name for p in segments.glob("*.mp4")]
        return bool(names) and min(names) != first

    # the long replay: the recording outgrows its budget and the oldest segments go, the total stays within it
    wait_until(
        oldest_deleted, timeout_s=240, interval_s=1, message="the oldest segment deleted for the budget"
    )
    for _ in range(10):
        assert sum(p.stat().st_size for p in segments.glob("*.mp4")) <= BUDGET
        time.sleep(1)
    cameras = {
        c["camera_id"]
        for n in admin.get("/api/v1/fleet").json()
        for c in (n["heartbeat"] or {}).get("cameras", [])
    }
    assert CAMERA in cameras

    # 10 s of what was recorded, by an officer with a reason
    names = sorted(p.name for p in segments.glob("*.mp4"))
    last_end = datetime.fromtimestamp(int(names[-1].split("-")[1].split(".")[0]) / 1000, UTC)
    start, end = last_end - timedelta(seconds=12), last_end - timedelta(seconds=2)
    ready = request(admin, start, end, "Hit-and-run report 2026-118, plate unknown")
    assert ready["state"] == "ready", ready
    clip = admin.get(f"/extractions/{ready['id']}/clip")
    assert clip.status_code == 200 and hashlib.sha256(clip.content).hexdigest() == ready["sha256"]
    recorded_start = datetime.fromisoformat(ready["recorded_start"])
    recorded_end = datetime.fromisoformat(ready["recorded_end"])
    assert start - timedelta(seconds=1) <= recorded_start <= start  # cut on the keyframe at or before start
    assert abs((recorded_end - end).total_seconds()) < 0.3
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(clip.content)
        f.flush()
        cap = cv2.VideoCapture(f.name)
        frames = 0
        while cap.read()[0]:
            frames += 1
        cap.release()
    expected = (recorded_end - recorded_start).total_seconds() * FPS
    assert abs(frames - expected) <= 2, (frames, expected)  # the clip's frames are the recorded range

    # outside the retention: not-available, with what the recording does cover
    old = request(admin, start - timedelta(hours=3), end - timedelta(hours=3), "Old incident")
    assert old["state"] == "not-available" and old["sha256"] is None
    assert "outside retention" in old["message"] and "covers" in old["message"]

    # every step audited
    engine = create_engine(f"sqlite:///{tmp / 'central.db'}")
    with engine.connect() as c:
        actions = [
            r[0]
            for r in c.execute(
                text("SELECT action FROM audit_log WHERE target = :t ORDER BY id"),
                {"t": f"extraction:{ready['id']}"},
            )
        ]
    engine.dispose()
    assert actions[:5] == [
        "extraction.request",
        "extraction.recording-found",
        "extraction.uploading",
        "extraction.ready",
        "extraction.view",  # the download above
    ], actions

    # the officer's page
    page = chromium.new_page(viewport={"width": 1366, "height": 900})
    try:
        page.goto(f"{url}/login?next=/extractions")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/extractions")
        row = page.locator(f'tr[data-extraction-id="{ready["id"]}"]')
        assert row.get_attribute("data-state") == "ready"
        assert (
            page.locator(f'tr[data-extraction-id="{old["id"]}"]').get_attribute("data-state")
            == "not-available"
        )
        duration = page.evaluate(
            """async (sha) => { const v = document.querySelector(`video[data-sha256="${sha}"]`);
            if (v.readyState < 1) await new Promise(r => v.addEventListener('loadedmetadata', r, {once: true}));
            return v.duration; }""",
            ready["sha256"],
        )
        assert abs(duration - (recorded_end - recorded_start).total_seconds()) < 1.0, duration
        if SHOTS is not None:
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "footage-requests.png"), full_page=True)
    finally:
        page.close()

"""Fleet health through real parts: a real agent process replaying a real clip, a real Mosquitto, a real central
process, and the technician's page in a real Chromium.

The agent is not enrolled (an anonymous broker, as on a demo box), so it must show up as *not enrolled* with its
live fps; after ``kill -9`` the broker publishes its Last Will and the page must say *offline* within the bound
documented in docs/technician.md (1.5 x the MQTT keepalive, plus the page's 5 s refresh).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from tests.conftest import MosquittoBroker, free_port, wait_until
from tests.e2e.test_review_ui import CHROMIUM_ARGS, chromium  # noqa: F401 - the browser fixture
from tests.paths import MODEL_640, ROOT, TOKYO

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "fleet-ui-passphrase-42"
NODE_ID = "kerb-box-7"
CAMERA_ID = "omotesando-01"
KEEPALIVE_S = 5
REFRESH_S = 5
SHOTS = Path(os.environ.get("UI_SCREENSHOT_DIR", "")) if os.environ.get("UI_SCREENSHOT_DIR") else None


@dataclass
class Proc:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_central(tmp: Path, broker: MosquittoBroker, **extra: str) -> Proc:
    """``streetwatch-central`` ingesting from the test's Mosquitto (anonymous, no managed broker files)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_")}
    env.update(
        STREETWATCH_DATABASE_URL=f"sqlite:///{tmp / 'central.db'}",
        STREETWATCH_DATA_DIR=str(tmp / "central"),
        STREETWATCH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        STREETWATCH_NODE_TOKEN="fleet-ui-node-token-0123456789",
        STREETWATCH_MQTT_HOST="127.0.0.1",
        STREETWATCH_MQTT_PORT=str(broker.port),
        STREETWATCH_MQTT_CLIENT_ID=f"central-{port}",
        STREETWATCH_HEARTBEAT_STALE_S="15",
        **extra,
    )
    log = tmp / "central.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    central = Proc(f"http://127.0.0.1:{port}", proc, log)

    def healthy() -> bool:
        assert proc.poll() is None, f"central exited early:\n{central.tail()}"
        try:
            r = httpx.get(f"{central.url}/healthz", timeout=2)
            return r.status_code == 200 and bool(r.json()["mqtt"]["connected"])
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout_s=60, interval_s=0.2, message="central healthy and subscribed")
    return central


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def agent_config(tmp: Path, broker: MosquittoBroker, central_url: str, **camera: Any) -> dict[str, Any]:
    return {
        "node_id": NODE_ID,
        "central_url": central_url,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive_s": KEEPALIVE_S, "heartbeat_s": 2},
        "model": {"path": str(MODEL_640)},
        "evidence_dir": str(tmp / "evidence"),
        "metrics": {"port": 0},
        "state": {"dir": str(tmp / "state")},
        "cameras": [
            {"id": CAMERA_ID, "source": str(TOKYO), "realtime": True, "loop": True, "detect_fps": 2, **camera}
        ],
    }


def start_agent(tmp: Path, cfg: dict[str, Any]) -> Proc:
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = tmp / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.node.cli", "run", "--config", str(path)],
            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Proc("", proc, log)


@pytest.fixture
def running(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[tuple[Proc, Proc]]:
    central = start_central(tmp_path, mosquitto)
    agent = start_agent(tmp_path, agent_config(tmp_path, mosquitto, central.url))
    try:
        yield central, agent
    finally:
        stop(agent.proc)
        stop(central.proc)


def login(page: Page, url: str) -> None:
    page.goto(f"{url}/login?next=/fleet")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/fleet")


def shot(page: Page, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / name), full_page=True)


def test_a_live_agent_is_listed_with_fps_and_turns_offline_when_killed(
    chromium: Browser,  # noqa: F811 - the fixture imported above
    running: tuple[Proc, Proc],
) -> None:
    central, agent = running
    context = chromium.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    try:
        login(page, central.url)
        row = page.locator(f'tr[data-node-id="{NODE_ID}"]')

        def live_fps() -> float:
            assert agent.proc.poll() is None, agent.tail()
            if row.count() == 0:
                return 0.0
            text = row.locator(f'li[data-camera-id="{CAMERA_ID}"] .fps').all_inner_texts()
            return float(text[0]) if text else 0.0

        # listed by the page's own refresh (no reload), as unenrolled, online, with live fps
        fps = wait_until(live_fps, timeout_s=120, interval_s=0.5, message="the agent listed with live fps")
        assert fps > 1.0
        assert row.get_attribute("data-enrollment") == "unenrolled"
        assert row.get_attribute("data-liveness") == "online"
        assert "not enrolled" in row.inner_text()
        shot(page, "fleet-health.png")

        # the node page: numbers per camera and charts of the stored heartbeats
        page.goto(f"{central.url}/fleet/{NODE_ID}")
        wait_until(
            lambda: page.locator("figure[data-chart=chart_fps] polyline").count() > 0 or bool(page.reload()),
            timeout_s=30,
            interval_s=1.0,
            message="an fps chart with at least two heartbeats",
        )
        assert page.locator(f'tr[data-camera-id="{CAMERA_ID}"]').count() == 1
        assert "yolo11n" in page.locator("#node-model").inner_text()
        shot(page, "fleet-node.png")
        phone = chromium.new_context(
            viewport={"width": 390, "height": 844}, storage_state=context.storage_state()
        )
        phone_page = phone.new_page()
        phone_page.goto(f"{central.url}/fleet")
        assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        shot(phone_page, "fleet-health-phone.png")
        phone.close()

        # kill -9: no clean offline message; the broker sees the socket close and publishes the Last Will
        page.goto(f"{central.url}/fleet")
        killed = time.monotonic()
        os.kill(agent.proc.pid, signal.SIGKILL)
        agent.proc.wait(timeout=10)
        bound_s = 1.5 * KEEPALIVE_S + REFRESH_S + 2

        def offline() -> bool:
            return row.count() == 1 and row.get_attribute("data-liveness") == "offline"

        wait_until(offline, timeout_s=bound_s, interval_s=0.2, message=f"offline within {bound_s} s")
        took = time.monotonic() - killed
        assert "attention" in (row.get_attribute("class") or "")
        shot(page, "fleet-offline.png")
        print(f"offline shown {took:.1f} s after kill -9 (bound {bound_s} s)")
    finally:
        context.close()
    api = httpx.Client(base_url=central.url, timeout=10)
    assert (
        api.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code == 200
    )
    listed = {n["node_id"]: n for n in api.get("/api/v1/fleet").json()}
    assert listed[NODE_ID]["liveness"] == "offline" and listed[NODE_ID]["enrollment"] == "unenrolled"
    assert len(api.get(f"/api/v1/fleet/{NODE_ID}/heartbeats").json()) >= 2

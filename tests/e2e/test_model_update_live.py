"""Remote model updates through real parts: an enrolled agent process replaying a real clip, an authenticated
Mosquitto, central as a process, real ONNX models from the asset mirror.

1. the 320 model is uploaded and sent: the node downloads it with its own token, swaps it in without a restart,
   and the events it raises afterwards (and its status) carry the new model's hash;
2. a corrupt file (the stored bytes damaged after central checked them): refused for the hash, the 320 model
   keeps running;
3. a model that loads and passes its trial but then stalls the detector loop (built at test time, see
   ``stall_model.py``): rolled back automatically, the 320 model runs again.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import yaml
from sqlalchemy import create_engine, text

from tests.conftest import wait_until
from tests.e2e.stall_model import build_stall_model
from tests.e2e.test_acl_support import (
    ADMIN_PASSWORD,
    CentralProcess,
    auth_broker,
    central_process,
    cli_enroll,
)
from tests.e2e.test_review_ui import chromium  # noqa: F401 - the browser fixture
from tests.paths import ASSETS, MODEL_640, ROOT, TOKYO

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SHOTS = Path(os.environ["UI_SCREENSHOT_DIR"]) if os.environ.get("UI_SCREENSHOT_DIR") else None

MODEL_320 = ASSETS / "models" / "yolo11n_coco_320_int8dyn.onnx"
MODEL_V8 = ASSETS / "models" / "yolov8n_coco_640_int8dyn.onnx"
CAMERA = "omotesando-01"
KERB = [[0.10, 0.96], [0.25, 0.96], [0.385, 0.62], [0.33, 0.62]]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[CentralProcess, httpx.Client, str, Path]]:
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
            "cameras": [
                {
                    "id": CAMERA,
                    "source": str(TOKYO),
                    "realtime": True,
                    "loop": True,
                    "detect_fps": 2,
                    "zones": [{"id": "left-kerb", "polygon": KERB}],
                    "rules": [
                        {
                            "id": "no-stopping",
                            "type": "illegal_stopping",
                            "zone": "left-kerb",
                            "min_dwell_s": 2,
                        }
                    ],
                }
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

        def running_model() -> str | None:
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-3000:]
            nodes = {n["node_id"]: n for n in admin.get("/api/v1/fleet").json()}
            node = nodes.get(creds.node_id)
            return None if node is None or node["liveness"] != "online" else node["model_sha256"]

        try:
            wait_until(running_model, timeout_s=90, interval_s=0.5, message="the agent online at central")
            yield central, admin, creds.node_id, tmp_path
        finally:
            agent.terminate()
            agent.wait(timeout=60)
            log.close()


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload(admin: httpx.Client, path: Path, name: str | None = None) -> dict[str, Any]:
    r = admin.post("/api/v1/models", files={"file": (name or path.name, path.read_bytes())}, timeout=120)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def install(admin: httpx.Client, sha: str, node: str, **args: float) -> dict[str, Any]:
    sent = admin.post(f"/api/v1/models/{sha}/assign", json={"nodes": [node], **args})
    assert sent.status_code == 200, sent.text
    request_id = sent.json()[0]["request_id"]
    assert request_id is not None, sent.text

    def final() -> dict[str, Any] | None:
        view = dict(admin.get(f"/api/v1/commands/{request_id}", params={"wait_s": 5}, timeout=30).json())
        return view if view["state"] in ("ok", "refused", "failed", "timeout") else None

    return dict(wait_until(final, timeout_s=300, interval_s=0.5, message=f"the model command {request_id}"))


def _time_one_call(model: Path) -> float:
    """Seconds one inference of ``model`` takes in this process (after a warm-up call)."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    feed = {spec.name: np.zeros(spec.shape, dtype=np.float32)}
    session.run(None, feed)
    started = time.perf_counter()
    session.run(None, feed)
    return time.perf_counter() - started


def fleet_model(admin: httpx.Client, node: str) -> tuple[str | None, str | None]:
    """(model in the heartbeat/status, liveness) as the fleet page shows them."""
    found = {n["node_id"]: n for n in admin.get("/api/v1/fleet").json()}[node]
    return found["model_sha256"], found["liveness"]


def test_models_are_swapped_refused_and_rolled_back_on_a_running_agent(
    chromium: Browser,  # noqa: F811 - the fixture imported above
    running: tuple[CentralProcess, httpx.Client, str, Path],
) -> None:
    central, admin, node, tmp = running
    old_sha, new_sha = sha_of(MODEL_640), sha_of(MODEL_320)
    assert fleet_model(admin, node) == (old_sha, "online")

    # 1. the second real model: swapped in live, and events after the swap carry its hash
    model = upload(admin, MODEL_320)
    assert model["sha256"] == new_sha and model["input_width"] == 320
    before_swap = datetime.now(UTC)
    done = install(admin, new_sha, node, watch_s=5)
    assert done["state"] == "ok", done
    assert done["result"]["model"]["sha256"] == new_sha and done["result"]["previous"]["sha256"] == old_sha
    wait_until(
        lambda: fleet_model(admin, node) == (new_sha, "online"), timeout_s=30, message="heartbeat model"
    )

    engine = create_engine(f"sqlite:///{tmp / 'central.db'}")  # central's own rows, as ingested

    def new_model_events() -> list[tuple[str, str]]:
        with engine.connect() as c:
            rows = c.execute(
                text("SELECT model_name, observed_at FROM events WHERE model_sha256 = :sha"), {"sha": new_sha}
            ).all()
        return [
            (r[0], str(r[1]))
            for r in rows
            if datetime.fromisoformat(str(r[1])).replace(tzinfo=UTC) > before_swap
        ]

    events = wait_until(new_model_events, timeout_s=180, interval_s=1, message="an event from the new model")
    engine.dispose()
    assert all(name == MODEL_320.name for name, _ in events)
    log = (tmp / "agent.log").read_text()
    assert "detector swapped" in log and "restart" not in log.lower().split("detector swapped")[-1][:2000]

    # 2. a corrupt file: central checked the upload, then the stored bytes got damaged -> the node refuses it
    v8 = upload(admin, MODEL_V8)
    stored = Path(central.log).parent / "central" / "models" / f"{v8['sha256']}.onnx"
    original = stored.read_bytes()
    stored.write_bytes(original[:-4096] + bytes(4096))
    refused = install(admin, v8["sha256"], node, watch_s=5)
    assert refused["state"] == "refused", refused
    assert "sha256" in refused["reason"] and f"{MODEL_320.name} keeps running" in refused["reason"]
    assert fleet_model(admin, node) == (new_sha, "online")
    stored.write_bytes(original)

    # 3. a model that loads and passes its trial run but stalls the detector loop: rolled back by the node
    names = dict(ort.InferenceSession(str(MODEL_640)).get_modelmeta().custom_metadata_map)["names"]
    slow = build_stall_model(tmp / "stall.onnx", names, iterations=40)
    # How slow "slow" is depends on the machine and its load: time one call here and call a detector call a
    # stall at a third of that, so every call of this model stalls (a fixed 2 s did not on an idle machine).
    stall_s = round(max(0.3, _time_one_call(slow) / 3), 2)
    stall = upload(admin, slow, "yolo-stall.onnx")
    started = time.monotonic()
    failed = install(admin, stall["sha256"], node, stall_s=stall_s, watch_s=60)
    assert failed["state"] == "failed", failed
    assert failed["reason"].startswith(
        f"RuntimeError: rolled back to {MODEL_320.name}: the detector loop stalled"
    )
    assert time.monotonic() - started < 240
    wait_until(lambda: fleet_model(admin, node) == (new_sha, "online"), timeout_s=30, message="back on 320")
    page = admin.get(f"/fleet/{node}")
    assert "rolled back" in page.text and MODEL_320.name in page.text

    # the technician's view of it: the three updates with their outcome, in the browser
    browser_page = chromium.new_page(viewport={"width": 1366, "height": 900})
    try:
        browser_page.goto(f"{central.url}/login?next=/models")
        browser_page.fill("input[name=username]", "admin")
        browser_page.fill("input[name=password]", ADMIN_PASSWORD)
        browser_page.click("button[type=submit]")
        browser_page.wait_for_url("**/models")
        states = browser_page.locator("table.updates tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.state)"
        )
        assert states == ["failed", "refused", "ok"], states  # newest first
        if SHOTS is not None:
            SHOTS.mkdir(parents=True, exist_ok=True)
            browser_page.screenshot(path=str(SHOTS / "models.png"), full_page=True)
    finally:
        browser_page.close()

"""The officers' workspace in real Chromium against a real central process (embedded MQTT broker, SQLite).

Set up the way an admin does it (accounts over the JSON API, a ward and the camera's placement on the cameras
page), data in the way a node sends it (evidence over HTTP, events over MQTT). Then, in the browser:

* two officers in two browser contexts on one event: the second sees the first one's claim, and a decision
  made on an outdated version gets the 409 page with the reason;
* the queue shows a new event without a reload (live "new events" badge);
* a node publishes a later phase after the decision: the decided facts stay, the page shows the change;
* a case is built and exported in the browser, the download passes ``verify-case``;
* the queue on a 390 px phone: no sideways scrolling, screenshot saved (docs/screenshots with
  ``UI_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from edge_agent.contract import EventObject, NormBox, Phase
from tests.conftest import wait_until
from tests.e2e.test_review_ui import (  # noqa: F401  (fixtures)
    CAMERA_ID,
    NODE_ID,
    UI_TIMEOUT_MS,
    Central,
    _watch_for_problems,
    api_client,
    central,
    chromium,
    make_event,
    publish,
    snapshot_from_clip,
    upload_evidence,
)
from tests.paths import ROOT

pytestmark = pytest.mark.e2e

OFFICERS = {"lan": "green-mango-bicycle-41", "minh": "blue-river-teapot-77"}
PHONE = {"width": 390, "height": 844}
DESK = {"width": 1366, "height": 768}


def _csrf(client: httpx.Client, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def _set_up(central: Central) -> httpx.Client:  # noqa: F811
    """Ward w1 with the demo camera in it, two officers assigned to w1 (passwords already changed)."""
    admin = api_client(central)
    r = admin.post(
        "/wards", data={"ward_id": "w1", "name": "Phường Bến Nghé", "csrf_token": _csrf(admin, "/cameras")}
    )
    assert r.status_code == 303, r.text
    for name, password in OFFICERS.items():
        temp = f"{password}-temporary"
        r = admin.post(
            "/api/v1/users", json={"username": name, "role": "officer", "password": temp, "wards": ["w1"]}
        )
        assert r.status_code == 201, r.text
        own = httpx.Client(base_url=central.url, timeout=10)
        login = own.post("/api/v1/login", json={"username": name, "password": temp})
        assert login.status_code == 200, login.text
        own.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        changed = own.post(
            "/api/v1/account/password", json={"current_password": temp, "new_password": password}
        )
        assert changed.status_code == 204, changed.text
    return admin


def _place_camera(admin: httpx.Client) -> None:
    r = admin.post(
        f"/cameras/{NODE_ID}/{CAMERA_ID}",
        data={
            "name": "Omotesando kerb",
            "ward_id": "w1",
            "location": "Left kerb by the crossing",
            "notes": "Mounted at the pharmacy, owner Mrs. Hoa",
            "csrf_token": _csrf(admin, "/cameras"),
        },
    )
    assert r.status_code == 303, r.text


def _login(page, url: str, name: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(f"{url}/login")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(OFFICERS[name])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{url}/review")


def test_two_officers_live_queue_change_after_decision_and_a_verified_export(
    chromium,  # type: ignore[no-untyped-def]  # noqa: F811
    central: Central,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    shots = Path(os.environ.get("UI_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    url = central.url
    admin = _set_up(central)

    now = datetime.now(UTC).replace(microsecond=0)
    snapshot = upload_evidence(central, snapshot_from_clip(60, "omotesando-01 left-kerb"))
    first = make_event(now - timedelta(minutes=40), 45.0, track_id=21, snapshot=snapshot)
    publish(central, [first])
    wait_until(
        lambda: admin.get(f"/api/v1/events/{first.event_id}").status_code == 200,
        timeout_s=15,
        interval_s=0.1,
        message="first event at central",
    )
    _place_camera(admin)  # its events move into w1 with it

    lan_ctx = chromium.new_context(viewport=DESK, locale="en-GB")
    minh_ctx = chromium.new_context(viewport=DESK, locale="en-GB")
    phone_ctx = chromium.new_context(viewport=PHONE, locale="vi-VN", is_mobile=True, has_touch=True)
    for ctx in (lan_ctx, minh_ctx, phone_ctx):
        ctx.set_default_timeout(UI_TIMEOUT_MS)
    lan, minh, phone = lan_ctx.new_page(), minh_ctx.new_page(), phone_ctx.new_page()
    problems = [_watch_for_problems(lan), _watch_for_problems(minh)]
    try:
        _login(lan, url, "lan")
        _login(minh, url, "minh")
        eid = str(first.event_id)
        expect(lan.locator(f'tr[data-event-id="{eid}"]')).to_contain_text("45 s")  # the key fact: dwell
        lan.screenshot(path=str(shots / "officer-queue.png"), full_page=True)

        # Both open the event; Lan claims it. Minh's page (reloaded) shows the claim, his buttons are off.
        lan.goto(f"{url}/events/{eid}")
        minh.goto(f"{url}/events/{eid}")  # Minh's form now holds version 1
        lan.get_by_role("button", name="Claim").click()
        expect(lan.locator("#claim-box")).to_contain_text("You have claimed this event")
        lan.screenshot(path=str(shots / "officer-claimed.png"))
        stale_tab = minh_ctx.new_page()
        stale_tab.goto(f"{url}/events/{eid}")
        expect(stale_tab.locator(".claimed-other")).to_contain_text("Claimed by lan")
        expect(stale_tab.get_by_role("button", name="Confirm")).to_be_disabled()
        stale_tab.screenshot(path=str(shots / "officer-sees-claim.png"))
        stale_tab.close()

        # Lan confirms with the keyboard (her claim arms the keys).
        lan.wait_for_load_state("load")
        lan.keyboard.press("c")
        expect(lan).to_have_url(f"{url}/review")
        expect(lan.get_by_role("status")).to_contain_text("Confirmed")

        # Minh, on his old page (version 1), still tries to dismiss: 409, with the reason on the page.
        minh.get_by_label("Reason").fill("looks like a delivery")
        minh.get_by_role("button", name="Dismiss").click()
        expect(minh.get_by_role("alert")).to_contain_text("already decided")
        minh.screenshot(path=str(shots / "officer-409.png"))
        detail = admin.get(f"/api/v1/events/{eid}").json()
        assert detail["review_status"] == "confirmed"
        assert [(d["decision"], d["username"]) for d in detail["decisions"]] == [("confirm", "lan")]

        # Live queue: Minh watches the pending queue; a new event arrives; the badge appears, no reload.
        minh.goto(f"{url}/review")
        second = make_event(now - timedelta(minutes=5), 95.0, track_id=22, snapshot=snapshot)
        publish(central, [second])
        badge = minh.locator("#new-events")
        expect(badge).to_be_visible(timeout=20_000)
        expect(badge).to_contain_text("1 new events")
        minh.screenshot(path=str(shots / "queue-new-events-badge.png"))
        badge.click()
        expect(minh.locator(f'tr[data-event-id="{second.event_id}"]')).to_have_count(1)

        # The node publishes a later phase of the decided event: dwell 1 s, a bicycle.
        later = first.model_copy(
            update={
                "phase": Phase.UPDATE,
                "observed_at": first.observed_at + timedelta(seconds=30),
                "measurements": {"dwell_s": 1.0, "displacement_px": 3.5},
                "objects": [
                    EventObject(
                        track_id=21, label="bicycle", score=0.4, box=NormBox(x1=0.1, y1=0.6, x2=0.2, y2=0.9)
                    )
                ],
            }
        )
        publish(central, [later])
        wait_until(
            lambda: admin.get(f"/api/v1/events/{eid}").json()["changed_after_decision"],
            timeout_s=15,
            interval_s=0.1,
            message="later phase kept as history",
        )
        after = admin.get(f"/api/v1/events/{eid}").json()
        assert after["measurements"]["dwell_s"] == 45.0 and after["objects"][0]["label"] == "car"
        lan.goto(f"{url}/events/{eid}")
        change = lan.locator("#changed-after-decision")
        expect(change).to_contain_text("Changed after the decision")
        expect(change.locator('tr[data-field="dwell_s"]')).to_contain_text("45 s")
        expect(change.locator('tr[data-field="dwell_s"]')).to_contain_text("1 s")
        expect(change.locator('tr[data-field="objects"]')).to_contain_text("Bicycle")
        lan.screenshot(path=str(shots / "event-changed-after-decision.png"), full_page=True)

        # Lan builds a case in the browser, adds the event, exports it and the download verifies.
        lan.goto(f"{url}/cases")
        lan.get_by_label("Title").fill("Xe đỗ trên vỉa hè Omotesando")
        lan.get_by_label("Description").fill("Repeated parking on the kerb, March")
        lan.get_by_role("button", name="Create").click()
        expect(lan.get_by_role("heading", level=1)).to_contain_text("Xe đỗ trên vỉa hè")
        lan.goto(f"{url}/events/{eid}")
        lan.get_by_role("button", name="Add to case").click()
        expect(lan.locator(f'tr[data-event-id="{eid}"]')).to_have_count(1)
        lan.screenshot(path=str(shots / "case.png"), full_page=True)
        with lan.expect_download() as download_info:
            lan.get_by_role("link", name="Export (signed zip)").click()
        download = download_info.value
        zip_path = tmp_path / download.suggested_filename
        download.save_as(zip_path)
        key = tmp_path / "central.pem"
        key.write_text(admin.get("/api/v1/signing-key").text)
        verified = subprocess.run(
            [sys.executable, "-m", "central.cli", "verify-case", str(zip_path), "--public-key", str(key)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert verified.returncode == 0 and verified.stdout.startswith("OK"), (
            verified.stdout + verified.stderr
        )

        # Search: all statuses, one type and class, in a local-time range; the decided event is found.
        lan.goto(f"{url}/review?status=all&type=illegal_stopping&label=car")
        expect(lan.locator(f'tr[data-event-id="{eid}"]')).to_contain_text("Confirmed")
        lan.screenshot(path=str(shots / "queue-search.png"), full_page=True)

        # The phone: the queue in Vietnamese at 390 px, no sideways scrolling.
        _login(phone, url, "lan")
        phone.goto(f"{url}/review?status=all&lang=vi")
        expect(phone.get_by_role("heading", level=1)).to_contain_text("Hàng chờ xem xét")
        widths = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"page wider than the phone: {widths}"
        row = phone.locator(f'tr[data-event-id="{second.event_id}"]')
        box = row.bounding_box()
        assert box is not None and box["width"] <= PHONE["width"], box
        phone.screenshot(path=str(shots / "queue-phone-vi.png"), full_page=True)
        phone.goto(f"{url}/events/{eid}")
        widths = phone.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"event page wider than the phone: {widths}"
        phone.screenshot(path=str(shots / "event-phone-vi.png"), full_page=True)
    except Exception:
        for name, page in (("lan", lan), ("minh", minh), ("phone", phone)):
            page.screenshot(path=str(shots / f"failure-{name}.png"), full_page=True)
        raise
    finally:
        for ctx in (lan_ctx, minh_ctx, phone_ctx):
            ctx.close()
    assert problems == [[], []], problems

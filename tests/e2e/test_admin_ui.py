"""An administrator's day in a real browser (Chromium driven by Playwright) against central as a real process:
log in, register a ward, add an officer to it with a temporary password, see the officer in the list; the
officer logs in, is made to choose their own password (a weak one is refused with the reason), and lands in
the queue; the admin reads both on the audit page, in local time. Screenshots go to docs/screenshots/ (the
README and docs/admin.md show them) and the phone-width pages are checked for horizontal overflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.test_review_ui import ADMIN_PASSWORD, UI_TIMEOUT_MS, VIEWPORT, Central, central, chromium
from tests.paths import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

__all__ = ["central", "chromium"]  # fixtures used below
SCREENSHOTS = ROOT / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
TEMPORARY = "river-lantern-maple-83"
OWN = "quiet-harbor-copper-lamp"


def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def no_horizontal_overflow(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width}px wide on a {PHONE['width']}px phone"


def log_in(page: Page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("main form[action='/login'] button[type=submit]")


def test_admin_adds_an_officer_to_a_ward(chromium: Browser, central: Central) -> None:
    admin_context = chromium.new_context(viewport=VIEWPORT, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
    admin = admin_context.new_page()
    admin.set_default_timeout(UI_TIMEOUT_MS)
    log_in(admin, central.url, "admin", ADMIN_PASSWORD)
    admin.wait_for_url("**/review**")

    # A ward to work in (the ward/camera registry page).
    admin.goto(f"{central.url}/cameras")
    admin.fill("#new-ward input[name=ward_id]", "p-ben-nghe")
    admin.fill("#new-ward input[name=name]", "Phường Bến Nghé")
    admin.click("#new-ward button[type=submit]")
    admin.wait_for_url("**/cameras")

    # The officer: username, role, a temporary password, the ward.
    admin.click("nav >> text=Accounts")
    admin.wait_for_url("**/admin/users")
    form = admin.locator("#create-user")
    form.locator("input[name=username]").fill("lan")
    form.locator("select[name=role]").select_option("officer")
    form.locator("input[name=password]").fill("aaaaaaaaaaaa")
    form.locator("input[name=wards][value=p-ben-nghe]").check()
    form.locator("button[type=submit]").click()
    error = admin.locator("#admin-error")
    assert (
        "too easy to guess" in error.inner_text()
    )  # refused, with the reason; the form keeps what was typed
    assert form.locator("input[name=username]").input_value() == "lan"
    assert form.locator("input[name=wards][value=p-ben-nghe]").is_checked()
    form.locator("input[name=password]").fill(TEMPORARY)
    form.locator("button[type=submit]").click()
    admin.wait_for_url("**/admin/users")
    assert "Account lan created" in admin.locator("#admin-flash").inner_text()
    row = admin.locator("tr[data-username=lan]")
    assert row.locator(".ward-list").inner_text() == "p-ben-nghe"
    assert "must change password" in row.inner_text()
    shot(admin, "admin-add-officer.png")

    # The officer's first login: a new password of their own, then the queue.
    officer_context = chromium.new_context(viewport=VIEWPORT)
    officer = officer_context.new_page()
    officer.set_default_timeout(UI_TIMEOUT_MS)
    log_in(officer, central.url, "lan", TEMPORARY)
    officer.wait_for_url("**/account/password")
    officer.fill("input[name=current_password]", TEMPORARY)
    officer.fill("input[name=new_password]", "1234567890qwerty")
    officer.fill("input[name=repeat_password]", "1234567890qwerty")
    officer.click("main form[action='/account/password'] button[type=submit]")
    assert "too easy to guess" in officer.locator("#password-error").inner_text()
    officer.fill("input[name=current_password]", TEMPORARY)
    officer.fill("input[name=new_password]", OWN)
    officer.fill("input[name=repeat_password]", OWN)
    officer.click("main form[action='/account/password'] button[type=submit]")
    assert officer.locator("#password-changed").is_visible()
    officer.goto(f"{central.url}/review")
    assert officer.url.endswith("/review")
    assert officer.locator(".topbar .who").inner_text().startswith("lan")

    # The admin reads it on the audit page, in local time.
    admin.goto(f"{central.url}/audit")
    audit = admin.locator("table.audit")
    for action in ("user.create", "user.password_change", "login"):
        assert audit.locator(f"code:text-is('{action}')").count() >= 1, action
    assert "Asia/Ho_Chi_Minh" in admin.locator(".page-head").inner_text()
    shot(admin, "admin-audit.png")

    # Phone width: the account and audit pages fit without sideways scrolling.
    phone_context = chromium.new_context(viewport=PHONE, storage_state=admin_context.storage_state())
    phone = phone_context.new_page()
    for path in ("/audit", "/account/sessions", "/admin/users"):
        phone.goto(f"{central.url}{path}")
        no_horizontal_overflow(phone)
    shot(phone, "admin-users-phone.png")  # the last one: the accounts page
    for context in (phone_context, officer_context, admin_context):
        context.close()

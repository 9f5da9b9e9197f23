"""Queue and search over 10,000 seeded events (SQLite and PostgreSQL): keyset pages reach every event exactly
once in order, filters combine, the local-time range is read in Asia/Ho_Chi_Minh, incidents are grouped and
each type shows its key fact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from central.db.session import Database
from edge_agent.contract import EventType
from tests.central.factories import T0, make_event
from tests.central.workspace import add_user, add_wards, client_as, event_rows, ingest, seed_events

N = 10_000


@pytest.fixture
def seeded(admin: TestClient, db: Database) -> list[dict]:
    add_wards(db)
    rows = event_rows(N, start=T0 - timedelta(days=5))
    seed_events(db, rows)
    add_user(db, "lan", "officer", ("w1",))
    return rows


def _walk(c: TestClient, params: dict[str, str | int]) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = c.get("/api/v1/events", params=query).json()
        ids += [e["event_id"] for e in body["events"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages


def test_keyset_pages_reach_every_pending_event_of_the_ward_once(
    admin: TestClient, seeded: list[dict]
) -> None:
    officer = client_as(admin, "lan")
    expected = [
        r["event_id"]
        for r in sorted(seeded, key=lambda r: (r["started_at"], r["event_id"]))
        if r["ward_id"] == "w1" and r["review_status"] == "pending"
    ]
    ids, pages = _walk(officer, {"status": "pending", "limit": 500})
    assert ids == expected  # oldest pending first, no gaps, no repeats, no other ward
    assert pages == len(expected) // 500 + 1
    newest, _ = _walk(officer, {"status": "pending", "limit": 500, "order": "newest"})
    assert newest == expected[::-1]


def test_filters_combine_over_the_seeded_events(admin: TestClient, seeded: list[dict]) -> None:
    officer = client_as(admin, "lan")
    since = T0 - timedelta(days=4)
    until = T0 - timedelta(days=3)
    expected = {
        r["event_id"]
        for r in seeded
        if r["ward_id"] == "w1"
        and r["type"] == "speeding"
        and r["labels"] == ",car,"
        and r["zone_id"] == "zone-3"
        and since <= r["started_at"] < until
    }
    params = {
        "status": "all",
        "type": "speeding",
        "label": "car",
        "zone": "zone-3",
        "camera": "cam-1",
        "since": since.isoformat(),
        "until": until.isoformat(),
        "limit": 500,
    }
    ids, _ = _walk(officer, params)
    assert expected and set(ids) == expected and len(ids) == len(expected)
    # the page form takes local time (Asia/Ho_Chi_Minh, UTC+7) and shows the same set
    local = {
        "since": (since + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M"),
        "until": (until + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M"),
    }
    page_params = {k: v for k, v in params.items() if k not in ("since", "until", "limit")}
    page = officer.get("/review", params={**page_params, **local}).text
    shown = set(_ids(page))
    assert shown and shown <= expected
    assert officer.get("/api/v1/events", params={"status": "all", "ward": "w2"}).json()["events"] == []


def test_review_page_pages_with_a_next_link(admin: TestClient, seeded: list[dict]) -> None:
    officer = client_as(admin, "lan")
    first = officer.get("/review").text
    assert 'id="next-page"' in first
    link = first.split('id="next-page" href="')[1].split('"')[0].replace("&amp;", "&")
    second = officer.get(link).text
    assert second.count("data-event-id=") > 0
    assert not (set(_ids(first)) & set(_ids(second)))


def _ids(html: str) -> list[str]:
    return [part.split('"')[0] for part in html.split('data-event-id="')[1:]]


def test_near_duplicates_are_grouped_and_key_facts_shown(admin: TestClient, db: Database) -> None:
    add_wards(db)
    for k in range(4):  # one parked car, re-raised every 2 minutes
        at = T0 + timedelta(minutes=2 * k)
        ingest(admin, make_event(started_at=at, observed_at=at, dwell_s=120.0 + k))
    speeding = make_event(
        event_type=EventType.SPEEDING,
        zone_id="lane-1",
        measurements={"speed_kmh": 71.4, "limit_kmh": 50.0},
    )
    ingest(admin, speeding)
    page = admin.get("/review").text
    assert page.count("data-event-id=") == 2
    assert 'data-count="4"' in page and "4 events" in page
    assert "71.4 km/h / limit 50" in page
    assert "2 m 00 s" in page  # dwell of the group's head
    vi = admin.get("/review?lang=vi").text
    assert "71,4 km/h / giới hạn 50" in vi


def test_times_are_local_with_utc_on_hover(admin: TestClient, db: Database) -> None:
    add_wards(db)
    at = datetime(2025, 3, 1, 8, 0, 5, tzinfo=UTC)
    event = make_event(started_at=at, observed_at=at)
    ingest(admin, event)
    page = admin.get(f"/events/{event.event_id}").text
    assert 'title="2025-03-01 08:00:05 UTC">01/03/2025 15:00:05</time>' in page

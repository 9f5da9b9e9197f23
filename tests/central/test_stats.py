"""Statistics through HTTP (SQLite and PostgreSQL): counts, confirmed/dismissed rates and median time to
decision per ward, camera, rule type and local day, scoped to the user's wards, with SVG charts in vi/en."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from central import stats
from central.db.session import Database
from central.scope import Scope
from tests.central.conftest import FakeClock
from tests.central.factories import T0
from tests.central.workspace import add_user, add_wards, client_as, event_rows, seed_events


def test_numbers_match_the_seeded_events(admin: TestClient, db: Database, clock: FakeClock) -> None:
    add_wards(db)
    rows = event_rows(600, start=T0 - timedelta(days=3))
    seed_events(db, rows)
    add_user(db, "lan", "officer", ("w1",))
    mine = [r for r in rows if r["ward_id"] == "w1"]
    confirmed = sum(r["review_status"] == "confirmed" for r in mine)
    dismissed = sum(r["review_status"] == "dismissed" for r in mine)
    with db.session() as s:
        result = stats.compute(
            s,
            Scope(False, frozenset({"w1"})),
            since=T0 - timedelta(days=7),
            until=clock.now,
            tz="Asia/Ho_Chi_Minh",
        )
    assert result.total.events == len(mine)
    assert (result.total.confirmed, result.total.dismissed) == (confirmed, dismissed)
    assert result.total.confirmed_rate == confirmed / (confirmed + dismissed)
    # decided_at - received_at is 5 minutes for every decided seeded event (received_at = started_at)
    assert result.total.median_decision_s == 300.0
    assert set(result.by_ward) == {"w1"} and set(result.by_camera) == {"node-1/cam-1"}
    assert sum(b.events for b in result.by_day.values()) == len(mine)
    assert sum(b.events for b in result.by_type.values()) == len(mine)

    page = client_as(admin, "lan").get("/stats", params={"days": 7})
    assert page.status_code == 200
    assert 'id="chart-days"' in page.text and "<rect" in page.text and 'id="chart-types"' in page.text
    assert "node-2/cam-2" not in page.text and "node-1/cam-1" in page.text
    assert "5 m 00 s" in page.text  # the median, formatted
    vi = client_as(admin, "lan").get("/stats", params={"days": 7, "lang": "vi"}).text
    assert "Thời gian quyết định trung vị" in vi and "Tỷ lệ bác bỏ" in vi

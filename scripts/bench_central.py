"""Officer-facing latency of central over a large PostgreSQL database: queue page, search, case export.

Seeds ``--events`` events (default 1,000,000) across ``--wards`` wards (default 20, two cameras each) into a
throwaway PostgreSQL (tests/pg.py starts one; or ``--database-url``), with ``COPY`` for speed, then drives the
real app in-process (``create_app`` + Starlette's TestClient: routing, auth, scoping, SQL, Jinja rendering,
zip building; no network hop) as an officer of one ward:

* ``queue``: ``GET /review`` (pending, oldest first, 50 rows rendered), first page and pages reached through
  the "next" cursor;
* ``search``: ``GET /api/v1/events`` with type + class + zone + time-range filters, and a camera + status
  search, newest first;
* ``export``: ``GET /cases/{id}/export.zip`` of a case with ``--case-events`` events, each with a real JPEG.

p50/p95 over ``--repeat`` requests each. The machine is shared: the 1-minute load average is recorded before
and after. Results go to stdout and, unless ``--no-write``, to the ``<!-- bench:central -->`` section of
docs/benchmarks.md. Target (issue 9): queue and search p95 <= 200 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TYPES = [
    "illegal_stopping",
    "wrong_way",
    "red_light",
    "sidewalk_vehicle",
    "speeding",
    "illegal_turn",
    "motorbike_overload",
    "encroachment",
    "gathering",
]
LABELS = ["car", "motorcycle", "truck", "person", "bus", "bicycle"]
STATUSES = ["pending", "confirmed", "dismissed"]
PASSWORD = "green-mango-bicycle-41"
COLUMNS = [
    "event_id",
    "node_id",
    "camera_id",
    "zone_id",
    "rule_id",
    "type",
    "phase",
    "started_at",
    "observed_at",
    "ended_at",
    "objects",
    "measurements",
    "evidence",
    "model_name",
    "model_sha256",
    "config_version",
    "received_at",
    "updated_at",
    "review_status",
    "ward_id",
    "version",
    "escalated",
    "decided_at",
    "labels",
    "changed_after_decision",
]


@contextmanager
def _postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests import pg

    bindir = pg.find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL server binaries (apt-get install postgresql) and no --database-url")
    server = pg.start_server(bindir)
    try:
        yield server.url
    finally:
        pg.stop_server(server)


def _load() -> float:
    return os.getloadavg()[0]


def seed(url: str, events: int, wards: int, *, start: datetime, seed_value: int = 9) -> float:
    """COPY ``events`` rows; returns seconds taken (including ANALYZE)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from central.db import migrate

    migrate.upgrade(url)
    u = make_url(url)
    conninfo = f"host={u.host} port={u.port} user={u.username} dbname={u.database}"
    if u.password:
        conninfo += f" password={u.password}"
    rng = random.Random(seed_value)
    began = time.monotonic()
    with psycopg.connect(conninfo, autocommit=False) as conn, conn.cursor() as cur:
        now = datetime.now(UTC)
        for w in range(wards):
            cur.execute(
                "INSERT INTO wards (ward_id, name, created_at) VALUES (%s, %s, %s)",
                (f"w{w:02d}", f"Ward {w}", now),
            )
            for c in range(2):
                cur.execute(
                    "INSERT INTO cameras (node_id, camera_id, name, ward_id, location, notes, updated_at) "
                    "VALUES (%s, %s, %s, %s, '', '', %s)",
                    (f"node-{w:02d}", f"cam-{c}", f"cam {w}/{c}", f"w{w:02d}", now),
                )
        span_s = 365 * 24 * 3600
        step = span_s / events
        with cur.copy(f"COPY events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for i in range(events):
                w = rng.randrange(wards)
                at = start + timedelta(seconds=i * step)
                label = LABELS[rng.randrange(len(LABELS))]
                # older events mostly decided, the last weeks mostly pending (a realistic backlog)
                status = (
                    "pending"
                    if (i > events * 0.97 or rng.random() < 0.05)
                    else STATUSES[1 + rng.randrange(2)]
                )
                decided = at + timedelta(minutes=rng.randrange(2, 240)) if status != "pending" else None
                copy.write_row(
                    (
                        str(uuid.UUID(int=rng.getrandbits(128))),
                        f"node-{w:02d}",
                        f"cam-{rng.randrange(2)}",
                        f"zone-{rng.randrange(6)}",
                        "rule-1",
                        TYPES[rng.randrange(len(TYPES))],
                        "end",
                        at,
                        at,
                        at,
                        json.dumps(
                            [{"track_id": i, "label": label, "score": 0.8, "box": [0.1, 0.1, 0.3, 0.4]}]
                        ),
                        json.dumps(
                            {"dwell_s": 30.0 + i % 600, "speed_kmh": 30.0 + i % 50, "limit_kmh": 50.0}
                        ),
                        "[]",
                        "yolo11n.onnx",
                        "a" * 64,
                        1,
                        at,
                        at,
                        status,
                        f"w{w:02d}",
                        1,
                        rng.random() < 0.01 and status == "pending",
                        decided,
                        f",{label},",
                        False,
                    )
                )
        conn.commit()
        cur.execute("ANALYZE events")
        conn.commit()
    return time.monotonic() - began


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "n": len(ordered),
    }


def _timed(call: Callable[[], Any], repeat: int) -> dict[str, float]:
    call()  # warm up (plans, template compile)
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    return _percentiles(samples)


def measure(url: str, *, repeat: int, case_events: int, data_dir: Path) -> dict[str, Any]:
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from central import users
    from central.app import create_app
    from central.db.models import EventRow
    from central.db.session import Database
    from central.settings import Settings

    settings = Settings(
        database_url=url,
        data_dir=data_dir,
        admin_password="bench-admin-passphrase-9",
        node_token="bench-node-token-0123456789",
        secret_key="s" * 48,
        mqtt_enabled=False,
    )
    db = Database(url)
    app = create_app(settings)
    results: dict[str, Any] = {}
    with TestClient(app) as client:
        with db.session() as session:
            users.create_user(
                session,
                username="officer07",
                role="officer",
                password=PASSWORD,
                wards=["w07"],
                actor=None,
                now=datetime.now(UTC),
                must_change_password=False,
            )
        login = client.post("/api/v1/login", json={"username": "officer07", "password": PASSWORD})
        assert login.status_code == 200, login.text
        client.headers["X-CSRF-Token"] = login.json()["csrf_token"]

        def get(path: str, **params: Any) -> Any:
            r = client.get(path, params=params)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            return r

        results["queue_first_page"] = _timed(lambda: get("/review"), repeat)
        # pages reached by following "next" (keyset: as cheap as the first)
        cursors: list[str] = []
        page = get("/review").text
        for _ in range(repeat):
            m = re.search(r'id="next-page" href="([^"]+)"', page)
            if not m:
                break
            link = m.group(1).replace("&amp;", "&")
            cursors.append(link)
            page = get(link).text
        if cursors:
            results["queue_next_pages"] = _percentiles(
                [_one(lambda link=link: get(link)) for link in cursors]
            )
        results["queue_all_newest"] = _timed(lambda: get("/review", status="all", order="newest"), repeat)
        until = datetime.now(UTC)
        since = until - timedelta(days=60)
        results["search_filters"] = _timed(
            lambda: get(
                "/api/v1/events",
                status="all",
                type="speeding",
                label="car",
                zone="zone-3",
                since=since.isoformat(),
                until=until.isoformat(),
                order="newest",
            ),
            repeat,
        )
        results["search_camera_status"] = _timed(
            lambda: get("/api/v1/events", status="confirmed", camera="cam-1", order="newest", limit=100),
            repeat,
        )
        results["search_page_filters"] = _timed(
            lambda: get("/review", status="all", type="illegal_stopping", label="motorcycle", order="newest"),
            repeat,
        )

        # a case with real JPEG evidence, exported repeatedly
        shas = []
        for k in range(case_events):
            data = b"\xff\xd8\xff\xe0" + os.urandom(60_000) + k.to_bytes(4, "big") + b"\xff\xd9"
            sha = hashlib.sha256(data).hexdigest()
            r = client.put(
                f"/api/v1/evidence/{sha}",
                content=data,
                headers={"Authorization": "Bearer bench-node-token-0123456789", "Content-Type": "image/jpeg"},
            )
            assert r.status_code in (200, 201), r.text
            shas.append(sha)
        with db.session() as session:
            rows = list(
                session.scalars(
                    select(EventRow)
                    .where(EventRow.ward_id == "w07")
                    .order_by(EventRow.started_at.desc())
                    .limit(case_events)
                )
            )
            from central.db.wards import EventEvidenceRow

            for row, sha in zip(rows, shas, strict=False):
                row.evidence = [
                    {
                        "kind": "snapshot_annotated",
                        "sha256": sha,
                        "content_type": "image/jpeg",
                        "size": 60_010,
                    }
                ]
                session.add(EventEvidenceRow(event_id=row.event_id, sha256=sha))
            ids = [r.event_id for r in rows]
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/cases").text).group(1)  # type: ignore[union-attr]
        made = client.post(
            "/cases", data={"title": "bench", "ward_id": "w07", "csrf_token": token}, follow_redirects=False
        )
        case_id = made.headers["location"].rsplit("/", 1)[1]
        for eid in ids:
            client.post(
                "/cases/add-event",
                data={"case_id": case_id, "event_id": eid, "csrf_token": token},
                follow_redirects=False,
            )
        size = len(get(f"/cases/{case_id}/export.zip").content)
        results["case_export"] = {
            **_timed(lambda: get(f"/cases/{case_id}/export.zip"), max(5, repeat // 4)),
            "zip_bytes": size,
            "events": len(ids),
        }
        results["pending_in_ward"] = int(
            client.get("/review/updates", params={"after": "2000-01-01T00:00:00+00:00"}).json()["new"]
        )
    db.dispose()
    return results


def _one(call: Callable[[], Any]) -> float:
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


def markdown(meta: dict[str, Any], results: dict[str, Any]) -> str:
    lines = [
        "<!-- bench:central -->",
        "### Central: queue, search and case export (scripts/bench_central.py)",
        "",
        f"{meta['events']:,} events in PostgreSQL across {meta['wards']} wards (seeded with COPY in "
        f"{meta['seed_s']:.0f} s); measured as an officer of one ward through the real app in-process "
        f"(TestClient: auth, scoping, SQL, Jinja/zip; no network hop). {meta['machine']}; 1-minute load "
        f"average {meta['load_before']:.1f} before, {meta['load_after']:.1f} after (shared machine). "
        f"Run {meta['when']}.",
        "",
        "| request | p50 ms | p95 ms | n | target |",
        "|---|---|---|---|---|",
    ]
    targets = {"queue": 200.0, "search": 200.0}
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        target = next((v for k, v in targets.items() if name.startswith(k)), None)
        verdict = (
            ""
            if target is None
            else ("p95 ≤ 200 ms: met" if r["p95_ms"] <= target else "p95 ≤ 200 ms: NOT met")
        )
        extra = f" ({r['events']} events, {r['zip_bytes'] / 1e6:.1f} MB zip)" if "zip_bytes" in r else ""
        lines.append(f"| {name}{extra} | {r['p50_ms']} | {r['p95_ms']} | {r['n']} | {verdict} |")
    lines += [
        "",
        f"Pending events in the officer's ward: {results.get('pending_in_ward')}.",
        "<!-- /bench:central -->",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--wards", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--case-events", type=int, default=50)
    parser.add_argument(
        "--database-url", default=None, help="an existing, empty throwaway PostgreSQL database"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="the database at --database-url is already seeded: only measure"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    meta: dict[str, Any] = {
        "events": args.events,
        "wards": args.wards,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": _load(),
    }
    with _postgres(args.database_url) as url, tempfile.TemporaryDirectory() as tmp:
        start = datetime.now(UTC) - timedelta(days=365)
        if args.reuse:
            meta["seed_s"] = float("nan")
        else:
            print(f"seeding {args.events:,} events ...", file=sys.stderr, flush=True)
            meta["seed_s"] = seed(url, args.events, args.wards, start=start)
        print(f"seeded in {meta['seed_s']:.0f} s; measuring ...", file=sys.stderr, flush=True)
        results = measure(url, repeat=args.repeat, case_events=args.case_events, data_dir=Path(tmp))
    meta["load_after"] = _load()
    text = markdown(meta, results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks.md"
        current = doc.read_text() if doc.exists() else ""
        pattern = re.compile(r"<!-- bench:central -->.*?<!-- /bench:central -->", re.S)
        current = (
            pattern.sub(text, current) if pattern.search(current) else current.rstrip() + "\n\n" + text + "\n"
        )
        doc.write_text(current)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Ingest benchmark: simulated nodes publish real-shaped events through Mosquitto into durable PostgreSQL.

    .venv/bin/python scripts/bench_ingest.py --nodes 200 --cameras 1100 --events 20000 --workers 1 2 4

For each worker count: a fresh throwaway PostgreSQL cluster (``tests/pg.py``; fsync and synchronous_commit on,
the defaults) migrated and with the nodes enrolled, a Mosquitto with the production settings of
docs/delivery.md, W central ingest *processes* sharing ``$share/central/...`` (each one ``MqttSubscriber`` +
``Ingestor`` with enrollment checks and end-to-end acks, exactly what ``central.cli`` runs), and publisher
processes that spread the simulated nodes (one MQTT client each, QoS 1, its own credentials-free client id)
and publish events at ``--rate`` (0: as fast as they go). Each event is an ``illegal_stopping`` start with two
objects, an annotated and a clean snapshot reference and a clip reference (~1 KB JSON, like the agent's).

Measured: sustained events/s (first publish to last row visible), publish -> visible-in-the-officer-queue
latency p50/p95 (a poller reads committed rows every 50 ms; ``started_at`` carries the publish time), and loss
and duplicates by id. Prints one JSON object per worker count and a summary; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREFIX = "sw/v1"
SENTINEL = datetime(2000, 1, 1, tzinfo=UTC)
SENTINEL_JSON = b'"2000-01-01T00:00:00Z"'


def _stamp(payload: bytes) -> bytes:
    """The event with started_at/observed_at = now (the publish time the latency is measured from)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z").encode()
    return payload.replace(SENTINEL_JSON, b'"' + now + b'"')


def _event_json(node: str, camera: str, seq: int) -> bytes:
    from edge_agent.contract import Event, uuid7

    now = SENTINEL  # replaced by the publish time when the bytes go out
    sha = uuid.uuid4().hex * 2
    return Event.model_validate(
        {
            "event_id": uuid7(),
            "node_id": node,
            "camera_id": camera,
            "zone_id": "kerb-north",
            "rule_id": "no-stopping-07",
            "type": "illegal_stopping",
            "phase": "start",
            "started_at": now,
            "observed_at": now,
            "objects": [
                {
                    "track_id": 17,
                    "label": "car",
                    "score": 0.91,
                    "box": {"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.4},
                },
                {
                    "track_id": 18,
                    "label": "motorcycle",
                    "score": 0.84,
                    "box": {"x1": 0.5, "y1": 0.5, "x2": 0.6, "y2": 0.7},
                },
            ],
            "measurements": {"seq": float(seq), "dwell_s": 64.0},
            "evidence": [
                {"kind": "snapshot_annotated", "sha256": sha, "content_type": "image/jpeg", "size": 182_331},
                {
                    "kind": "snapshot",
                    "sha256": sha[::-1],
                    "content_type": "image/jpeg",
                    "size": 175_002,
                },
                {"kind": "clip", "sha256": sha[1:] + "0", "content_type": "video/mp4", "size": 2_113_220},
            ],
            "model": {"name": "yolo11n.onnx", "sha256": "a" * 64},
            "config_version": 3,
        }
    ).to_json()


def _publisher(
    port: int, nodes: list[str], cameras: dict[str, list[str]], first: int, count: int, rate: float, q: Any
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    clients = {}
    for node in nodes:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"node-{node}", clean_session=False)
        c.max_inflight_messages_set(100)
        c.connect("127.0.0.1", port, keepalive=60)
        c.loop_start()
        clients[node] = c
    payloads = []  # built before the clock starts: the benchmark measures delivery, not JSON encoding
    for i in range(count):
        node = nodes[i % len(nodes)]
        cams = cameras[node]
        payloads.append((node, _event_json(node, cams[i % len(cams)], first + i)))
    q.put(("ready", len(nodes)))
    start = time.time()
    infos = []
    for n, (node, payload) in enumerate(payloads):
        if rate > 0:
            due = start + n / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        infos.append(clients[node].publish(f"{PREFIX}/nodes/{node}/events", _stamp(payload), qos=1))
    for info in infos:
        info.wait_for_publish(timeout=120)
    q.put(("done", time.time() - start, sum(1 for i in infos if i.is_published())))
    for c in clients.values():
        c.disconnect()
        c.loop_stop()


def _worker(db_url: str, port: int, index: int, stop: Any) -> None:
    import logging

    from central.db.session import Database
    from central.messaging.ingest import Ingestor
    from central.messaging.subscriber import MqttSubscriber
    from edge_agent.contract import Topics

    logging.basicConfig(level=logging.WARNING)
    db = Database(db_url)
    topics = Topics(PREFIX)
    ingestor = Ingestor(db, topics, require_enrollment=True)
    sub = MqttSubscriber(
        ingestor,
        topics,
        host="127.0.0.1",
        port=port,
        client_id=f"central-bench-{index}",
        shared_group="central",
        batch_max=500,
        batch_wait_s=0.02,
    )
    sub.start()
    stop.wait()
    sub.stop()
    db.dispose()


def _mosquitto(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    conf = tmp / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {tmp}/",
        "autosave_interval 30",
        "max_queued_messages 0",
        "max_inflight_messages 1000",
        f"log_dest file {tmp / 'mosquitto.log'}",
    ]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def _durable_launch(bindir: Path, root: Path, run_as: dict[str, Any]) -> Any:
    """``tests/pg.py``'s server with PostgreSQL's durable defaults (fsync, synchronous_commit, full pages)."""
    from tests import pg

    port = pg._free_port()
    command = [
        str(bindir / "postgres"),
        "-D",
        str(root / "data"),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={root}",
        "-c",
        "max_connections=200",
    ]
    with open(root / "postgres.log", "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=root, **run_as
        )
    return pg.PostgresServer(root, port, bindir, process, run_as)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    from central.db import migrate
    from central.db.models import NodeRow
    from central.db.session import Database
    from tests import pg

    bindir = pg.find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg._launch = _durable_launch  # the test cluster turns fsync off; a benchmark of durable ingest must not
    server = pg.start_server(bindir)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    port = _free_port()
    broker = _mosquitto(tmp, port)
    procs: list[mp.Process] = []
    stop = mp.Event()
    try:
        url = server.url
        migrate.upgrade(url)
        nodes = [f"node-{i:03d}" for i in range(args.nodes)]
        cameras = {
            n: [f"{n}-cam-{c}" for c in range(args.cameras // args.nodes + (i < args.cameras % args.nodes))]
            for i, n in enumerate(nodes)
        }
        db = Database(url)
        with db.session() as s:
            t0 = datetime.now(UTC)
            for n in nodes:
                s.add(NodeRow(node_id=n, name=n, mqtt_username=n, enrolled_at=t0, enrolled_by="bench"))
        db.dispose()
        engine = create_engine(url)
        with engine.connect() as c:
            fsync = c.execute(text("SHOW fsync")).scalar()
            sync_commit = c.execute(text("SHOW synchronous_commit")).scalar()
        for i in range(workers):
            p = mp.Process(target=_worker, args=(url, port, i, stop), daemon=True)
            p.start()
            procs.append(p)
        time.sleep(3.0)  # workers connected and subscribed
        q: Any = mp.Queue()
        per = [nodes[i :: args.publishers] for i in range(args.publishers)]
        counts = [
            args.events // args.publishers + (i < args.events % args.publishers)
            for i in range(args.publishers)
        ]
        pubs = [
            mp.Process(
                target=_publisher,
                args=(port, per[i], cameras, sum(counts[:i]), counts[i], args.rate / args.publishers, q),
            )
            for i in range(args.publishers)
        ]
        for p in pubs:
            p.start()
        for _ in pubs:
            q.get(timeout=600)  # ready
        first_publish = time.time()
        seen: dict[str, float] = {}
        lat: list[float] = []
        published_ok = 0
        done = 0
        deadline = time.time() + args.timeout
        last_len = -1
        stall_since = time.time()
        with engine.connect() as c:
            while time.time() < deadline:
                rows = c.execute(
                    text("SELECT event_id, started_at FROM events WHERE started_at >= :since"),
                    {"since": datetime.now(UTC) - timedelta(seconds=args.window_s)},
                ).fetchall()
                c.commit()
                now = time.time()
                for eid, started in rows:
                    if eid not in seen:
                        seen[eid] = now
                        lat.append(now - started.timestamp())
                while not q.empty():
                    msg = q.get()
                    if msg[0] == "done":
                        done += 1
                        published_ok += msg[2]
                total_rows = c.execute(text("SELECT COUNT(*) FROM events")).scalar() or 0
                c.commit()
                if total_rows >= args.events and done == len(pubs):
                    break
                if total_rows != last_len:
                    last_len, stall_since = total_rows, now
                elif now - stall_since > 30:
                    break
                time.sleep(0.05)
            last_visible = max(seen.values()) if seen else time.time()
            total_rows = int(c.execute(text("SELECT COUNT(*) FROM events")).scalar() or 0)
            distinct = int(c.execute(text("SELECT COUNT(DISTINCT event_id) FROM events")).scalar() or 0)
            seqs = {
                int(v)
                for (v,) in c.execute(text("SELECT (measurements->>'seq')::float FROM events")).fetchall()
            }
            dead = int(c.execute(text("SELECT COUNT(*) FROM dead_letters")).scalar() or 0)
        engine.dispose()
        elapsed = last_visible - first_publish
        lat.sort()

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None

        return {
            "workers": workers,
            "nodes": args.nodes,
            "cameras": args.cameras,
            "events": args.events,
            "rate_target": args.rate,
            "published_acked_by_broker": published_ok,
            "rows": total_rows,
            "distinct": distinct,
            "lost": args.events - len(seqs & set(range(args.events))),
            "duplicates": total_rows - distinct,
            "dead_letters": dead,
            "seconds": round(elapsed, 2),
            "events_per_s": round(total_rows / elapsed, 1) if elapsed > 0 else None,
            "latency_p50_s": pct(0.50),
            "latency_p95_s": pct(0.95),
            "latency_max_s": pct(1.0),
            "latency_samples": len(lat),
            "postgres": {"fsync": fsync, "synchronous_commit": sync_commit},
            "load_after": os.getloadavg(),
            "cpus": os.cpu_count(),
        }
    finally:
        stop.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        broker.terminate()
        broker.wait(10)
        pg.stop_server(server)
        shutil.rmtree(tmp, ignore_errors=True)


def direct(args: argparse.Namespace) -> dict[str, Any]:
    """Ingest alone (no broker): ``ingest_batch`` on durable PostgreSQL, wall and CPU seconds per event -- the
    figure that says how many cores a target rate needs, independent of how loaded the machine is."""
    from central.db import migrate
    from central.db.models import NodeRow
    from central.db.session import Database
    from central.messaging.ingest import Ingestor
    from edge_agent.contract import Topics
    from tests import pg

    bindir = pg.find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found")
    pg._launch = _durable_launch
    server = pg.start_server(bindir)
    try:
        migrate.upgrade(server.url)
        db = Database(server.url)
        nodes = [f"node-{i:03d}" for i in range(args.nodes)]
        with db.session() as s:
            for n in nodes:
                s.add(
                    NodeRow(
                        node_id=n, name=n, mqtt_username=n, enrolled_at=datetime.now(UTC), enrolled_by="b"
                    )
                )
        msgs = [
            (
                f"{PREFIX}/nodes/{nodes[i % len(nodes)]}/events",
                _stamp(_event_json(nodes[i % len(nodes)], "c", i)),
            )
            for i in range(args.events)
        ]
        ingestor = Ingestor(db, Topics(PREFIX), require_enrollment=True)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for start in range(0, len(msgs), args.batch):
            ingestor.ingest_batch(msgs[start : start + args.batch])
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        db.dispose()
        return {
            "mode": "direct ingest_batch (no broker)",
            "events": args.events,
            "batch": args.batch,
            "wall_s": round(wall, 2),
            "events_per_s_wall": round(args.events / wall, 1),
            "cpu_ms_per_event": round(1000 * cpu / args.events, 3),
            "events_per_cpu_s": round(args.events / cpu, 1),
            "load": os.getloadavg(),
        }
    finally:
        pg.stop_server(server)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--cameras", type=int, default=1100)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--publishers", type=int, default=2, help="publisher processes the nodes are spread over")
    p.add_argument(
        "--rate", type=float, default=0.0, help="target events/s in total (0: as fast as possible)"
    )
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--window-s", type=float, default=120.0, help="how far back the visibility poller looks")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--direct", action="store_true", help="measure ingest_batch alone (CPU per event)")
    p.add_argument("--batch", type=int, default=500, help="batch size of --direct")
    args = p.parse_args()
    if args.direct:
        print(json.dumps(direct(args)), flush=True)
        return 0
    results = []
    for w in args.workers:
        r = run(w, args)
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["lost"] == 0 and r["duplicates"] == 0 for r in results) else 1


if __name__ == "__main__":
    mp.set_start_method("spawn")
    sys.exit(main())

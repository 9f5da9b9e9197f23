#!/usr/bin/env python3
"""Load generator for the delivery tests: the real ``Publisher`` and outbox, fed with synthetic valid events.

It runs exactly what an agent runs for delivery (outbox, uploader, MQTT session, heartbeats), without cameras
or a model, so tests can kill it, stop it and restart it as a real process. Events are ``illegal_stopping``
starts with fresh UUIDv7 ids and the measurement ``seq`` (their index), so a test can tell which arrived.

    python scripts/outbox_loadgen.py --config node.yaml --count 10000 --batch 100 --exit-when-drained

stdout gets one JSON line after spooling (``{"spooled": ...}``) and, with ``--exit-when-drained``, one at the
end (``{"drained": ..., "depth": ...}``); the exit status is 0 when everything was delivered, 1 if not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from edge_agent.config import load_config
from edge_agent.contract import Event, EventType, EvidenceKind, ModelRef, Phase, utcnow, uuid7
from edge_agent.delivery.items import Item, MessageClass
from edge_agent.delivery.publisher import Publisher
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore

MODEL = ModelRef(name="loadgen.onnx", sha256="0" * 64)


def make_event(node_id: str, camera_id: str, seq: int, evidence: list[EvidenceFile]) -> Event:
    now = utcnow()
    return Event.model_validate(
        {
            "event_id": uuid7(),
            "node_id": node_id,
            "camera_id": camera_id,
            "zone_id": "kerb",
            "rule_id": "no-stopping",
            "type": EventType.ILLEGAL_STOPPING,
            "phase": Phase.START,
            "started_at": now,
            "observed_at": now,
            "measurements": {"seq": float(seq), "dwell_s": 42.0},
            "evidence": [f.ref for f in evidence],
            "model": MODEL,
            "config_version": 1,
        }
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--config", type=Path, required=True, help="agent YAML (node id, mqtt, outbox, central_url)"
    )
    p.add_argument("--count", type=int, default=0, help="events to spool (0: only deliver what is spooled)")
    p.add_argument("--start", type=int, default=0, help="seq of the first event")
    p.add_argument("--batch", type=int, default=1, help="events per outbox transaction")
    p.add_argument("--telemetry", type=int, default=0, help="heartbeats to spool before the events")
    p.add_argument(
        "--evidence-bytes", type=int, default=0, help="attach a snapshot of this size to each event"
    )
    p.add_argument("--exit-when-drained", action="store_true", help="exit once the outbox is empty")
    p.add_argument("--timeout", type=float, default=300.0, help="give up draining after this long")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    cfg = load_config(args.config)
    publisher = Publisher(cfg, MODEL)
    store = EvidenceStore(cfg.evidence_dir)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    heartbeat_topic = publisher.topics.heartbeat(cfg.node_id)
    beats = [
        Item(
            heartbeat_topic,
            publisher.heartbeats.build().to_json(),
            MessageClass.TELEMETRY,
            0,
            None,
            "heartbeat",
        )
        for _ in range(args.telemetry)
    ]
    refused_telemetry = sum(1 for r in publisher.outbox.put_many(beats) if r.id is None)
    camera = cfg.cameras[0].id
    for first in range(args.start, args.start + args.count, max(1, args.batch)):
        batch = []
        for seq in range(first, min(first + max(1, args.batch), args.start + args.count)):
            files = []
            if args.evidence_bytes:
                data = seq.to_bytes(8, "big") + os.urandom(max(0, args.evidence_bytes - 8))
                files.append(store.put(data, EvidenceKind.SNAPSHOT_ANNOTATED, "image/jpeg"))
            batch.append((make_event(cfg.node_id, camera, seq, files), tuple(files)))
        publisher.submit_many(batch)
    stats = publisher.outbox.stats()
    spooled = {
        "spooled": args.count,
        "refused_telemetry": refused_telemetry,
        "depth": stats.depth,
        "drops": {f"{k}.{r}": n for (k, r), n in sorted(stats.drops.items())},
    }
    print(json.dumps(spooled), flush=True)
    publisher.start()
    deadline = time.monotonic() + args.timeout
    while not stop.is_set():
        if args.exit_when_drained and publisher.pending == 0 and publisher.outbox.stats().uploads == 0:
            break
        if args.exit_when_drained and time.monotonic() > deadline:
            break
        stop.wait(0.05)
    depth = publisher.pending
    publisher.close(drain_timeout_s=0.0)
    d = publisher.stats
    end = {
        "drained": depth == 0,
        "depth": depth,
        "published": d.published,
        "sent": d.sent,
        "republished": d.republished,
        "confirmed": d.confirmed,
        "uploads": d.uploads,
        "refused_uploads": d.upload.refused,
        "connects": d.connects,
    }
    print(json.dumps(end), flush=True)
    return 0 if depth == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

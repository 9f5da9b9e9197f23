from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.contract import EventType, EvidenceKind, ModelRef, Phase
from edge_agent.evidence.snapshot import EvidenceStore, annotate, encode_jpeg
from edge_agent.pipeline.events import Context, EventBuilder
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.types import Frame

CTX = Context("node-1", "cam-1", ModelRef(name="m.onnx", sha256="c" * 64), 7)
WALL0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def frame_at(mono: float, w: int = 200, h: int = 100) -> Frame:
    return Frame(
        "cam-1", int(mono * 10), np.zeros((h, w, 3), np.uint8), mono, WALL0 + timedelta(seconds=mono)
    )


def finding(phase: Phase, started: float, now: float, key: str = "track-1") -> Finding:
    obj = TrackSnapshot(1, "car", 0.9, np.array([20, 10, 60, 50], np.float32))
    return Finding(
        "r1", "kerb", EventType.ILLEGAL_STOPPING, phase, key, started, now, (obj,), {"dwell_s": now - started}
    )


def test_phases_of_one_incident_share_the_event_id_and_start_time() -> None:
    b = EventBuilder(CTX)
    start = b.build(finding(Phase.START, 2.0, 12.0), frame_at(12.0), [])
    end = b.build(finding(Phase.END, 2.0, 20.0), frame_at(20.0), [])
    assert start.event_id == end.event_id
    assert start.event_id.version == 7
    assert start.started_at == end.started_at == WALL0 + timedelta(seconds=2)
    assert end.ended_at == WALL0 + timedelta(seconds=20)
    assert start.config_version == 7 and start.node_id == "node-1"
    assert start.objects[0].box.x1 == pytest.approx(0.1) and start.objects[0].box.y2 == pytest.approx(0.5)
    assert b.open_incidents == 0


def test_separate_incidents_get_separate_ids() -> None:
    b = EventBuilder(CTX)
    e1 = b.build(finding(Phase.START, 0.0, 5.0, "track-1"), frame_at(5.0), [])
    e2 = b.build(finding(Phase.START, 0.0, 5.0, "track-2"), frame_at(5.0), [])
    assert e1.event_id != e2.event_id
    assert b.open_incidents == 2


def test_snapshot_is_content_addressed_and_shows_the_zone(tmp_path: Path) -> None:
    img = np.full((100, 200, 3), 60, np.uint8)
    zone = [(100.0, 50.0), (190.0, 50.0), (190.0, 95.0), (100.0, 95.0)]
    obj = TrackSnapshot(4, "car", 0.9, np.array([10, 10, 40, 40], np.float32))
    out = annotate(img, zone, [obj], "ILLEGAL STOPPING")
    assert out.shape == img.shape and not np.array_equal(out, img)
    # inside the zone the amber tint is visible; far from zone, box and caption the pixel is untouched
    assert out[75, 150].tolist() != img[75, 150].tolist()
    assert out[80, 60].tolist() == img[80, 60].tolist()
    store = EvidenceStore(tmp_path)
    data = encode_jpeg(out)
    ev = store.put(data, EvidenceKind.SNAPSHOT_ANNOTATED, "image/jpeg")
    assert ev.ref.sha256 == hashlib.sha256(ev.path.read_bytes()).hexdigest()
    assert ev.path == store.path_of(ev.ref.sha256)
    decoded = cv2.imdecode(np.frombuffer(ev.path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (100, 200, 3)
    assert store.put(data, EvidenceKind.SNAPSHOT_ANNOTATED, "image/jpeg").path == ev.path

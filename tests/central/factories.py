"""Builders for wire-contract messages used across central's tests."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from edge_agent.contract import (
    Event,
    EventObject,
    EventType,
    EvidenceKind,
    EvidenceRef,
    ModelRef,
    NodeState,
    NodeStatus,
    NormBox,
    Phase,
    Topics,
    uuid7,
)

T0 = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)
TOPICS = Topics()
MODEL = ModelRef(name="yolo11n.onnx", sha256="a" * 64)
JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"streetwatch test snapshot" * 40 + b"\xff\xd9"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot_ref(data: bytes = JPEG_BYTES) -> EvidenceRef:
    return EvidenceRef(
        kind=EvidenceKind.SNAPSHOT_ANNOTATED,
        sha256=sha256_of(data),
        content_type="image/jpeg",
        size=len(data),
    )


def make_event(
    *,
    event_id: uuid.UUID | None = None,
    node_id: str = "node-1",
    camera_id: str = "cam-1",
    phase: Phase = Phase.START,
    observed_after_s: float = 0.0,
    dwell_s: float = 75.0,
    event_type: EventType = EventType.ILLEGAL_STOPPING,
    evidence: list[EvidenceRef] | None = None,
    **overrides: Any,
) -> Event:
    """A valid event; ``phase=END`` gets ``ended_at`` automatically."""
    observed = T0 + timedelta(seconds=observed_after_s)
    fields: dict[str, Any] = {
        "event_id": event_id or uuid7(),
        "node_id": node_id,
        "camera_id": camera_id,
        "zone_id": "no-stopping-1",
        "rule_id": "stop-1",
        "type": event_type,
        "phase": phase,
        "started_at": T0,
        "observed_at": observed,
        "ended_at": observed if phase is Phase.END else None,
        "objects": [
            EventObject(track_id=7, label="car", score=0.91, box=NormBox(x1=0.1, y1=0.2, x2=0.3, y2=0.4))
        ],
        "measurements": {"dwell_s": dwell_s},
        "evidence": evidence if evidence is not None else [snapshot_ref()],
        "model": MODEL,
        "config_version": 3,
    }
    fields.update(overrides)
    return Event(**fields)


def make_status(
    *, node_id: str = "node-1", state: NodeState = NodeState.ONLINE, at: datetime = T0
) -> NodeStatus:
    return NodeStatus(node_id=node_id, state=state, at=at, software="0.1.0", model=MODEL, config_version=3)

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_agent.contract import Event, NodeStatus, Topics, uuid7

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def event_dict(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "schema": "streetwatch.event/1",
        "event_id": str(uuid7()),
        "node_id": "node-1",
        "camera_id": "cam-1",
        "zone_id": "kerb",
        "rule_id": "stop-1",
        "type": "illegal_stopping",
        "phase": "start",
        "started_at": T0.isoformat(),
        "observed_at": (T0 + timedelta(seconds=5)).isoformat(),
        "objects": [
            {"track_id": 3, "label": "car", "score": 0.8, "box": {"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.4}}
        ],
        "measurements": {"dwell_s": 5.0},
        "evidence": [
            {"kind": "snapshot_annotated", "sha256": "a" * 64, "content_type": "image/jpeg", "size": 10}
        ],
        "model": {"name": "m.onnx", "sha256": "b" * 64},
        "config_version": 1,
    }
    base.update(over)
    return base


def test_round_trip_keeps_schema_alias() -> None:
    ev = Event.model_validate(event_dict())
    wire = json.loads(ev.to_json())
    assert wire["schema"] == "streetwatch.event/1"
    assert Event.from_json(ev.to_json()) == ev


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"schema": "streetwatch.event/2"}, "schema"),
        ({"type": "jaywalking"}, "type"),
        ({"phase": "end"}, "ended_at"),
        ({"ended_at": T0.isoformat()}, "only an end phase"),
        ({"observed_at": (T0 - timedelta(seconds=1)).isoformat()}, "before started_at"),
        ({"started_at": "2026-11-21T10:00:00"}, "timezone"),
        ({"node_id": "bad/node"}, "node_id"),
        ({"measurements": {"DwellS": 1.0}}, "snake_case"),
        ({"measurements": {"dwell_s": float("nan")}}, "not finite"),
        ({"surprise": 1}, "surprise"),
        (
            {
                "objects": [
                    {
                        "track_id": 1,
                        "label": "car",
                        "score": 0.5,
                        "box": {"x1": 0.5, "y1": 0, "x2": 0.1, "y2": 1},
                    }
                ]
            },
            "ordered",
        ),
    ],
)
def test_invalid_events_are_refused_with_a_reason(override: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        Event.model_validate(event_dict(**override))
    assert needle in str(err.value)


def test_uuid7_is_version_7_and_time_ordered() -> None:
    a, b = uuid7(1_700_000_000_000), uuid7(1_700_000_000_001)
    assert a.version == 7 and b.version == 7
    assert a.variant == uuid.RFC_4122
    assert a < b


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_uuid7_embeds_its_timestamp(ms: int) -> None:
    assert uuid7(ms).int >> 80 == ms


def test_topics() -> None:
    t = Topics("sw/v1")
    assert t.events("n1") == "sw/v1/nodes/n1/events"
    assert t.config_applied("n1") == "sw/v1/nodes/n1/config/applied"
    assert t.node_of("sw/v1/nodes/n1/events") == "n1"
    assert t.node_of("other/nodes/n1/events") is None
    assert t.node_of("sw/v1/nodes/+/events") is None
    with pytest.raises(ValueError):
        Topics("sw/#")


def test_status_model() -> None:
    s = NodeStatus(node_id="n1", state="offline", at=T0)  # type: ignore[arg-type]
    assert json.loads(s.to_json())["schema"] == "streetwatch.status/1"


# -- inference backend in the model reference (added fields stay optional: older nodes omit them) ----------

_SHA = "a" * 64


@pytest.mark.parametrize(
    ("payload", "backend"),
    [
        ({"name": "m.onnx", "sha256": _SHA}, None),
        ({"name": "m.xml", "sha256": _SHA, "backend": "openvino", "backend_version": "2026.4.1"}, "openvino"),
    ],
)
def test_model_ref_backend_is_optional_and_round_trips(payload, backend):
    from edge_agent.contract import ModelRef

    ref = ModelRef.model_validate(payload)
    assert ref.backend == backend
    assert ModelRef.model_validate_json(ref.model_dump_json()) == ref


def test_heartbeat_carries_the_model_and_old_heartbeats_still_parse():
    from edge_agent.contract import Heartbeat, ModelRef, OutboxHealth

    beat = Heartbeat(
        node_id="n1",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        uptime_s=1.0,
        outbox=OutboxHealth(depth=0, uploads=0, bytes=0, max_bytes=1),
        mqtt_reconnects=0,
        model=ModelRef(name="m.xml", sha256=_SHA, backend="openvino", backend_version="2026.4.1"),
    )
    back = Heartbeat.from_json(beat.to_json())
    assert back.model is not None and back.model.backend == "openvino"
    old = json.loads(beat.to_json())
    del old["model"]
    assert Heartbeat.model_validate(old).model is None
    with pytest.raises(ValidationError):
        ModelRef.model_validate({"name": "m", "sha256": _SHA, "runtime": "x"})  # still strict

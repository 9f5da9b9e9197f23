"""The wire contract between nodes and central (version 1).

This is the one module both sides import, so a change to the contract is a change in one place. It depends on
pydantic only, so central can import it without pulling in OpenCV or onnxruntime.

Every model is strict (``extra="forbid"``): a payload with an unknown or missing field is refused and ends up
in central's dead-letter table rather than being half-understood.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_EVENT: Final = "streetwatch.event/1"
SCHEMA_STATUS: Final = "streetwatch.status/1"
SCHEMA_HEARTBEAT: Final = "streetwatch.heartbeat/1"
DEFAULT_TOPIC_PREFIX = "sw/v1"

_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_SHA256_RE = r"^[0-9a-f]{64}$"

Identifier = Annotated[str, Field(pattern=_ID_RE, description="Letters, digits, '_', '.', '-'; 1-64 chars.")]
Sha256Hex = Annotated[str, Field(pattern=_SHA256_RE, description="Lower-case hex SHA-256 digest.")]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class EventType(StrEnum):
    """The violation and situation types a rule can raise (design notes, section 4)."""

    ILLEGAL_STOPPING = "illegal_stopping"
    WRONG_WAY = "wrong_way"
    RED_LIGHT = "red_light"
    SIDEWALK_VEHICLE = "sidewalk_vehicle"
    SPEEDING = "speeding"
    ILLEGAL_TURN = "illegal_turn"
    MOTORBIKE_OVERLOAD = "motorbike_overload"
    ENCROACHMENT = "encroachment"
    GATHERING = "gathering"


class Phase(StrEnum):
    """Life-cycle of one event: a later phase reuses the same ``event_id`` and central upserts."""

    START = "start"
    UPDATE = "update"
    END = "end"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NormBox(_Strict):
    """A box in normalized image coordinates (0..1), so it survives resolution changes."""

    x1: Unit = Field(description="Left edge, fraction of image width.")
    y1: Unit = Field(description="Top edge, fraction of image height.")
    x2: Unit = Field(description="Right edge, fraction of image width.")
    y2: Unit = Field(description="Bottom edge, fraction of image height.")

    @model_validator(mode="after")
    def _ordered(self) -> NormBox:
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError("box corners are not ordered (x2 < x1 or y2 < y1)")
        return self


class EventObject(_Strict):
    """One tracked road user or object that the event is about."""

    track_id: int = Field(ge=0, description="Tracker id, stable for the life of the track on this camera.")
    label: str = Field(min_length=1, max_length=64, description="Class name, e.g. 'car'.")
    score: Unit = Field(description="Detector confidence of the latest box.")
    box: NormBox = Field(description="Latest box, normalized.")


class EvidenceKind(StrEnum):
    SNAPSHOT_ANNOTATED = "snapshot_annotated"
    SNAPSHOT = "snapshot"
    CLIP = "clip"
    CROP = "crop"
    # The unblurred clean frame (faces visible). Central stores it restricted: never served by the plain
    # evidence URL, only to a privileged user who gives a reason, each view audited.
    SNAPSHOT_ORIGINAL = "snapshot_original"


RESTRICTED_KINDS = frozenset({EvidenceKind.SNAPSHOT_ORIGINAL})


class EvidenceRef(_Strict):
    """A reference to evidence bytes uploaded to central over HTTP, addressed by their SHA-256."""

    kind: EvidenceKind = Field(description="What the bytes show.")
    sha256: Sha256Hex = Field(description="SHA-256 of the bytes; central re-hashes on arrival.")
    content_type: Literal["image/jpeg", "image/png", "video/mp4"] = Field(description="MIME type.")
    size: int = Field(gt=0, le=512 * 1024 * 1024, description="Size in bytes.")


class ModelRef(_Strict):
    name: str = Field(min_length=1, max_length=128, description="Model file name.")
    sha256: Sha256Hex = Field(
        description="SHA-256 of the model the node ran (an OpenVINO IR: of its .xml bytes then its .bin bytes)."
    )
    backend: str | None = Field(
        default=None,
        max_length=32,
        description="Inference runtime, e.g. onnxruntime, openvino (newer nodes).",
    )
    backend_version: str | None = Field(
        default=None, max_length=64, description="Version of that runtime (newer nodes)."
    )


class Event(_Strict):
    """A rule's finding, published by a node at QoS 1 on ``{prefix}/nodes/{node}/events``."""

    schema_: Literal["streetwatch.event/1"] = Field(
        default=SCHEMA_EVENT, alias="schema", description="Contract version."
    )
    event_id: uuid.UUID = Field(description="UUIDv7 minted on the node; reused by later phases.")
    node_id: Identifier = Field(description="Node that saw it.")
    camera_id: Identifier = Field(description="Camera on that node.")
    zone_id: Identifier = Field(description="Zone the rule watches.")
    rule_id: Identifier = Field(description="Rule instance id within the camera config.")
    type: EventType = Field(description="Violation type.")
    phase: Phase = Field(description="start / update / end.")
    started_at: AwareDatetime = Field(description="When the condition started to hold (UTC).")
    observed_at: AwareDatetime = Field(description="Time of the frame this message describes (UTC).")
    ended_at: AwareDatetime | None = Field(default=None, description="Set on the end phase only.")
    objects: list[EventObject] = Field(default_factory=list, max_length=256, description="Objects involved.")
    measurements: dict[str, float] = Field(
        default_factory=dict, description="Named numbers, e.g. dwell_s, displacement_px, count."
    )
    evidence: list[EvidenceRef] = Field(default_factory=list, max_length=64, description="Evidence hashes.")
    model: ModelRef = Field(description="Detector that produced the boxes.")
    config_version: int = Field(ge=0, description="Version of the node config the rule ran with.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("measurements")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        for key, number in value.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", key):
                raise ValueError(f"measurement name {key!r} must be snake_case")
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError(f"measurement {key!r} is not finite")
        return value

    @model_validator(mode="after")
    def _phase_consistent(self) -> Event:
        if self.phase is Phase.END and self.ended_at is None:
            raise ValueError("an end phase needs ended_at")
        if self.phase is not Phase.END and self.ended_at is not None:
            raise ValueError("only an end phase may carry ended_at")
        if self.observed_at < self.started_at:
            raise ValueError("observed_at is before started_at")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> Event:
        return cls.model_validate_json(payload)


class NodeState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class NodeStatus(_Strict):
    """Retained on ``{prefix}/nodes/{node}/status``; the Last Will carries ``offline``."""

    schema_: Literal["streetwatch.status/1"] = Field(default=SCHEMA_STATUS, alias="schema")
    node_id: Identifier = Field(description="Node id.")
    state: NodeState = Field(description="online or offline.")
    at: AwareDatetime = Field(description="When the node said so (UTC).")
    software: str = Field(default="", max_length=64, description="streetwatch version on the node.")
    model: ModelRef | None = Field(default=None, description="Detector the node runs.")
    config_version: int | None = Field(default=None, ge=0, description="Config version applied.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


_COUNTER_KEY_RE = r"[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}"
Millis = Annotated[float, Field(ge=0.0, le=600_000.0)]


class CameraHealth(_Strict):
    """One camera's numbers in a heartbeat: rates over the last heartbeat interval, counters since start."""

    camera_id: Identifier = Field(description="Camera on the node.")
    fps: float = Field(ge=0.0, le=1000.0, description="Frames read per second over the last interval.")
    detect_fps: float = Field(
        ge=0.0, le=1000.0, description="Detector runs per second over the last interval."
    )
    frames_dropped: int = Field(
        ge=0, description="Frames lost since start: replaced by a newer one before use, or undecodable."
    )
    decode_errors: int = Field(ge=0, description="Reads that returned no image since start.")
    reconnects: int = Field(default=0, ge=0, description="Times the camera was reopened since start.")
    inference_ms_p50: Millis | None = Field(
        default=None, description="Median detector latency (recent runs)."
    )
    inference_ms_p95: Millis | None = Field(default=None, description="95th percentile detector latency.")


class OutboxHealth(_Strict):
    """The node's durable delivery spool: what waits, how big it is, and what had to be dropped."""

    depth: int = Field(ge=0, description="Messages waiting (events and telemetry), in flight included.")
    uploads: int = Field(ge=0, description="Evidence uploads waiting.")
    bytes: int = Field(ge=0, description="Bytes spooled: payloads plus evidence not yet accepted by central.")
    max_bytes: int = Field(gt=0, description="Configured cap of ``bytes``.")
    oldest_age_s: float | None = Field(default=None, ge=0.0, description="Age of the oldest waiting message.")
    awaiting_central: int = Field(
        default=0, ge=0, description="Messages the broker acknowledged that central has not acknowledged yet."
    )
    unconfirmed_resent: int = Field(
        default=0,
        ge=0,
        description="Messages published again because central never acknowledged them (a broker that lost "
        "them after its PUBACK, or central down): broker drops show here.",
    )
    dropped: dict[str, int] = Field(
        default_factory=dict,
        max_length=64,
        description="Drops since the spool was created, keyed 'class.reason' (e.g. 'telemetry.cap_evicted').",
    )

    @field_validator("dropped")
    @classmethod
    def _counter_keys(cls, value: dict[str, int]) -> dict[str, int]:
        for key, count in value.items():
            if not re.fullmatch(_COUNTER_KEY_RE, key):
                raise ValueError(f"drop counter {key!r} must look like 'class.reason'")
            if count < 0:
                raise ValueError(f"drop counter {key!r} is negative")
        return value


class Heartbeat(_Strict):
    """Published at QoS 0 on ``{prefix}/nodes/{node}/heartbeat``: the node's health at a glance.

    QoS 0 because a heartbeat is superseded by the next one; the outbox still spools them (as the lowest
    class, evicted first) so an outage leaves a record of how the node fared.
    """

    schema_: Literal["streetwatch.heartbeat/1"] = Field(
        default=SCHEMA_HEARTBEAT, alias="schema", description="Contract version."
    )
    node_id: Identifier = Field(description="Node id.")
    at: AwareDatetime = Field(description="When the node measured (UTC).")
    uptime_s: float = Field(ge=0.0, description="Seconds since the agent started.")
    software: str = Field(default="", max_length=64, description="streetwatch version on the node.")
    config_version: int | None = Field(default=None, ge=0, description="Config version applied.")
    model: ModelRef | None = Field(
        default=None, description="Detector running when the node measured: model hash and inference runtime."
    )
    cameras: list[CameraHealth] = Field(default_factory=list, max_length=64, description="Per-camera health.")
    outbox: OutboxHealth = Field(description="Delivery spool.")
    mqtt_reconnects: int = Field(ge=0, description="Times the broker connection was lost since start.")
    disk_free_bytes: int | None = Field(default=None, ge=0, description="Free bytes where the outbox lives.")
    cpu_temp_c: float | None = Field(
        default=None, ge=-60.0, le=200.0, description="CPU/SoC temperature, when the board exposes it."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> Heartbeat:
        return cls.model_validate_json(payload)


class Topics:
    """Topic names of the contract; one place builds them so nodes and central cannot disagree."""

    def __init__(self, prefix: str = DEFAULT_TOPIC_PREFIX) -> None:
        if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "#+"):
            raise ValueError(f"invalid topic prefix {prefix!r}")
        self.prefix = prefix

    def events(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/events"

    def status(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/status"

    def heartbeat(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/heartbeat"

    def config(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/config"

    def config_applied(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/config/applied"

    def cmd(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/cmd"

    def cmd_result(self, node: str) -> str:
        return f"{self.prefix}/nodes/{node}/cmd/result"

    def all_cmd_results(self) -> str:
        return f"{self.prefix}/nodes/+/cmd/result"

    def signal(self, feed: str) -> str:
        """Traffic-signal states of one controller feed (controller or central -> nodes, retained)."""
        return f"{self.prefix}/signals/{feed}"

    def all_signals(self) -> str:
        return f"{self.prefix}/signals/+"

    def acks(self, node: str) -> str:
        """Central -> node (QoS 1): which of the node's messages central has committed (``Acks``)."""
        return f"{self.prefix}/nodes/{node}/acks"

    def all_events(self) -> str:
        return f"{self.prefix}/nodes/+/events"

    def all_status(self) -> str:
        return f"{self.prefix}/nodes/+/status"

    def all_heartbeats(self) -> str:
        return f"{self.prefix}/nodes/+/heartbeat"

    def node_of(self, topic: str) -> str | None:
        """The node id in a topic of this prefix, or None when the topic is not one of ours."""
        head = f"{self.prefix}/nodes/"
        if not topic.startswith(head):
            return None
        node = topic[len(head) :].split("/", 1)[0]
        return node if re.fullmatch(_ID_RE, node) else None


def uuid7(unix_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): time-ordered, so event ids sort by creation time in the database index."""
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def utcnow() -> datetime:
    return datetime.now(UTC)


SCHEMA_CONFIG_APPLIED: Final = "streetwatch.config-applied/1"


class ConfigApplied(_Strict):
    """A node's answer on ``{prefix}/nodes/{node}/config/applied`` (QoS 1) to each config message it got.

    ``version`` is what the message asked for, ``running_version`` what the node runs afterwards: a refused or
    stale config leaves the old one running, and central shows both so an operator sees which config is live.
    """

    schema_: Literal["streetwatch.config-applied/1"] = Field(
        default=SCHEMA_CONFIG_APPLIED, alias="schema", description="Contract version."
    )
    node_id: Identifier = Field(description="Node that answers.")
    version: int | None = Field(
        ge=0,
        le=2**31 - 1,
        description="config_version of the message answered; None if it had none readable.",
    )
    ok: bool = Field(description="True: that version runs now (applied, or was already running).")
    error: str | None = Field(
        default=None, max_length=4000, description="Why it was refused (names the field); None when ok."
    )
    running_version: int = Field(ge=0, le=2**31 - 1, description="config_version the node runs after this.")
    at: AwareDatetime = Field(description="When the node decided (UTC).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _error_iff_refused(self) -> ConfigApplied:
        if self.ok == (self.error is not None):
            raise ValueError("error must be set exactly when ok is false")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> ConfigApplied:
        return cls.model_validate_json(payload)

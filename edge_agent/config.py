"""Agent configuration: strict pydantic models loaded from YAML.

Secrets never live in the file: the MQTT password and the node's HTTP token come from the environment
(``STREETWATCH_MQTT_PASSWORD``, ``STREETWATCH_NODE_TOKEN``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_agent.contract import DEFAULT_TOPIC_PREFIX, Identifier
from edge_agent.geometry import polygon_area, self_intersection

# COCO classes that are road vehicles; the default subject of the stopping rule.
VEHICLE_CLASSES = ("car", "motorcycle", "bus", "truck")


class ConfigError(ValueError):
    """A config that cannot be used, with a message that names the offending field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NormPoint = Annotated[tuple[float, float], Field(description="(x, y), each a fraction 0..1 of the frame.")]


class ZoneConfig(_Strict):
    id: Identifier = Field(description="Zone id, unique within the camera.")
    name: str = Field(default="", max_length=128, description="Human name shown to officers.")
    polygon: list[NormPoint] = Field(min_length=3, max_length=64, description="Vertices, normalized 0..1.")

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for i, (x, y) in enumerate(pts):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"vertex {i} ({x}, {y}) lies outside the frame; use normalized 0..1")
        crossing = self_intersection(pts)
        if crossing is not None:
            raise ValueError(f"polygon is self-intersecting: edges {crossing[0]} and {crossing[1]} cross")
        if polygon_area(pts) < 1e-6:
            raise ValueError("polygon has no area (collinear or repeated vertices)")
        return pts


class IllegalStoppingRuleConfig(_Strict):
    """A vehicle that stays within a small radius inside a no-stopping zone for longer than ``min_dwell_s``."""

    type: Literal["illegal_stopping"] = Field(description="Rule type.")
    id: Identifier = Field(description="Rule id, unique within the camera.")
    zone: Identifier = Field(description="Id of the zone this rule watches.")
    classes: list[str] = Field(
        default=list(VEHICLE_CLASSES), min_length=1, description="Detector class names the rule applies to."
    )
    min_dwell_s: float = Field(
        default=30.0, gt=0.0, le=86_400.0, description="Seconds stationary before start."
    )
    max_radius: float = Field(
        default=0.03,
        gt=0.0,
        le=0.5,
        description="How far (fraction of frame width) the anchor may wander and still count as stationary.",
    )
    inertia_frames: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Consecutive frames needed to enter or leave the zone (debounce).",
    )
    end_grace_s: float = Field(
        default=3.0,
        ge=0.0,
        le=600.0,
        description="Seconds a stopped vehicle may be unseen before the event ends.",
    )
    cooldown_s: float = Field(
        default=60.0,
        ge=0.0,
        le=86_400.0,
        description="After an event ends, seconds before the same track re-fires.",
    )


RuleConfig = Annotated[IllegalStoppingRuleConfig, Field(discriminator="type")]


class CameraConfig(_Strict):
    id: Identifier = Field(description="Camera id, unique on the node.")
    name: str = Field(default="", max_length=128, description="Human name, e.g. the street corner.")
    source: str = Field(min_length=1, description="Video file path, rtsp:// or http(s):// URL.")
    realtime: bool = Field(
        default=True, description="Replay files at their own frame rate (False: as fast as possible)."
    )
    loop: bool = Field(default=False, description="Restart a file source at its end (demo).")
    detect_fps: float = Field(
        default=5.0, gt=0.0, le=60.0, description="Detector runs per second on this camera."
    )
    zones: list[ZoneConfig] = Field(default_factory=list, description="Zones drawn on this camera.")
    rules: list[RuleConfig] = Field(default_factory=list, description="Rules evaluated on this camera.")

    @model_validator(mode="after")
    def _references(self) -> CameraConfig:
        zone_ids = [z.id for z in self.zones]
        if len(set(zone_ids)) != len(zone_ids):
            raise ValueError(f"camera {self.id}: duplicate zone ids {zone_ids}")
        rule_ids = [r.id for r in self.rules]
        if len(set(rule_ids)) != len(rule_ids):
            raise ValueError(f"camera {self.id}: duplicate rule ids {rule_ids}")
        for rule in self.rules:
            if rule.zone not in zone_ids:
                raise ValueError(f"camera {self.id}: rule {rule.id} names unknown zone {rule.zone!r}")
        return self


class ModelConfig(_Strict):
    path: Path = Field(description="ONNX model file (Ultralytics YOLO export, output [B, 4+C, N]).")
    input_size: int | None = Field(
        default=None, description="Square input size; None reads it from the model (fixed axes or metadata)."
    )
    conf_threshold: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="Minimum class score kept. Low (0.1, as Ultralytics' tracking mode) because the tracker's "
        "second association uses low-score boxes to keep occluded objects; new tracks need 0.25.",
    )
    iou_threshold: float = Field(default=0.45, gt=0.0, lt=1.0, description="Per-class NMS IoU threshold.")
    classes: list[str] | None = Field(default=None, description="Keep only these class names (None: all).")
    threads: int = Field(
        default=0, ge=0, le=64, description="onnxruntime intra-op threads (0: runtime default)."
    )
    merge_classes: list[list[str]] = Field(
        default=[["car", "truck", "bus"]],
        description="Groups of look-alike classes: overlapping boxes within a group are one object (a van "
        "seen as both car and truck), so it gets one track and one event.",
    )
    merge_iou: float = Field(
        default=0.7, gt=0.0, lt=1.0, description="IoU above which a group's boxes merge."
    )

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, v: int | None) -> int | None:
        if v is not None and (v < 160 or v > 1920 or v % 32):
            raise ValueError("input_size must be a multiple of 32 between 160 and 1920")
        return v


class MqttConfig(_Strict):
    host: str = Field(default="127.0.0.1", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    username: str | None = Field(
        default=None, description="Username; password from STREETWATCH_MQTT_PASSWORD."
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    protocol: Literal["3.1.1", "5"] = Field(
        default="3.1.1",
        description="MQTT version. 3.1.1 with a persistent session works with every broker, the embedded "
        "amqtt included; 5 adds session expiry (Mosquitto, EMQX).",
    )


class AgentConfig(_Strict):
    node_id: Identifier = Field(description="This node's id, as enrolled at central.")
    config_version: int = Field(default=1, ge=0, description="Version of this config, reported with events.")
    topic_prefix: str = Field(default=DEFAULT_TOPIC_PREFIX, description="MQTT topic prefix.")
    central_url: str = Field(
        default="http://127.0.0.1:8000",
        pattern=r"^https?://",
        description="Central base URL for evidence upload.",
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    model: ModelConfig = Field(description="Detector.")
    evidence_dir: Path = Field(
        default=Path("var/agent/evidence"), description="Local copy of evidence files."
    )
    cameras: list[CameraConfig] = Field(min_length=1, max_length=16, description="Cameras of this cluster.")

    @model_validator(mode="after")
    def _unique_cameras(self) -> AgentConfig:
        ids = [c.id for c in self.cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate camera ids {ids}")
        return self


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def parse_config(data: object, origin: str = "config") -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{origin} is invalid:\n{_format_errors(err)}") from err


def load_config(path: Path) -> AgentConfig:
    """Load and validate a YAML config; relative paths in it resolve against the file's folder."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    cfg = parse_config(data, str(path))
    base = path.resolve().parent
    model = cfg.model
    if not model.path.is_absolute():
        model = model.model_copy(update={"path": (base / model.path).resolve()})
    cameras = [
        c.model_copy(update={"source": str((base / c.source).resolve())})
        if _is_relative_file(c.source)
        else c
        for c in cfg.cameras
    ]
    evidence_dir = cfg.evidence_dir if cfg.evidence_dir.is_absolute() else (base / cfg.evidence_dir).resolve()
    return cfg.model_copy(update={"model": model, "cameras": cameras, "evidence_dir": evidence_dir})


def _is_relative_file(source: str) -> bool:
    return "://" not in source and not source.isdigit() and not Path(source).is_absolute()

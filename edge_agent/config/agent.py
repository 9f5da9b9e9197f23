"""The agent's whole config: one node, its cameras and services; parsed strictly and loaded from YAML.

Secrets never live in the file: the MQTT password and the node's HTTP token come from the environment
(``STREETWATCH_MQTT_PASSWORD``, ``STREETWATCH_NODE_TOKEN``).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from edge_agent.classes import VEHICLE_CLASSES as VEHICLE_CLASSES
from edge_agent.config.base import ConfigError, Strict
from edge_agent.config.camera import CameraConfig
from edge_agent.config.node import (
    EvidenceConfig,
    MetricsConfig,
    ModelConfig,
    MqttConfig,
    OutboxConfig,
    SchedulerConfig,
    StateConfig,
)
from edge_agent.config.recording import RecordingConfig
from edge_agent.contract import DEFAULT_TOPIC_PREFIX, Identifier


class AgentConfig(Strict):
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
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, description="Evidence per incident.")
    outbox: OutboxConfig = Field(
        default_factory=OutboxConfig, description="Durable delivery spool and evidence uploads."
    )
    cameras: list[CameraConfig] = Field(min_length=1, max_length=16, description="Cameras of this cluster.")
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig, description="Detector batching across cameras."
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Local Prometheus /metrics and /healthz endpoint."
    )
    state: StateConfig = Field(
        default_factory=StateConfig, description="Status file for `streetwatch-agent status`."
    )
    recording: RecordingConfig = Field(
        default_factory=RecordingConfig, description="Rolling footage per camera, for extraction requests."
    )

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
    cameras = [_resolve_sources(c, base) for c in cfg.cameras]
    evidence_dir = cfg.evidence_dir if cfg.evidence_dir.is_absolute() else (base / cfg.evidence_dir).resolve()
    if cfg.outbox.path is not None and not cfg.outbox.path.is_absolute():
        cfg = cfg.model_copy(
            update={"outbox": cfg.outbox.model_copy(update={"path": (base / cfg.outbox.path).resolve()})}
        )
    privacy = cfg.evidence.privacy
    if privacy.face_model is not None and not privacy.face_model.is_absolute():
        privacy = privacy.model_copy(update={"face_model": (base / privacy.face_model).resolve()})
        cfg = cfg.model_copy(update={"evidence": cfg.evidence.model_copy(update={"privacy": privacy})})
    if cfg.state.dir is not None and not cfg.state.dir.is_absolute():
        cfg = cfg.model_copy(
            update={"state": cfg.state.model_copy(update={"dir": (base / cfg.state.dir).resolve()})}
        )
    if cfg.recording.dir is not None and not cfg.recording.dir.is_absolute():
        cfg = cfg.model_copy(
            update={
                "recording": cfg.recording.model_copy(update={"dir": (base / cfg.recording.dir).resolve()})
            }
        )
    return cfg.model_copy(update={"model": model, "cameras": cameras, "evidence_dir": evidence_dir})


def _resolve_sources(cam: CameraConfig, base: Path) -> CameraConfig:
    update: dict[str, str] = {}
    if _is_relative_file(cam.source):
        update["source"] = str((base / cam.source).resolve())
    if cam.evidence_source is not None and _is_relative_file(cam.evidence_source):
        update["evidence_source"] = str((base / cam.evidence_source).resolve())
    return cam.model_copy(update=update) if update else cam


def _is_relative_file(source: str) -> bool:
    return "://" not in source and not source.isdigit() and not Path(source).is_absolute()

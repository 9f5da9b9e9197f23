"""Agent configuration: strict pydantic models loaded from YAML.

Secrets never live in the file: the MQTT password and the node's HTTP token come from the environment
(``STREETWATCH_MQTT_PASSWORD``, ``STREETWATCH_NODE_TOKEN``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_agent.classes import VEHICLE_CLASSES as VEHICLE_CLASSES
from edge_agent.contract import DEFAULT_TOPIC_PREFIX, Identifier
from edge_agent.geometry import polygon_area, self_intersection
from edge_agent.rules.ruleconfig import (
    EncroachmentRuleConfig,
    GatheringRuleConfig,
    IllegalStoppingRuleConfig,
    IllegalTurnRuleConfig,
    MotorbikeOverloadRuleConfig,
    RedLightRuleConfig,
    SidewalkVehicleRuleConfig,
    SpeedingRuleConfig,
    WrongWayRuleConfig,
)
from edge_agent.rules.sceneconfig import Direction, GroundPlaneConfig, LineConfig, SignalConfig
from edge_agent.rules.validate import check_camera_references


class ConfigError(ValueError):
    """A config that cannot be used, with a message that names the offending field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NormPoint = Annotated[tuple[float, float], Field(description="(x, y), each a fraction 0..1 of the frame.")]


class ZoneConfig(_Strict):
    id: Identifier = Field(description="Zone id, unique within the camera.")
    name: str = Field(default="", max_length=128, description="Human name shown to officers.")
    polygon: list[NormPoint] = Field(min_length=3, max_length=64, description="Vertices, normalized 0..1.")
    direction: Direction | None = Field(
        default=None, description="Allowed travel direction on screen (lane zones; wrong-way needs it)."
    )

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


# Rule parameters live in edge_agent/rules/ruleconfig.py (one model per rule type).
RuleConfig = Annotated[
    IllegalStoppingRuleConfig
    | SidewalkVehicleRuleConfig
    | WrongWayRuleConfig
    | RedLightRuleConfig
    | SpeedingRuleConfig
    | IllegalTurnRuleConfig
    | MotorbikeOverloadRuleConfig
    | EncroachmentRuleConfig
    | GatheringRuleConfig,
    Field(discriminator="type"),
]


class CaptureConfig(_Strict):
    """How one camera is read (``edge_agent/capture_reader.py``): evidence ring, reconnects, stall watchdog."""

    ring_seconds: float = Field(
        default=0.0,
        ge=0.0,
        le=30.0,
        description="Seconds of raw recent frames the reader keeps (0: none, the default). Evidence clips use "
        "the recorder's JPEG ring (evidence.pre_roll_s), ~30x smaller; this raw ring costs seconds x ring_fps x "
        "frame bytes, e.g. 4 s x 5 fps x 6.2 MB (1080p BGR) = 124 MB per camera.",
    )
    ring_fps: float = Field(
        default=5.0, gt=0.0, le=30.0, description="Frames per second kept in the ring (a subsample)."
    )
    reconnect_initial_s: float = Field(
        default=0.5, gt=0.0, le=60.0, description="First wait before reopening a lost or unreachable stream."
    )
    reconnect_max_s: float = Field(
        default=30.0,
        gt=0.0,
        le=600.0,
        description="Cap of the exponential reconnect backoff (doubling, with jitter against thundering herds).",
    )
    stall_timeout_s: float = Field(
        default=10.0,
        ge=1.0,
        le=600.0,
        description="A live camera that is connected but delivers no frame this long is restarted (watchdog).",
    )
    open_timeout_s: float = Field(
        default=10.0, ge=0.5, le=120.0, description="Give up opening a stream after this long (FFmpeg)."
    )
    read_timeout_s: float = Field(
        default=5.0, ge=0.5, le=120.0, description="Give up one blocked stream read after this long (FFmpeg)."
    )
    queue_frames: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Frames buffered between reader and detector when files replay as fast as possible "
        "(the reader then waits for the detector: no frame is dropped).",
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> CaptureConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


class MotionConfig(_Strict):
    """Motion gating (``edge_agent/motion.py``): still scenes skip the detector between periodic refreshes."""

    enabled: bool = Field(
        default=True, description="Gate detection on motion (False: detect at detect_fps always)."
    )
    width: int = Field(
        default=160, ge=32, le=640, description="Width in pixels the frame is shrunk to before differencing."
    )
    blur: int = Field(
        default=5, ge=1, le=31, description="Odd Gaussian kernel size (at the shrunk size) against noise."
    )
    pixel_threshold: int = Field(
        default=25, ge=1, le=255, description="Grey-level change for a pixel to count as changed."
    )
    min_changed_fraction: float = Field(
        default=0.002,
        gt=0.0,
        le=1.0,
        description="Fraction of unmasked pixels that must change between samples to count as motion.",
    )
    refresh_s: float = Field(
        default=2.0,
        ge=0.1,
        le=60.0,
        description="Detect at least this often without motion so stationary objects stay tracked; keep it "
        "below the tracker's max_lost_s (3 s) and the rules' end_grace_s or parked vehicles lose their track.",
    )
    mask: list[list[NormPoint]] = Field(
        default_factory=list,
        max_length=32,
        description="Regions to ignore (normalized polygons): swaying trees, clocks, the camera's text overlay.",
    )

    @field_validator("blur")
    @classmethod
    def _odd_blur(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("blur must be odd")
        return v

    @field_validator("mask")
    @classmethod
    def _mask_polygons(cls, polys: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        for i, pts in enumerate(polys):
            if len(pts) < 3:
                raise ValueError(f"mask polygon {i} needs at least 3 vertices")
            for x, y in pts:
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    raise ValueError(f"mask polygon {i}: vertex ({x}, {y}) outside 0..1")
        return polys


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
    lines: list[LineConfig] = Field(
        default_factory=list, description="Lines drawn on this camera (stop lines)."
    )
    signals: list[SignalConfig] = Field(
        default_factory=list, description="Traffic signals seen or fed for this camera."
    )
    ground_plane: GroundPlaneConfig | None = Field(
        default=None, description="Image <-> metres point pairs of the road (speeds)."
    )
    rules: list[RuleConfig] = Field(default_factory=list, description="Rules evaluated on this camera.")
    capture: CaptureConfig = Field(
        default_factory=CaptureConfig, description="Reader: ring buffer, reconnects, watchdog."
    )
    motion: MotionConfig = Field(
        default_factory=MotionConfig, description="Motion gating and periodic refresh of detection."
    )

    @model_validator(mode="after")
    def _references(self) -> CameraConfig:
        check_camera_references(
            self.id,
            [(z.id, z.direction) for z in self.zones],
            [line.id for line in self.lines],
            [s.id for s in self.signals],
            self.ground_plane is not None,
            self.rules,
        )
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
    providers: list[str] = Field(
        default=["CPUExecutionProvider"],
        min_length=1,
        description="onnxruntime execution providers in order of preference, e.g. [CUDAExecutionProvider, "
        "CPUExecutionProvider]; ['auto'] picks the best installed one (TensorRT, CUDA, OpenVINO, then CPU). A "
        "provider that is named but not installed is refused at start.",
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
    session_expiry_s: int = Field(
        default=86_400,
        ge=0,
        le=4_294_967_295,
        description="MQTT 5 only: seconds the broker keeps this node's session after the connection ends.",
    )
    max_inflight: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Most QoS 1 messages published and not yet acknowledged by the broker (paho's window and "
        "the outbox's own cap, so nothing piles up in paho's memory).",
    )
    reconnect_initial_s: float = Field(
        default=1.0, gt=0.0, le=60.0, description="First wait before reconnecting to the broker."
    )
    reconnect_max_s: float = Field(
        default=120.0,
        ge=1.0,
        le=3600.0,
        description="Cap of the exponential reconnect backoff (each wait jittered to 50-100%).",
    )
    heartbeat_s: float = Field(
        default=30.0, ge=1.0, le=3600.0, description="Seconds between heartbeats (QoS 0, heartbeat topic)."
    )

    @model_validator(mode="after")
    def _reconnect_order(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


class OutboxConfig(_Strict):
    """The node's durable delivery spool (``edge_agent/outbox.py``) and its evidence uploader."""

    path: Path | None = Field(
        default=None,
        description="SQLite file of the spool (WAL). None: outbox.sqlite3 beside evidence_dir. A relative "
        "path resolves against the config file's folder.",
    )
    max_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=64 * 1024,
        le=1 << 40,
        description="Cap of spooled bytes: message payloads plus evidence not yet accepted by central. When "
        "full, the oldest telemetry goes first; violations are kept (a new one that still does not fit sheds "
        "its clip, then its other evidence, then is refused). Every drop is counted by class and reason.",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite synchronous mode. FULL: a spooled event survives power loss (an fsync per "
        "commit). NORMAL: survives a crash of the agent, but power loss may take the last commits.",
    )
    upload_rate_bytes_s: int | None = Field(
        default=1_000_000,
        ge=1024,
        le=10**10,
        description="Evidence upload bandwidth cap of this node in bytes/s (token bucket); None: unlimited.",
    )
    upload_burst_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=1 << 30,
        description="Token bucket depth: bytes that may go at full line speed after an idle period.",
    )
    retry_initial_s: float = Field(
        default=1.0, gt=0.0, le=60.0, description="First wait before retrying a failed upload or publish."
    )
    retry_max_s: float = Field(
        default=120.0,
        ge=0.1,
        le=3600.0,
        description="Cap of the exponential retry backoff of one upload or publish (jittered to 50-100%).",
    )
    drain_timeout_s: float = Field(
        default=30.0,
        ge=0.0,
        le=3600.0,
        description="At shutdown, how long to keep delivering while connected; the rest stays spooled for the "
        "next start.",
    )
    republish_window_s: float = Field(
        default=120.0,
        ge=0.0,
        le=86_400.0,
        description="Events the broker acknowledged stay spooled this long and are published again after an "
        "unplanned disconnect or a restart: Mosquitto saves its state only every autosave_interval, so a broker "
        "that crashes forgets what it acknowledged since. Keep it above the broker's autosave interval plus 1.5 x "
        "keepalive; 0 removes an event at its PUBACK.",
    )

    @model_validator(mode="after")
    def _retry_order(self) -> OutboxConfig:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be >= retry_initial_s")
        return self


class EvidenceConfig(_Strict):
    """What each incident carries besides its annotated snapshot."""

    clean_snapshot: bool = Field(
        default=True, description="Also keep the unannotated frame (court evidence)."
    )
    crops: bool = Field(default=True, description="Keep a crop of each object involved.")
    max_crops: int = Field(default=8, ge=0, le=64, description="At most this many crops per incident.")
    clip: bool = Field(
        default=True, description="Record a pre/post-roll H.264 clip (needs the ffmpeg binary)."
    )
    pre_roll_s: float = Field(default=4.0, ge=0.0, le=60.0, description="Seconds of clip before the START.")
    post_roll_s: float = Field(default=4.0, ge=0.0, le=120.0, description="Seconds of clip after the START.")
    clip_fps: float = Field(
        default=5.0, gt=0.0, le=30.0, description="Frame rate of the clip (and its ring)."
    )
    clip_max_width: int = Field(
        default=960, ge=160, le=3840, description="Clips are scaled down to this width."
    )


class SchedulerConfig(_Strict):
    """Which cameras' newest frames go to the shared detector (``edge_agent/scheduler.py``)."""

    max_batch: int = Field(
        default=4, ge=1, le=32, description="Most frames in one detector call (one per camera at most)."
    )
    max_wait_s: float = Field(
        default=1.0,
        gt=0.0,
        le=30.0,
        description="A live frame waiting longer than this for a detector slot is dropped as stale.",
    )


class MetricsConfig(_Strict):
    """The agent's own HTTP endpoint (``edge_agent/metrics.py``): Prometheus ``/metrics`` and ``/healthz``."""

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=255,
        description="Address to listen on. Loopback by default: the endpoint has no authentication, so expose "
        "it (0.0.0.0) only on a management network a Prometheus server scrapes from.",
    )
    port: int = Field(default=9464, ge=0, le=65535, description="TCP port; 0 turns the endpoint off.")


class StateConfig(_Strict):
    """The status file ``streetwatch-agent status`` reads (``edge_agent/status.py``), and when to call it bad."""

    dir: Path | None = Field(
        default=None,
        description="Folder of status.json. None: the outbox's folder. A relative path resolves against the "
        "config file's folder.",
    )
    status_interval_s: float = Field(
        default=5.0,
        ge=1.0,
        le=300.0,
        description="Seconds between rewrites of status.json; `status` calls the agent dead when the file is "
        "older than 3 times this.",
    )
    camera_down_s: float = Field(
        default=30.0,
        ge=2.0,
        le=3600.0,
        description="A camera without a frame this long counts as down (`status` fails); /healthz fails when "
        "no camera delivered a frame this recently.",
    )
    mqtt_down_s: float = Field(
        default=300.0,
        ge=10.0,
        le=86_400.0,
        description="`status` fails when the broker connection has been down this long (events keep spooling "
        "in the outbox meanwhile, so short outages are no fault).",
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
    if cfg.outbox.path is not None and not cfg.outbox.path.is_absolute():
        cfg = cfg.model_copy(
            update={"outbox": cfg.outbox.model_copy(update={"path": (base / cfg.outbox.path).resolve()})}
        )
    if cfg.state.dir is not None and not cfg.state.dir.is_absolute():
        cfg = cfg.model_copy(
            update={"state": cfg.state.model_copy(update={"dir": (base / cfg.state.dir).resolve()})}
        )
    return cfg.model_copy(update={"model": model, "cameras": cameras, "evidence_dir": evidence_dir})


def _is_relative_file(source: str) -> bool:
    return "://" not in source and not source.isdigit() and not Path(source).is_absolute()

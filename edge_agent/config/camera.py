"""Per-camera settings: source, capture/reconnect, motion gating, zones and the rules that watch them."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from edge_agent.classes import VEHICLE_CLASSES as VEHICLE_CLASSES
from edge_agent.config.base import Strict
from edge_agent.contract import Identifier
from edge_agent.rules.ruleconfig import RuleConfig
from edge_agent.rules.sceneconfig import GroundPlaneConfig, LineConfig, NormPoint, SignalConfig, ZoneConfig
from edge_agent.rules.validate import check_camera_references


class CaptureConfig(Strict):
    """How one camera is read (``edge_agent/capture/reader.py``): evidence ring, reconnects, stall watchdog."""

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
    decode_threads: int = Field(
        default=1,
        ge=0,
        le=16,
        description="FFmpeg decoder threads per camera (0: one per core). One reader per camera already "
        "spreads several cameras over the cores, and every extra decoder thread holds frames of its own.",
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


class MotionConfig(Strict):
    """Motion gating (``edge_agent/capture/motion.py``): still scenes skip the detector between periodic refreshes."""

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


class CameraConfig(Strict):
    id: Identifier = Field(description="Camera id, unique on the node.")
    name: str = Field(default="", max_length=128, description="Human name, e.g. the street corner.")
    source: str = Field(
        min_length=1,
        description="Video file path, rtsp:// or http(s):// URL the detector reads. With a camera that offers "
        "a sub-stream, point this at it (e.g. 640x360 at 5-10 fps) and evidence_source at the main stream.",
    )
    evidence_source: str | None = Field(
        default=None,
        min_length=1,
        description="Stream for evidence clips (the camera's main, full-resolution stream); None: clips come "
        "from source. Read by a second reader that only feeds the clip ring at evidence.clip_fps.",
    )
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

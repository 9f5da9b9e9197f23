"""Node-wide settings: the detector model, the broker, the outbox, evidence, batching, metrics and state."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.classes import VEHICLE_CLASSES as VEHICLE_CLASSES
from edge_agent.config.base import Strict


class ModelConfig(Strict):
    path: Path = Field(
        description="Model file: an Ultralytics YOLO ONNX export (output [B, 4+C, N]), or its OpenVINO IR "
        "(.xml beside its .bin; backend openvino)."
    )
    backend: Literal["auto", "onnxruntime", "openvino"] = Field(
        default="auto",
        description="Inference runtime. auto: every installed runtime that reads the model file is timed at "
        "start and the fastest is kept (OpenVINO on x86 CPUs, onnxruntime elsewhere). A runtime named here "
        "but not installed, or unable to read the model, is refused at start.",
    )
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
        default=0,
        ge=0,
        le=64,
        description="Inference threads (onnxruntime intra-op, OpenVINO INFERENCE_NUM_THREADS; 0: runtime default).",
    )
    providers: list[str] = Field(
        default=["CPUExecutionProvider"],
        min_length=1,
        description="onnxruntime only: execution providers in order of preference, e.g. [CUDAExecutionProvider, "
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


class MqttConfig(Strict):
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


class OutboxConfig(Strict):
    """The node's durable delivery spool (``edge_agent/delivery/outbox.py``) and its evidence uploader."""

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
    ack_timeout_s: float = Field(
        default=60.0,
        gt=0.0,
        le=86_400.0,
        description="How long an event the broker acknowledged may wait for central's end-to-end "
        "acknowledgement, while central acknowledges nothing newer, before it is published again (a broker "
        "that crashed or dropped it, or central down). The wait doubles with each resend of the same event, up "
        "to ack_timeout_max_s. Nothing is republished on reconnects.",
    )
    ack_gap_s: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        description="An event still unacknowledged when central acknowledged one published this much later was "
        "lost on the way (central commits a node's events roughly in order): published again at once.",
    )
    max_unconfirmed: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="At most this many events the broker acknowledged may await central's acknowledgement; "
        "the node sends more as central confirms (flow control: a backlog never floods the broker's queues, "
        "and the wait for central stays short).",
    )
    ack_timeout_max_s: float = Field(
        default=600.0,
        gt=0.0,
        le=86_400.0,
        description="Cap of the doubling wait for central's acknowledgement.",
    )

    @model_validator(mode="after")
    def _retry_order(self) -> OutboxConfig:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be >= retry_initial_s")
        return self


class EvidenceConfig(Strict):
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


class SchedulerConfig(Strict):
    """Which cameras' newest frames go to the shared detector (``edge_agent/capture/scheduler.py``)."""

    max_batch: int = Field(
        default=4, ge=1, le=32, description="Most frames in one detector call (one per camera at most)."
    )
    max_wait_s: float = Field(
        default=1.0,
        gt=0.0,
        le=30.0,
        description="A live frame waiting longer than this for a detector slot is dropped as stale.",
    )


class MetricsConfig(Strict):
    """The agent's own HTTP endpoint (``edge_agent/node/metrics.py``): Prometheus ``/metrics`` and ``/healthz``."""

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=255,
        description="Address to listen on. Loopback by default: the endpoint has no authentication, so expose "
        "it (0.0.0.0) only on a management network a Prometheus server scrapes from.",
    )
    port: int = Field(default=9464, ge=0, le=65535, description="TCP port; 0 turns the endpoint off.")


class StateConfig(Strict):
    """The status file ``streetwatch-agent status`` reads (``edge_agent/node/status.py``), and when to call it bad."""

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

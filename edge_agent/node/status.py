"""The agent's status file and ``streetwatch-agent status``: the first thing a technician asks a node.

The running agent rewrites ``status.json`` in its state folder every ``state.status_interval_s`` and, at each
rewrite, tells systemd it is alive (``WATCHDOG=1``) -- only while the detector loop is alive, so a hung loop
gets the agent restarted (``health.py``). ``streetwatch-agent status`` reads the file, prints a summary and
exits non-zero when the node looks unhealthy: the file is older than 3 intervals (the agent is dead or hung),
the agent stopped, the detector loop is down, a camera delivered no frame for ``state.camera_down_s``, or the
broker has been unreachable for ``state.mqtt_down_s``. The thresholds travel in the file, so ``status
--state-dir D`` judges a node exactly as its config says without reading the config.

Why a file and not an HTTP call: it works with the metrics endpoint off, needs only read access to the state
folder, and still tells something after the agent died (when, and what it saw last). It is replaced
atomically (a reader sees the old or the new file) but not fsynced: it is rewritten every few seconds, a file
lost in a power cut correctly reads as "not running", and an fsync every 5 s wears SD cards.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Final, Literal, TextIO

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from edge_agent.config import AgentConfig, ConfigError, load_config
from edge_agent.contract import utcnow
from edge_agent.delivery.items import outbox_path

SCHEMA: Final = "streetwatch.agent-status/1"
STATUS_FILE: Final = "status.json"
STALE_FACTOR: Final = 3.0
DEFAULT_CONFIG: Final = Path("/etc/streetwatch/agent.yaml")  # where scripts/install-node.sh puts it
DEFAULT_STATE_DIR: Final = Path("var/agent")  # the demo's (and enrollment's) default
STATE_DIR_ENV: Final = "STREETWATCH_STATE_DIR"  # the same variable enrollment reads

EXIT_HEALTHY: Final = 0
EXIT_UNHEALTHY: Final = 1
EXIT_CONFIG: Final = 2
EXIT_NO_STATUS: Final = 3


class _Model(BaseModel):
    # Unknown fields are ignored: a newer agent's file must still be readable by an older `status`.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class CameraStatus(_Model):
    camera_id: str = Field(description="Camera id.")
    state: str = Field(description="Reader state: idle, opening, reading, backoff or ended.")
    fps: float = Field(ge=0.0, description="Measured frames per second over the last few seconds.")
    last_frame_age_s: float | None = Field(description="Seconds since the latest frame (None: none yet).")
    frames: int = Field(ge=0, description="Frames decoded.")
    detected: int = Field(ge=0, description="Frames through the detector.")
    dropped: int = Field(ge=0, description="Frames lost before the detector (unseen, overload, stale).")
    decode_errors: int = Field(ge=0, description="Reads that returned no image.")
    reconnects: int = Field(ge=0, description="Re-opens after a loss or a stall.")
    open_failures: int = Field(ge=0, description="Failed attempts to open the source.")
    stalls: int = Field(ge=0, description="Watchdog restarts of a silent reader.")
    inference_ms_p95: float | None = Field(default=None, description="Detector latency p95 (ms).")
    error: str | None = Field(default=None, description="The reader's fatal error, if any.")


class DeliveryStatus(_Model):
    mqtt_connected: bool = Field(description="Broker connection up.")
    mqtt_down_s: float | None = Field(description="How long the connection has been down (None: up).")
    outbox_depth: int | None = Field(description="Messages waiting (None: outbox unreadable).")
    outbox_uploads: int | None = Field(description="Evidence uploads waiting.")
    outbox_bytes: int | None = Field(description="Bytes spooled.")
    outbox_max_bytes: int | None = Field(description="The outbox's cap.")
    outbox_oldest_age_s: float | None = Field(description="Age of the oldest waiting message.")
    outbox_error: str | None = Field(default=None, description="Why the outbox could not be read.")
    queued: int = Field(ge=0, description="Events written to the outbox since start.")
    published: int = Field(ge=0, description="Events the broker acknowledged since start.")
    uploads: int = Field(ge=0, description="Evidence uploads central accepted since start.")
    upload_refused: int = Field(ge=0, description="Evidence uploads central refused for good.")
    dropped: dict[str, int] = Field(default_factory=dict, description="Outbox drops by class.reason.")


class AgentStatus(_Model):
    schema_: Literal["streetwatch.agent-status/1"] = Field(default=SCHEMA, alias="schema")
    state: Literal["running", "stopped"] = Field(description="stopped: the agent's last words at shutdown.")
    written_at: AwareDatetime = Field(description="When this file was written (UTC).")
    interval_s: float = Field(gt=0, description="How often the agent rewrites it.")
    camera_down_s: float = Field(gt=0, description="No frame this long: the camera counts as down.")
    mqtt_down_s: float = Field(gt=0, description="Broker unreachable this long: unhealthy.")
    pid: int = Field(description="The agent's process id.")
    node_id: str = Field(description="Node id.")
    software: str = Field(description="streetwatch version.")
    model: str = Field(description="Detector model file name.")
    model_sha256: str = Field(description="Its SHA-256.")
    backend: str | None = Field(default=None, description="Inference runtime running it.")
    backend_version: str | None = Field(default=None, description="That runtime's version.")
    config_version: int = Field(description="Version of the running config.")
    started_at: AwareDatetime = Field(description="When the agent started (UTC).")
    uptime_s: float = Field(ge=0, description="Seconds since start.")
    detector_alive: bool = Field(description="The detector loop runs and makes progress.")
    detector_problem: str | None = Field(default=None, description="What is wrong with it otherwise.")
    detector_batches: int = Field(ge=0, description="Batched detector calls since start.")
    cameras: list[CameraStatus] = Field(description="Every camera.")
    delivery: DeliveryStatus = Field(description="Outbox and broker.")
    last_event_at: AwareDatetime | None = Field(default=None, description="Latest event spooled (UTC).")
    metrics_url: str | None = Field(default=None, description="The /metrics endpoint, if it listens.")
    metrics_error: str | None = Field(default=None, description="Why the endpoint does not listen.")

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, indent=2).encode() + b"\n"


def state_dir(cfg: AgentConfig) -> Path:
    """Where the status file goes: ``state.dir``, else the outbox's folder."""
    return cfg.state.dir or outbox_path(cfg).parent


def write_status(path: Path, status: AgentStatus) -> None:
    """Replace ``path`` atomically (temp file + rename), world-readable, without fsync (see module doc)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(status.to_json())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def read_status(path: Path) -> tuple[AgentStatus, str]:
    """The parsed status and its raw text. Raises ``OSError`` or ``ValueError`` (unreadable, not a status)."""
    text = path.read_text(encoding="utf-8")
    try:
        return AgentStatus.model_validate_json(text), text
    except ValidationError as err:
        raise ValueError(f"{path} is not an agent status file: {err.error_count()} error(s)") from err


def camera_problem(cam: CameraStatus, uptime_s: float, camera_down_s: float) -> str | None:
    """Why a camera counts as down, or None. A camera gets ``camera_down_s`` after start for its first frame."""
    age = cam.last_frame_age_s
    if cam.state == "ended":
        return f"camera {cam.camera_id} ended" + (f": {cam.error}" if cam.error else "")
    if age is None and uptime_s > camera_down_s:
        return f"camera {cam.camera_id} down: no frame since start ({cam.state})"
    if age is not None and age > camera_down_s:
        return f"camera {cam.camera_id} down: no frame for {_duration(age)} ({cam.state})"
    return None


def problems(status: AgentStatus, now: datetime) -> list[str]:
    """Everything that makes the node unhealthy; empty when it is healthy."""
    if status.state == "stopped":
        return [f"the agent stopped at {_when(status.written_at)}"]
    age = max(0.0, (now - status.written_at).total_seconds())
    if age > STALE_FACTOR * status.interval_s:
        return [
            f"status file is {_duration(age)} old (rewritten every {status.interval_s:g} s while the agent "
            f"runs): the agent is not running or is hung"
        ]
    out: list[str] = []
    if not status.detector_alive:
        out.append(f"detector: {status.detector_problem or 'not running'}")
    for cam in status.cameras:
        problem = camera_problem(cam, status.uptime_s, status.camera_down_s)
        if problem:
            out.append(problem)
    d = status.delivery
    if not d.mqtt_connected and d.mqtt_down_s is not None and d.mqtt_down_s > status.mqtt_down_s:
        out.append(f"MQTT broker unreachable for {_duration(d.mqtt_down_s)} (events keep spooling)")
    if d.outbox_error:
        out.append(f"outbox unreadable: {d.outbox_error}")
    return out


def summary(status: AgentStatus, now: datetime, found: list[str]) -> str:
    """The technician's view: identity, versions, cameras, delivery, then the verdict."""
    age = max(0.0, (now - status.written_at).total_seconds())
    verdict = "UNHEALTHY" if found else "healthy"
    lines = [
        f"node {status.node_id}: {verdict}",
        f"  software {status.software}, model {status.model} ({status.model_sha256[:12]})"
        + (f" on {status.backend} {status.backend_version or ''}".rstrip() if status.backend else "")
        + f", config v{status.config_version}",
        f"  agent {status.state}, pid {status.pid}, up {_duration(status.uptime_s)} "
        f"(since {_when(status.started_at)}); status written {_duration(age)} ago",
        "  detector: "
        + ("running" if status.detector_alive else f"DOWN: {status.detector_problem or 'not running'}")
        + f", {status.detector_batches} batches",
        "  cameras:",
    ]
    for c in status.cameras:
        last = "never" if c.last_frame_age_s is None else f"{_duration(c.last_frame_age_s)} ago"
        p95 = "" if c.inference_ms_p95 is None else f", p95 {c.inference_ms_p95:.0f} ms"
        lines.append(
            f"    {c.camera_id:<20} {c.state:<8} {c.fps:5.1f} fps, last frame {last}, decode errors "
            f"{c.decode_errors}, reconnects {c.reconnects}, stalls {c.stalls}, dropped {c.dropped}{p95}"
        )
        if c.error:
            lines.append(f"      error: {c.error}")
    d = status.delivery
    mqtt = "connected" if d.mqtt_connected else "DISCONNECTED"
    if not d.mqtt_connected and d.mqtt_down_s is not None:
        mqtt += f" for {_duration(d.mqtt_down_s)}"
    if d.outbox_depth is None:
        outbox = f"unreadable ({d.outbox_error})"
    else:
        oldest = "" if d.outbox_oldest_age_s is None else f", oldest {_duration(d.outbox_oldest_age_s)}"
        outbox = (
            f"{d.outbox_depth} message(s), {d.outbox_uploads} upload(s), "
            f"{_mib(d.outbox_bytes)} of {_mib(d.outbox_max_bytes)} MiB{oldest}"
        )
    lines.append(f"  mqtt: {mqtt}; outbox: {outbox}")
    drops = ", ".join(f"{k}={n}" for k, n in sorted(d.dropped.items())) or "none"
    lines.append(
        f"  delivered: {d.published} of {d.queued} event(s) queued since start, {d.uploads} upload(s) "
        f"({d.upload_refused} refused); outbox drops: {drops}"
    )
    if status.last_event_at is None:
        lines.append("  last event: none since start")
    else:
        ago = max(0.0, (now - status.last_event_at).total_seconds())
        lines.append(f"  last event: {_when(status.last_event_at)} ({_duration(ago)} ago)")
    if status.metrics_url or status.metrics_error:
        lines.append(f"  metrics: {status.metrics_url or 'off: ' + str(status.metrics_error)}")
    lines += [f"  PROBLEM: {p}" for p in found]
    return "\n".join(lines)


def resolve_state_dir(
    config: Path | None, given: Path | None, environ: Mapping[str, str] | None = None
) -> Path:
    """``--state-dir``, else ``--config``'s state folder, else $STREETWATCH_STATE_DIR, else the installed
    config's (/etc/streetwatch/agent.yaml), else var/agent. Raises ``ConfigError`` for a bad config."""
    if given is not None:
        return given
    if config is None:
        env = (os.environ if environ is None else environ).get(STATE_DIR_ENV)
        if env:
            return Path(env)
        if not DEFAULT_CONFIG.is_file():
            return DEFAULT_STATE_DIR
        config = DEFAULT_CONFIG
    return state_dir(load_config(config))


def status_command(
    config: Path | None,
    given_state_dir: Path | None,
    *,
    as_json: bool = False,
    now: Callable[[], datetime] = utcnow,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``streetwatch-agent status``: 0 healthy, 1 unhealthy, 2 bad config, 3 no readable status file."""
    stdout = out or sys.stdout
    stderr = err or sys.stderr
    try:
        folder = resolve_state_dir(config, given_state_dir)
    except ConfigError as error:
        print(f"streetwatch-agent: {error}", file=stderr)
        return EXIT_CONFIG
    path = folder / STATUS_FILE
    try:
        status, raw = read_status(path)
    except FileNotFoundError:
        print(
            f"streetwatch-agent: no status file {path}: the agent has not run with this state folder "
            "(pass --config or --state-dir)",
            file=stderr,
        )
        return EXIT_NO_STATUS
    except (OSError, ValueError) as error:
        print(f"streetwatch-agent: cannot read {path}: {error}", file=stderr)
        return EXIT_NO_STATUS
    moment = now()
    found = problems(status, moment)
    stdout.write(raw if as_json else summary(status, moment, found) + "\n")
    return EXIT_UNHEALTHY if found else EXIT_HEALTHY


def _duration(seconds: float) -> str:
    """
    >>> [_duration(s) for s in (0.25, 42, 600, 7380, 200000)]
    ['0.2 s', '42 s', '10 min', '2 h 3 min', '2 d 7 h']
    """
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / (1 << 20):.1f}"

"""The node's heartbeat: per-camera rates and latencies, the outbox's depth and drops, disk and temperature.

A technician looking at central should see at a glance that a node is alive, that each camera delivers
frames, how long detection takes, and whether events pile up in the spool -- before an officer notices that
events stopped. Rates are computed between two heartbeats from cumulative counters (so a missed heartbeat
loses nothing); latencies are percentiles over a window of recent detector runs.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from edge_agent.contract import CameraHealth, Heartbeat, ModelRef, OutboxHealth, utcnow
from edge_agent.delivery.items import OutboxStats

THERMAL_ROOT: Final = Path("/sys/class/thermal")
# Zone types that are the CPU/SoC on Raspberry Pi (cpu-thermal), Jetson (CPU-therm) and x86 (x86_pkg_temp).
_CPU_ZONE_HINTS: Final = ("cpu", "soc", "x86_pkg", "package")


class LatencyWindow:
    """The last ``size`` latencies of one camera's detector runs, with nearest-rank percentiles.

    >>> w = LatencyWindow(size=100)
    >>> for ms in range(1, 101):
    ...     w.record(float(ms))
    >>> w.percentile(50), w.percentile(95)
    (50.0, 95.0)
    """

    def __init__(self, size: int = 256) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def record(self, ms: float) -> None:
        with self._lock:
            self._values.append(ms)

    def percentile(self, q: float) -> float | None:
        with self._lock:
            values = sorted(self._values)
        if not values:
            return None
        rank = max(1, math.ceil(q / 100.0 * len(values)))
        return values[rank - 1]


@dataclass(frozen=True, slots=True)
class CameraSample:
    """Cumulative counters of one camera at one moment (the agent's capture and pipeline stats)."""

    camera_id: str
    frames: int
    detected: int
    dropped: int
    decode_errors: int
    inference_ms_p50: float | None = None
    inference_ms_p95: float | None = None
    reconnects: int = 0


def cpu_temperature(root: Path = THERMAL_ROOT) -> float | None:
    """The CPU/SoC temperature in °C from Linux thermal zones (preferring a CPU-like zone); None if unreadable."""
    readings: list[tuple[bool, float]] = []
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip().lower()
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        celsius = milli / 1000.0
        if -60.0 <= celsius <= 200.0:
            readings.append((any(h in kind for h in _CPU_ZONE_HINTS), celsius))
    if not readings:
        return None
    preferred = [c for is_cpu, c in readings if is_cpu]
    return (preferred or [c for _, c in readings])[0]


def disk_free(path: Path) -> int | None:
    """Free bytes on the filesystem holding ``path`` (the outbox); None if it cannot be read."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


class HeartbeatBuilder:
    """Builds ``Heartbeat`` messages; every source is injected so tests control time and numbers."""

    def __init__(
        self,
        node_id: str,
        *,
        software: str,
        config_version: int | None,
        cameras: Callable[[], Sequence[CameraSample]],
        outbox: Callable[[], OutboxStats],
        reconnects: Callable[[], int],
        disk_path: Path,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
        wall_seconds: Callable[[], float] = time.time,
        thermal_root: Path = THERMAL_ROOT,
        model: ModelRef | None = None,
    ) -> None:
        self.node_id = node_id
        self.model = model  # replaced by the agent when a model update swaps the detector
        self.software = software
        self.config_version = config_version
        self._cameras = cameras
        self._outbox = outbox
        self._reconnects = reconnects
        self._disk_path = disk_path
        self._clock = clock
        self._wall = wall
        self._wall_seconds = wall_seconds
        self._thermal_root = thermal_root
        self._started = clock()
        self._previous: dict[str, tuple[float, CameraSample]] = {}

    def build(self) -> Heartbeat:
        now = self._clock()
        cameras = [self._camera(sample, now) for sample in self._cameras()]
        stats = self._outbox()
        oldest = stats.oldest_created_at
        return Heartbeat(
            node_id=self.node_id,
            at=self._wall(),
            uptime_s=max(0.0, now - self._started),
            software=self.software[:64],
            config_version=self.config_version,
            model=self.model,
            cameras=cameras[:64],
            outbox=OutboxHealth(
                depth=stats.depth,
                uploads=stats.uploads,
                bytes=max(0, stats.bytes),
                max_bytes=stats.max_bytes,
                oldest_age_s=None if oldest is None else max(0.0, self._wall_seconds() - oldest),
                dropped={f"{k}.{r}": n for (k, r), n in sorted(stats.drops.items())},
                awaiting_central=stats.awaiting_central,
                unconfirmed_resent=stats.unconfirmed_resent,
            ),
            mqtt_reconnects=self._reconnects(),
            disk_free_bytes=disk_free(self._disk_path),
            cpu_temp_c=cpu_temperature(self._thermal_root),
        )

    def _camera(self, sample: CameraSample, now: float) -> CameraHealth:
        previous = self._previous.get(sample.camera_id)
        self._previous[sample.camera_id] = (now, sample)
        fps = detect_fps = 0.0
        if previous is not None and now > previous[0]:
            elapsed = now - previous[0]
            fps = max(0, sample.frames - previous[1].frames) / elapsed
            detect_fps = max(0, sample.detected - previous[1].detected) / elapsed
        return CameraHealth(
            camera_id=sample.camera_id,
            fps=round(min(fps, 1000.0), 2),
            detect_fps=round(min(detect_fps, 1000.0), 2),
            frames_dropped=sample.dropped,
            decode_errors=sample.decode_errors,
            reconnects=sample.reconnects,
            inference_ms_p50=sample.inference_ms_p50,
            inference_ms_p95=sample.inference_ms_p95,
        )

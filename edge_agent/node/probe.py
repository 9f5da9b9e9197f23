"""What the agent's health endpoints read: the live objects of a running agent, and one judgement of health.

``LiveSources`` names the agent's live objects -- capture stats, scheduler counters, pipeline stats, latency
windows, ``DeliveryStats``, the outbox -- and ``Probe`` reads them at the moment it is asked. The metrics
endpoint (``metrics.py``), ``/healthz``, the status file and the systemd watchdog (``health.py``) all ask the
same ``Probe``, so they cannot disagree with each other, with the logs or with the heartbeat, and nothing is
counted twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from edge_agent.contract import ModelRef

if TYPE_CHECKING:
    from edge_agent.capture.reader import CaptureHealth
    from edge_agent.capture.scheduler import CameraCounters
    from edge_agent.delivery.heartbeat import LatencyWindow
    from edge_agent.delivery.items import DeliveryStats, OutboxStats
    from edge_agent.pipeline.camera import PipelineStats
    from edge_agent.pipeline.detect_loop import LoopStats

# A detector loop that completes no batch this long while cameras deliver frames is hung (a stuck native call):
# motion gating still detects every ``motion.refresh_s`` (at most 60 s), so a healthy loop is never this idle.
DETECTOR_STUCK_S: Final = 90.0
# Scheduler drop reasons listed even at zero, so a dashboard's rate() has a series from the first scrape.
DROP_REASONS: Final = ("overload", "stale")


def process_rss_bytes(statm: Path = Path("/proc/self/statm")) -> int | None:
    """Resident memory of this process (Linux ``/proc``); None where it cannot be read."""
    try:
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def process_cpu_seconds() -> float:
    """User plus system CPU time of this process, all threads."""
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True, slots=True)
class LiveSources:
    """Where a reading comes from: the agent's live objects, read at the moment of asking (never copied)."""

    node_id: str
    software: str
    model: ModelRef
    config_version: int
    started: float  # on ``clock``
    started_wall: float  # Unix seconds
    cameras: Callable[[], Sequence[CaptureHealth]]
    scheduler: Callable[[str], CameraCounters]
    pipeline: Callable[[str], PipelineStats | None]
    latency: Callable[[str], LatencyWindow | None]
    delivery: DeliveryStats
    outbox: Callable[[], OutboxStats]
    loop: LoopStats
    loop_alive: Callable[[], bool]
    last_event_at: Callable[[], datetime | None]
    clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True, slots=True)
class CameraReading:
    """One camera at one moment: its reader's health, its scheduler counters, its pipeline and latencies."""

    health: CaptureHealth
    counters: CameraCounters
    pipeline: PipelineStats | None
    inference_ms_p50: float | None
    inference_ms_p95: float | None

    @property
    def dropped(self) -> dict[str, int]:
        """Frames lost before the detector, by reason: the reader's unseen ones and the scheduler's drops."""
        out = {"unseen": self.health.unseen}
        out.update({r: 0 for r in DROP_REASONS})
        out.update({k.value: v for k, v in self.counters.dropped.items()})
        return out


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The answer of ``/healthz``: healthy, or the reasons it is not."""

    ok: bool
    reasons: tuple[str, ...]
    detector_problem: str | None
    freshest_frame_age_s: float | None

    def to_json(self) -> bytes:
        body = {
            "status": "ok" if self.ok else "unhealthy",
            "reasons": list(self.reasons),
            "detector": self.detector_problem or "running",
            "freshest_frame_age_s": self.freshest_frame_age_s,
        }
        return json.dumps(body).encode()


class Probe:
    """Reads the agent's health and counters from ``LiveSources``.

    It keeps one piece of state: when the detector loop last completed a batch (seen through
    ``LoopStats.batches`` changing between two looks), to tell a hung loop from an idle one.
    """

    def __init__(
        self, sources: LiveSources, *, camera_down_s: float, stuck_s: float = DETECTOR_STUCK_S
    ) -> None:
        self.sources = sources
        self.camera_down_s = camera_down_s
        self.stuck_s = stuck_s
        self._lock = threading.Lock()
        self._batches = sources.loop.batches
        self._progress_at = sources.clock()

    def cameras(self) -> list[CameraReading]:
        s = self.sources
        out = []
        for h in s.cameras():
            window = s.latency(h.camera_id)
            out.append(
                CameraReading(
                    health=h,
                    counters=s.scheduler(h.camera_id),
                    pipeline=s.pipeline(h.camera_id),
                    inference_ms_p50=None if window is None else window.percentile(50),
                    inference_ms_p95=None if window is None else window.percentile(95),
                )
            )
        return out

    def detector_problem(self, cameras: Sequence[CameraReading] | None = None) -> str | None:
        """None while the detector loop runs and makes progress; else what is wrong with it."""
        if not self.sources.loop_alive():
            return "detector loop is not running"
        now = self.sources.clock()
        batches = self.sources.loop.batches
        with self._lock:
            if batches != self._batches:
                self._batches, self._progress_at = batches, now
            idle = now - self._progress_at
        if idle <= self.stuck_s:
            return None
        readings = self.cameras() if cameras is None else cameras
        fed = any(
            c.health.last_frame_age_s is not None and c.health.last_frame_age_s < idle for c in readings
        )
        if fed:
            return f"detector loop completed no batch for {idle:.0f} s while cameras delivered frames"
        return None

    def health(self) -> HealthReport:
        """Healthy: the detector loop is alive and at least one camera delivered a frame within camera_down_s."""
        cams = self.cameras()
        problem = self.detector_problem(cams)
        ages = [c.health.last_frame_age_s for c in cams if c.health.last_frame_age_s is not None]
        freshest = min(ages) if ages else None
        reasons = [problem] if problem else []
        if freshest is None:
            reasons.append("no camera has delivered a frame yet")
        elif freshest > self.camera_down_s:
            reasons.append(f"no camera delivered a frame in the last {self.camera_down_s:.0f} s")
        return HealthReport(not reasons, tuple(reasons), problem, freshest)

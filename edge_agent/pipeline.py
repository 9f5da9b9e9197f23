"""One camera's path from frame to event: detect -> track -> rules -> events with evidence.

The pipeline is synchronous and clock-free: it acts on the frame it is given, with the frame's own times, so
tests drive it frame by frame and the agent drives it from a capture thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.config import CameraConfig
from edge_agent.contract import Event, EventType, EvidenceKind, Phase
from edge_agent.events import Context, EventBuilder
from edge_agent.evidence import EvidenceFile, EvidenceStore, annotate, encode_jpeg
from edge_agent.geometry import scale
from edge_agent.rules.base import Finding, Rule
from edge_agent.rules.stopping import IllegalStoppingRule
from edge_agent.tracker import ByteTracker
from edge_agent.types import Detections, Frame, Image

log = logging.getLogger(__name__)

Detect = Callable[[list[Image]], list[Detections]]
Sink = Callable[[Event, tuple[EvidenceFile, ...]], None]


@dataclass(slots=True)
class PipelineStats:
    frames_seen: int = 0
    frames_detected: int = 0
    detections: int = 0
    findings: int = 0
    detect_ms_total: float = 0.0
    events_by_phase: dict[str, int] = field(default_factory=dict)


def build_rules(cam: CameraConfig, frame_size: tuple[int, int]) -> list[Rule]:
    zones = {z.id: z for z in cam.zones}
    rules: list[Rule] = []
    for rc in cam.rules:
        if rc.type == "illegal_stopping":
            rules.append(IllegalStoppingRule(rc, zones[rc.zone], frame_size))
    return rules


class CameraPipeline:
    def __init__(
        self,
        cam: CameraConfig,
        frame_size: tuple[int, int],
        detect: Detect,
        ctx: Context,
        store: EvidenceStore,
        sink: Sink,
        tracker: ByteTracker | None = None,
    ) -> None:
        self.cam = cam
        self.frame_size = frame_size
        self._detect = detect
        self.tracker = tracker or ByteTracker()
        self.rules = build_rules(cam, frame_size)
        self.builder = EventBuilder(ctx)
        self.store = store
        self.sink = sink
        self.stats = PipelineStats()
        self._zones_px = {z.id: scale(z.polygon, frame_size[0], frame_size[1]) for z in cam.zones}
        self._interval = 1.0 / cam.detect_fps
        self._next_detect: float | None = None

    def due(self, frame: Frame) -> bool:
        """Whether this frame should go through the detector (per-camera detect fps)."""
        return self._next_detect is None or frame.mono >= self._next_detect - 1e-6

    def process(self, frame: Frame) -> list[Event]:
        """Run one frame through the stages; frames between detect slots only count."""
        self.stats.frames_seen += 1
        if not self.due(frame):
            return []
        base = frame.mono if self._next_detect is None else self._next_detect
        self._next_detect = max(base + self._interval, frame.mono)
        t0 = time.perf_counter()
        dets = self._detect([frame.image])[0]
        self.stats.detect_ms_total += (time.perf_counter() - t0) * 1000.0
        self.stats.frames_detected += 1
        self.stats.detections += len(dets)
        tracks = self.tracker.update(dets, frame.mono)
        events: list[Event] = []
        for rule in self.rules:
            for finding in rule.evaluate(tracks, frame.mono):
                self.stats.findings += 1
                events.append(self._emit(finding, frame))
        return events

    def _emit(self, finding: Finding, frame: Frame) -> Event:
        files: tuple[EvidenceFile, ...] = ()
        if finding.phase is Phase.START:
            files = (self._snapshot(finding, frame),)
        event = self.builder.build(finding, frame, [f.ref for f in files])
        self.stats.events_by_phase[finding.phase.value] = (
            self.stats.events_by_phase.get(finding.phase.value, 0) + 1
        )
        self.sink(event, files)
        return event

    def _snapshot(self, finding: Finding, frame: Frame) -> EvidenceFile:
        dwell = finding.measurements.get("dwell_s")
        title = finding.type.value.replace("_", " ").upper() if isinstance(finding.type, EventType) else ""
        caption = f"{title}  {self.cam.id}/{finding.zone_id}"
        if dwell is not None:
            caption += f"  dwell {dwell:.1f}s"
        caption += f"  {frame.wall.strftime('%Y-%m-%d %H:%M:%S')}Z"
        image = annotate(frame.image, self._zones_px[finding.zone_id], finding.objects, caption)
        return self.store.put(encode_jpeg(image), EvidenceKind.SNAPSHOT_ANNOTATED, "image/jpeg")

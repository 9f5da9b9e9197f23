"""One camera's path from frame to event: detect -> track -> rules -> events with evidence.

The pipeline is synchronous and clock-free: it acts on the frame it is given, with the frame's own times, so
tests drive it frame by frame. The agent feeds it frames the scheduler already sent through the shared,
batched detector (``process_detections``); ``process`` detects by itself at the camera's detect fps (tests,
replay).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from edge_agent.config import CameraConfig, EvidenceConfig
from edge_agent.contract import Event, Phase
from edge_agent.evidence.clips import ClipEncoder, ClipRing
from edge_agent.evidence.privacy import Anonymizer
from edge_agent.evidence.recorder import EvidenceRecorder
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore
from edge_agent.geometry import scale
from edge_agent.perception.tracker import ByteTracker
from edge_agent.pipeline.events import Context, EventBuilder
from edge_agent.rules.base import Finding, Rule
from edge_agent.rules.registry import build_rule_set
from edge_agent.rules.schedule import FrameClock, WallClock
from edge_agent.rules.signal import ColourSignal
from edge_agent.types import Detections, Frame, Image, Track

log = logging.getLogger(__name__)

Detect = Callable[[list[Image]], list[Detections]]
Sink = Callable[[Event, tuple[EvidenceFile, ...]], None]

# The measurement shown on a snapshot's caption, by preference.
_CAPTION_MEASURES = (("dwell_s", "dwell {:.1f}s"), ("speed_kmh", "{:.0f} km/h"), ("count", "{:.0f} persons"))


@dataclass(slots=True)
class PipelineStats:
    frames_seen: int = 0
    frames_detected: int = 0
    detections: int = 0
    findings: int = 0
    detect_ms_total: float = 0.0
    events_by_phase: dict[str, int] = field(default_factory=dict)
    ends_held: int = 0
    ticks: int = 0  # rule evaluations without a frame (time-based ends)


def build_rules(cam: CameraConfig, frame_size: tuple[int, int], clock: WallClock | None = None) -> list[Rule]:
    """The camera's rules (``rules.registry.build_rule_set`` also gives the frame inputs and signals)."""
    return build_rule_set(cam, frame_size, clock or FrameClock()).rules


def caption(finding: Finding, camera_id: str, frame: Frame) -> str:
    text = f"{finding.type.value.replace('_', ' ').upper()}  {camera_id}/{finding.zone_id}"
    for name, fmt in _CAPTION_MEASURES:
        if name in finding.measurements:
            text += "  " + fmt.format(finding.measurements[name])
            break
    return text + f"  {frame.wall.strftime('%Y-%m-%d %H:%M:%S')}Z"


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
        evidence: EvidenceConfig | None = None,
        encoder: ClipEncoder | None = None,
        ring: ClipRing | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick_after_s: float = 1.0,
        anonymizer: Anonymizer | None = None,
    ) -> None:
        """``clock`` (monotonic seconds) only measures how long ago the last frame arrived, for ``tick``;
        ``tick_after_s``: how long without an analysed frame before the rules are ticked."""
        self.cam = cam
        self._clock = clock
        self._tick_after_s = tick_after_s
        self._last_frame: Frame | None = None
        self._last_arrival = 0.0
        self._last_analysed = -float("inf")  # camera time of the last frame the rules saw (or the last tick)
        self.closed = False
        self.frame_size = frame_size
        self._detect = detect
        self.tracker = tracker or ByteTracker()
        # Rules run on monotonic time; schedules and signal messages read UTC through the latest frame.
        self.clock = FrameClock()
        rule_set = build_rule_set(cam, frame_size, self.clock)
        self.rules = rule_set.rules
        self.frame_inputs = rule_set.inputs  # signal heads read by colour, background models
        self.signals = rule_set.signals  # by id; external feeds accept pushed state messages
        self.heads = [s for s in rule_set.signals.values() if isinstance(s, ColourSignal)]
        self.builder = EventBuilder(ctx)
        self.store = store
        self.sink = sink
        self.stats = PipelineStats()
        self.last_tracks: list[Track] = []
        zones_px = {z.id: scale(z.polygon, frame_size[0], frame_size[1]) for z in cam.zones}
        zones_px.update({ln.id: scale(ln.points, frame_size[0], frame_size[1]) for ln in cam.lines})
        self.recorder = EvidenceRecorder(
            evidence or EvidenceConfig(),
            store,
            zones_px,
            encoder if encoder is not None else ClipEncoder(),
            ring=ring,  # the agent's, fed by the capture reader; None: the recorder's own, fed by observe
            anonymizer=anonymizer,  # faces blurred before anything is stored (None: unit tests, no model)
        )
        self._started: dict[tuple[str, str], Event] = {}  # open incidents' START events, for clip UPDATEs
        self._held_ends: dict[tuple[str, str], Event] = {}  # ENDs waiting for their incident's clip
        self._interval = 1.0 / cam.detect_fps
        self._next_detect: float | None = None

    def due(self, frame: Frame) -> bool:
        """Whether this frame should go through the detector (per-camera detect fps)."""
        return self._next_detect is None or frame.mono >= self._next_detect - 1e-6

    def observe(self, frame: Frame) -> list[Event]:
        """Every decoded frame: clocks, the evidence clip ring, and clips finished since the last frame."""
        self.stats.frames_seen += 1
        self._last_frame, self._last_arrival = frame, self._clock()
        self.clock.observe(frame)
        self.read_heads(frame)
        self.recorder.observe(frame)
        return self._emit_ready(frame)

    def read_heads(self, frame: Frame) -> None:
        """Signal heads read a frame (a small crop each: more readings bridge LED flicker). The agent calls it
        for every frame taken from the camera, detected or not; a frame read twice counts once."""
        for head in self.heads:
            head.update(frame)

    def process(self, frame: Frame) -> list[Event]:
        """Observe a frame and, when a detect slot is due, run it through the detector and the stages."""
        events = self.observe(frame)
        if not self.due(frame):
            return events
        t0 = time.perf_counter()
        dets = self._detect([frame.image])[0]
        return events + self._after_detect(frame, dets, (time.perf_counter() - t0) * 1000.0)

    def process_detections(self, frame: Frame, dets: Detections, detect_ms: float = 0.0) -> list[Event]:
        """A frame the scheduler already sent through the shared detector (it owns rate, gating, refresh)."""
        return self.observe(frame) + self._after_detect(frame, dets, detect_ms)

    def _after_detect(self, frame: Frame, dets: Detections, detect_ms: float) -> list[Event]:
        base = frame.mono if self._next_detect is None else self._next_detect
        self._next_detect = max(base + self._interval, frame.mono)
        self.stats.detect_ms_total += detect_ms
        self.stats.frames_detected += 1
        self.stats.detections += len(dets)
        tracks = self.tracker.update(dets, frame.mono)
        self.last_tracks = tracks
        self.recorder.note_tracks(frame, tracks)
        for source in self.frame_inputs:
            source.update(frame)
        self._last_analysed = max(self._last_analysed, frame.mono)
        return self._run_rules(lambda rule: rule.evaluate(tracks, frame.mono), frame)

    def _run_rules(self, step: Callable[[Rule], list[Finding]], frame: Frame) -> list[Event]:
        events: list[Event] = []
        for rule in self.rules:
            for finding in step(rule):
                self.stats.findings += 1
                event = self._on_finding(finding, frame)
                if event is not None:
                    events.append(event)
        return events

    def camera_now(self) -> float | None:
        """The camera's clock now: the last frame's time plus the (monotonic) time since it arrived. File
        frames carry file time, so this runs on the clip's clock, not the wall's, and never jumps at a loop."""
        if self._last_frame is None:
            return None
        return self._last_frame.mono + max(0.0, self._clock() - self._last_arrival)

    def _stamp(self, now: float) -> Frame:
        """The last frame, re-timed to ``now``: what an END sent without a new frame is built on."""
        last = self._last_frame
        assert last is not None
        return dataclasses.replace(last, mono=now, wall=last.wall + timedelta(seconds=now - last.mono))

    def tick(self) -> list[Event]:
        """Time goes on without frames (the detector starved, the stream down, a scheduler skipping this
        camera): after ``tick_after_s`` without an analysed frame the rules see an empty frame at the camera's
        clock, so incidents whose objects are gone end within their grace. Call it often (the agent: every
        second); it does nothing while frames are analysed."""
        now = self.camera_now()
        if now is None or self.closed or now - self._last_analysed < self._tick_after_s:
            return []
        self._last_analysed = now
        self.stats.ticks += 1
        stamp = self._stamp(now)
        events = self._run_rules(lambda rule: rule.evaluate([], now), stamp)
        if self._held_ends:
            self.recorder.flush()  # no frames are coming to finish their clips: send what was recorded
        return events + self._emit_ready(stamp)

    def _on_finding(self, finding: Finding, frame: Frame) -> Event | None:
        key = (finding.rule_id, finding.key)
        files: tuple[EvidenceFile, ...] = ()
        if finding.phase is Phase.START:
            files = self.recorder.start(finding, frame, caption(finding, self.cam.id, frame))
        event = self.builder.build(finding, frame, [f.ref for f in files])
        if finding.phase is Phase.START:
            self._started[key] = event
        if finding.phase is Phase.END:
            if self.recorder.clip_pending(*key):
                self._held_ends[key] = event  # built now, so its times are right; sent after the clip
                self.stats.ends_held += 1
                return None
            self._started.pop(key, None)
        self._send(event, files)
        return event

    def _emit_ready(self, frame: Frame | None) -> list[Event]:
        """UPDATEs with finished clips, each followed by its incident's held END if there is one."""
        out: list[Event] = []
        for ready in self.recorder.ready():
            start = self._started.get(ready.key)
            if start is not None and ready.files:
                observed = start.observed_at if frame is None else max(frame.wall, start.observed_at)
                update = start.model_copy(
                    update={
                        "phase": Phase.UPDATE,
                        "observed_at": observed,
                        "evidence": [f.ref for f in ready.files],
                    }
                )
                self._send(update, ready.files)
                out.append(update)
            held = self._held_ends.pop(ready.key, None)
            if held is not None:
                self._started.pop(ready.key, None)
                self._send(held, ())
                out.append(held)
        return out

    def _send(self, event: Event, files: tuple[EvidenceFile, ...]) -> None:
        phase = event.phase.value
        self.stats.events_by_phase[phase] = self.stats.events_by_phase.get(phase, 0) + 1
        self.sink(event, files)

    def close(self, frame: Frame | None = None) -> list[Event]:
        """At shutdown or a config change: end every open incident (at the camera's clock now), finish
        pending clips and send them, then the held ENDs. Nothing stays open."""
        if self.closed:
            return []
        self.closed = True
        events: list[Event] = []
        now = self.camera_now()
        if now is not None:
            stamp = self._stamp(now)
            events = self._run_rules(lambda rule: rule.close(now), stamp)
        self.recorder.flush()
        return events + self._emit_ready(frame)

"""Rule scenarios on the real clips: YAML test data, a detection cache, the runner and the scoring.

A *scenario* is one camera config (zones, lines, signals, ground plane, one rule) applied to one real clip in
``assets/videos``, with the event time windows a person labelled by looking at the footage
(``tests/scenarios/data/*.yaml``). It runs the real int8 YOLO11n model, the real tracker and the real rule
through ``CameraPipeline.process_detections``, frame by frame, with file time as the clock.

The detector is the expensive part (about 0.1 s per frame on 2 cores), so ``DetectionCache`` runs it once per
(clip, detect_fps) frame and every scenario on that clip reuses the boxes. The pipeline's own detect-fps
schedule (``CameraPipeline.due``) picks the frames, so the cached frames are exactly those the pipeline would
have detected; the colour signal heads and background models still see those frames' pixels.

Scoring. An event's START time is its ``started_at`` (when the rule says the condition began) in clip seconds.
A START matches a window when it lies in ``[start[0] - TOLERANCE_S, start[1] + TOLERANCE_S]`` and, if the
window has a ``region``, one of the event's objects has its bottom-centre (at the START message) inside it.
Each window is matched by at most one event unless it is ``many`` (dense traffic: any number of events may
fall in it). An event that matches no window is a false positive; so is every event of a negative scenario.
Recall is matched windows over windows; precision is matching events over events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import cv2
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.capture.sources import VideoSource
from edge_agent.config import CameraConfig, EvidenceConfig, ModelConfig
from edge_agent.contract import Event, EventType, ModelRef, Phase
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore
from edge_agent.geometry import point_in_polygon, scale
from edge_agent.perception.detector.onnx_detector import OnnxDetector
from edge_agent.perception.tracker import ByteTracker
from edge_agent.pipeline.camera import CameraPipeline
from edge_agent.pipeline.events import Context
from edge_agent.rules.motion import is_rider, on_motorcycle, speed_hps
from edge_agent.rules.ruleconfig import RiderConfig
from edge_agent.types import Detections, Frame
from tests.paths import ASSETS, MODEL_640

DATA = Path(__file__).resolve().parent / "data"
VIDEOS = ASSETS / "videos"
TOLERANCE_S = 0.5  # seconds either side of a labelled window (2-5 detect frames at 5-10 fps, box/track lag)
MONO0 = 1000.0  # monotonic time of frame 0 (file time drives the clock, so runs are reproducible)
WALL0 = datetime(2025, 3, 3, 2, 0, 0, tzinfo=UTC)  # UTC of frame 0 (09:00 in Vietnam, a Monday)

NormPoint = tuple[float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    """One expected incident: when its START lies (clip seconds) and, optionally, where its road user is."""

    start: tuple[float, float] = Field(description="Clip seconds [from, to] in which the START must lie.")
    region: tuple[NormPoint, NormPoint] | None = Field(
        default=None, description="Normalized box (top-left, bottom-right) holding an object's anchor."
    )
    many: bool = Field(default=False, description="Any number of events may match (dense traffic).")
    note: str = Field(min_length=1, description="What happens there, as seen on the footage.")

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start[1] < self.start[0]:
            raise ValueError(f"window {self.start} ends before it starts")
        return self


class Scenario(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Unique scenario id.")
    rule: EventType = Field(description="The event type under test (the camera's only rule).")
    expect: Literal["positive", "negative"]
    clip: str = Field(description="File name under assets/videos.")
    detect_fps: float = Field(default=10.0, gt=0.0, le=30.0)
    seconds: float | None = Field(default=None, gt=0.0, description="Only the first N seconds of the clip.")
    labelled: str = Field(min_length=1, description="How zones and windows were labelled from the footage.")
    demonstrates: str = Field(min_length=1, description="What a pass shows, honestly (and what it does not).")
    camera: dict[str, Any] = Field(description="CameraConfig fields other than id and source.")
    windows: list[Window] = Field(default_factory=list)
    known_failure: str | None = Field(
        default=None,
        description="Why the real model, tracker or rule cannot pass this scenario today (the test is a strict "
        "xfail and the miss or false positive still counts in the precision/recall).",
    )

    @model_validator(mode="after")
    def _windows(self) -> Scenario:
        if self.expect == "positive" and not self.windows:
            raise ValueError(f"{self.id}: a positive scenario needs expected windows")
        if self.expect == "negative" and self.windows:
            raise ValueError(f"{self.id}: a negative scenario has no expected windows")
        types = {r.get("type") for r in self.camera.get("rules", [])}
        if types != {self.rule.value}:
            raise ValueError(f"{self.id}: camera rules {types} must all be of type {self.rule.value}")
        return self

    def camera_config(self) -> CameraConfig:
        cam_id = self.id.replace("_", "-")[:64]
        return CameraConfig.model_validate(
            {
                "id": cam_id,
                "source": str(VIDEOS / self.clip),
                "realtime": False,
                "detect_fps": self.detect_fps,
                **self.camera,
            }
        )


def load_scenarios(paths: Iterable[Path] | None = None) -> list[Scenario]:
    """Every scenario of ``tests/scenarios/data/*.yaml`` (or of ``paths``), validated, ids unique."""
    out: list[Scenario] = []
    for path in sorted(paths if paths is not None else DATA.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for raw in doc.get("scenarios", []):
            out.append(Scenario.model_validate(raw))
    ids = [s.id for s in out]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ValueError(f"duplicate scenario ids {sorted(dupes)}")
    for s in out:
        s.camera_config()  # the camera part must be a valid agent config
    return out


# --- detection cache -------------------------------------------------------------------------------------


def model_config() -> ModelConfig:
    """The agent's default detector settings (conf 0.1, per-class NMS 0.45, car/truck/bus merge)."""
    return ModelConfig(path=MODEL_640, backend="onnxruntime")  # pinned: auto could pick by load of the day


class DetectionCache:
    """Detections per (clip, detect_fps, frame index), computed once with the real model.

    With ``directory`` the boxes are also kept on disk between runs, keyed by the model's and the clip's
    SHA-256 and the detector settings (for development and ``scripts/eval_rules.py --cache``).
    """

    def __init__(self, directory: Path | None = None, config: ModelConfig | None = None) -> None:
        self.config = config or model_config()
        self.directory = directory
        self._detector: OnnxDetector | None = None
        self._boxes: dict[tuple[str, float], dict[int, Detections]] = {}
        self._dirty: set[tuple[str, float]] = set()
        self.detect_seconds = 0.0
        self.detect_frames = 0

    @property
    def detector(self) -> OnnxDetector:
        if self._detector is None:
            self._detector = OnnxDetector(self.config)
        return self._detector

    def model_ref(self) -> ModelRef:
        return ModelRef(name=self.detector.model_name, sha256=self.detector.model_sha256)

    def _file(self, clip: str, fps: float) -> Path | None:
        if self.directory is None:
            return None
        clip_hash = hashlib.sha256((VIDEOS / clip).read_bytes()).hexdigest()[:16]
        settings = self.config.model_dump_json(exclude={"path", "threads"})
        key = hashlib.sha256(f"{self.detector.model_sha256}{clip_hash}{fps}{settings}".encode()).hexdigest()
        return self.directory / f"{Path(clip).stem}-{fps:g}fps-{key[:16]}.pkl"

    def _table(self, clip: str, fps: float) -> dict[int, Detections]:
        key = (clip, fps)
        table = self._boxes.get(key)
        if table is None:
            table = {}
            path = self._file(clip, fps)
            if path is not None and path.is_file():
                table = pickle.loads(path.read_bytes())
            self._boxes[key] = table
        return table

    def get(self, clip: str, fps: float, frame: Frame) -> Detections:
        table = self._table(clip, fps)
        dets = table.get(frame.index)
        if dets is None:
            t0 = time.perf_counter()
            dets = self.detector.detect([frame.image])[0]
            self.detect_seconds += time.perf_counter() - t0
            self.detect_frames += 1
            table[frame.index] = dets
            self._dirty.add((clip, fps))
        return dets

    def save(self) -> None:
        for clip, fps in sorted(self._dirty):
            path = self._file(clip, fps)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(pickle.dumps(self._boxes[(clip, fps)]))
        self._dirty.clear()


# --- running -----------------------------------------------------------------------------------------------


def clip_frames(clip: str, seconds: float | None = None, passes: int = 1) -> Iterator[Frame]:
    """The clip's frames with file time as the clock: mono ``MONO0 + index / fps``, UTC ``WALL0 + ...``.
    With ``passes`` > 1 the clip loops as the agent's demo does (``VideoSource(loop=True)``: the clock runs
    on across the loop) and ends after that many passes."""
    source = VideoSource(
        "scenario",
        str(VIDEOS / clip),
        realtime=False,
        loop=passes > 1,
        clock=lambda: MONO0,
        wall=lambda: WALL0,
    )
    per_pass: int | None = None
    for frame in source.frames():
        if per_pass is None and passes > 1:
            per_pass = frames_in(clip)
        if per_pass is not None and frame.index >= per_pass * passes:
            return
        if seconds is not None and frame.mono - MONO0 > seconds * passes + 1e-6:
            return
        yield frame


def frames_in(clip: str) -> int:
    """Decoded frames of a clip (counted by decoding: container frame counts are estimates)."""
    cap = cv2.VideoCapture(str(VIDEOS / clip))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


@dataclass(frozen=True, slots=True)
class Start:
    """A START event, in clip seconds."""

    event: Event
    t: float  # started_at
    raised: float  # observed_at of the START message
    anchors: tuple[NormPoint, ...]  # bottom-centres of its objects at the START message

    def label(self) -> str:
        objs = ", ".join(f"#{o.track_id} {o.label}" for o in self.event.objects[:4])
        return f"START {self.t:.2f}s (raised {self.raised:.2f}s) [{objs}]"


@dataclass(slots=True)
class Run:
    scenario: Scenario
    events: list[tuple[Event, tuple[EvidenceFile, ...]]] = field(default_factory=list)
    frames: int = 0
    detect_frames: int = 0
    wall_s: float = 0.0
    frame_size: tuple[int, int] = (0, 0)

    @property
    def starts(self) -> list[Start]:
        out = []
        for event, _ in self.events:
            if event.phase is not Phase.START or event.type is not self.scenario.rule:
                continue
            anchors = tuple(((o.box.x1 + o.box.x2) / 2.0, o.box.y2) for o in event.objects)
            out.append(
                Start(
                    event,
                    (event.started_at - WALL0).total_seconds(),
                    (event.observed_at - WALL0).total_seconds(),
                    anchors,
                )
            )
        return out


def run_scenario(
    scenario: Scenario,
    cache: DetectionCache,
    evidence_dir: Path,
    evidence: EvidenceConfig | None = None,
    passes: int = 1,
) -> Run:
    """Run one scenario through tracker, rule, events and evidence (snapshot only unless ``evidence``);
    ``passes`` > 1 loops the clip (the detections of a looped frame are those of its frame in the clip)."""
    cam = scenario.camera_config()
    run = Run(scenario)
    store = EvidenceStore(evidence_dir)
    ctx = Context("scenario-node", cam.id, cache.model_ref(), 1)
    cfg = evidence or EvidenceConfig(clip=False, crops=False, clean_snapshot=False)

    def sink(event: Event, files: tuple[EvidenceFile, ...]) -> None:
        run.events.append((event, files))

    def unused_detect(images: object) -> list[Detections]:
        raise AssertionError("scenarios feed cached detections")

    t0 = time.perf_counter()
    pipeline: CameraPipeline | None = None
    last: Frame | None = None
    per_pass = frames_in(scenario.clip) if passes > 1 else 0
    for frame in clip_frames(scenario.clip, scenario.seconds, passes):
        if pipeline is None:
            run.frame_size = (frame.width, frame.height)
            pipeline = CameraPipeline(cam, run.frame_size, unused_detect, ctx, store, sink, evidence=cfg)
        last = frame
        run.frames += 1
        if pipeline.due(frame):
            in_clip = dataclasses.replace(frame, index=frame.index % per_pass) if per_pass else frame
            dets = cache.get(scenario.clip, cam.detect_fps, in_clip)
            pipeline.process_detections(frame, dets)
            run.detect_frames += 1
        else:
            pipeline.observe(frame)
    if pipeline is not None:
        pipeline.close(last)
    run.wall_s = time.perf_counter() - t0
    return run


# --- scoring -------------------------------------------------------------------------------------------------


def _in_region(anchors: tuple[NormPoint, ...], region: tuple[NormPoint, NormPoint] | None) -> bool:
    if region is None:
        return True
    (x1, y1), (x2, y2) = region
    return any(x1 <= x <= x2 and y1 <= y <= y2 for x, y in anchors)


@dataclass(slots=True)
class Score:
    scenario: Scenario
    starts: list[Start]
    hits: list[int | None]  # per START: the window it matched, or None (false positive)
    matched: set[int]

    @property
    def tp(self) -> int:
        return sum(h is not None for h in self.hits)

    @property
    def fp(self) -> int:
        return sum(h is None for h in self.hits)

    @property
    def windows(self) -> int:
        return len(self.scenario.windows)

    @property
    def passed(self) -> bool:
        """Positive: at least one START in a window; negative: no START at all."""
        if self.scenario.expect == "negative":
            return not self.starts
        return self.tp >= 1


def score(scenario: Scenario, starts: list[Start], tolerance_s: float = TOLERANCE_S) -> Score:
    """Match STARTs to windows (see the module notes); earliest START first, earliest free window first."""
    hits: list[int | None] = []
    matched: set[int] = set()
    for start in sorted(starts, key=lambda s: s.t):
        hit: int | None = None
        for i, w in enumerate(scenario.windows):
            in_time = w.start[0] - tolerance_s <= start.t <= w.start[1] + tolerance_s
            if not in_time or not _in_region(start.anchors, w.region):
                continue
            if i not in matched:
                hit = i
                break
            if w.many and hit is None:
                hit = i
        if hit is not None:
            matched.add(hit)
        hits.append(hit)
    return Score(scenario, sorted(starts, key=lambda s: s.t), hits, matched)


@dataclass(slots=True)
class RuleMetrics:
    rule: str
    scenarios: int = 0
    positives: int = 0
    negatives: int = 0
    passed: int = 0
    events: int = 0
    tp: int = 0
    windows: int = 0
    windows_hit: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / self.events if self.events else None

    @property
    def recall(self) -> float | None:
        return self.windows_hit / self.windows if self.windows else None


def metrics(scores: Iterable[Score]) -> dict[str, RuleMetrics]:
    """Per rule type, over all its scenarios."""
    out: dict[str, RuleMetrics] = {}
    for sc in scores:
        m = out.setdefault(sc.scenario.rule.value, RuleMetrics(sc.scenario.rule.value))
        m.scenarios += 1
        m.positives += sc.scenario.expect == "positive"
        m.negatives += sc.scenario.expect == "negative"
        m.passed += sc.passed
        m.events += len(sc.starts)
        m.tp += sc.tp
        m.windows += sc.windows
        m.windows_hit += len(sc.matched)
    return dict(sorted(out.items()))


# --- riders without scooters --------------------------------------------------------------------------------


class RiderClip(_Strict):
    clip: str
    detect_fps: float = Field(default=10.0, gt=0.0, le=30.0)
    seconds: float | None = Field(default=None, gt=0.0)
    carriageway: list[NormPoint] = Field(min_length=3, description="Road surface without sidewalks.")
    labelled: str = Field(min_length=1)
    in_tests: bool = Field(
        default=True, description="Also measured by the test suite (False: eval script only)."
    )


class RiderData(_Strict):
    min_travel_heights: float = Field(
        gt=0.0,
        description="A person track whose anchor travels this many of its box heights on the carriageway "
        "(net) is a rider; checked by eye on every such track.",
    )
    clips: list[RiderClip]


def load_rider_data(path: Path | None = None) -> RiderData:
    doc = yaml.safe_load((path or DATA / "riders.yaml").read_text(encoding="utf-8"))
    return RiderData.model_validate(doc)


@dataclass(slots=True)
class RiderTrack:
    track_id: int
    frames: int = 0  # frames matched (detected) on the carriageway
    with_bike: int = 0  # of those, frames with a motorcycle box under the person (motion.on_motorcycle)
    flagged: int = 0  # frames the rider heuristic (motion.is_rider) calls it a motorbike
    flagged_without_bike: int = 0  # frames without a motorcycle box under it that the heuristic covers
    travel_heights: float = 0.0
    first: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (t, x, y) of the first in-zone anchor
    last: tuple[float, float, float] = (0.0, 0.0, 0.0)
    height: float = 1.0
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # a box from the middle of the track
    speeds: list[float] = field(default_factory=list)  # body heights per second on each frame

    @property
    def rider(self) -> bool:
        return self.travel_heights > 0.0


@dataclass(slots=True)
class RiderStats:
    clip: str
    person_tracks: int = 0  # person tracks with an anchor on the carriageway
    riders: list[RiderTrack] = field(default_factory=list)
    others: list[RiderTrack] = field(default_factory=list)  # persons on the carriageway that do not travel
    rider_frames: int = 0
    rider_frames_without_bike: int = 0
    rider_frames_without_bike_flagged: int = 0
    rider_speeds_hps: list[float] = field(
        default_factory=list
    )  # per rider frame, as the heuristic measures it

    @property
    def frame_rate_without_bike(self) -> float:
        return self.rider_frames_without_bike / self.rider_frames if self.rider_frames else 0.0

    @property
    def tracks_mostly_without_bike(self) -> list[RiderTrack]:
        return [r for r in self.riders if r.with_bike * 2 < r.frames]

    @property
    def tracks_never_with_bike(self) -> list[RiderTrack]:
        return [r for r in self.riders if r.with_bike == 0]

    def flagged(self, tracks: Iterable[RiderTrack]) -> list[RiderTrack]:
        return [r for r in tracks if r.flagged > 0]


def rider_stats(item: RiderClip, min_travel_heights: float, cache: DetectionCache) -> RiderStats:
    """How often the model finds a rider but not the scooter under them, and what the rider heuristic makes of
    it (see ``docs/benchmarks.md``). Persons are judged by their tracks (the real tracker on the cached boxes)."""
    riders_cfg = RiderConfig()
    tracker = ByteTracker()
    stats = RiderStats(item.clip)
    per: dict[int, RiderTrack] = {}
    polygon: list[tuple[float, float]] | None = None
    interval = 1.0 / item.detect_fps
    next_t: float | None = None
    for frame in clip_frames(item.clip, item.seconds):
        if next_t is not None and frame.mono < next_t - 1e-6:
            continue
        next_t = max((frame.mono if next_t is None else next_t) + interval, frame.mono)
        if polygon is None:
            polygon = scale(item.carriageway, frame.width, frame.height)
        dets = cache.get(item.clip, item.detect_fps, frame)
        bikes = [dets.xyxy[i] for i in range(len(dets)) if dets.label(i) == "motorcycle"]
        t = frame.mono - MONO0
        for track in tracker.update(dets, frame.mono):
            if track.label != "person" or track.time_since_update > 0:
                continue
            ax, ay = track.anchor
            if not point_in_polygon((ax, ay), polygon):
                continue
            r = per.get(track.track_id)
            if r is None:
                r = per[track.track_id] = RiderTrack(track.track_id, first=(t, ax, ay))
            r.frames += 1
            on_bike = any(on_motorcycle(track.xyxy, b) for b in bikes)
            flagged = is_rider(track, frame.mono, riders_cfg)
            r.with_bike += on_bike
            r.flagged += flagged
            r.flagged_without_bike += flagged and not on_bike
            r.speeds.append(speed_hps(track, frame.mono, riders_cfg.window_s))
            r.last = (t, ax, ay)
            r.height = max(r.height, track.height)
            if r.frames == 3 or r.box == (0.0, 0.0, 0.0, 0.0):
                r.box = tuple(float(v) for v in track.xyxy)  # type: ignore[assignment]
    stats.person_tracks = len(per)
    for r in per.values():
        travel = ((r.last[1] - r.first[1]) ** 2 + (r.last[2] - r.first[2]) ** 2) ** 0.5 / r.height
        if travel >= min_travel_heights:
            r.travel_heights = travel
            stats.riders.append(r)
            stats.rider_frames += r.frames
            stats.rider_frames_without_bike += r.frames - r.with_bike
            stats.rider_frames_without_bike_flagged += r.flagged_without_bike
            stats.rider_speeds_hps += r.speeds
        else:
            stats.others.append(r)
    return stats


def person_speeds_hps(clip: str, detect_fps: float, cache: DetectionCache) -> list[float]:
    """Per frame, the speed (body heights per second, as the rider heuristic measures it) of every person track
    of a clip: on the pedestrian street, how fast walking looks to the heuristic."""
    window = RiderConfig().window_s
    tracker = ByteTracker()
    out: list[float] = []
    next_t: float | None = None
    for frame in clip_frames(clip):
        if next_t is not None and frame.mono < next_t - 1e-6:
            continue
        next_t = max((frame.mono if next_t is None else next_t) + 1.0 / detect_fps, frame.mono)
        for track in tracker.update(cache.get(clip, detect_fps, frame), frame.mono):
            if track.label == "person" and track.time_since_update == 0:
                out.append(speed_hps(track, frame.mono, window))
    return out

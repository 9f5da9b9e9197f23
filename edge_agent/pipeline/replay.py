"""Replay a clip through the real pipeline with no broker: events, evidence and an annotated video in a folder.

For operators tuning zones offline: draw a zone, replay the camera's clip, watch ``annotated.mp4`` and read
``events.jsonl``, adjust, repeat. The same pipeline code as the live agent runs, so what the replay shows is
what the node will do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from edge_agent.capture.sources import VideoSource
from edge_agent.config import AgentConfig, CameraConfig
from edge_agent.contract import Event, ModelRef
from edge_agent.evidence.privacy import Anonymizer
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore
from edge_agent.geometry import scale
from edge_agent.perception.detector.onnx_detector import OnnxDetector
from edge_agent.pipeline.camera import CameraPipeline
from edge_agent.pipeline.events import Context
from edge_agent.types import Frame, Image, Track

log = logging.getLogger(__name__)

TRACK_COLOUR = (80, 220, 80)
ZONE_COLOUR = (0, 200, 255)


@dataclass(slots=True)
class ReplaySummary:
    camera_id: str
    frames: int = 0
    frames_detected: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0
    events: dict[str, int] = field(default_factory=dict)
    evidence_files: int = 0
    video: str | None = None


class VideoWriter:
    """Annotated output as H.264 through ffmpeg (plays in a browser); MJPEG AVI via OpenCV without ffmpeg."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float) -> None:
        self.size = size
        self._proc: subprocess.Popen[bytes] | None = None
        self._cv: cv2.VideoWriter | None = None
        exe = shutil.which("ffmpeg")
        if exe:
            self.path = path.with_suffix(".mp4")
            cmd = [
                exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
                "-s", f"{size[0]}x{size[1]}", "-r", f"{fps:.3f}", "-i", "-", "-c:v", "libx264",
                "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p",
                "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-movflags", "+faststart", str(self.path),
            ]  # fmt: skip
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        else:
            self.path = path.with_suffix(".avi")
            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)

    def write(self, image: Image) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.write(np.ascontiguousarray(image).tobytes())
        elif self._cv is not None:
            self._cv.write(image)

    def close(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
            if self._proc.wait(timeout=120) != 0:
                log.error("ffmpeg failed writing %s", self.path)
        if self._cv is not None:
            self._cv.release()


def draw(image: Image, zones: dict[str, list[tuple[float, float]]], tracks: list[Track], note: str) -> Image:
    out = image.copy()
    for zone_id, pts in zones.items():
        poly = np.array([[round(x), round(y)] for x, y in pts], np.int32)
        cv2.polylines(out, [poly], True, ZONE_COLOUR, 2, cv2.LINE_AA)
        cv2.putText(out, zone_id, tuple(poly[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.5, ZONE_COLOUR, 1, cv2.LINE_AA)
    for t in tracks:
        x1, y1, x2, y2 = (round(float(v)) for v in t.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), TRACK_COLOUR, 1, cv2.LINE_AA)
        cv2.putText(
            out, f"#{t.track_id} {t.label}", (x1, max(12, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
            TRACK_COLOUR, 1, cv2.LINE_AA,
        )  # fmt: skip
        ax, ay = t.anchor
        cv2.circle(out, (round(ax), round(ay)), 3, TRACK_COLOUR, -1)
    cv2.putText(
        out, note, (8, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA
    )
    return out


def replay(
    cfg: AgentConfig,
    camera: CameraConfig,
    out_dir: Path,
    *,
    video: bool = True,
    max_seconds: float | None = None,
    progress: IO[str] = sys.stderr,
) -> ReplaySummary:
    """Run ``camera``'s source as fast as possible through detector, tracker and rules; write results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = OnnxDetector(cfg.model)
    anonymizer = Anonymizer.for_agent(cfg)  # the demo's evidence is blurred like a node's
    model = ModelRef(name=detector.model_name, sha256=detector.model_sha256)
    source = VideoSource(camera.id, camera.source, realtime=False, loop=False)
    store = EvidenceStore(out_dir / "evidence")
    summary = ReplaySummary(camera.id)
    events_path = out_dir / "events.jsonl"
    started = time.monotonic()
    with events_path.open("w", encoding="utf-8") as events_file:

        def sink(event: Event, files: tuple[EvidenceFile, ...]) -> None:
            events_file.write(event.model_dump_json(by_alias=True) + "\n")
            key = f"{event.type.value}.{event.phase.value}"
            summary.events[key] = summary.events.get(key, 0) + 1
            summary.evidence_files += len(files)
            print(
                f"  {event.observed_at:%H:%M:%S} {event.type.value} {event.phase.value} "
                f"zone={event.zone_id} objects={[o.track_id for o in event.objects]} {event.measurements}",
                file=progress,
                flush=True,
            )

        pipeline: CameraPipeline | None = None
        writer: VideoWriter | None = None
        zones_px: dict[str, list[tuple[float, float]]] = {}
        first: Frame | None = None
        try:
            for frame in source.frames():
                if pipeline is None:
                    first = frame
                    size = (frame.width, frame.height)
                    ctx = Context(cfg.node_id, camera.id, model, cfg.config_version)
                    pipeline = CameraPipeline(
                        camera,
                        size,
                        detector.detect,
                        ctx,
                        store,
                        sink,
                        evidence=cfg.evidence,
                        anonymizer=anonymizer,
                    )
                    zones_px = {z.id: scale(z.polygon, size[0], size[1]) for z in camera.zones}
                    if video:
                        writer = VideoWriter(out_dir / "annotated", size, source.fps)
                pipeline.process(frame)
                assert first is not None
                elapsed = frame.mono - first.mono
                if writer is not None:
                    writer.write(
                        draw(frame.image, zones_px, pipeline.last_tracks, f"{camera.id}  t={elapsed:6.1f}s")
                    )
                summary.frames += 1
                if summary.frames % 150 == 0:
                    print(
                        f"replay {camera.id}: {elapsed:.1f}s of video, {summary.frames} frames", file=progress
                    )
                if max_seconds is not None and elapsed >= max_seconds:
                    break
        finally:
            if pipeline is not None:
                pipeline.close()
                summary.frames_detected = pipeline.stats.frames_detected
            if writer is not None:
                writer.close()
                summary.video = str(writer.path)
    summary.seconds = summary.frames / source.fps if source.fps else 0.0
    summary.wall_seconds = time.monotonic() - started
    (out_dir / "summary.json").write_text(json.dumps(dataclasses.asdict(summary), indent=2))
    return summary

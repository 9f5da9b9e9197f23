"""Preview of drawn zones on central: replay a clip through the real node pipeline, return tracks and events.

The operator wants to know what the new zones *would* raise before pushing them. Central runs the very
``CameraPipeline`` the node runs (detector, tracker, rules, event builder) on an uploaded clip with the
camera config from the editor, as fast as the CPU allows, and returns each track's ground-anchor path and every
event's start point, normalized like the config so the editor draws them over the frame.

This needs the edge extra (OpenCV, onnxruntime) on central, which a slim central install does not have:
``PreviewUnavailable`` carries the message to show then. The detector model is ``STREETWATCH_PREVIEW_MODEL``,
or else the model path in the node's own config when central has that file too.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

MODEL_ENV: Final = "STREETWATCH_PREVIEW_MODEL"
MAX_SECONDS: Final = 120.0
MAX_TRACKS: Final = 200


class PreviewUnavailable(Exception):  # noqa: N818 - a state the page shows, not a bug
    """Preview cannot run here (no edge extra, no model): the message says what to install or set."""


class PreviewError(ValueError):
    """The clip or the camera config is unusable (the message names what)."""


@dataclass
class PreviewResult:
    seconds: float
    frames: int
    wall_seconds: float
    tracks: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def model_path(node_config: dict[str, Any]) -> Path:
    configured = os.environ.get(MODEL_ENV)
    if configured:
        return Path(configured)
    from_node = Path(str(node_config.get("model", {}).get("path", "")))
    if from_node.is_file():
        return from_node
    raise PreviewUnavailable(f"no detector model on central: set {MODEL_ENV} to an ONNX file")


def run_preview(
    node_config: dict[str, Any], camera: dict[str, Any], clip: bytes, *, max_seconds: float = MAX_SECONDS
) -> PreviewResult:
    """Replay ``clip`` with ``camera``'s zones and rules (validated like a push) through the node pipeline."""
    try:
        from edge_agent.capture.sources import VideoSource
        from edge_agent.config import ConfigError, parse_config
        from edge_agent.contract import Event, ModelRef
        from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore
        from edge_agent.perception.detector.onnx_detector import OnnxDetector
        from edge_agent.pipeline.camera import CameraPipeline
        from edge_agent.pipeline.events import Context
    except ImportError as err:
        raise PreviewUnavailable(
            f"preview needs the edge extra on central (pip install 'streetwatch[edge]'): {err}"
        ) from None
    model = model_path(node_config)
    with tempfile.TemporaryDirectory(prefix="sw-preview-") as tmp:
        clip_path = Path(tmp) / "clip.mp4"
        clip_path.write_bytes(clip)
        cam = {**camera, "source": str(clip_path), "realtime": False, "loop": False}
        body = {
            **node_config,
            "model": {**node_config.get("model", {}), "path": str(model)},
            "cameras": [cam],
        }
        try:
            cfg = parse_config(body, "preview config")
        except ConfigError as err:
            raise PreviewError(str(err)) from None
        detector = OnnxDetector(cfg.model)
        ref = ModelRef(name=detector.model_name, sha256=detector.model_sha256)
        camera_cfg = cfg.cameras[0]
        try:
            source = VideoSource(camera_cfg.id, camera_cfg.source, realtime=False, loop=False)
        except Exception as err:
            raise PreviewError(f"clip: cannot be read as video: {err}") from None
        events: list[dict[str, Any]] = []
        paths: dict[int, list[list[float]]] = {}
        labels: dict[int, str] = {}
        size = (1, 1)

        def sink(event: Event, _files: tuple[EvidenceFile, ...]) -> None:
            if event.phase.value != "start" or not event.objects:
                return
            box = event.objects[0].box
            events.append(
                {
                    "type": event.type.value,
                    "zone_id": event.zone_id,
                    "rule_id": event.rule_id,
                    "at": [round((box.x1 + box.x2) / 2, 4), round(box.y2, 4)],
                    "track_id": event.objects[0].track_id,
                    "measurements": event.measurements,
                }
            )

        started = time.monotonic()
        frames = 0
        first_mono: float | None = None
        pipeline = None
        try:
            for frame in source.frames():
                if pipeline is None:
                    size = (frame.width, frame.height)
                    ctx = Context(cfg.node_id, camera_cfg.id, ref, cfg.config_version)
                    store = EvidenceStore(Path(tmp) / "evidence")
                    pipeline = CameraPipeline(
                        camera_cfg, size, detector.detect, ctx, store, sink, evidence=cfg.evidence
                    )
                    first_mono = frame.mono
                pipeline.process(frame)
                frames += 1
                for track in pipeline.last_tracks:
                    x, y = track.anchor
                    if track.track_id in paths or len(paths) < MAX_TRACKS:
                        paths.setdefault(track.track_id, []).append(
                            [round(x / size[0], 4), round(y / size[1], 4)]
                        )
                        labels[track.track_id] = track.label
                if first_mono is not None and frame.mono - first_mono >= max_seconds:
                    break
        finally:
            if pipeline is not None:
                pipeline.close()
        if frames == 0:
            raise PreviewError("clip: no frame could be decoded")
        return PreviewResult(
            seconds=frames / source.fps if source.fps else 0.0,
            frames=frames,
            wall_seconds=time.monotonic() - started,
            tracks=[
                {"track_id": tid, "label": labels[tid], "points": pts}
                for tid, pts in paths.items()
                if len(pts) > 1
            ],
            events=events,
        )

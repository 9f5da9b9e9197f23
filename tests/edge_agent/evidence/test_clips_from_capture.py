"""Evidence clips come from the capture reader, not the detector: a still scene with motion gating on (one
detection every refresh) still yields a clip at the configured fps spanning the pre- and post-roll.

Real parts: a real street frame held still for 10 s (an mp4 written here), the real reader, scheduler with
motion gating, the agent's ring wiring (``feed_clip_rings``), the detector loop, the recorder and ffmpeg; the
mp4 that comes out is decoded and its frames counted.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.capture.reader import CaptureSet
from edge_agent.capture.scheduler import DetectScheduler
from edge_agent.config import parse_config
from edge_agent.contract import EventType, Phase
from edge_agent.evidence.clips import ClipEncoder, ffmpeg_path
from edge_agent.evidence.recorder import EvidenceRecorder
from edge_agent.evidence.snapshot import EvidenceStore
from edge_agent.node.agent import feed_clip_rings
from edge_agent.pipeline.detect_loop import DetectLoop
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.types import Detections, Frame, Image
from tests.paths import ASSETS

SOURCE_FPS = 25
SECONDS = 10
PRE, POST, CLIP_FPS = 3.0, 3.0, 5.0
START_AT = 5.0  # clip-time second of the incident


def _still_clip(path: Path) -> None:
    cap = cv2.VideoCapture(str(ASSETS / "videos" / "parking_lot_fixedcam_1280x720.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    frame = cv2.resize(frame, (640, 360))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), SOURCE_FPS, (640, 360))
    for _ in range(SOURCE_FPS * SECONDS):
        out.write(frame)
    out.release()


@pytest.mark.skipif(ffmpeg_path() is None, reason="ffmpeg not installed")
def test_still_scene_with_gating_gets_a_full_fps_clip(tmp_path):
    if not (ASSETS / "videos").is_dir():
        pytest.skip("assets missing: python scripts/fetch_assets.py --mirror <dir>")
    clip = tmp_path / "still.mp4"
    _still_clip(clip)
    cfg = parse_config(
        {
            "node_id": "n1",
            "model": {"path": str(tmp_path / "unused.onnx")},
            "evidence_dir": str(tmp_path / "ev"),
            "evidence": {"pre_roll_s": PRE, "post_roll_s": POST, "clip_fps": CLIP_FPS},
            "cameras": [
                {
                    "id": "cam",
                    "source": str(clip),
                    "realtime": False,
                    "detect_fps": 5,
                    "motion": {"enabled": True, "refresh_s": 2.0},
                }
            ],
        }
    )
    captures = CaptureSet.from_config(cfg.cameras)
    scheduler = DetectScheduler.from_config(cfg, lossless=True)
    rings = feed_clip_rings(cfg, captures, scheduler)
    store = EvidenceStore(tmp_path / "ev")
    encoder = ClipEncoder()
    recorder = EvidenceRecorder(
        cfg.evidence, store, {"z": [(0, 0), (640, 0), (640, 360)]}, encoder, rings["cam"]
    )
    detected: list[Frame] = []
    clip_started = threading.Event()

    def detect(images: list[Image]) -> list[Detections]:
        return [Detections.empty() for _ in images]

    def handle(cam: str, frame: Frame, dets: Detections, ms: float) -> None:
        detected.append(frame)
        recorder.observe(frame)
        t = frame.mono - detected[0].mono
        if t >= START_AT and not clip_started.is_set():
            clip_started.set()
            car = TrackSnapshot(1, "car", 0.9, np.array([100, 100, 200, 180], np.float32))
            finding = Finding(
                "r", "z", EventType.ILLEGAL_STOPPING, Phase.START, "t1", frame.mono, frame.mono, (car,)
            )
            recorder.start(finding, frame, "test")

    loop = DetectLoop(captures, scheduler, detect, handle)
    captures.start()
    try:
        loop.run()
    finally:
        captures.stop()
    recorder.flush()
    ready = recorder.ready()

    # Gating held the detector to the first frame and one refresh every 2 s.
    assert len(detected) <= SECONDS / 2.0 + 2, f"{len(detected)} detections: gating did not hold"
    assert clip_started.is_set()
    assert len(ready) == 1 and len(ready[0].files) == 1, "one clip for the incident"
    mp4 = ready[0].files[0].path
    cap = cv2.VideoCapture(str(mp4))
    fps = cap.get(cv2.CAP_PROP_FPS)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    expected = round((PRE + POST) * CLIP_FPS) + 1  # both ends included
    assert fps == pytest.approx(CLIP_FPS, abs=0.01)
    assert expected - 1 <= n <= expected, f"{n} frames in the clip, expected {expected} at {CLIP_FPS} fps"
    assert n > 3 * len(detected), "the clip has far more frames than went to the detector"
    reader = captures.readers["cam"]
    # Some frames were decoded and never converted. How many depends on timing here: a lossless reader runs up
    # to queue_frames ahead of the detector's next slot, and every frame at or after a stale slot is wanted;
    # test_decode_savings.py checks the exact property (same frames reach the detector).
    assert reader.stats.grab_only > 0, "frames nobody needed were converted"

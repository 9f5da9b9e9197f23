"""Evidence clips and the recorder, with real frames, the real ffmpeg encoder and ffprobe."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.capture.sources import VideoSource
from edge_agent.config import EvidenceConfig
from edge_agent.contract import EventType, EvidenceKind, Phase
from edge_agent.evidence.clips import ClipEncoder, ClipError, ClipRing, encode_mp4
from edge_agent.evidence.recorder import EvidenceRecorder, crop
from edge_agent.evidence.snapshot import EvidenceStore
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.types import Frame
from tests.conftest import wait_until
from tests.paths import TOKYO

WALL0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def synthetic(mono: float, w: int = 320, h: int = 180) -> Frame:
    return Frame("cam", int(mono * 30), np.full((h, w, 3), int(mono * 10) % 255, np.uint8), mono, WALL0)


def real_frames(n: int) -> list[Frame]:
    out = []
    for f in VideoSource("cam", str(TOKYO), realtime=False).frames():
        out.append(f)
        if len(out) == n:
            break
    return out


def ffprobe(path: Path) -> dict[str, object]:
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    data: dict[str, object] = json.loads(r.stdout)
    return data


@pytest.mark.parametrize(
    ("fps", "seconds", "pushed_fps", "duration", "expected"),
    [
        (5.0, 4.0, 30.0, 10.0, 21),  # 5 fps over a 4 s window, inclusive ends
        (5.0, 4.0, 2.0, 10.0, 9),  # a slower source than the ring: every frame kept
        (10.0, 0.0, 30.0, 3.0, 1),  # zero pre-roll keeps only the newest
    ],
)
def test_ring_decimates_and_bounds_its_window(
    fps: float, seconds: float, pushed_fps: float, duration: float, expected: int
) -> None:
    ring = ClipRing(seconds, fps, max_width=160)
    n = int(duration * pushed_fps)
    for i in range(n + 1):
        ring.push(synthetic(i / pushed_fps))
    assert len(ring) == expected
    frames = ring.since(0.0)
    assert frames[-1].mono == pytest.approx(duration)
    assert cv2.imdecode(np.frombuffer(frames[0].jpeg, np.uint8), cv2.IMREAD_COLOR).shape[1] == 160


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (ffmpeg) not installed")
def test_clip_is_browser_playable_h264(tmp_path: Path) -> None:
    ring = ClipRing(10.0, 5.0, max_width=960)
    for f in real_frames(60):  # 2 s of the real clip at 30 fps -> 10 clip frames at 5 fps
        ring.push(f)
    data = encode_mp4(ring.since(0.0), 5.0)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    info = ffprobe(path)
    (stream,) = info["streams"]  # type: ignore[misc]
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert (stream["width"], stream["height"]) == (960, 540)
    assert float(info["format"]["duration"]) == pytest.approx(2.0, abs=0.25)  # type: ignore[index]
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: the index must come first"
    cap = cv2.VideoCapture(str(path))
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    assert decoded == 10


def test_encode_fails_clearly() -> None:
    with pytest.raises(ClipError, match="no frames"):
        encode_mp4([], 5.0)
    ring = ClipRing(1.0, 5.0)
    ring.push(synthetic(0.0))
    with pytest.raises(ClipError, match="ffmpeg failed"):
        encode_mp4(ring.since(0.0), 5.0, ffmpeg="/bin/false")
    with pytest.raises(ClipError, match="cannot run"):
        encode_mp4(ring.since(0.0), 5.0, ffmpeg="/nonexistent/ffmpeg")


@pytest.mark.parametrize(
    ("box", "ok"),
    [((10, 10, 60, 50), True), ((0, 0, 5, 5), False), ((300, 170, 400, 260), True)],
)
def test_crop(box: tuple[int, int, int, int], ok: bool) -> None:
    img = np.zeros((180, 320, 3), np.uint8)
    piece = crop(img, box)
    assert (piece is not None) is ok
    if piece is not None:
        assert piece.shape[0] <= 180 and piece.shape[1] <= 320 and piece.size > 0


def finding(phase: Phase, now: float) -> Finding:
    obj = TrackSnapshot(5, "car", 0.8, np.array([170, 380, 265, 480], np.float32))
    return Finding(
        "r1", "kerb", EventType.ILLEGAL_STOPPING, phase, "track-5", 0.0, now, (obj,), {"dwell_s": now}
    )


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_recorder_clip_spans_pre_and_post_roll(tmp_path: Path) -> None:
    cfg = EvidenceConfig(pre_roll_s=1.0, post_roll_s=1.0, clip_fps=5.0)
    zone = {"kerb": [(100.0, 470.0), (240.0, 470.0), (370.0, 335.0), (317.0, 335.0)]}
    rec = EvidenceRecorder(cfg, EvidenceStore(tmp_path), zone, ClipEncoder())
    files: tuple[object, ...] = ()
    for f in real_frames(90):  # 3 s
        rec.observe(f)
        if f.index == 45:  # START at 1.5 s
            files = rec.start(finding(Phase.START, f.mono), f, "ILLEGAL STOPPING")
            assert rec.clip_pending("r1", "track-5")
    kinds = [x.ref.kind for x in files]  # type: ignore[attr-defined]
    assert kinds == [EvidenceKind.SNAPSHOT_ANNOTATED, EvidenceKind.SNAPSHOT, EvidenceKind.CROP]
    ready: list[object] = []
    wait_until(lambda: bool(ready.extend(rec.ready()) or ready), timeout_s=30, message="clip encoded")
    (r,) = ready
    assert r.key == ("r1", "track-5")  # type: ignore[attr-defined]
    (clip,) = r.files  # type: ignore[attr-defined]
    assert clip.ref.kind is EvidenceKind.CLIP and clip.ref.content_type == "video/mp4"
    # pre-roll 1 s + post-roll 1 s at 5 fps around the START
    assert float(ffprobe(clip.path)["format"]["duration"]) == pytest.approx(2.2, abs=0.45)  # type: ignore[index]
    assert not rec.clip_pending("r1", "track-5") and rec.pending == 0
    rec.flush()


def test_recorder_without_clips_only_snapshots(tmp_path: Path) -> None:
    cfg = EvidenceConfig(clip=False, crops=False, clean_snapshot=False)
    rec = EvidenceRecorder(cfg, EvidenceStore(tmp_path), {"kerb": [(0, 0), (10, 0), (10, 10)]}, ClipEncoder())
    f = synthetic(1.0, 320, 180)
    rec.observe(f)
    files = rec.start(finding(Phase.START, 1.0), f, "x")
    assert [x.ref.kind for x in files] == [EvidenceKind.SNAPSHOT_ANNOTATED]
    assert not rec.clip_pending("r1", "track-5")
    assert rec.ready() == []

"""Converting only the frames someone wants must not change which frames the detector sees.

A real clip replayed lossless through the real reader, scheduler (5 fps, motion gating on) and detector loop,
twice: once converting every decoded frame to BGR, once asking the scheduler (and a clip ring) first. Same
frames selected, same pixels; far fewer frames converted.
"""

from __future__ import annotations

import hashlib

import pytest

from edge_agent.capture.reader import CameraReader, CaptureSet
from edge_agent.capture.scheduler import CameraPlan, DetectScheduler
from edge_agent.config import CaptureConfig, MotionConfig
from edge_agent.evidence.clips import ClipRing
from edge_agent.pipeline.detect_loop import DetectLoop
from edge_agent.types import Detections, Image
from tests.paths import ASSETS

CLIPS = ("vn_saigon_intersection_cctv_1018x720.mp4", "parking_lot_fixedcam_1280x720.mp4")


def _run(clip: str, savings: bool, ring_fps: float | None) -> tuple[list[tuple[int, str]], CameraReader, int]:
    reader = CameraReader("cam", str(ASSETS / "videos" / clip), CaptureConfig(), realtime=False)
    scheduler = DetectScheduler(
        [CameraPlan("cam", detect_fps=5.0, motion=MotionConfig(refresh_s=2.0))], max_wait_s=None
    )
    ring = ClipRing(2.0, ring_fps) if ring_fps else None
    if ring is not None:
        reader.taps.append(ring.push)
    if savings:
        reader.want = lambda mono: scheduler.wants("cam", mono) or (ring is not None and ring.due_at(mono))
    seen: list[tuple[int, str]] = []

    def detect(images: list[Image]) -> list[Detections]:
        return [Detections.empty() for _ in images]

    def handle(cam: str, frame, dets, ms) -> None:
        seen.append((frame.index, hashlib.sha1(frame.image.tobytes()).hexdigest()))

    captures = CaptureSet([reader])
    loop = DetectLoop(captures, scheduler, detect, handle)
    captures.start()
    try:
        loop.run()
    finally:
        captures.stop()
    assert reader.error is None
    return seen, reader, 0 if ring is None else ring.stored


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("ring_fps", [None, 5.0])
def test_same_frames_reach_the_detector_with_and_without_decode_savings(clip, ring_fps):
    if not (ASSETS / "videos" / clip).is_file():
        pytest.skip("assets missing: python scripts/fetch_assets.py --mirror <dir>")
    full, full_reader, full_ring = _run(clip, savings=False, ring_fps=ring_fps)
    lean, lean_reader, lean_ring = _run(clip, savings=True, ring_fps=ring_fps)
    assert len(full) >= 10
    assert lean == full, "decode savings changed the frames (or pixels) the detector saw"
    assert full_reader.stats.frames == lean_reader.stats.frames, "both runs decode the whole clip"
    assert full_reader.stats.grab_only == 0
    # At 25-30 fps and 5 fps detection (fewer with motion gating), most frames need no conversion.
    assert lean_reader.stats.grab_only >= lean_reader.stats.frames // 2
    assert lean_ring == full_ring, "the clip ring got the same frames"


class _Sched:
    def __init__(self, next_due: float) -> None:
        self.next_due = next_due

    def wants(self, camera_id: str, mono: float) -> bool:
        return mono >= self.next_due


class _Reader:
    camera_id = "cam"

    def __init__(self, held: float | None) -> None:
        self.held = held

    def untaken_mono(self) -> float | None:
        return self.held


@pytest.mark.parametrize(
    ("held", "heads", "expected"),
    [
        (None, None, 25),  # every frame from the (past) next slot on could be the detector's
        (0.0, None, 4),  # a frame held since t=0 is replaced only every detect interval: 0.2, 0.4, 0.6, 0.8
        (None, 10.0, 25),
    ],
)
def test_want_policy(held, heads, expected):
    from edge_agent.node.agent import _want

    reader = _Reader(held)
    want = _want(_Sched(0.0), reader, 0.2, None, heads)  # type: ignore[arg-type]
    got = 0
    for i in range(25):  # one second at 25 fps
        mono = i / 25
        if want(mono):
            got += 1
            if held is not None:
                reader.held = mono
    assert got == expected


def test_signal_heads_keep_a_reading_rate_when_the_detector_does_not_want_frames():
    from edge_agent.node.agent import _want

    want = _want(_Sched(1e9), _Reader(None), 0.2, None, 10.0)  # type: ignore[arg-type]
    assert sum(want(i / 25) for i in range(25)) == 9  # every 0.12 s on a 25 fps grid: ~10 fps (9 in 1 s)
    none = _want(_Sched(1e9), _Reader(None), 0.2, None, None)  # type: ignore[arg-type]
    assert not any(none(i / 25) for i in range(25))

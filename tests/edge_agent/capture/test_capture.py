from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.capture.sources import CaptureError, VideoSource
from tests.paths import TOKYO


def test_missing_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="video file not found"):
        VideoSource("cam-1", str(tmp_path / "nope.mp4"))


def test_corrupt_file_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 1000)
    with pytest.raises(CaptureError, match="cannot decode"):
        VideoSource("cam-1", str(bad))


def test_file_frames_use_file_time_not_wall_time() -> None:
    src = VideoSource("cam-1", str(TOKYO), realtime=False)
    frames = []
    for f in src.frames():
        frames.append((f.index, f.mono, f.wall))
        if len(frames) == 31:
            break
    assert src.size == (960, 540) and src.fps == pytest.approx(30.0, abs=0.1)
    (i0, m0, w0), (i30, m30, w30) = frames[0], frames[30]
    assert (i0, i30) == (0, 30)
    assert m30 - m0 == pytest.approx(1.0, abs=1e-6)
    assert (w30 - w0).total_seconds() == pytest.approx(1.0, abs=1e-3)
    assert src.stats.frames == 31


def test_realtime_replay_sleeps_to_the_file_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    src = VideoSource("cam-1", str(TOKYO), realtime=True, clock=lambda: now[0], sleep=sleep)
    for f in src.frames():
        if f.index == 10:
            break
    assert sum(slept) == pytest.approx(10 / 30, abs=1e-3)


def test_loop_keeps_time_moving_forward() -> None:
    src = VideoSource("cam-1", str(TOKYO), realtime=False, loop=True)
    last = -1.0
    for f in src.frames():
        assert f.mono > last
        last = f.mono
        if f.index == 370:  # the clip has 368 frames
            break
    assert last == pytest.approx(src.stats.last_frame_mono)

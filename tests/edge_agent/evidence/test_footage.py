"""Rolling footage: real frames of a real clip through real ffmpeg, the disk budget, and stream-copy cuts."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest

from edge_agent.config.recording import RecordingConfig
from edge_agent.evidence.footage import CameraRecorder, FootageStore
from edge_agent.types import Frame
from tests.paths import TOKYO

FPS = 5.0
T0 = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def clip_frames() -> Iterator[Frame]:
    """The Omotesando clip's frames, looped forever (a long replay)."""
    index = 0
    while True:
        cap = cv2.VideoCapture(str(TOKYO))
        while True:
            ok, image = cap.read()
            if not ok:
                break
            index += 1
            if index % 6:  # ~30 fps source -> ~5 fps: what the recorder would sample
                continue
            yield Frame(camera_id="cam-1", index=index, image=image, mono=0.0, wall=T0)
        cap.release()


class Replay:
    """Drives a recorder tick by tick with a fake clock: ``n`` ticks are ``n / FPS`` seconds of footage."""

    def __init__(self, store: FootageStore, cfg: RecordingConfig) -> None:
        self.now = 0.0
        self.frames = clip_frames()
        self.current: Frame | None = None
        self.camera_up = True
        self.recorder = CameraRecorder(
            "cam-1",
            self.latest,
            store,
            cfg,
            clock=lambda: self.now,
            wall=lambda: T0 + timedelta(seconds=self.now),
        )

    def latest(self) -> Frame | None:
        return self.current

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            if self.camera_up:
                frame = next(self.frames)
                self.current = Frame(frame.camera_id, frame.index, frame.image, self.now, T0)
            self.recorder.tick()
            self.now += 1.0 / FPS


@pytest.fixture
def cfg() -> RecordingConfig:
    return RecordingConfig(enabled=True, segment_s=2.0, fps=FPS, max_width=480, crf=30)


@pytest.mark.slow
def test_the_recording_stays_within_its_budget_oldest_deleted_first(
    tmp_path: Path, cfg: RecordingConfig
) -> None:
    budget = 400_000
    store = FootageStore(tmp_path / "rec", budget)
    replay = Replay(store, cfg)
    replay.run(int(120 * FPS))  # two minutes of footage, well over the budget
    replay.recorder.stop()
    segments = store.segments("cam-1")
    assert store.used_bytes() <= budget
    assert store.deleted > 0 and replay.recorder.stats.failures == 0
    assert segments[-1].end == T0 + timedelta(seconds=120)  # the newest is kept...
    assert segments[0].start > T0  # ...the oldest went
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))  # no holes


def test_a_range_is_cut_by_stream_copy_and_decodes(tmp_path: Path, cfg: RecordingConfig) -> None:
    store = FootageStore(tmp_path / "rec", 10**9)
    replay = Replay(store, cfg)
    replay.run(int(20 * FPS))
    replay.camera_up = False  # the camera goes down: the recording pauses, the segment ends
    replay.current = None
    replay.run(int(5 * FPS))
    replay.recorder.stop()
    assert store.covered("cam-1") == (T0, T0 + timedelta(seconds=20))

    out = tmp_path / "clip.mp4"
    start, end, used = store.cut("cam-1", T0 + timedelta(seconds=5.4), T0 + timedelta(seconds=15.4), out)
    assert (start, used) == (T0 + timedelta(seconds=5), 6)  # from the keyframe at 5 s, segments 4..14 s (+1)
    assert end == T0 + timedelta(seconds=15.4)
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert abs(frames - round((end - start).total_seconds() * FPS)) <= 2, frames
    assert hashlib.sha256(out.read_bytes()).hexdigest()  # a real file
    with pytest.raises(LookupError):
        store.cut("cam-1", T0 + timedelta(seconds=30), T0 + timedelta(seconds=40), tmp_path / "none.mp4")

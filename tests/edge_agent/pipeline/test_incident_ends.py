"""Incidents end on time and survive track breaks, through the real pipeline (tracker, rules, events):
time-based ends with the detector starved, ends at shutdown, one incident across a gap that gives the parked
car a new track id, and the dwell on the START (what the page shows) equal to the snapshot's caption."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import CameraConfig, EvidenceConfig
from edge_agent.contract import Event, ModelRef, Phase
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore
from edge_agent.pipeline.camera import CameraPipeline, caption
from edge_agent.pipeline.events import Context
from edge_agent.types import Detections, Frame, Image

FW, FH = 640, 360
NAMES = ("person", "bicycle", "car")
WALL0 = datetime(2025, 3, 3, 2, 0, 0, tzinfo=UTC)
CAR = [100.0, 250.0, 180.0, 300.0]


def camera(end_grace_s: float = 10.0) -> CameraConfig:
    return CameraConfig.model_validate(
        {
            "id": "cam-1",
            "source": "x.mp4",
            "detect_fps": 5,
            "zones": [{"id": "kerb", "polygon": [[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]]}],
            "rules": [
                {
                    "id": "no-stop",
                    "type": "illegal_stopping",
                    "zone": "kerb",
                    "min_dwell_s": 5,
                    "end_grace_s": end_grace_s,
                }
            ],
        }
    )


class Rig:
    """A pipeline on a fake monotonic clock; ``frame(t, car)`` analyses one frame at camera time ``t``."""

    def __init__(self, tmp_path: Path, end_grace_s: float = 10.0, clips: bool = False) -> None:
        self.events: list[Event] = []
        self.files: list[tuple[EvidenceFile, ...]] = []
        self.now = 0.0
        self.car = True

        def sink(e: Event, f: tuple[EvidenceFile, ...]) -> None:
            self.events.append(e)
            self.files.append(f)

        def detect(images: list[Image]) -> list[Detections]:
            box = np.array([CAR] if self.car else [], np.float32).reshape(-1, 4)
            n = len(box)
            return [Detections(box, np.full(n, 0.9, np.float32), np.full(n, 2), NAMES)]

        ctx = Context("n1", "cam-1", ModelRef(name="m.onnx", sha256="a" * 64), 1)
        self.pipe = CameraPipeline(
            camera(end_grace_s),
            (FW, FH),
            detect,
            ctx,
            EvidenceStore(tmp_path),
            sink,
            evidence=EvidenceConfig(clip=clips),
            clock=lambda: self.now,
        )
        self.img = np.full((FH, FW, 3), 90, np.uint8)
        self.index = 0

    def frames(self, t0: float, t1: float, car: bool = True, dt: float = 0.2) -> None:
        self.car = car
        t = t0
        while t < t1 - 1e-9:
            self.now = t  # frames arrive in real time
            self.pipe.process(Frame("cam-1", self.index, self.img, t, WALL0 + timedelta(seconds=t)))
            self.index += 1
            t += dt

    def phases(self) -> list[tuple[str, str]]:
        return [(e.phase.value, e.event_id) for e in self.events]


@pytest.mark.parametrize("clips", [False, True], ids=["snapshot-only", "with-clips"])
def test_an_incident_ends_within_its_grace_with_the_detector_starved(tmp_path, clips):
    """With clips on, the END waits for its incident's clip; with no frames coming the tick finishes the
    clip with what was recorded, so the END still goes out."""
    rig = Rig(tmp_path, clips=clips)
    rig.frames(0.0, 8.0)  # parked from 0 s, START at 5 s
    assert [p for p, _ in rig.phases()] == ["start"]
    rig.car = False
    last_seen = 7.8
    ends: list[float] = []
    for i in range(1, 40):  # no frame at all from here: only the agent's one-second tick
        rig.now = last_seen + 0.5 * i
        if rig.pipe.tick() and not ends:
            ends.append(rig.now)
    assert [p for p, _ in rig.phases() if p != "update"] == ["start", "end"]
    assert last_seen + 10.0 < ends[0] <= last_seen + 10.0 + 1.0 + 0.5  # grace + the tick interval
    end = rig.events[-1]
    assert end.event_id == rig.events[0].event_id
    assert end.ended_at is not None and end.measurements["dwell_s"] == pytest.approx(7.8, abs=0.25)
    assert rig.pipe.stats.ticks > 0


def test_ticks_do_nothing_while_frames_are_analysed(tmp_path):
    rig = Rig(tmp_path)
    rig.frames(0.0, 30.0)
    assert rig.pipe.tick() == [] and rig.pipe.stats.ticks == 0
    assert [p for p, _ in rig.phases()] == ["start"]


def test_every_incident_ends_at_shutdown(tmp_path):
    rig = Rig(tmp_path)
    rig.frames(0.0, 8.0)
    rig.now = 8.5
    out = rig.pipe.close()
    assert [e.phase for e in out] == [Phase.END]
    assert [p for p, _ in rig.phases()] == ["start", "end"]
    assert rig.pipe.close() == []  # once


def test_a_gap_that_gives_the_car_a_new_track_id_is_one_incident(tmp_path):
    """A bus hides the car for 8 s (the detector finds nothing there; the tracker forgets the car and gives it a
    new id when it is seen again): within the 10 s grace the new track continues the incident; the END lists
    both ids."""
    rig = Rig(tmp_path)
    rig.frames(0.0, 8.0)
    rig.frames(8.0, 16.0, car=False)
    rig.frames(16.0, 30.0)
    rig.frames(30.0, 45.0, car=False)
    phases = rig.phases()
    assert [p for p, _ in phases] == ["start", "end"], phases
    assert len({eid for _, eid in phases}) == 1
    end = rig.events[-1]
    assert len({o.track_id for o in end.objects}) == 2
    assert end.measurements["dwell_s"] == pytest.approx(29.8, abs=0.3)


def test_a_stream_gap_with_ticks_keeps_the_incident_when_the_car_is_still_there(tmp_path):
    """The stream is down for 6 s (ticks only, no frame): the car is there when it comes back, same place."""
    rig = Rig(tmp_path)
    rig.frames(0.0, 8.0)
    for i in range(12):
        rig.now = 8.0 + 0.5 * i
        rig.pipe.tick()
    rig.frames(14.0, 30.0)
    rig.frames(30.0, 45.0, car=False)
    assert [p for p, _ in rig.phases()] == ["start", "end"]


def test_a_gap_longer_than_the_grace_is_two_incidents(tmp_path):
    rig = Rig(tmp_path, end_grace_s=3.0)
    rig.frames(0.0, 8.0)
    rig.frames(8.0, 14.0, car=False)
    rig.frames(14.0, 80.0)  # back, after the cooldown (60 s)? no: a new id, so a new stop after 5 s
    starts = [e for e in rig.events if e.phase is Phase.START]
    assert len(starts) == 2 and starts[0].event_id != starts[1].event_id


def test_the_dwell_on_the_page_equals_the_caption(tmp_path):
    """The page shows the START's dwell_s; the snapshot's caption is drawn from the same finding."""
    rig = Rig(tmp_path)
    rig.frames(0.0, 8.0)
    start = rig.events[0]
    text = f"dwell {start.measurements['dwell_s']:.1f}s"
    assert text == "dwell 5.0s"
    assert rig.files[0] and caption  # the START carried its snapshot (its caption: see test below)
    rig.frames(8.0, 20.0, car=False)
    end = rig.events[-1]
    assert end.phase is Phase.END and end.measurements["dwell_s"] >= start.measurements["dwell_s"]

"""The rules inside CameraPipeline: the signal head is read from each frame before the rules run, a red-light
event names its line, and the wall clock of the frames drives schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.config import CameraConfig
from edge_agent.contract import Event, EventType, ModelRef, Phase
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore
from edge_agent.pipeline.camera import CameraPipeline, build_rules
from edge_agent.pipeline.events import Context
from edge_agent.rules.signal import ColourSignal, ExternalSignalFeed, SignalState
from edge_agent.types import Detections, Frame, Image

FW, FH = 640, 360
NAMES = ("person", "bicycle", "car")
# 06:59:50 local time in Ho Chi Minh City (UTC+7)
WALL0 = datetime(2024, 5, 12, 23, 59, 50, tzinfo=UTC)


def camera(extra_rules: list[dict[str, object]] | None = None) -> CameraConfig:
    return CameraConfig.model_validate(
        {
            "id": "cam-1",
            "source": "x.mp4",
            "detect_fps": 5,
            "zones": [{"id": "road", "polygon": [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]}],
            "lines": [{"id": "stop", "points": [[0.1, 0.5], [0.9, 0.5]], "direction": "up"}],
            "signals": [
                {"id": "light", "source": "colour", "roi": [[0.9, 0.05], [0.95, 0.25]]},
                {"id": "feed", "source": "external"},
            ],
            "rules": [
                {"id": "rl", "type": "red_light", "line": "stop", "signal": "light"},
                *(extra_rules or []),
            ],
        }
    )


def image(lamp_bgr: tuple[int, int, int]) -> Image:
    img = np.full((FH, FW, 3), 90, np.uint8)
    x1, y1, x2, y2 = 576, 18, 608, 90  # the signal head inside the roi
    cv2.rectangle(img, (x1, y1), (x2, y2), (30, 30, 30), -1)
    cv2.circle(img, (592, 32), 10, lamp_bgr, -1)
    return img


def run(
    cam: CameraConfig, lamp: tuple[int, int, int], tmp_path: Path, step_px: float = 8.0
) -> tuple[CameraPipeline, list[Event]]:
    out: list[Event] = []
    files: list[tuple[EvidenceFile, ...]] = []

    def sink(e: Event, f: tuple[EvidenceFile, ...]) -> None:
        out.append(e)
        files.append(f)

    y = [300.0]

    def detect(images: list[Image]) -> list[Detections]:
        y[0] -= step_px  # a car driving up across the stop line (y = 180), 40 px/s by default
        box = np.array([[300, y[0] - 40, 360, y[0]]], np.float32)
        return [Detections(box, np.array([0.9], np.float32), np.array([2]), NAMES)]

    ctx = Context("n1", cam.id, ModelRef(name="m.onnx", sha256="a" * 64), 1)
    pipe = CameraPipeline(cam, (FW, FH), detect, ctx, EvidenceStore(tmp_path), sink)
    img = image(lamp)
    for i in range(100):
        t = i * 0.2
        pipe.process(Frame(cam.id, i, img, t, WALL0 + timedelta(seconds=t)))
    assert all(f[0].path.is_file() for e, f in zip(out, files, strict=True) if e.phase is Phase.START)
    return pipe, out


@pytest.mark.parametrize(("lamp", "fires"), [((30, 30, 235), True), ((60, 220, 30), False)])
def test_red_light_through_the_pipeline(tmp_path, lamp, fires):
    pipe, events = run(camera(), lamp, tmp_path)
    assert isinstance(pipe.signals["light"], ColourSignal) and isinstance(
        pipe.signals["feed"], ExternalSignalFeed
    )
    expected = SignalState.RED if fires else SignalState.GREEN
    assert pipe.signals["light"].state(19.8) is expected
    starts = [e for e in events if e.phase is Phase.START]
    assert len(starts) == (1 if fires else 0)
    if fires:
        assert (starts[0].type, starts[0].zone_id, starts[0].rule_id) == (EventType.RED_LIGHT, "stop", "rl")


def test_schedules_read_the_frames_wall_clock(tmp_path):
    """A sidewalk rule in force from 07:00 local: the car (on the 'walk' zone from the first frame, 06:59:50)
    raises its event 5 s after 07:00 by the frames' own clock."""
    cam = camera(
        [
            {
                "id": "walk",
                "type": "sidewalk_vehicle",
                "zone": "road",
                "grace_s": 5,
                "schedule": {"windows": [{"start": "07:00", "end": "08:00"}]},
            }
        ]
    )
    _, events = run(cam, (60, 220, 30), tmp_path, step_px=0.0)
    [start] = [e for e in events if e.type is EventType.SIDEWALK_VEHICLE and e.phase is Phase.START]
    assert start.started_at == datetime(2024, 5, 13, 0, 0, tzinfo=UTC)  # 07:00 local
    assert start.observed_at == datetime(2024, 5, 13, 0, 0, 5, tzinfo=UTC)


def test_build_rules_keeps_its_signature():
    rules = build_rules(camera(), (FW, FH))
    assert [r.rule_id for r in rules] == ["rl"]

"""Evidence of one positive scenario with everything on (clean snapshot, crops, pre/post-roll clip): the hashes
verify, the clip decodes and plays, and the annotated snapshot shows the zone."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.config import EvidenceConfig
from edge_agent.contract import EvidenceKind, Phase
from edge_agent.evidence.snapshot import ZONE_COLOUR, EvidenceFile
from edge_agent.geometry import scale
from tests.scenarios.harness import DetectionCache, Run, Scenario, load_scenarios, run_scenario

pytestmark = pytest.mark.scenario

# Three parked motorbikes on an irregular sidewalk polygon; the clip is 6.4 s, so the first incident's 4 s
# post-roll ends inside it and the last one's clip is cut at the end of the file.
SCENARIO_ID = "sidewalk-nga4-parked-bikes"


@pytest.fixture(scope="module")
def evidence_run(
    detection_cache: DetectionCache, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Scenario, Run]:
    scenario = next(s for s in load_scenarios() if s.id == SCENARIO_ID)
    run = run_scenario(
        scenario, detection_cache, tmp_path_factory.mktemp("evidence-on"), evidence=EvidenceConfig()
    )
    assert run.starts, "the scenario raised no event"
    return scenario, run


def _files(run: Run, kind: EvidenceKind) -> list[EvidenceFile]:
    return [f for _, files in run.events for f in files if f.ref.kind is kind]


def test_every_evidence_file_verifies_against_its_hash(evidence_run: tuple[Scenario, Run]) -> None:
    _, run = evidence_run
    for event, files in run.events:
        assert [f.ref for f in files] == list(event.evidence)
        for f in files:
            data = f.path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == f.ref.sha256 == f.path.name
            assert len(data) == f.ref.size
    kinds = {f.ref.kind for _, files in run.events for f in files}
    assert kinds == {
        EvidenceKind.SNAPSHOT_ANNOTATED,
        EvidenceKind.SNAPSHOT,
        EvidenceKind.CROP,
        EvidenceKind.CLIP,
    }


def test_each_incident_gets_a_clip_that_decodes_and_plays(evidence_run: tuple[Scenario, Run]) -> None:
    _, run = evidence_run
    clips = _files(run, EvidenceKind.CLIP)
    assert len(clips) == len(run.starts)
    for clip in clips:
        assert clip.ref.content_type == "video/mp4"
        cap = cv2.VideoCapture(str(clip.path))
        decoded = 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            assert image is not None and image.size > 0
            decoded += 1
        cap.release()
        # 5 fps: the pre-roll back to the clip's first frame (at most 4 s) and up to 4 s after the START
        assert 10 <= decoded <= 41, decoded
        if shutil.which("ffprobe"):
            out = subprocess.run(
                ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                 "stream=codec_name,nb_read_frames", "-of", "json", str(clip.path)],
                capture_output=True, text=True, check=True, timeout=60,
            )  # fmt: skip
            stream = json.loads(out.stdout)["streams"][0]
            assert stream["codec_name"] == "h264" and int(stream["nb_read_frames"]) == decoded


def _decode(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image.astype(np.float32)


def test_the_annotated_snapshot_shows_the_zone(evidence_run: tuple[Scenario, Run]) -> None:
    scenario, run = evidence_run
    event, files = next((e, f) for e, f in run.events if e.phase is Phase.START)
    annotated = _decode(next(f.path for f in files if f.ref.kind is EvidenceKind.SNAPSHOT_ANNOTATED))
    clean = _decode(next(f.path for f in files if f.ref.kind is EvidenceKind.SNAPSHOT))
    h, w = clean.shape[:2]
    zone = next(z for z in scenario.camera_config().zones if z.id == event.zone_id)
    poly = np.array([[round(x), round(y)] for x, y in scale(zone.polygon, w, h)], np.int32)
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [poly], 1)
    kernel = np.ones((9, 9), np.uint8)
    drawn = np.zeros((h, w), np.uint8)  # object boxes, their labels and the caption bar
    for obj in event.objects:
        x1, y1, x2, y2 = obj.box.x1 * w, obj.box.y1 * h, obj.box.x2 * w, obj.box.y2 * h
        cv2.rectangle(drawn, (int(x1) - 4, int(y1) - 24), (int(x2) + 4, int(y2) + 4), 1, -1)
    drawn[:32, :] = 1
    interior = (cv2.erode(inside, kernel) == 1) & (drawn == 0)
    exterior = (cv2.dilate(inside, kernel) == 0) & (drawn == 0)
    assert interior.sum() > 1000
    tinted = 0.75 * clean + 0.25 * np.array(ZONE_COLOUR, np.float32)
    to_tint = np.linalg.norm(annotated - tinted, axis=2)
    to_clean = np.linalg.norm(annotated - clean, axis=2)
    # Inside the polygon the zone colour is blended in; outside the picture is untouched (JPEG noise aside).
    assert (to_tint[interior] < to_clean[interior]).mean() > 0.9
    assert (to_clean[exterior] <= to_tint[exterior]).mean() > 0.9
    # The outline is drawn in the zone colour itself.
    edge = np.zeros((h, w), np.uint8)
    cv2.polylines(edge, [poly], True, 1, 1)
    outline = (edge == 1) & (drawn == 0)
    close = np.linalg.norm(annotated - np.array(ZONE_COLOUR, np.float32), axis=2) < 60
    assert close[outline].mean() > 0.5

"""Faces blurred at the node: the real CenterFace model and the real detector on the pedestrian-street clip, faces
labelled by looking (tests/data/pedestrian_faces.json); snapshots, crops and the encoded clip are checked pixel
by pixel against the original frame."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.config import EvidenceConfig, ModelConfig, PrivacyConfig
from edge_agent.contract import EventType, EvidenceKind, Phase
from edge_agent.evidence.clips import ClipEncoder, ClipFrame
from edge_agent.evidence.privacy import Anonymizer, PrivacyError, blur_boxes, head_boxes, plate_bands
from edge_agent.evidence.recorder import EvidenceRecorder
from edge_agent.evidence.snapshot import EvidenceStore
from edge_agent.perception.detector.onnx_detector import OnnxDetector
from edge_agent.perception.tracker import ByteTracker
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.types import Frame, Image
from tests.conftest import wait_until
from tests.paths import ASSETS, MODEL_640

DATA = Path(__file__).resolve().parents[2] / "data" / "pedestrian_faces.json"
LABELS = json.loads(DATA.read_text(encoding="utf-8"))
VIDEO = ASSETS / "videos" / LABELS["clip"]
FACE_MODEL = ASSETS / "models" / "centerface.onnx"
WALL0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
FPS = 25.0

needs_model = pytest.mark.skipif(
    not FACE_MODEL.is_file(), reason="centerface.onnx missing: python scripts/fetch_assets.py --mirror <dir>"
)


def read_frames(last: int) -> list[Frame]:
    cap = cv2.VideoCapture(str(VIDEO))
    frames = []
    for i in range(last + 1):
        ok, image = cap.read()
        assert ok, f"{VIDEO} ended at {i}"
        frames.append(
            Frame("ped", i, np.asarray(image, np.uint8), 100.0 + i / FPS, WALL0 + timedelta(seconds=i / FPS))
        )
    cap.release()
    return frames


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return read_frames(max(int(k) for k in LABELS["frames"]))


@pytest.fixture(scope="module")
def anonymizer() -> Anonymizer:
    return Anonymizer.from_config(PrivacyConfig(face_model=FACE_MODEL))


def detail(image: Image) -> float:
    """Fine detail of a patch: the spread of its high-pass (grey minus a 5x5 Gaussian)."""
    g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float((g - cv2.GaussianBlur(g, (5, 5), 0)).std())


def blurred(original: Image, shown: Image, face: list[int]) -> bool:
    """The face box of what officers see kept under 60 % of the original's fine detail (eyes, mouth, edges)."""
    x1, y1, x2, y2 = face
    return detail(shown[y1:y2, x1:x2]) < 0.6 * detail(original[y1:y2, x1:x2])


def assert_untouched(original: Image, shown: Image, box: list[int], what: str) -> None:
    x1, y1, x2, y2 = box
    diff = np.abs(original[y1:y2, x1:x2].astype(np.int16) - shown[y1:y2, x1:x2].astype(np.int16))
    assert float(diff.mean()) < 6.0, f"{what}: {box} changed although no face is there"


def persons(frames: list[Frame], upto: int) -> ByteTracker:
    """The real detector and tracker over the frames before ``upto``, as the node would have run them."""
    detector = OnnxDetector(ModelConfig(path=MODEL_640, threads=1))
    tracker = ByteTracker()
    for f in frames[upto - 6 : upto + 1 : 2]:
        tracks = tracker.update(detector.detect([f.image])[0], f.mono)
    tracker.last = tracks  # type: ignore[attr-defined]
    return tracker


def finding(now: float) -> Finding:
    obj = TrackSnapshot(1, "person", 0.9, np.array([1480, 540, 1640, 1000], np.float32))
    return Finding("g1", "zone", EventType.GATHERING, Phase.START, "group-1", now, now, (obj,), {"count": 1})


@needs_model
def test_snapshot_and_crops_officers_see_have_every_labelled_face_blurred(
    frames: list[Frame], anonymizer: Anonymizer, tmp_path: Path
) -> None:
    store = EvidenceStore(tmp_path / "ev")
    zone = {"zone": [(0.0, 0.0), (1919.0, 0.0), (1919.0, 1079.0), (0.0, 1079.0)]}
    cfg = EvidenceConfig(clip=False)
    total = hidden = crops_checked = 0
    missed: list[tuple[int, list[int]]] = []
    for key, faces in LABELS["frames"].items():
        i = int(key)
        frame = frames[i]
        tracker = persons(frames, i)
        rec = EvidenceRecorder(cfg, store, zone, None, anonymizer=anonymizer)
        rec.note_tracks(frame, tracker.last)  # type: ignore[attr-defined]
        files = rec.start(finding(frame.mono), frame, "gathering")
        by_kind: dict[EvidenceKind, list[Image]] = {}
        for f in files:
            img = cv2.imread(str(f.path), cv2.IMREAD_COLOR)
            by_kind.setdefault(f.ref.kind, []).append(np.asarray(img, np.uint8))
        [clean] = by_kind[EvidenceKind.SNAPSHOT]
        [annotated] = by_kind[EvidenceKind.SNAPSHOT_ANNOTATED]
        for face in faces:
            total += 1
            done = blurred(frame.image, clean, face)
            hidden += done
            if not done:
                missed.append((i, face))
            # the annotated snapshot is drawn on the blurred frame: same verdict (boxes drawn elsewhere)
            if done and not any(_overlaps(face, o.xyxy) for o in finding(0).objects):
                assert blurred(frame.image, annotated, face), (i, face)
        # the rest of the frame is the evidence and stays as it was (JPEG noise only): an empty stretch of street
        assert_untouched(frame.image, clean, [200, 700, 600, 1000], f"frame {i}")
        # the crop of the mother with the pram is cut from the blurred frame: the faces in it are blurred too
        [crop_img] = by_kind[EvidenceKind.CROP]
        x0, y0 = 1480 - int(0.15 * 160), 540 - int(0.15 * 460)  # recorder.crop's padding
        orig_crop = frame.image[y0 : y0 + crop_img.shape[0], x0 : x0 + crop_img.shape[1]]
        for face in faces:
            fx1, fy1, fx2, fy2 = face
            inside = (
                fx1 >= x0 and fy1 >= y0 and fx2 <= x0 + crop_img.shape[1] and fy2 <= y0 + crop_img.shape[0]
            )
            if inside and blurred(frame.image, clean, face):
                assert blurred(orig_crop, crop_img, [fx1 - x0, fy1 - y0, fx2 - x0, fy2 - y0]), (i, face)
                crops_checked += 1
        # the original goes to central as restricted evidence, byte-identical to the camera frame's JPEG
        [original] = by_kind[EvidenceKind.SNAPSHOT_ORIGINAL]
        for face in faces:
            assert_untouched(frame.image, original, face, f"frame {i} original")
    # Measured 16 of 21 (docs/benchmarks.md): the misses are faces behind the shop door and at the far end of
    # the street that neither CenterFace nor the person detector finds, and the child in the pram at frame 50.
    print(f"labelled faces blurred in the snapshot: {hidden}/{total}; missed: {missed}")
    assert hidden >= 15, missed
    assert crops_checked >= 3


def _overlaps(face: list[int], box: np.ndarray) -> bool:
    x1, y1, x2, y2 = face
    return not (x2 < box[0] - 4 or box[2] + 4 < x1 or y2 < box[1] - 4 or box[3] + 4 < y1)


@needs_model
def test_centerface_alone_finds_some_of_the_labelled_faces(
    frames: list[Frame], anonymizer: Anonymizer
) -> None:
    """The measurement behind docs/benchmarks.md: the face model alone misses small faces; heads cover them."""
    total = found = 0
    for key, faces in LABELS["frames"].items():
        dets = anonymizer.faces(frames[int(key)].image)
        for x1, y1, x2, y2 in faces:
            total += 1
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            found += any(d[0] <= cx <= d[2] and d[1] <= cy <= d[3] for d in dets)
    print(f"CenterFace found {found}/{total} labelled faces")
    assert found >= total // 3, "the face model stopped finding the large, frontal faces"


@needs_model
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_clip_officers_see_is_blurred_frame_by_frame(
    frames: list[Frame], anonymizer: Anonymizer, tmp_path: Path
) -> None:
    """Through the recorder and the real encoder: decode the MP4 and check the labelled faces on its frames."""
    i = 50
    cfg = EvidenceConfig(pre_roll_s=0.4, post_roll_s=0.4, clip_fps=5.0, clip_max_width=960)
    store = EvidenceStore(tmp_path / "ev")
    zone = {"zone": [(0.0, 0.0), (1919.0, 0.0), (1919.0, 1079.0), (0.0, 1079.0)]}
    encoder = ClipEncoder()
    rec = EvidenceRecorder(cfg, store, zone, encoder, anonymizer=anonymizer)
    tracker = persons(frames, i)
    for f in frames[i - 12 : i + 1]:
        rec.note_tracks(f, tracker.last)  # type: ignore[attr-defined]
        rec.observe(f)
    rec.start(finding(frames[i].mono), frames[i], "gathering")
    for f in frames[i + 1 : i + 12]:
        rec.note_tracks(f, tracker.last)  # type: ignore[attr-defined]
        rec.observe(f)
    got = []

    def drained() -> bool:
        got.extend(rec.ready())
        return bool(got)

    wait_until(drained, timeout_s=60)
    [ready] = got
    [clip] = ready.files
    assert clip.ref.kind is EvidenceKind.CLIP
    cap = cv2.VideoCapture(str(clip.path))
    decoded = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        decoded.append(np.asarray(img, np.uint8))
    cap.release()
    assert len(decoded) >= 3
    # The clip frame nearest the labelled frame: the ring keeps one frame per 0.2 s, so frame 50 is in it.
    small = cv2.resize(frames[i].image, (960, 540), interpolation=cv2.INTER_AREA)
    best = min(decoded, key=lambda d: float(np.abs(d.astype(np.int16) - small.astype(np.int16)).mean()))
    # The mother's face (about 16 px at the clip's 960 px) must be blurred in the clip;
    # the control patch of empty street must not change beyond H.264 noise.
    for face in ([1549, 574, 1571, 606],):
        half = [v // 2 for v in face]
        assert blurred(small, best, half), f"clip: face {face} not blurred"
    x1, y1, x2, y2 = 100, 350, 300, 500
    assert (
        float(np.abs(small[y1:y2, x1:x2].astype(np.int16) - best[y1:y2, x1:x2].astype(np.int16)).mean()) < 8
    )


def test_blur_boxes_pixelates_only_inside_the_grown_box() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    out = blur_boxes(image, [[100, 50, 140, 100]], grow=0.25)
    assert detail(out[50:100, 100:140]) < 0.1 * detail(image[50:100, 100:140])
    assert np.array_equal(out[:30], image[:30])  # above the grown box (50 - 12)
    assert np.array_equal(out[:, 160:], image[:, 160:])  # right of it (140 + 10)


@pytest.mark.parametrize(
    ("person", "head"),
    [
        (
            [100, 100, 140, 300],
            [102.0, 96.0, 138.0, 150.0],
        ),  # a standing person: the top quarter, a little above
        ([0, 0, 10, 20], None),  # too small to carry a recognisable face
    ],
)
def test_head_boxes(person: list[int], head: list[float] | None) -> None:
    got = head_boxes(np.array([person], np.float32))
    if head is None:
        assert len(got) == 0
    else:
        np.testing.assert_allclose(got[0], head, atol=0.01)


def test_plates_only_when_the_deployment_asks() -> None:
    assert plate_bands([("person", [0, 0, 10, 10])]) == []
    assert plate_bands([("car", [0, 100, 200, 200])]) == [[0.0, 160.0, 200.0, 200.0]]


def test_plates_stay_readable_by_default_and_are_blurred_when_configured(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    car = [("car", [50.0, 50.0, 250.0, 190.0])]
    keep, _ = Anonymizer(PrivacyConfig(blur_faces=False)).anonymize(image, car)
    assert np.array_equal(keep, image)
    hide, _ = Anonymizer(PrivacyConfig(blur_faces=False, blur_plates=True)).anonymize(image, car)
    assert detail(hide[140:190, 60:240]) < 0.2 * detail(image[140:190, 60:240])


def test_a_missing_face_model_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(PrivacyError, match="cannot be read"):
        Anonymizer.from_config(PrivacyConfig(face_model=tmp_path / "nope.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(PrivacyError):
        Anonymizer.from_config(PrivacyConfig(face_model=bad))
    # off by choice: no model needed
    assert (
        Anonymizer.from_config(PrivacyConfig(blur_faces=False, face_model=tmp_path / "nope.onnx")).detector
        is None
    )


def test_a_failing_blur_fails_the_clip_instead_of_sending_it_raw(tmp_path: Path) -> None:
    """Fail closed: if the privacy step raises on the encoder thread, no clip (never the unblurred frames)."""
    _, jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))
    frames = [ClipFrame(float(i), WALL0, bytes(jpeg.tobytes())) for i in range(3)]
    results: list[tuple[bytes | None, str]] = []

    def boom(_: list[ClipFrame]) -> list[ClipFrame]:
        raise RuntimeError("face model crashed")

    enc = ClipEncoder()
    enc.submit(frames, 5.0, lambda data, err: results.append((data, err)), boom)
    wait_until(lambda: bool(results), timeout_s=30)
    enc.close()
    assert results[0][0] is None
    assert "privacy" in results[0][1]

"""The real default model (yolo11n 640 int8) on real images: does the whole chain find street objects?

Assets are found through ``STREETWATCH_ASSETS``, else ``<repo>/assets``, else the shared mirror next to the
repo; tests that need them skip with the lookup in the message when they are absent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from edge_agent.config import ModelConfig
from edge_agent.perception.detector.onnx_detector import DetectorError, OnnxDetector
from edge_agent.perception.detector.postprocess import box_iou
from tests.paths import ASSETS

REPO = Path(__file__).resolve().parents[3]
DEFAULT_MODEL = "yolo11n_coco_640_int8dyn.onnx"
DEFAULT_MODEL_SHA256 = "81d6d2affeb367e3a535ce4fcf5891ebf9cc562fac0a0da019bbc5e1bcc46d44"  # PROVENANCE.md §1
STREET = {"person": 0, "car": 2, "motorcycle": 3, "bus": 5}
MIN_SIDE_PX = 32


@pytest.fixture(scope="module")
def assets() -> Path:
    root = ASSETS
    assert (root / "models" / DEFAULT_MODEL).is_file(), (
        f"no {DEFAULT_MODEL} under {root}/models (set STREETWATCH_ASSETS or run scripts/fetch_assets.py)"
    )
    return root


@pytest.fixture(scope="module")
def detector(assets: Path) -> OnnxDetector:
    # Thresholds pinned to those of the PROVENANCE reference rather than the config defaults, which may move.
    return OnnxDetector(
        ModelConfig(path=assets / "models" / DEFAULT_MODEL, conf_threshold=0.25, iou_threshold=0.45)
    )


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot decode {path}"
    return image


def yolo_labels(path: Path, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.loadtxt(path, ndmin=2)
    cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1), rows[:, 0].astype(int)


def test_model_properties(detector: OnnxDetector):
    assert detector.model_name == DEFAULT_MODEL
    assert detector.model_sha256 == DEFAULT_MODEL_SHA256
    assert detector.input_size == 640
    assert detector.dynamic_batch is False
    assert len(detector.names) == 80
    assert [detector.names[i] for i in STREET.values()] == list(STREET)


# Chosen from coco128 by reading the labels (person, car, motorcycle, bus) and keeping images where the model
# finds every labelled street object over 32 px with room to spare (worst IoU 0.73, worst score 0.49 at
# conf 0.25), so the test guards the pre/post-processing rather than the model's borderline cases.
STREET_IMAGES = [
    "000000000260.jpg",  # bus + person
    "000000000471.jpg",  # bus
    "000000000073.jpg",  # two motorcycles
    "000000000629.jpg",  # motorcycle
    "000000000086.jpg",  # person on a motorcycle
    "000000000064.jpg",  # car
    "000000000094.jpg",  # car
    "000000000544.jpg",  # five people
]


def test_every_labelled_street_object_is_found(assets: Path, detector: OnnxDetector):
    root = assets / "coco128"
    images = [read_image(root / "images" / "train2017" / name) for name in STREET_IMAGES]
    results = detector.detect(images)
    checked = set()
    for name, image, det in zip(STREET_IMAGES, images, results, strict=True):
        h, w = image.shape[:2]
        gt, cls = yolo_labels(root / "labels" / "train2017" / f"{Path(name).stem}.txt", w, h)
        sides = np.minimum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1])
        for box, c in zip(gt[sides > MIN_SIDE_PX], cls[sides > MIN_SIDE_PX], strict=True):
            if c not in STREET.values():
                continue
            same = det.class_ids == c
            best = box_iou(box[None], det.xyxy[same]).max() if same.any() else 0.0
            assert best >= 0.5, f"{name}: {detector.names[c]} {box.round()} not found (best IoU {best:.2f})"
            checked.add(detector.names[c])
    assert checked == set(STREET)


def test_batch_of_frames_equals_one_by_one(assets: Path, detector: OnnxDetector):
    root = assets / "coco128" / "images" / "train2017"
    images = [read_image(root / name) for name in STREET_IMAGES[:3]]
    together = detector.detect(images)
    for image, det in zip(images, together, strict=True):
        alone = detector.detect([image])[0]
        np.testing.assert_array_equal(det.xyxy, alone.xyxy)
        np.testing.assert_array_equal(det.class_ids, alone.class_ids)
    assert detector.last_timing is not None and detector.last_timing.inference_ms > 0


def test_class_filter_keeps_only_named_classes(assets: Path):
    det = OnnxDetector(ModelConfig(path=assets / "models" / DEFAULT_MODEL, classes=["bus"]))
    result = det.detect([read_image(assets / "coco128" / "images" / "train2017" / "000000000260.jpg")])[0]
    assert len(result) >= 1 and set(result.class_ids.tolist()) == {STREET["bus"]}
    assert result.label(0) == "bus"


# PROVENANCE.md §1: conf 0.25, NMS 0.45, (label, score, [x1 y1 x2 y2]) for the Ultralytics sample images.
REFERENCE = {
    "bus.jpg": [
        ("person", 0.907, (46, 401, 244, 903)),
        ("bus", 0.885, (19, 231, 801, 741)),
        ("person", 0.825, (221, 404, 345, 860)),
        ("person", 0.820, (671, 390, 810, 881)),
        ("person", 0.575, (0, 554, 68, 871)),
    ],
    "zidane.jpg": [
        ("person", 0.853, (752, 42, 1150, 710)),
        ("person", 0.736, (143, 202, 1136, 710)),
        ("tie", 0.344, (362, 438, 527, 716)),
    ],
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_detections(assets: Path, detector: OnnxDetector, name: str):
    path = next(assets.rglob(name), None)
    if path is None:
        pytest.skip(
            f"{name} is not in {assets} (it ships in the ultralytics wheel under ultralytics/assets/)"
        )
    det = detector.detect([read_image(path)])[0]
    got = [(det.label(i), float(det.scores[i]), det.xyxy[i]) for i in range(len(det))]
    assert [g[0] for g in got] == [r[0] for r in REFERENCE[name]]
    for (_, score, box), (_, ref_score, ref_box) in zip(got, REFERENCE[name], strict=True):
        assert score == pytest.approx(ref_score, abs=0.002)
        np.testing.assert_allclose(box, ref_box, atol=1.0)


def test_missing_model_is_a_detector_error_naming_the_path(tmp_path: Path):
    missing = tmp_path / "models" / "nope.onnx"
    with pytest.raises(DetectorError) as err:
        OnnxDetector(ModelConfig(path=missing))
    assert str(missing) in str(err.value) and "scripts/fetch_assets.py --mirror" in str(err.value)


def test_corrupt_model_is_a_detector_error(tmp_path: Path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(DetectorError, match=r"cannot load model .*corrupt\.onnx"):
        OnnxDetector(ModelConfig(path=bad))


def test_unknown_class_name_is_a_value_error_listing_valid_ones(assets: Path):
    with pytest.raises(ValueError, match=r"unknown class names \['scooter', 'lorry'\].*'motorcycle'"):
        OnnxDetector(ModelConfig(path=assets / "models" / DEFAULT_MODEL, classes=["car", "scooter", "lorry"]))


def test_input_size_cannot_override_a_fixed_model(assets: Path):
    with pytest.raises(ValueError, match="input_size: 320"):
        OnnxDetector(ModelConfig(path=assets / "models" / DEFAULT_MODEL, input_size=320))


def load_eval_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_detector", REPO / "scripts" / "eval_detector.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_eval_script_writes_and_replaces_its_section(assets: Path, tmp_path: Path, capsys):
    script = load_eval_script()
    out = tmp_path / "bench.md"
    args = ["--model", str(assets / "models" / DEFAULT_MODEL), "--data", str(assets / "coco128")]
    args += ["--limit", "3", "--no-latency", "--quiet", "--write", str(out)]
    assert script.main(args) == 0
    assert script.main(args) == 0
    text = out.read_text()
    assert text.count(f"<!-- eval:{DEFAULT_MODEL} threads=0 -->") == 1
    assert DEFAULT_MODEL_SHA256 in text and "mAP50-95" in text
    assert "mAP50" in capsys.readouterr().out

"""Fixtures for the model-tooling tests: the real 320 model, its dequantized fp32 graph, real images and clips.

The tooling needs ``onnx``; without it these tests are not collected locally (the pytest header says so) but
fail in CI (``CI`` set), where a silently skipped suite would hide broken tooling. Real assets are found like every other test's (``tests.paths``).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.paths import ASSETS, COCO128

try:
    import onnx  # noqa: F401
except ModuleNotFoundError:
    if os.environ.get("CI"):
        raise  # CI must have it: a missing dependency is a failure there
    # A Skipped raised while a conftest loads aborts the whole pytest run, so leave the files uncollected.
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header() -> str:
        return "tests/models: not collected, onnx is not installed (pip install onnx)"


MODEL_320 = ASSETS / "models" / "yolo11n_coco_320_int8dyn.onnx"
CLIP = ASSETS / "videos" / "vn_haiphong_intersection_cctv_1006x720.mp4"
# coco128 images with large, unambiguous street objects (chosen by reading their labels): two buses, a
# person on a motorcycle, a person.
IMAGES = ("000000000471", "000000000086", "000000000036", "000000000532")


def _require(path: Path) -> Path:
    assert path.exists(), f"missing {path} (set STREETWATCH_ASSETS or run scripts/fetch_assets.py --all)"
    return path


@pytest.fixture(scope="session")
def model_320_path() -> Path:
    return _require(MODEL_320)


@pytest.fixture(scope="session")
def clip_path() -> Path:
    return _require(CLIP)


@pytest.fixture(scope="session")
def coco128() -> Path:
    return _require(COCO128)


@pytest.fixture(scope="session")
def int8_320(model_320_path: Path):
    from models.tooling.graph import load_model

    return load_model(model_320_path)


@pytest.fixture(scope="session")
def dequantized_320(int8_320):
    """(fp32 ModelProto, DequantizeStats) of the real 320 model."""
    from models.tooling.dequantize import dequantize_dynamic

    return dequantize_dynamic(int8_320)


def read_image(coco128: Path, stem: str) -> np.ndarray:
    image = cv2.imread(str(coco128 / "images" / "train2017" / f"{stem}.jpg"), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot decode coco128 image {stem}"
    return image


def labels_xyxy(
    coco128: Path, stem: str, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel boxes, class ids and relative areas of one image's YOLO labels."""
    rows = np.loadtxt(coco128 / "labels" / "train2017" / f"{stem}.txt", ndmin=2)
    cx, cy, bw, bh = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return xyxy, rows[:, 0].astype(int), rows[:, 3] * rows[:, 4]

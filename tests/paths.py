"""Where tests find the real assets: ``STREETWATCH_ASSETS``, else ``assets/`` (made by `make assets`), else the
shared mirror beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assets_dir() -> Path:
    env = os.environ.get("STREETWATCH_ASSETS")
    if env:
        return Path(env)
    local = ROOT / "assets"
    if (local / "models").is_dir():
        return local
    return ROOT.parent / "shared" / "assets"


ASSETS = assets_dir()
MODEL_640 = ASSETS / "models" / "yolo11n_coco_640_int8dyn.onnx"
TOKYO = ASSETS / "videos" / "tokyo_omotesando_street_sidewalk_960x540.mp4"
COCO128 = ASSETS / "coco128"

#!/usr/bin/env python3
"""Motorcycle AP and the rider-without-scooter rate on the labelled Vietnamese frames (tests/data/vn_motorbikes.json).

Every model in the asset folder, with and without rider-scooter association, plus one test-time measure (the
frame and four overlapping 60 % tiles, merged by NMS: five detector runs per frame) for the default model.

    python scripts/eval_vn_motorbikes.py [--assets assets] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.config import ModelConfig  # noqa: E402
from edge_agent.perception.detector.labelled_set import LabelledSet, SetReport, evaluate  # noqa: E402
from edge_agent.perception.detector.onnx_detector import OnnxDetector  # noqa: E402
from edge_agent.perception.detector.postprocess import batched_nms_offset  # noqa: E402
from edge_agent.types import Detections, Image  # noqa: E402

LABELS = ROOT / "tests" / "data" / "vn_motorbikes.json"
MODELS = ("yolo11n_coco_640_int8dyn.onnx", "yolov8n_coco_640_int8dyn.onnx", "yolo11n_coco_320_int8dyn.onnx")
BEGIN, END = "<!-- vn-motorbikes:begin -->", "<!-- vn-motorbikes:end -->"


def tiled(detector: OnnxDetector, share: float = 0.6) -> Callable[[Image], Detections]:
    """The frame plus four overlapping corner tiles, boxes merged by per-class NMS (IoU 0.5)."""

    def run(image: Image) -> Detections:
        h, w = image.shape[:2]
        tw, th = int(w * share), int(h * share)
        views = [(0, 0, w, h)] + [(x, y, x + tw, y + th) for x in (0, w - tw) for y in (0, h - th)]
        parts = detector.detect([np.ascontiguousarray(image[y0:y1, x0:x1]) for x0, y0, x1, y1 in views])
        xyxy = np.concatenate(
            [
                p.xyxy + np.array([x0, y0, x0, y0], np.float32)
                for p, (x0, y0, _, _) in zip(parts, views, strict=True)
            ]
        )
        scores = np.concatenate([p.scores for p in parts])
        cls = np.concatenate([p.class_ids for p in parts])
        keep = batched_nms_offset(xyxy, scores, cls, 0.5)
        return Detections(xyxy[keep], scores[keep], cls[keep], parts[0].names)

    return run


def row(name: str, setting: str, r: SetReport, ms: float) -> str:
    def f(d: dict[str, float], k: str) -> str:
        return f"{d[k]:.3f}" if k in d else "-"

    return (
        f"| {name} | {setting} | {f(r.ap50, 'motorcycle')} | {f(r.ap50_95, 'motorcycle')} | "
        f"{f(r.recall, 'motorcycle')} | {r.rider_without_scooter_rate:.1%} ({r.riders_without_scooter}/"
        f"{r.riders_found}) | {f(r.ap50, 'person')} | {f(r.ap50, 'car')} | {ms:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", type=Path, default=Path(os.environ.get("STREETWATCH_ASSETS", ROOT / "assets")))
    p.add_argument("--write", type=Path, help="replace the vn-motorbikes section of this markdown file")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    labelled = LabelledSet.load(LABELS)
    lines = [
        "| model | setting | moto AP50 | moto AP50-95 | moto recall @0.25 | riders without scooter @0.25 | "
        "person AP50 | car AP50 | ms/frame |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        path = args.assets / "models" / model
        if not path.is_file():
            print(f"skip {model}: not in {args.assets / 'models'}", file=sys.stderr)
            continue
        settings: list[tuple[str, bool, bool]] = [("plain", False, False), ("rider association", True, False)]
        if model == MODELS[0]:
            settings.append(("association + 4 tiles", True, True))
        for setting, assoc, tiles in settings:
            det = OnnxDetector(
                ModelConfig(
                    path=path,
                    conf_threshold=0.001,
                    iou_threshold=0.45,
                    rider_association=assoc,
                    threads=args.threads,
                )
            )
            run = tiled(det) if tiles else (lambda im, d=det: d.detect([im])[0])
            t0 = time.perf_counter()
            report = evaluate(labelled, args.assets / "videos", run)
            ms = (time.perf_counter() - t0) * 1000 / max(report.frames, 1)
            line = row(model.removesuffix(".onnx"), setting, report, ms)
            print(line, flush=True)
            lines.append(line)
    stamp = (
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}), {len(labelled.frames)} frames; ms/frame includes decoding the clip and is "
        "only for comparing settings within this run."
    )
    section = "\n".join([BEGIN, stamp, "", *lines, END])
    if args.write:
        text = args.write.read_text(encoding="utf-8")
        if BEGIN in text:
            text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: section, text, flags=re.S)
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        args.write.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

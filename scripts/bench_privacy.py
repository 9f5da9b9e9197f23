#!/usr/bin/env python3
"""Face blurring on the node: faces found on the labelled pedestrian-street frames and the cost per snapshot.

For each setting: how many labelled faces (tests/data/pedestrian_faces.json) CenterFace finds (a detection
containing the face's centre or overlapping it at IoU >= 0.2), how many end up covered by the blur once the
head areas of the detector's person boxes are added (>= 70 % of the face box inside blurred pixels), and the
milliseconds of ``Anonymizer.anonymize`` per 1920x1080 snapshot (median of the labelled frames, 3 runs each) and
per 960-wide clip frame, as wall time and as this process's CPU time (one onnxruntime thread, so the CPU time is
what one dedicated core would spend; the wall time on a shared VM is mostly waiting for a core).

    python scripts/bench_privacy.py [--assets assets] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.config import ModelConfig, PrivacyConfig  # noqa: E402
from edge_agent.evidence.privacy import Anonymizer  # noqa: E402
from edge_agent.perception.detector.onnx_detector import OnnxDetector  # noqa: E402
from edge_agent.types import FloatArray, Image  # noqa: E402

FACES = ROOT / "tests" / "data" / "pedestrian_faces.json"
BEGIN, END = "<!-- privacy:begin -->", "<!-- privacy:end -->"


def load_frames(video: Path, wanted: set[int]) -> dict[int, Image]:
    cap = cv2.VideoCapture(str(video))
    out: dict[int, Image] = {}
    i = 0
    while len(out) < len(wanted):
        ok, image = cap.read()
        if not ok:
            break
        if i in wanted:
            out[i] = np.asarray(image, np.uint8)
        i += 1
    cap.release()
    return out


def found(face: list[int], dets: FloatArray) -> bool:
    x1, y1, x2, y2 = face
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    for d in dets:
        if d[0] <= cx <= d[2] and d[1] <= cy <= d[3]:
            return True
        iw = max(0.0, min(x2, d[2]) - max(x1, d[0]))
        ih = max(0.0, min(y2, d[3]) - max(y1, d[1]))
        inter = iw * ih
        union = (x2 - x1) * (y2 - y1) + (d[2] - d[0]) * (d[3] - d[1]) - inter
        if union > 0 and inter / union >= 0.2:
            return True
    return False


def covered(face: list[int], original: Image, blurred: Image) -> bool:
    """>= 70 % of the face box's pixels changed by the blur (the pixel-level truth, whatever blurred them)."""
    x1, y1, x2, y2 = face
    diff = np.abs(original[y1:y2, x1:x2].astype(np.int16) - blurred[y1:y2, x1:x2].astype(np.int16)).max(
        axis=2
    )
    return float((diff > 0).mean()) >= 0.7


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", type=Path, default=Path(os.environ.get("STREETWATCH_ASSETS", ROOT / "assets")))
    p.add_argument("--write", type=Path)
    args = p.parse_args(argv)
    labels = json.loads(FACES.read_text(encoding="utf-8"))
    frames = load_frames(args.assets / "videos" / labels["clip"], {int(k) for k in labels["frames"]})
    faces = {int(k): v for k, v in labels["frames"].items()}
    total = sum(len(v) for v in faces.values())
    detector = OnnxDetector(
        ModelConfig(path=args.assets / "models" / "yolo11n_coco_640_int8dyn.onnx", threads=1)
    )
    persons = {}
    for i, image in frames.items():
        d = detector.detect([image])[0]
        persons[i] = np.asarray(
            [d.xyxy[j] for j in range(len(d)) if d.label(j) == "person" and d.scores[j] >= 0.25], np.float32
        ).reshape(-1, 4)
    model = args.assets / "models" / "centerface.onnx"
    lines = [
        "| face threshold | max side | heads of persons | faces found by CenterFace | faces blurred | "
        "ms per 1080p snapshot, p50 wall (CPU) | ms per searched 960 px clip frame, p50 wall (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for thr, side, heads in ((0.2, 1920, True), (0.2, 1920, False), (0.35, 1920, True), (0.2, 1280, True)):
        anon = Anonymizer.from_config(
            PrivacyConfig(face_model=model, face_threshold=thr, face_max_side=side, person_heads=heads)
        )
        n_found = n_cov = 0
        snap_ms: list[float] = []
        clip_ms: list[float] = []
        snap_cpu: list[float] = []
        clip_cpu: list[float] = []
        for i, image in frames.items():
            dets = anon.faces(image)
            n_found += sum(found(f, dets) for f in faces[i])
            blurred, _ = anon.anonymize(image, persons=persons[i])
            n_cov += sum(covered(f, image, blurred) for f in faces[i])
            for _ in range(3):
                t0, c0 = time.perf_counter(), time.process_time()
                anon.anonymize(image, persons=persons[i])
                snap_ms.append((time.perf_counter() - t0) * 1000)
                snap_cpu.append((time.process_time() - c0) * 1000)
            small = cv2.resize(image, (960, 540), interpolation=cv2.INTER_AREA)
            _, jpeg = cv2.imencode(".jpg", small)
            for _ in range(3):
                t0, c0 = time.perf_counter(), time.process_time()
                anon.anonymize_jpegs([bytes(jpeg.tobytes())], [persons[i] * 0.5])
                clip_ms.append((time.perf_counter() - t0) * 1000)
                clip_cpu.append((time.process_time() - c0) * 1000)
        line = (
            f"| {thr} | {side} | {'yes' if heads else 'no'} | {n_found}/{total} | {n_cov}/{total} | "
            f"{statistics.median(snap_ms):.0f} ({statistics.median(snap_cpu):.0f}) | "
            f"{statistics.median(clip_ms):.0f} ({statistics.median(clip_cpu):.0f}) |"
        )
        print(line, flush=True)
        lines.append(line)
    stamp = (
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores, 1 onnxruntime "
        f"thread, load {os.getloadavg()[0]:.1f}); {total} labelled faces on {len(frames)} frames."
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

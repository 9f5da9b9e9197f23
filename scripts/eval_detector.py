"""Evaluate an ONNX detector on a YOLO-format dataset (coco128): COCO-style mAP and per-stage latency.

Its main job is a regression check of the detector's pre/post-processing: a model whose reference mAP is known
must land within about +-0.01 of it, else the letterbox or the decoding is wrong.

    python scripts/eval_detector.py --model MODEL.onnx --data /path/to/coco128 [--conf 0.001 --iou 0.7]
        [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge_agent.config import ModelConfig
from edge_agent.perception.detector.evaluation import DetectionEvaluator, EvalResult, F64Array
from edge_agent.perception.detector.onnx_detector import OnnxDetector, StageTiming
from edge_agent.types import Image, IntArray

STREET_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# The agent's default thresholds, for the latency pass that reflects what runs live.
DEPLOY_CONF = float(ModelConfig.model_fields["conf_threshold"].default)
DEPLOY_IOU = float(ModelConfig.model_fields["iou_threshold"].default)


@dataclass(frozen=True, slots=True)
class Sample:
    image_path: Path
    gt_xyxy: F64Array
    gt_classes: IntArray


@dataclass(frozen=True, slots=True)
class Latency:
    """Mean and percentiles over images of one pass, milliseconds."""

    conf: float
    iou: float
    preprocess: float
    inference: float
    postprocess: float
    p50_total: float
    p95_total: float

    @property
    def total(self) -> float:
        return self.preprocess + self.inference + self.postprocess


def read_labels(label_path: Path, width: int, height: int) -> tuple[F64Array, IntArray]:
    """YOLO label rows ``class cx cy w h`` (normalized) -> pixel xyxy [N, 4] and class ids [N]."""
    if not label_path.is_file():
        return np.zeros((0, 4)), np.zeros((0,), np.int64)
    rows = [line.split() for line in label_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    arr = np.array([[float(v) for v in r[:5]] for r in rows], dtype=np.float64).reshape(-1, 5)
    cx, cy, w, h = arr[:, 1] * width, arr[:, 2] * height, arr[:, 3] * width, arr[:, 4] * height
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return xyxy, arr[:, 0].astype(np.int64)


def iter_samples(data: Path, limit: int | None) -> Iterator[tuple[Sample, Image]]:
    images_dir, labels_dir = data / "images" / "train2017", data / "labels" / "train2017"
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in paths[:limit]:
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if decoded is None:
            raise SystemExit(f"cannot decode image {path}")
        image: Image = np.asarray(decoded, dtype=np.uint8)
        xyxy, cls = read_labels(labels_dir / f"{path.stem}.txt", image.shape[1], image.shape[0])
        yield Sample(path, xyxy, cls), image


def count_images(data: Path, limit: int | None) -> int:
    n = sum(1 for p in (data / "images" / "train2017").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return n if limit is None else min(n, limit)


def summarize_latency(timings: Sequence[StageTiming], conf: float, iou: float) -> Latency:
    totals = np.array([t.total_ms for t in timings])
    return Latency(
        conf,
        iou,
        float(np.mean([t.preprocess_ms for t in timings])),
        float(np.mean([t.inference_ms for t in timings])),
        float(np.mean([t.postprocess_ms for t in timings])),
        float(np.percentile(totals, 50)),
        float(np.percentile(totals, 95)),
    )


def evaluate(
    detector: OnnxDetector, data: Path, limit: int | None, quiet: bool
) -> tuple[EvalResult, Latency, int]:
    """Run the detector on every image; return the metrics, the latency of this pass and the GT box count."""
    evaluator = DetectionEvaluator()
    timings: list[StageTiming] = []
    n_total, n_boxes = count_images(data, limit), 0
    for i, (sample, image) in enumerate(iter_samples(data, limit), start=1):
        det = detector.detect([image])[0]
        assert detector.last_timing is not None
        timings.append(detector.last_timing)
        evaluator.add(det.xyxy, det.scores, det.class_ids, sample.gt_xyxy, sample.gt_classes)
        n_boxes += len(sample.gt_classes)
        if not quiet:
            print(f"\rimage {i}/{n_total} {sample.image_path.name}", end="", file=sys.stderr, flush=True)
    if not quiet:
        print(file=sys.stderr)
    cfg = detector.config
    return evaluator.result(), summarize_latency(timings, cfg.conf_threshold, cfg.iou_threshold), n_boxes


def measure_latency(
    model: Path, data: Path, limit: int | None, threads: int, backend: str = "onnxruntime"
) -> Latency:
    """A second pass at the agent's default thresholds: conf 0.001 inflates NMS far beyond what runs live."""
    detector = OnnxDetector(
        ModelConfig(
            path=model,
            conf_threshold=DEPLOY_CONF,
            iou_threshold=DEPLOY_IOU,
            threads=threads,
            backend=backend,  # type: ignore[arg-type]  # checked by argparse choices
        )
    )
    timings: list[StageTiming] = []
    for _, image in iter_samples(data, limit):
        detector.detect([image])
        assert detector.last_timing is not None
        timings.append(detector.last_timing)
    return summarize_latency(timings, DEPLOY_CONF, DEPLOY_IOU)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_results(result: EvalResult, names: Sequence[str]) -> str:
    lines = [f"mAP50 {result.map50:.3f}  mAP50-95 {result.map50_95:.3f}  ({len(result.class_ids)} classes)"]
    for name in STREET_CLASSES:
        ap = result.class_ap(names.index(name)) if name in names else None
        lines.append(
            f"  {name:<11} " + ("no ground truth" if ap is None else f"AP50 {ap[0]:.3f}  AP50-95 {ap[1]:.3f}")
        )
    return "\n".join(lines)


def markdown_section(
    detector: OnnxDetector,
    result: EvalResult,
    n_boxes: int,
    latencies: Sequence[Latency],
    data: Path,
    command: str,
    load: tuple[float, float],
) -> str:
    names = detector.names
    threads = detector.config.threads
    header = "| mAP50 | mAP50-95 | " + " | ".join(f"{c} AP50-95" for c in STREET_CLASSES) + " |"
    cells = []
    for name in STREET_CLASSES:
        ap = result.class_ap(names.index(name)) if name in names else None
        cells.append("n/a" if ap is None else f"{ap[1]:.3f}")
    lat_rows = [
        f"| conf {lat.conf:g}, NMS IoU {lat.iou:g} | {lat.preprocess:.1f} | {lat.inference:.1f} | "
        f"{lat.postprocess:.1f} | {lat.total:.1f} | {lat.p50_total:.1f} | {lat.p95_total:.1f} |"
        for lat in latencies
    ]
    return "\n".join(
        [
            f"<!-- eval:{section_key(detector)} -->",
            f"### {detector.model_name} on {data.name}, intra-op threads {threads or 'default'}",
            "",
            f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"1-min load average {load[0]:.2f} before, {load[1]:.2f} after (other work inflates latency)",
            f"- {detector.backend_name} {detector.backend_version} ({detector.backend.device}, threads "
            f"{threads if threads > 0 else 'default'}), numpy {np.__version__}, opencv {cv2.__version__}",
            f"- model: `{detector.model_name}`, input {detector.input_size}, "
            f"sha256 `{detector.model_sha256}`",
            f"- data: {result.n_images} images, {n_boxes} labelled boxes, {len(result.class_ids)} classes; "
            f"conf {detector.config.conf_threshold:g}, NMS IoU {detector.config.iou_threshold:g}, "
            "max 300 boxes",
            f"- command: `{command}`",
            "",
            header,
            "|" + "---|" * (2 + len(STREET_CLASSES)),
            f"| {result.map50:.3f} | {result.map50_95:.3f} | " + " | ".join(cells) + " |",
            "",
            "Latency per image, batch 1, milliseconds (mean per stage; total p50/p95):",
            "",
            "| thresholds | preprocess | inference | postprocess | total | p50 | p95 |",
            "|---|---|---|---|---|---|---|",
            *lat_rows,
            f"<!-- /eval:{section_key(detector)} -->",
        ]
    )


def section_key(detector: OnnxDetector) -> str:
    suffix = "" if detector.backend_name == "onnxruntime" else f" backend={detector.backend_name}"
    return f"{detector.model_name} threads={detector.config.threads}{suffix}"


def write_section(path: Path, key: str, section: str) -> None:
    """Insert or replace the section of this model and thread count, so several runs share one file."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Detector benchmarks\n"
    pattern = re.compile(rf"<!-- eval:{re.escape(key)} -->.*?<!-- /eval:{re.escape(key)} -->", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="ONNX model file")
    ap.add_argument(
        "--data", type=Path, required=True, help="dataset root with images/train2017, labels/train2017"
    )
    ap.add_argument("--conf", type=float, default=0.001, help="score threshold for the mAP pass")
    ap.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold for the mAP pass")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: default)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (quick check)")
    ap.add_argument(
        "--backend",
        choices=["auto", "onnxruntime", "openvino"],
        default="onnxruntime",
        help="inference runtime (model.backend); OpenVINO also reads IR .xml files",
    )
    ap.add_argument(
        "--no-latency",
        action="store_true",
        help=f"skip the second pass at the agent's defaults (conf {DEPLOY_CONF:g}, IoU {DEPLOY_IOU:g})",
    )
    ap.add_argument(
        "--write", type=Path, default=None, help="insert or replace this model's markdown section"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    if not (args.data / "images" / "train2017").is_dir():
        ap.error(f"{args.data} has no images/train2017")

    detector = OnnxDetector(
        # No look-alike merge: mAP measures the raw detector, comparable with other evaluators.
        ModelConfig(
            path=args.model,
            conf_threshold=args.conf,
            iou_threshold=args.iou,
            threads=args.threads,
            backend=args.backend,
            merge_classes=[],
        )
    )
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result, eval_latency, n_boxes = evaluate(detector, args.data, args.limit, args.quiet)
    elapsed = time.perf_counter() - started
    latencies = [eval_latency]
    if not args.no_latency:
        latencies.append(
            measure_latency(args.model, args.data, args.limit, args.threads, detector.backend_name)
        )
    load = (load_before, os.getloadavg()[0])

    print(
        f"{detector.model_name} (sha256 {detector.model_sha256[:16]}...), "
        f"{result.n_images} images in {elapsed:.1f} s"
    )
    print(format_results(result, detector.names))
    for lat in latencies:
        print(
            f"latency conf {lat.conf:g} iou {lat.iou:g}: pre {lat.preprocess:.1f} + "
            f"infer {lat.inference:.1f} + post {lat.postprocess:.1f} = {lat.total:.1f} ms/image "
            f"(p50 {lat.p50_total:.1f}, p95 {lat.p95_total:.1f})"
        )
    if args.write is not None:
        command = "python scripts/eval_detector.py " + shlex.join(
            sys.argv[1:] if argv is None else list(argv)
        )
        write_section(
            args.write,
            section_key(detector),
            markdown_section(detector, result, n_boxes, latencies, args.data, command, load),
        )
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

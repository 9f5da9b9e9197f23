#!/usr/bin/env python3
"""GPU check: the CUDA and TensorRT execution providers on the real model and real frames (Jetson, GPU servers).

    python scripts/check_gpu.py [--model assets/models/yolo11n_coco_640_fp32_dynbatch.onnx] [--frames 32]
        [--write docs/benchmarks.md]

For each GPU provider that onnxruntime offers here (``onnxruntime-gpu``; on Jetson the JetPack wheel), the
detector runs real street frames and is compared with the CPU provider on the same model: boxes within 2 px,
same labels, and the latency per frame. Without a GPU (no ``nvidia-smi``, or no GPU provider in onnxruntime)
it says so and exits 0: the project never needs a GPU to build or test. ``--write`` puts the result in the
``<!-- gpu:check -->`` section of the given markdown file (only when a GPU was actually measured).

Exit codes: 0 checked or no GPU here, 1 a GPU provider gave different detections or failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CLIPS = (
    "vn_saigon_intersection_cctv_1018x720.mp4",
    "vn_haiphong_intersection_cctv_1006x720.mp4",
    "tokyo_omotesando_street_sidewalk_960x540.mp4",
    "vn_nga4_truccat_intersection_highview_1280x720.mp4",
)
BEGIN, END = "<!-- gpu:check -->", "<!-- /gpu:check -->"
BOX_TOL_PX = 2.0


def gpu_name() -> str | None:
    """The first GPU nvidia-smi reports, or None when there is none (or no driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    return line or None


def load_frames(n: int) -> list[object]:
    import cv2
    import numpy as np

    frames = []
    per = max(1, n // len(CLIPS))
    for name in CLIPS:
        cap = cv2.VideoCapture(str(ROOT / "assets" / "videos" / name))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or per
        for i in range(per):
            cap.set(cv2.CAP_PROP_POS_FRAMES, i * max(1, total // per))
            ok, img = cap.read()
            if ok:
                frames.append(np.asarray(img, np.uint8))
        cap.release()
    return frames


def compare(ref: list[object], got: list[object]) -> tuple[int, float]:
    """(mismatched confident boxes, worst box error px) between two runs' detections."""
    import numpy as np

    bad, worst = 0, 0.0
    for a, b in zip(ref, got, strict=True):
        strong = a.scores >= 0.3  # type: ignore[attr-defined]
        for box, cls in zip(a.xyxy[strong], a.class_ids[strong], strict=True):  # type: ignore[attr-defined]
            same = b.class_ids == cls  # type: ignore[attr-defined]
            err = float(np.abs(b.xyxy[same] - box).max(axis=1).min()) if same.any() else float("inf")  # type: ignore[attr-defined]
            worst = max(worst, err)
            bad += err > BOX_TOL_PX
    return bad, worst


def time_detector(det: object, frames: list[object]) -> float:
    det.detect(frames[:1])  # type: ignore[attr-defined]  # warm-up (engine build for TensorRT)
    t0 = time.perf_counter()
    for f in frames:
        det.detect([f])  # type: ignore[attr-defined]
    return (time.perf_counter() - t0) * 1e3 / len(frames)


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    pattern = re.compile(rf"{re.escape(BEGIN)}.*?{re.escape(END)}", re.DOTALL)
    text = (
        pattern.sub(lambda _m: section, text)
        if pattern.search(text)
        else text.rstrip("\n") + "\n\n" + section + "\n"
    )
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", type=Path, default=ROOT / "assets" / "models" / "yolo11n_coco_640_int8dyn.onnx"
    )
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--write", type=Path, default=None, help="markdown file for the gpu:check section")
    args = ap.parse_args(argv)

    gpu = gpu_name()
    try:
        import onnxruntime as ort
    except ImportError:
        print("no GPU check: onnxruntime is not installed (pip install -e '.[edge]')")
        return 0
    providers = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()]
    if gpu is None or not providers:
        why = (
            "no NVIDIA GPU (nvidia-smi absent or reports none)"
            if gpu is None
            else (
                f"GPU {gpu} present but onnxruntime {ort.__version__} has no CUDA/TensorRT provider "
                "(install onnxruntime-gpu, or the JetPack wheel on a Jetson)"
            )
        )
        print(f"no GPU check on this machine: {why}. Nothing to do; the project needs no GPU.")
        return 0
    if not args.model.is_file():
        print(f"error: model not found: {args.model} (python scripts/fetch_assets.py --all)", file=sys.stderr)
        return 2

    from edge_agent.config import ModelConfig
    from edge_agent.perception.detector.onnx_detector import DetectorError, OnnxDetector

    frames = load_frames(args.frames)
    cpu = OnnxDetector(
        ModelConfig(path=args.model, backend="onnxruntime", providers=["CPUExecutionProvider"])
    )
    ref = [cpu.detect([f])[0] for f in frames]
    rows = [("CPUExecutionProvider", time_detector(cpu, frames), 0, 0.0, "")]
    failed = False
    for p in providers:
        try:
            det = OnnxDetector(
                ModelConfig(path=args.model, backend="onnxruntime", providers=[p, "CPUExecutionProvider"])
            )
            got = [det.detect([f])[0] for f in frames]
            bad, worst = compare(ref, got)
            rows.append((p, time_detector(det, frames), bad, worst, ""))
            failed |= bad > 0
        except DetectorError as err:
            rows.append((p, float("nan"), -1, float("nan"), str(err)[:200]))
            failed = True
    lines = [
        BEGIN,
        "## GPU check (`scripts/check_gpu.py`)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; GPU {gpu}; onnxruntime {ort.__version__}; "
        f"model `{args.model.name}`; {len(frames)} real frames; host load {os.getloadavg()[0]:.2f}",
        "",
        "| provider | ms per frame (batch 1) | boxes off by > 2 px vs CPU | worst box error px | error |",
        "|---|---|---|---|---|",
        *(f"| {p} | {ms:.1f} | {bad} | {worst:.2f} | {err} |" for p, ms, bad, worst, err in rows),
        "",
        END,
    ]
    print("\n".join(lines))
    if args.write is not None:
        write_section(args.write, "\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

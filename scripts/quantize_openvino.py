#!/usr/bin/env python3
"""OpenVINO models for x86 edge boxes: fp32 IR and NNCF INT8 IR of a YOLO ONNX model, calibrated on site frames.

    python scripts/quantize_openvino.py --model assets/models/yolo11n_coco_640_int8dyn.onnx \\
        --calib assets/videos/vn_haiphong_intersection_cctv_1006x720.mp4 [more clips, rtsp:// URLs, image dirs] \\
        --frames 192 --out assets/models/yolo11n_coco_640_int8ov.xml [--no-last-conv] [--fp32-ir]

A dynamic-int8 model is first dequantized to fp32 with a dynamic batch axis (models/tooling, as
scripts/quantize_model.py does; written next to --out as ``*_fp32_dynbatch.onnx``); OpenVINO cannot run the
dynamic-int8 graph fast (its ConvInteger path is ~5x slower than fp32). Then NNCF quantizes the fp32 graph with
the Detect head's decode, its last 1x1 convs and the stem conv kept in float, and NNCF's full bias correction
(the recipe that kept coco128 mAP50-95 within 0.01 of fp32: docs/benchmarks.md, "OpenVINO INT8"). Check the result with
``python scripts/eval_detector.py --backend openvino --model <out.xml> --data assets/coco128``; the agent runs it
with ``model: {path: <out.xml>, backend: openvino}`` (or ``auto``).

Needs the ``openvino-tools`` extra (openvino, nncf, onnx). Exit codes: 0 ok, 2 bad arguments or tooling
error, 3 a missing input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", type=Path, required=True, help="ONNX model: dynamic int8 (dequantized first) or fp32"
    )
    p.add_argument("--calib", nargs="+", required=True, help="clips, stream URLs, image folders or images")
    p.add_argument("--frames", type=int, default=192, help="calibration frames in all (default 192)")
    p.add_argument("--out", type=Path, required=True, help="INT8 IR to write (.xml; the .bin goes beside it)")
    p.add_argument("--no-last-conv", action="store_true", help="quantize the head's last 1x1 convs too")
    p.add_argument(
        "--quantize-first-conv", action="store_true", help="quantize the stem conv (model.0) too (kept float)"
    )
    p.add_argument(
        "--fast-bias-correction",
        action="store_true",
        help="NNCF's fast bias correction instead of the full one (faster calibration, -0.004 mAP50-95)",
    )
    p.add_argument("--fp32-ir", action="store_true", help="also write the fp32 graph as IR (*_fp32ov.xml)")
    args = p.parse_args(argv)
    if args.out.suffix != ".xml":
        p.error("--out must end in .xml (OpenVINO IR)")
    if not args.model.is_file():
        print(f"error: model not found: {args.model}", file=sys.stderr)
        return 3
    try:
        import onnx  # noqa: F401

        from models.tooling import ToolingError
        from models.tooling.batch import batch_is_dynamic, make_batch_dynamic
        from models.tooling.calibration import sample_frames
        from models.tooling.dequantize import dequantize_dynamic
        from models.tooling.graph import finalize, load_model, save_model
        from models.tooling.openvino_int8 import quantize_ir, random_check, save_fp32_ir
    except ImportError as err:
        print(f"error: {err.name} is missing: pip install -e '.[openvino-tools]'", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        source = load_model(args.model)
        quantized_ops = {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}
        fp32 = source
        if any(n.op_type in quantized_ops for n in source.graph.node):
            fp32, stats = dequantize_dynamic(source)
            print(f"dequantized {stats.convs} Conv ({stats.nodes_before} -> {stats.nodes_after} nodes)")
        if not batch_is_dynamic(fp32):
            fp32, _ = make_batch_dynamic(fp32)
            fp32 = finalize(fp32, "batch-dynamic")
        stem = args.model.stem.replace("int8dyn", "fp32") if "int8dyn" in args.model.stem else args.model.stem
        fp32_path = args.out.parent / f"{stem}_dynbatch.onnx"
        sha = save_model(fp32, fp32_path)
        print(f"fp32 graph: {fp32_path} (sha256 {sha[:16]}...)")
        if args.fp32_ir:
            ir = save_fp32_ir(fp32_path, args.out.parent / f"{stem.replace('_fp32', '')}_fp32ov.xml")
            print(f"fp32 IR: {ir}")
        frames = sample_frames(args.calib, args.frames)
        quantize_ir(
            fp32_path,
            args.out,
            frames,
            last_conv=not args.no_last_conv,
            first_conv=not args.quantize_first_conv,
            fast_bias_correction=args.fast_bias_correction,
        )
        peak = random_check(args.out)
    except ToolingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"INT8 IR: {args.out} (+ .bin), grey-frame output max {peak:.1f}; {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Export an Ultralytics .pt to ONNX (needs the export extra: ultralytics + torch; not runnable offline).

    python scripts/export_model.py --weights yolo11n.pt --imgsz 640 --out assets/models/yolo11n_640_fp32.onnx
        [--dynamic] [--opset 17]

The fp32 result can go straight to scripts/quantize_model.py (no dequantize step). Untested on the offline
development machines: there are no .pt weights and no torch there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.tooling import ToolingError  # noqa: E402
from models.tooling.export import export_onnx  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="a .pt file or an official name (yolo11n.pt)")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--imgsz", type=int, default=640, help="square input size (default 640)")
    p.add_argument("--dynamic", action="store_true", help="Ultralytics dynamic axes (batch, height, width)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: Ultralytics' choice)")
    args = p.parse_args(argv)
    try:
        out = export_onnx(args.weights, args.out, imgsz=args.imgsz, dynamic=args.dynamic, opset=args.opset)
    except ToolingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Static INT8 (QDQ) quantization of a YOLO ONNX model, calibrated on the site's own camera frames.

    python scripts/quantize_model.py --model assets/models/yolo11n_coco_640_int8dyn.onnx \\
        --calib assets/videos/vn_haiphong_intersection_cctv_1006x720.mp4 [more clips, rtsp:// URLs, image dirs] \\
        --frames 64 --out assets/models/yolo11n_640_qdq.onnx --report [--write docs/benchmarks.md] \\
        [--dynamic-batch] [--compare-scopes] [--threads 1] [--limit N]

Steps: a dynamic-int8 model is first dequantized to fp32 (written next to --out, or to --fp32-out); with
--dynamic-batch the fp32 graph's batch axis is made symbolic (and proved on real frames); then the fp32 graph
is quantized statically with per-channel weights, the Detect head's decode kept in float (--head-scope).
--report measures size, latency (batch 1, fixed threads) and coco128 mAP of the original, the fp32 and the
QDQ model; --write puts that report in its own section of a markdown file. Generated models get sha256
entries in models/local-manifest.yaml (--manifest).

Needs onnx (pip install onnx, or the export extra). Exit codes: 0 ok, 2 bad arguments or a transform that
cannot be done safely, 3 a missing model, clip or dataset.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

try:
    import onnx  # noqa: F401  (checked here so the error names the fix)
except ImportError:
    print(
        "error: this tool needs the onnx package: pip install onnx  (or pip install -e '.[export]')",
        file=sys.stderr,
    )
    sys.exit(2)

from models.tooling import ToolingError  # noqa: E402
from models.tooling.manifest import snippet  # noqa: E402
from models.tooling.pipeline import Options, run_job  # noqa: E402
from models.tooling.qdq import HeadScope, QdqSettings  # noqa: E402
from models.tooling.report import write_section  # noqa: E402
from models.tooling.summary import console, markdown  # noqa: E402


class _DropPreprocessHint(logging.Filter):
    """onnxruntime advises ``quant_pre_process`` on every call; the dequantized graph is already clean."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Options]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", type=Path, required=True, help="ONNX model: dynamic int8 (dequantized first) or fp32"
    )
    p.add_argument(
        "--calib", nargs="+", required=True, help="video files, rtsp:// URLs, image folders or images"
    )
    p.add_argument("--frames", type=int, default=64, help="calibration frames in all (default 64)")
    p.add_argument("--out", type=Path, required=True, help="QDQ model to write")
    p.add_argument("--fp32-out", type=Path, default=None, help="fp32 model to write (default: next to --out)")
    p.add_argument(
        "--dynamic-batch", action="store_true", help="symbolic batch axis on the fp32 and QDQ models"
    )
    p.add_argument(
        "--head-scope",
        choices=[s.value for s in HeadScope],
        default=QdqSettings().head_scope.value,
        help="Detect-head nodes kept in float (default: %(default)s, the best coco128 mAP when measured)",
    )
    p.add_argument(
        "--exclude", action="append", default=[], metavar="REGEX", help="also keep these nodes float"
    )
    p.add_argument("--no-per-channel", action="store_true", help="per-tensor weights (faster, less accurate)")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights, for AVX2 CPUs without VNNI")
    p.add_argument(
        "--compare-scopes", action="store_true", help="also quantize and score the other head scopes"
    )
    p.add_argument(
        "--report", action="store_true", help="measure size, latency and coco128 mAP of each model"
    )
    p.add_argument(
        "--data", type=Path, default=ROOT / "assets" / "coco128", help="coco128 root (for --report)"
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N coco128 images (quick runs)")
    p.add_argument(
        "--threads", type=int, default=1, help="onnxruntime intra-op threads for every run (default 1)"
    )
    p.add_argument(
        "--write", type=Path, default=None, help="insert/replace this run's section in a markdown file"
    )
    p.add_argument(
        "--manifest",
        type=Path,
        default=ROOT / "models" / "local-manifest.yaml",
        help="local manifest to update",
    )
    p.add_argument("--no-manifest", action="store_true", help="only print the manifest snippet")
    p.add_argument("--quiet", action="store_true", help="less progress output")
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error("--frames must be at least 1")
    if args.threads < 1:
        p.error("--threads must be at least 1 (a fixed count keeps timings comparable)")
    if args.write is not None and not args.report:
        args.report = True
    if args.out.resolve() == args.model.resolve():
        p.error("--out must differ from --model")
    settings = QdqSettings(
        head_scope=HeadScope(args.head_scope),
        per_channel=not args.no_per_channel,
        reduce_range=args.reduce_range,
        exclude_patterns=tuple(args.exclude),
    )
    opts = Options(
        model=args.model,
        calib=list(args.calib),
        out=args.out,
        frames=args.frames,
        fp32_out=args.fp32_out,
        dynamic_batch=args.dynamic_batch,
        settings=settings,
        compare_scopes=args.compare_scopes,
        report=args.report,
        data=args.data,
        limit=args.limit,
        threads=args.threads,
        manifest_path=None if args.no_manifest else args.manifest,
        main_manifest=ROOT / "models" / "manifest.yaml",
        quiet=args.quiet,
    )
    return args, opts


def main(argv: list[str] | None = None) -> int:
    args, opts = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropPreprocessHint())
    try:
        outcome = run_job(opts)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except ToolingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(console(outcome, opts))
    if opts.manifest_path is None:
        print(snippet(outcome.entries))
    if args.write is not None:
        command = "python scripts/quantize_model.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        write_section(args.write, opts.out.name, markdown(outcome, opts, command))
        print(f"wrote section '{opts.out.name}' of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

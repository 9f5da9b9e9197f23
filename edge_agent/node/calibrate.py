"""Compute and check a camera's ground-plane homography; print the ``ground_plane`` config snippet.

Pick four (or more) points on the road surface that you can measure: lane-marking corners, the ends of a stop
line, kerb corners. Give their image positions (normalized 0..1, or pixels with ``--pixels``) and their ground
positions in metres in any flat frame (e.g. x across the road, y along it)::

    python -m edge_agent.node.calibrate \\
        --image 0.30,0.60 0.70,0.60 0.90,0.95 0.10,0.95 \\
        --world 0,0 7,0 7,20 0,20 \\
        --distance 0.5,0.6 0.5,0.95 \\
        --check 0.5,0.775=3.5,13.33

It prints the homography, the reprojection error of the pairs (zero for exactly four: the transform passes
through them; survey more points, or use ``--check`` with points not in the fit, to see how good it is), the
ground resolution at the image centre, the asked distances in metres, and the snippet. Exit status 0, or 2 for
invalid input (the message says which).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from edge_agent.geometry import Point
from edge_agent.rules.homography import GroundPlane
from edge_agent.rules.sceneconfig import GroundPlaneConfig


class InputError(ValueError):
    """Bad command-line input, with a message for the user."""


def _point(text: str) -> Point:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{text!r} is not a point: write X,Y") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError(f"{text!r} is not a finite point")
    return (x, y)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"{text!r} is not a frame size: write WIDTHxHEIGHT") from None
    if w <= 0 or h <= 0:
        raise InputError(f"frame size {text!r} must be positive")
    return (w, h)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edge_agent.node.calibrate",
        description="Ground-plane homography from point pairs: check it and print the config snippet.",
    )
    p.add_argument("--image", nargs="+", required=True, metavar="X,Y", help="image points (normalized 0..1)")
    p.add_argument(
        "--world", nargs="+", required=True, metavar="X,Y", help="the same points on the ground, m"
    )
    p.add_argument("--size", default="1920x1080", help="frame size WIDTHxHEIGHT (default 1920x1080)")
    p.add_argument("--pixels", action="store_true", help="image points are pixels of --size, not 0..1")
    p.add_argument(
        "--distance",
        nargs=2,
        action="append",
        default=[],
        metavar="X,Y",
        help="print the ground distance between two image points (repeatable)",
    )
    p.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="X,Y=WX,WY",
        help="a surveyed point not used in the fit: image=ground; prints its error in metres (repeatable)",
    )
    return p


def _fmt(p: Sequence[float], digits: int = 4) -> str:
    return f"[{', '.join(f'{float(v):.{digits}g}' for v in p)}]"


def run(args: argparse.Namespace, out: list[str]) -> None:
    """Do the work, appending report lines to ``out``; raises ``InputError`` for bad input."""
    width, height = _size(args.size)
    unit = (1.0 / width, 1.0 / height) if args.pixels else (1.0, 1.0)

    def norm(p: Point) -> Point:
        return (round(p[0] * unit[0], 6), round(p[1] * unit[1], 6))

    image = [norm(_point(t)) for t in args.image]
    world = [_point(t) for t in args.world]
    try:
        cfg = GroundPlaneConfig(image=image, world=world)
    except ValidationError as err:
        raise InputError("; ".join(e["msg"] for e in err.errors())) from None
    try:
        plane = GroundPlane.from_config(cfg, (width, height))
    except ValueError as err:
        raise InputError(str(err)) from None
    px = [(x * width, y * height) for x, y in cfg.image]
    errors = plane.reprojection_errors_px(px, cfg.world)
    out.append(f"homography (image pixels of {width}x{height} -> metres):")
    out += [f"  {_fmt(row)}" for row in plane.h]
    note = "exact by construction with 4 pairs" if len(px) == 4 else f"least squares over {len(px)} pairs"
    out.append(f"reprojection error: mean {errors.mean():.2f} px, max {errors.max():.2f} px ({note})")
    for i, (e, p, w) in enumerate(zip(errors, cfg.image, cfg.world, strict=True)):
        out.append(f"  pair {i}: image {_fmt(p)} -> ground {_fmt(w)} m, error {e:.2f} px")
    centre = (width / 2.0, height / 2.0)
    out.append(f"ground resolution at the image centre: {plane.metres_per_pixel(centre):.4f} m/px")
    for a_text, b_text in args.distance:
        a, b = norm(_point(a_text)), norm(_point(b_text))
        d = plane.distance_m((a[0] * width, a[1] * height), (b[0] * width, b[1] * height))
        shown = "above the horizon (no ground distance)" if math.isnan(d) else f"{d:.2f} m"
        out.append(f"distance {_fmt(a)} -> {_fmt(b)}: {shown}")
    for text in args.check:
        if "=" not in text:
            raise InputError(f"--check {text!r}: write X,Y=WX,WY")
        img_text, world_text = text.split("=", 1)
        p, w = norm(_point(img_text)), _point(world_text)
        got = plane.to_world([(p[0] * width, p[1] * height)])[0]
        miss = math.dist((float(got[0]), float(got[1])), w)
        out.append(f"check {_fmt(p)}: ground {_fmt(got)} m, surveyed {_fmt(w)} m, error {miss:.2f} m")
    out.append("config snippet (under the camera):")
    out.append("ground_plane:")
    out.append(f"  image: [{', '.join(_fmt(p, 6) for p in cfg.image)}]")
    out.append(f"  world: [{', '.join(_fmt(p, 6) for p in cfg.world)}]")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out: list[str] = []
    try:
        run(args, out)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Detector class names, in one place: the COCO-80 list of ``models/manifest.yaml`` and the groups rules use.

Configs name classes by their detector label (``"car"``, ``"potted plant"``); a typo such as ``"cars"`` would
make a rule silently watch nothing, so the config loader checks every name against ``COCO80``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Final

# Index = class id of the Ultralytics COCO export (manifest ``class_sets.coco80``; a test keeps them equal).
COCO80: Final[tuple[str, ...]] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

PERSON: Final = "person"
MOTORCYCLE: Final = "motorcycle"
# Road vehicles: the default subject of the stopping, sidewalk and speeding rules.
VEHICLE_CLASSES: Final[tuple[str, ...]] = ("car", "motorcycle", "bus", "truck")
# Vehicles that must obey lanes, lines and signals (bicycles too).
TRAFFIC_CLASSES: Final[tuple[str, ...]] = (*VEHICLE_CLASSES, "bicycle")
# Things that stand on a sidewalk and take its room: street furniture and goods COCO has a class for, and
# parked two-wheelers (they count only while stationary, like everything here).
STATIC_OBJECT_CLASSES: Final[tuple[str, ...]] = (
    "bench", "chair", "couch", "dining table", "potted plant", "suitcase", "umbrella", "refrigerator",
    "bicycle", "motorcycle",
)  # fmt: skip


def check_classes(names: Iterable[str]) -> list[str]:
    """Return ``names`` as a list if every one is a COCO-80 label; raise ``ValueError`` naming the first unknown
    one (with the nearest known names), or a duplicate.

    >>> check_classes(["car", "potted plant"])
    ['car', 'potted plant']
    >>> check_classes(["cars"])
    Traceback (most recent call last):
    ...
    ValueError: unknown class 'cars' (did you mean 'car' or 'chair'?); classes are the detector's COCO-80 labels
    """
    out = list(names)
    seen: set[str] = set()
    for name in out:
        if name not in COCO80:
            near = difflib.get_close_matches(name, COCO80, n=2)
            hint = f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""
            raise ValueError(f"unknown class {name!r}{hint}; classes are the detector's COCO-80 labels")
        if name in seen:
            raise ValueError(f"class {name!r} is listed twice")
        seen.add(name)
    return out

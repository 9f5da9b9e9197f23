from __future__ import annotations

import numpy as np
import pytest

from edge_agent.perception.detector.merge import merge_class_groups
from edge_agent.types import Detections

CAR, MOTO, BUS, TRUCK, PERSON = 2, 3, 5, 7, 0
VEHICLES = [[CAR, BUS, TRUCK]]


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    arr = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Detections(arr[:, :4].astype(np.float32), arr[:, 4].astype(np.float32), arr[:, 5].astype(np.int64))


@pytest.mark.parametrize(
    ("rows", "kept_classes"),
    [
        # a van seen as car and truck on the same box -> the better score wins
        ([(0, 0, 100, 80, 0.40, CAR), (1, 0, 100, 78, 0.45, TRUCK)], [TRUCK]),
        # same overlap but one is a person: different group, both stay
        ([(0, 0, 100, 80, 0.40, CAR), (0, 0, 100, 80, 0.90, PERSON)], [CAR, PERSON]),
        # two cars side by side (low IoU) both stay
        ([(0, 0, 100, 80, 0.5, CAR), (90, 0, 190, 80, 0.6, TRUCK)], [CAR, TRUCK]),
        # motorcycle is outside the vehicle group here: kept beside an overlapping car
        ([(0, 0, 100, 80, 0.5, CAR), (0, 0, 100, 80, 0.4, MOTO)], [CAR, MOTO]),
        # chain of three overlapping look-alikes -> one
        ([(0, 0, 100, 80, 0.3, CAR), (0, 0, 100, 80, 0.5, BUS), (0, 1, 100, 80, 0.4, TRUCK)], [BUS]),
    ],
)
def test_merge_class_groups(rows: list[tuple[float, ...]], kept_classes: list[int]) -> None:
    out = merge_class_groups(dets(*rows), VEHICLES, iou=0.7)  # type: ignore[arg-type]
    assert sorted(out.class_ids.tolist()) == sorted(kept_classes)


def test_no_groups_or_single_box_is_identity() -> None:
    d = dets((0, 0, 10, 10, 0.5, CAR))
    assert merge_class_groups(d, VEHICLES) is d
    d2 = dets((0, 0, 10, 10, 0.5, CAR), (0, 0, 10, 10, 0.6, TRUCK))
    assert merge_class_groups(d2, []) is d2

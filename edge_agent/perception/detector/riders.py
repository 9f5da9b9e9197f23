"""Rider-scooter association: a weak two-wheeler box under a confident rider is a two-wheeler.

On Vietnamese CCTV the COCO models see the rider ("person") well and the scooter under them badly: the rider
hides most of it, and the models learnt motorcycles from side views. The scooter is usually *there* among the
raw candidates, only with a score of 0.03-0.2, below what the tracker starts tracks from (0.25). A box of a
two-wheeler class that lies under a confident person (their feet/seat inside the bike's box, most of the
bike's width under the person) gets the two pieces of evidence combined:

    score' = 1 - (1 - bike) * (1 - gain * person)

so a 0.08 scooter under a 0.8 rider becomes 0.45 with the default gain 0.5, while a bike without a rider, or
a person without any bike candidate, is unchanged. Measured on the labelled VN set (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_agent.types import Detections


def rides(person: np.ndarray, bike: np.ndarray) -> bool:
    """Whether a person box sits on a bike box (image geometry, camera above the road)."""
    px1, py1, px2, py2 = (float(v) for v in person)
    bx1, by1, bx2, by2 = (float(v) for v in bike)
    bw, bh, pw, ph = bx2 - bx1, by2 - by1, px2 - px1, py2 - py1
    if bw <= 0 or bh <= 0 or pw <= 0 or ph <= 0:
        return False
    overlap = min(px2, bx2) - max(px1, bx1)
    if overlap < 0.5 * min(pw, bw):
        return False
    # The rider's lower edge (seat, feet on the footboard) lies inside the bike's box, and the rider
    # rises above the bike's top: a person merely standing in front of a bike ends below or at its bottom.
    return by1 < py2 <= by2 + 0.15 * bh and py1 < by1 + 0.25 * bh


def associate_riders(
    dets: Detections,
    bike_ids: Sequence[int],
    person_id: int,
    *,
    person_min: float = 0.35,
    gain: float = 0.5,
    floor: float = 0.03,
) -> Detections:
    """``dets`` with the scores of two-wheeler boxes under a confident rider raised (see module docstring)."""
    if len(dets) == 0 or not bike_ids:
        return dets
    cls = dets.class_ids
    persons = np.flatnonzero((cls == person_id) & (dets.scores >= person_min))
    bikes = np.flatnonzero(np.isin(cls, np.asarray(bike_ids)))
    if not len(persons) or not len(bikes):
        return dets
    scores = dets.scores.copy()
    # One bike per rider: the best-scoring candidate it sits on (its duplicates and shifted copies keep their
    # low scores, so they don't become confident false positives), best riders first.
    taken: set[int] = set()
    for p in persons[np.argsort(-dets.scores[persons], kind="stable")]:
        under = [int(b) for b in bikes if int(b) not in taken and dets.scores[b] >= floor]
        under = [b for b in under if rides(dets.xyxy[p], dets.xyxy[b])]
        if not under:
            continue
        b = max(under, key=lambda i: float(dets.scores[i]))
        taken.add(b)
        scores[b] = 1.0 - (1.0 - scores[b]) * (1.0 - gain * float(dets.scores[p]))
    return Detections(dets.xyxy, scores.astype(dets.scores.dtype), dets.class_ids, dets.names)

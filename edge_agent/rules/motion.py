"""Motion read from a track's anchor history, and the motorbike heuristics built on it.

Velocities are least-squares slopes over the recent anchors (not the last two points), so one jittery box
does not make a parked scooter "move".

**Riders without scooters.** On Vietnamese street footage the COCO model often finds the rider ("person") but
not the scooter under them. Rules about vehicles therefore also accept a person track that moves faster than
walking pace: speed measured in *body heights per second* (the box height is the only scale a camera without a
ground plane has; on the town-centre clip walking measures 0.46 heights/s at the median and 1.24 at the 99th
percentile, riders on the Vietnamese CCTV clips 0.6-1.2 at the median and up to 3-5). The default threshold
(1.5 heights/s, about 2.5 m/s) misses scooters crawling in a jam (on the Saigon clip it covers 5 % of the rider
frames without a scooter box: riders filtering through the queue move at walking pace in these units) and
counts runners; depth motion towards the camera is foreshortened, so keep it modest. ``RiderConfig`` tunes it
per rule. Measurements: ``docs/benchmarks.md``, rules on the real clips.

**Riders on a detected scooter.** When the scooter *is* detected, its rider is a second track of the same road
user: a rider sitting on a motorcycle track (``on_motorcycle``) does not count as a vehicle of its own while the
rule also watches motorcycles, for ``CARRIED_HOLD_S`` after the last frame it was seen on one (the scooter box
flickers). On the Saigon clip every rider whose scooter was found raised a second red-light event without this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edge_agent.classes import MOTORCYCLE, PERSON
from edge_agent.rules.ruleconfig import RiderConfig
from edge_agent.types import FloatArray, Track

Sample = tuple[float, float, float]  # (t, x, y)


def recent(track: Track, now: float, window_s: float) -> list[Sample]:
    """The track's anchor samples of the last ``window_s`` seconds (oldest first)."""
    return [s for s in track.history if now - window_s - 1e-9 <= s[0] <= now + 1e-9]


def fit_velocity(samples: Sequence[Sample], min_span_s: float = 0.3) -> tuple[float, float] | None:
    """Least-squares velocity (units per second) of (t, x, y) samples; None with fewer than 3 samples or a
    time span under ``min_span_s``.

    >>> fit_velocity([(0.0, 0.0, 0.0), (0.5, 1.0, 0.0), (1.0, 2.0, 0.0)])
    (2.0, 0.0)
    """
    if len(samples) < 3:
        return None
    arr = np.asarray(samples, dtype=np.float64)
    t = arr[:, 0] - arr[:, 0].mean()
    span = float(arr[-1, 0] - arr[0, 0])
    denom = float((t * t).sum())
    if span < min_span_s or denom <= 0.0:
        return None
    vx = float((t * (arr[:, 1] - arr[:, 1].mean())).sum() / denom)
    vy = float((t * (arr[:, 2] - arr[:, 2].mean())).sum() / denom)
    return (vx, vy)


def velocity(track: Track, now: float, window_s: float) -> tuple[float, float] | None:
    """Anchor velocity in px/s fitted over the last ``window_s`` seconds of history."""
    return fit_velocity(recent(track, now, window_s))


def speed_hps(track: Track, now: float, window_s: float) -> float:
    """Anchor speed in the track's own box heights per second (0.0 when it cannot be fitted)."""
    v = velocity(track, now, window_s)
    if v is None:
        return 0.0
    return float(np.hypot(*v)) / max(track.height, 1.0)


def is_rider(track: Track, now: float, riders: RiderConfig) -> bool:
    """A person moving at riding speed (see the module notes)."""
    return (
        riders.enabled
        and track.label == "person"
        and speed_hps(track, now, riders.window_s) >= riders.min_speed_hps
    )


def on_motorcycle(person: FloatArray, moto: FloatArray) -> bool:
    """Whether a person box sits on a motorcycle box (both xyxy pixels).

    The person's bottom-centre must lie within the bike's horizontal extent (10 % slack) and between its top
    and 95 % of its height (feet on the footrests, or legs hidden behind the driver: a passenger's box often
    ends in the bike's upper part, the driver's in its lower third; a pedestrian beside it stands on the
    ground, at or below its bottom; the rider of the scooter behind ends above it), and at least 15 % of the
    person box must overlap the bike box.

    >>> import numpy as np
    >>> bike = np.array([17, 238, 379, 587], np.float32)  # coco128 000000000529: driver and passenger
    >>> on_motorcycle(np.array([108, 76, 337, 487], np.float32), bike)
    True
    >>> on_motorcycle(np.array([25, 97, 297, 294], np.float32), bike)
    True
    >>> on_motorcycle(np.array([400, 100, 500, 590], np.float32), bike)  # standing beside it
    False
    """
    px1, py1, px2, py2 = (float(v) for v in person)
    mx1, my1, mx2, my2 = (float(v) for v in moto)
    mw, mh = mx2 - mx1, my2 - my1
    if mw <= 0.0 or mh <= 0.0 or px2 <= px1 or py2 <= py1:
        return False
    cx = (px1 + px2) / 2.0
    if not (mx1 - 0.1 * mw <= cx <= mx2 + 0.1 * mw):
        return False
    if not (my1 <= py2 <= my1 + 0.95 * mh):
        return False
    iw = min(px2, mx2) - max(px1, mx1)
    ih = min(py2, my2) - max(py1, my1)
    if iw <= 0.0 or ih <= 0.0:
        return False
    return iw * ih >= 0.15 * (px2 - px1) * (py2 - py1)


# A person seen riding stays a rider this long after the last fast observation (slowing for a turn, a jam).
RIDER_HOLD_S = 10.0
# A person seen on a motorcycle track stays "carried" (the scooter's track stands for them) this long after.
CARRIED_HOLD_S = 3.0


def carried_persons(tracks: Sequence[Track], classes: frozenset[str]) -> frozenset[int]:
    """Ids of this frame's person tracks that sit on a motorcycle track of this frame, when the rule watches
    motorcycles (``classes``): that road user is the motorcycle's track, not a second vehicle.

    >>> import numpy as np
    >>> bike = Track(1, 3, "motorcycle", np.array([17, 238, 379, 587], np.float32), 0.8, 0.0, 0.0)
    >>> rider = Track(2, 0, "person", np.array([108, 76, 337, 487], np.float32), 0.9, 0.0, 0.0)
    >>> walker = Track(3, 0, "person", np.array([400, 100, 500, 590], np.float32), 0.9, 0.0, 0.0)
    >>> sorted(carried_persons([bike, rider, walker], frozenset({"motorcycle"})))
    [2]
    >>> sorted(carried_persons([bike, rider, walker], frozenset({"car"})))
    []
    """
    if MOTORCYCLE not in classes:
        return frozenset()
    bikes = [t.xyxy for t in tracks if t.label == MOTORCYCLE and t.time_since_update == 0]
    if not bikes:
        return frozenset()
    return frozenset(
        t.track_id
        for t in tracks
        if t.label == PERSON and t.time_since_update == 0 and any(on_motorcycle(t.xyxy, b) for b in bikes)
    )


class VehicleMemory:
    """Per track: does it count as a vehicle? Its class does, or it is a person seen riding within
    ``RIDER_HOLD_S`` and not sitting on a motorcycle track (``carried``, held ``CARRIED_HOLD_S``). ``rider``
    tells which (for the event's measurements)."""

    __slots__ = ("carried_until", "rider", "until")

    def __init__(self) -> None:
        self.until = -math.inf
        self.carried_until = -math.inf
        self.rider = False

    def check(
        self, track: Track, now: float, classes: frozenset[str], riders: RiderConfig, carried: bool = False
    ) -> bool:
        if track.label in classes:
            self.rider = False
            return True
        if is_rider(track, now, riders):
            self.until = now + RIDER_HOLD_S
        if carried:
            self.carried_until = now + CARRIED_HOLD_S
        self.rider = now < self.until and now >= self.carried_until
        return self.rider

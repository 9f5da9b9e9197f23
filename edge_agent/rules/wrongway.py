"""Wrong way: a road user travelling inside a lane zone against the zone's allowed direction.

Per track, the rule keeps the anchors of its history that lie in the zone (``Track.history``, so frames the rule
did not evaluate still count). Over the last ``window_s`` seconds it takes the net displacement between the
median of the first few and the median of the last few of those anchors (a jittery box moves neither median),
and flags the track when that displacement

* runs against the allowed direction by at least ``min_distance`` (fraction of frame width), and
* points within ``max_angle_deg`` of exactly opposite (a vehicle crossing the lane is not going the wrong way).

The incident lasts while the track keeps going the wrong way (retriggering merges into it) and ends
``end_grace_s`` after it stops doing so or is lost; the cooldown keeps the same track from raising it again.
Persons moving at riding speed count as motorbikes (see ``motion``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge_agent.contract import EventType
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.motion import Sample, VehicleMemory
from edge_agent.rules.pertrack import PerTrackRule
from edge_agent.rules.ruleconfig import WrongWayRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.sceneconfig import direction_vector
from edge_agent.rules.schedule import ScheduleGate
from edge_agent.rules.zonestate import Debounced, TrackStates, ZoneShape
from edge_agent.types import Track

_FORGET_AFTER_S = 60.0
_MAX_SAMPLES = 256


@dataclass(slots=True)
class _State:
    inside: Debounced
    vehicle: VehicleMemory = field(default_factory=VehicleMemory)
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=_MAX_SAMPLES))
    last_t: float = -math.inf  # newest history time already consumed


class WrongWayRule(PerTrackRule):
    """Raise ``wrong_way`` for road users moving against one lane zone's direction."""

    def __init__(self, cfg: WrongWayRuleConfig, scene: Scene) -> None:
        zone = scene.zone(cfg.zone)
        if zone.direction is None:
            raise ValueError(f"rule {cfg.id}: zone {cfg.zone!r} has no direction")
        self.cfg = cfg
        self.rule_id: str = cfg.id
        self.zone_id: str = cfg.zone
        self._zone = ZoneShape(zone.polygon, scene.frame_size)
        self._allowed = direction_vector(zone.direction)
        self._min_px = cfg.min_distance * scene.width
        self._cos_max = math.cos(math.radians(cfg.max_angle_deg))
        self._classes = frozenset(cfg.classes)
        self._riders_on = cfg.riders.enabled
        self._book = IncidentBook(
            cfg.id,
            cfg.zone,
            EventType.WRONG_WAY,
            end_grace_s=cfg.end_grace_s,
            cooldown_s=cfg.cooldown_s,
            gate=ScheduleGate(cfg.schedule, scene.clock),
        )
        self._states: TrackStates[_State] = TrackStates(
            lambda: _State(Debounced(cfg.inertia_frames)), max(_FORGET_AFTER_S, cfg.window_s)
        )

    def _observe(self, track: Track, now: float) -> Finding | None:
        st, gap = self._states.observe(track.track_id, now)
        if gap > self.cfg.window_s:
            st.samples.clear()
            st.inside.reset()
        for t, x, y in track.history:
            if t > st.last_t:
                st.last_t = t
                if self._zone.contains((x, y)):
                    st.samples.append((t, x, y))
        while st.samples and st.samples[0][0] < now - self.cfg.window_s:
            st.samples.popleft()
        is_vehicle = st.vehicle.check(
            track, now, self._classes, self.cfg.riders, track.track_id in self._carried
        )
        inside = st.inside.update(self._zone.contains(track.anchor), now)
        if not inside or not is_vehicle or len(st.samples) < self.cfg.min_samples:
            return None
        against, angle, span = self._against(list(st.samples))
        if against < self._min_px or math.cos(math.radians(angle)) < self._cos_max:
            return None
        return self._book.trigger(
            f"track-{track.track_id}",
            now,
            started=st.samples[0][0],
            objects=(TrackSnapshot.of(track),),
            measurements={
                "distance_px": against,
                "angle_deg": angle,
                "speed_px_s": against / span if span > 0 else 0.0,
                "rider": 1.0 if st.vehicle.rider else 0.0,
            },
        )

    def _against(self, samples: list[Sample]) -> tuple[float, float, float]:
        """(distance against the allowed direction, angle of the net displacement from exactly opposite in
        degrees, time span) between the medians of the first and last few samples."""
        k = max(1, min(3, len(samples) // 3))
        arr = np.asarray(samples, dtype=np.float64)
        first = np.median(arr[:k], axis=0)
        last = np.median(arr[-k:], axis=0)
        dx, dy = float(last[1] - first[1]), float(last[2] - first[2])
        norm = math.hypot(dx, dy)
        against = -(dx * self._allowed[0] + dy * self._allowed[1])
        if norm <= 0.0:
            return 0.0, 180.0, 0.0
        angle = math.degrees(math.acos(max(-1.0, min(1.0, against / norm))))
        return against, angle, float(last[0] - first[0])

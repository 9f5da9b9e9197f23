"""Vehicle on the sidewalk: a car / motorbike / truck / bus anchored in a sidewalk zone past a grace time.

Per track: zone membership of the bottom-centre anchor with inertia (``inertia_frames``); once a vehicle has
been inside for ``grace_s`` (counted from the first frame of the confirming streak) the incident starts, and it
ends when the vehicle is confirmed out of the zone or has been unseen for ``end_grace_s``. A person moving at
riding speed counts as a motorbike (the scooter under a rider is often not detected; see ``motion``). A
track that comes back after more than ``end_grace_s`` starts its grace again, and the cooldown keeps the same
track from raising a second event soon after the first. A new track id inside the zone within half a box
height of an open incident whose vehicle is unseen (a parked motorbike hidden by a passer-by, a reconnect)
continues that incident (``IncidentBook.successor``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.contract import EventType
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.motion import VehicleMemory
from edge_agent.rules.pertrack import PerTrackRule
from edge_agent.rules.ruleconfig import SidewalkVehicleRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.schedule import ScheduleGate
from edge_agent.rules.zonestate import Debounced, TrackStates, ZoneShape
from edge_agent.types import Track

_FORGET_AFTER_S = 60.0


@dataclass(slots=True)
class _State:
    inside: Debounced
    vehicle: VehicleMemory = field(default_factory=VehicleMemory)


class SidewalkVehicleRule(PerTrackRule):
    """Raise ``sidewalk_vehicle`` for vehicles standing or riding on one sidewalk zone.

    >>> import numpy as np
    >>> from edge_agent.config import ZoneConfig
    >>> cfg = SidewalkVehicleRuleConfig(type="sidewalk_vehicle", id="r1", zone="walk", grace_s=2)
    >>> zone = ZoneConfig(id="walk", polygon=[(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)])
    >>> rule = SidewalkVehicleRule(cfg, Scene((1000, 1000), {"walk": zone}))
    >>> bike = Track(3, 3, "motorcycle", np.array([400, 600, 460, 700], np.float32), 0.8, 0.0, 0.0)
    >>> [(f.phase.value, f.now) for t in range(6) for f in rule.evaluate([bike], float(t))]
    [('start', 2.0)]
    """

    def __init__(self, cfg: SidewalkVehicleRuleConfig, scene: Scene) -> None:
        self.cfg = cfg
        self.rule_id: str = cfg.id
        self.zone_id: str = cfg.zone
        self._zone = ZoneShape(scene.zone(cfg.zone).polygon, scene.frame_size)
        self._classes = frozenset(cfg.classes)
        self._riders_on = cfg.riders.enabled
        self._book = IncidentBook(
            cfg.id,
            cfg.zone,
            EventType.SIDEWALK_VEHICLE,
            end_grace_s=cfg.end_grace_s,
            cooldown_s=cfg.cooldown_s,
            update_interval_s=cfg.update_interval_s,
            gate=ScheduleGate(cfg.schedule, scene.clock),
        )
        self._alias: dict[int, str] = {}  # track id -> the incident key it continues
        self._states: TrackStates[_State] = TrackStates(
            lambda: _State(Debounced(cfg.inertia_frames)), max(_FORGET_AFTER_S, cfg.end_grace_s)
        )

    def _observe(self, track: Track, now: float) -> Finding | None:
        st, gap = self._states.observe(track.track_id, now)
        if gap > self.cfg.end_grace_s:
            st.inside.reset()  # back after a long absence: its grace starts again
        key = self._alias.get(track.track_id, f"track-{track.track_id}")
        is_vehicle = st.vehicle.check(
            track, now, self._classes, self.cfg.riders, track.track_id in self._carried
        )
        raw_in = self._zone.contains(track.anchor)
        inside = st.inside.update(raw_in, now)
        if not inside:
            return self._book.end(key, now)
        if not is_vehicle or not raw_in:
            return None  # a frame over the edge neither ends nor extends it (inertia, then end_grace_s)
        if not self._book.is_open(key):
            heir = self._book.successor(track.anchor, 0.5 * track.height, now)
            if heir is not None:
                key = self._alias[track.track_id] = heir
                self._prune_aliases()
        inc = self._book.get(key)  # a continued incident counts from its own start
        since = inc.started if inc is not None else max(st.inside.since, self._book.since)
        dwell = now - since
        if dwell < self.cfg.grace_s and not self._book.is_open(key):
            return None
        return self._book.trigger(
            key,
            now,
            started=since,
            objects=(TrackSnapshot.of(track),),
            measurements={"dwell_s": dwell, "rider": 1.0 if st.vehicle.rider else 0.0},
            anchor=track.anchor,
        )

    def _prune_aliases(self) -> None:
        self._alias = {tid: key for tid, key in self._alias.items() if self._book.is_open(key)}

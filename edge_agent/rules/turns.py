"""Illegal turn: a road user that enters a forbidden exit zone after an entry zone.

Per track and per zone the rule keeps debounced membership (``inertia_frames``): when the track is confirmed
in an exit zone, each forbidden pair ending there is checked: the track must have entered the pair's entry
zone *before* the exit zone and been in it at most ``max_transit_s`` before entering the exit zone. A track
first seen inside the exit zone raises nothing (it is not known where it came from). Time-of-day bans use the
rule's ``schedule``; one rule per set of pairs with the same hours.

The event names the exit zone (``zone_id``) and carries ``transit_s``; it ends ``end_grace_s`` later.
Persons moving at riding speed count as motorbikes (see ``motion``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge_agent.contract import EventType
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.motion import VehicleMemory
from edge_agent.rules.pertrack import PerTrackRule
from edge_agent.rules.ruleconfig import IllegalTurnRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.schedule import ScheduleGate
from edge_agent.rules.zonestate import Debounced, TrackStates, ZoneShape
from edge_agent.types import Track


@dataclass(slots=True)
class _State:
    inside: dict[str, Debounced]
    vehicle: VehicleMemory = field(default_factory=VehicleMemory)
    entered: dict[str, float] = field(default_factory=dict)  # zone -> start of the latest confirmed stay
    last_in: dict[str, float] = field(default_factory=dict)  # zone -> last time confirmed inside


class IllegalTurnRule(PerTrackRule):
    """Raise ``illegal_turn`` for forbidden entry -> exit zone movements."""

    def __init__(self, cfg: IllegalTurnRuleConfig, scene: Scene) -> None:
        self.cfg = cfg
        self.rule_id: str = cfg.id
        self.zone_id: str = cfg.forbidden[0].to_zone
        ids = sorted({z for p in cfg.forbidden for z in (p.from_zone, p.to_zone)})
        self._zones = {z: ZoneShape(scene.zone(z).polygon, scene.frame_size) for z in ids}
        self._pairs_to: dict[str, list[str]] = {}
        for p in cfg.forbidden:
            self._pairs_to.setdefault(p.to_zone, []).append(p.from_zone)
        self._classes = frozenset(cfg.classes)
        self._riders_on = cfg.riders.enabled
        self._book = IncidentBook(
            cfg.id,
            self.zone_id,
            EventType.ILLEGAL_TURN,
            end_grace_s=cfg.end_grace_s,
            cooldown_s=cfg.cooldown_s,
            gate=ScheduleGate(cfg.schedule, scene.clock),
        )
        self._states: TrackStates[_State] = TrackStates(
            lambda: _State({z: Debounced(cfg.inertia_frames) for z in ids}), max(60.0, cfg.max_transit_s)
        )

    def _observe(self, track: Track, now: float) -> Finding | None:
        st, gap = self._states.observe(track.track_id, now)
        if gap > self.cfg.max_transit_s:
            for d in st.inside.values():
                d.reset()
            st.entered.clear()
            st.last_in.clear()
        is_vehicle = st.vehicle.check(
            track, now, self._classes, self.cfg.riders, track.track_id in self._carried
        )
        anchor = track.anchor
        entered_now: list[str] = []
        for z, shape in self._zones.items():
            d = st.inside[z]
            was = d.value
            if d.update(shape.contains(anchor), now):
                st.last_in[z] = now
                if not was:
                    st.entered[z] = d.since
                    entered_now.append(z)
        if not is_vehicle:
            return None
        for to_zone in entered_now:
            t_exit = st.entered[to_zone]
            for from_zone in self._pairs_to.get(to_zone, []):
                t_entry = st.entered.get(from_zone, math.inf)
                t_left = st.last_in.get(from_zone, -math.inf)
                if t_entry < t_exit and t_exit - t_left <= self.cfg.max_transit_s:
                    return self._book.trigger(
                        f"track-{track.track_id}",
                        now,
                        started=t_exit,
                        objects=(TrackSnapshot.of(track),),
                        measurements={
                            "transit_s": max(0.0, t_exit - t_left),
                            "rider": 1.0 if st.vehicle.rider else 0.0,
                        },
                        zone_id=to_zone,
                    )
        return None

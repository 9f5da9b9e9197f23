"""Incident bookkeeping shared by the rules: one event per incident, cooldown, merging, schedules.

A rule decides *whether* its condition holds for a key (usually ``track-<id>``) and calls ``trigger`` on every
frame it does. The book turns that stream into phases:

* the first trigger of a key opens an incident: START;
* further triggers of an open incident are merged into it (latest objects and measurements kept); with an
  ``update_interval_s`` an UPDATE goes out that often while it lasts;
* an incident with no trigger for ``end_grace_s`` (the road user left, stopped violating, or is unseen), or
  one the rule ends explicitly, emits END; the key then cools down for ``cooldown_s``, and triggers of a
  cooling key are dropped: a repeat by the same road user is not a new event;
* outside the rule's schedule nothing starts, and open incidents end when the window closes.

``duration_s`` is added to the measurements of every phase.

Continuity: an incident remembers where it is (``anchor``, when the rule gives one) and every track it
covered. When a track breaks (an occlusion, a reconnect, a loop: the tracker hands out a new id), the rule asks
``successor`` for an open incident at the same place whose objects were not seen this frame and continues it
under the new id: same key, same event id, no new START. Every phase lists the objects of this frame first,
then the other tracks the incident covered (at most ``MAX_OBJECTS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge_agent.contract import EventType, Phase
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.schedule import ScheduleGate

MAX_OBJECTS = 32  # objects listed per phase (this frame's, then earlier tracks of the incident)


@dataclass(slots=True)
class Incident:
    key: str
    zone_id: str
    started: float
    last_trigger: float
    last_emit: float
    objects: tuple[TrackSnapshot, ...]
    measurements: dict[str, float] = field(default_factory=dict)
    triggers: int = 1
    anchor: tuple[float, float] | None = None  # where the incident is (px), for continuity
    covered: dict[int, TrackSnapshot] = field(default_factory=dict)  # every track it covered, latest state


class IncidentBook:
    """Open incidents and cooldowns of one rule instance."""

    def __init__(
        self,
        rule_id: str,
        zone_id: str,
        event_type: EventType,
        *,
        end_grace_s: float,
        cooldown_s: float,
        update_interval_s: float = 0.0,
        gate: ScheduleGate | None = None,
    ) -> None:
        self.rule_id = rule_id
        self.zone_id = zone_id
        self.type = event_type
        self.end_grace_s = end_grace_s
        self.cooldown_s = cooldown_s
        self.update_interval_s = update_interval_s
        self.gate = gate or ScheduleGate(None, None)
        self.active = True
        self._open: dict[str, Incident] = {}
        self._cooling: dict[str, float] = {}
        self.suppressed = 0  # triggers dropped during a cooldown or outside the schedule

    # --- per frame ------------------------------------------------------------------------------------

    def begin(self, now: float) -> list[Finding]:
        """Call first in every ``evaluate``: advances the schedule, ending everything when it closes."""
        was = self.active
        self.active = self.gate.update(now)
        if was and not self.active:
            return self.end_all(now)
        return []

    def finish(self, now: float) -> list[Finding]:
        """Call last in every ``evaluate``: ends incidents not triggered for ``end_grace_s``; forgets
        cooldowns that ran out."""
        out = [
            self._end(inc, now)
            for inc in list(self._open.values())
            if now - inc.last_trigger > self.end_grace_s
        ]
        for key in [k for k, until in self._cooling.items() if now >= until]:
            del self._cooling[key]
        return out

    # --- what rules call ------------------------------------------------------------------------------

    @property
    def since(self) -> float:
        """When the schedule last opened (``-inf``: always open); incidents start no earlier."""
        return self.gate.since

    def is_open(self, key: str) -> bool:
        return key in self._open

    def get(self, key: str) -> Incident | None:
        return self._open.get(key)

    def cooling(self, key: str, now: float) -> bool:
        return now < self._cooling.get(key, -math.inf)

    @property
    def open_count(self) -> int:
        return len(self._open)

    @property
    def size(self) -> int:
        """Keys held (open or cooling); bounded because both are dropped in time."""
        return len(self._open) + len(self._cooling)

    def trigger(
        self,
        key: str,
        now: float,
        *,
        started: float,
        objects: tuple[TrackSnapshot, ...],
        measurements: dict[str, float] | None = None,
        zone_id: str | None = None,
        anchor: tuple[float, float] | None = None,
    ) -> Finding | None:
        """The condition holds for ``key`` at ``now`` (it began at ``started``). Returns START, UPDATE or
        None."""
        inc = self._open.get(key)
        if inc is not None:
            inc.last_trigger, inc.objects, inc.triggers = now, objects, inc.triggers + 1
            inc.covered.update((o.track_id, o) for o in objects)
            if anchor is not None:
                inc.anchor = anchor
            if measurements is not None:
                inc.measurements = dict(measurements)
            if self.update_interval_s > 0.0 and now - inc.last_emit >= self.update_interval_s:
                inc.last_emit = now
                return self._finding(inc, Phase.UPDATE, now, now)
            return None
        if not self.active or self.cooling(key, now):
            self.suppressed += 1
            return None
        start = min(now, max(started, self.since))
        inc = Incident(key, zone_id or self.zone_id, start, now, now, objects, dict(measurements or {}))
        inc.anchor = anchor
        inc.covered = {o.track_id: o for o in objects}
        self._open[key] = inc
        return self._finding(inc, Phase.START, now, now)

    def successor(self, anchor: tuple[float, float], radius: float, now: float) -> str | None:
        """The key of an open incident within ``radius`` px of ``anchor`` whose objects were not seen at
        ``now`` (not triggered this frame): a new track there continues it. None if there is none."""
        best, best_d = None, radius
        for inc in self._open.values():
            if inc.anchor is None or inc.last_trigger >= now:
                continue
            d = math.dist(anchor, inc.anchor)
            if d <= best_d:
                best, best_d = inc.key, d
        return best

    def end(self, key: str, now: float) -> Finding | None:
        """End an open incident now (the rule knows it is over); None if it is not open."""
        inc = self._open.get(key)
        return None if inc is None else self._end(inc, now)

    def end_all(self, now: float) -> list[Finding]:
        return [self._end(inc, now) for inc in list(self._open.values())]

    # --- internals ------------------------------------------------------------------------------------

    def _end(self, inc: Incident, now: float) -> Finding:
        del self._open[inc.key]
        self._cooling[inc.key] = now + self.cooldown_s
        return self._finding(inc, Phase.END, now, inc.last_trigger)

    def _finding(self, inc: Incident, phase: Phase, now: float, held_until: float) -> Finding:
        measurements = dict(inc.measurements)
        measurements["duration_s"] = max(0.0, held_until - inc.started)
        return Finding(
            rule_id=self.rule_id,
            zone_id=inc.zone_id,
            type=self.type,
            phase=phase,
            key=inc.key,
            started=inc.started,
            now=now,
            objects=_listed(inc),
            measurements=measurements,
        )


def _listed(inc: Incident) -> tuple[TrackSnapshot, ...]:
    current = {o.track_id for o in inc.objects}
    earlier = tuple(o for tid, o in inc.covered.items() if tid not in current)
    return (inc.objects + earlier)[:MAX_OBJECTS]

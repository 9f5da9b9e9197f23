"""Red light: a road user crossing the stop line, in the line's controlled direction, while the signal is red.

Per track, the anchor's signed distance to the line gives its side. A dead band of ``margin`` (fraction of
frame height) on both sides is no side at all, and a new side counts after ``inertia_frames`` consecutive
observations, so a motorbike waiting with its wheel on the line crosses nothing. A crossing is a confirmed
change from the *before* side to the *after* side, within the line's ends; a track first seen beyond the line
never crossed it as far as the rule knows.

The crossing happened between the last observation behind the line (``t_before``) and the first observation
of the confirming streak beyond it (``t_after``). It is a violation only if the signal read RED on every
sample over ``[t_before, t_after]`` and had been red for ``red_grace_s`` at ``t_before``; UNKNOWN anywhere in
between means no event, ever (no guessing). A track lost before the line and re-found beyond it is judged
the same way over its gap. Persons moving at riding speed count as motorbikes (see ``motion``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_agent.contract import EventType
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.motion import VehicleMemory, carried_persons
from edge_agent.rules.ruleconfig import RedLightRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.sceneconfig import direction_vector
from edge_agent.rules.schedule import ScheduleGate
from edge_agent.rules.signal import SignalSource, SignalState
from edge_agent.rules.zonestate import TrackStates
from edge_agent.types import Track

_FORGET_AFTER_S = 60.0
_SIGNAL_HISTORY_S = 120.0


@dataclass(slots=True)
class _State:
    vehicle: VehicleMemory = field(default_factory=VehicleMemory)
    side: int = 0  # confirmed: -1 before the line, +1 beyond it, 0 not known yet
    cand: int = 0
    streak: int = 0
    cand_since: float = 0.0
    cand_u: float = 0.0  # position along the line (0 at a, 1 at b) of the first beyond-the-line anchor
    last_before: float = -math.inf  # last observation behind the line (signed distance < 0)


class RedLightRule:
    """Raise ``red_light`` for crossings of one stop line while its signal is red."""

    def __init__(self, cfg: RedLightRuleConfig, scene: Scene) -> None:
        line = scene.line(cfg.line)
        if cfg.signal not in scene.signals:
            raise ValueError(f"rule {cfg.id}: unknown signal {cfg.signal!r}")
        self.cfg = cfg
        self.rule_id: str = cfg.id
        self.zone_id: str = cfg.line
        self._signal: SignalSource = scene.signals[cfg.signal]
        (ax, ay), (bx, by) = line.points
        self._a = (ax * scene.width, ay * scene.height)
        b = (bx * scene.width, by * scene.height)
        self._ab = (b[0] - self._a[0], b[1] - self._a[1])
        length = math.hypot(*self._ab)
        normal = (-self._ab[1] / length, self._ab[0] / length)
        dx, dy = direction_vector(line.direction)
        sign = 1.0 if normal[0] * dx + normal[1] * dy >= 0.0 else -1.0
        if abs(normal[0] * dx + normal[1] * dy) < 1e-3:
            raise ValueError(f"rule {cfg.id}: line {line.id} direction runs along the line")
        self._normal = (normal[0] * sign, normal[1] * sign)  # points to the "after" side
        self._len2 = length * length
        self._margin = cfg.margin * scene.height
        self._tol = self._margin / length
        self._classes = frozenset(cfg.classes)
        self._carried: frozenset[int] = frozenset()  # riders on a motorcycle track this frame
        self._flagged = {SignalState.RED, SignalState.AMBER} if cfg.flag_amber else {SignalState.RED}
        self._history: deque[tuple[float, SignalState]] = deque()
        self._book = IncidentBook(
            cfg.id,
            cfg.line,
            EventType.RED_LIGHT,
            end_grace_s=cfg.end_grace_s,
            cooldown_s=cfg.cooldown_s,
            gate=ScheduleGate(cfg.schedule, scene.clock),
        )
        self._states: TrackStates[_State] = TrackStates(_State, _FORGET_AFTER_S)

    @property
    def tracked_count(self) -> int:
        return len(self._states)

    def close(self, now: float) -> list[Finding]:
        """End every open incident now (shutdown, config change): nothing stays open."""
        return self._book.end_all(now)

    def evaluate(self, tracks: Sequence[Track], now: float) -> list[Finding]:
        out = self._book.begin(now)
        self._carried = carried_persons(tracks, self._classes)
        self._history.append((now, self._signal.state(now)))
        while self._history and self._history[0][0] < now - _SIGNAL_HISTORY_S:
            self._history.popleft()
        for track in tracks:
            if track.time_since_update > 0:
                continue
            if track.label not in self._classes and not (self.cfg.riders.enabled and track.label == "person"):
                continue
            finding = self._observe(track, now)
            if finding is not None:
                out.append(finding)
        out += self._book.finish(now)
        self._states.prune(now)
        return out

    def _observe(self, track: Track, now: float) -> Finding | None:
        st, _ = self._states.observe(track.track_id, now)
        is_vehicle = st.vehicle.check(
            track, now, self._classes, self.cfg.riders, track.track_id in self._carried
        )
        x, y = track.anchor
        rx, ry = x - self._a[0], y - self._a[1]
        dist = rx * self._normal[0] + ry * self._normal[1]
        u = (rx * self._ab[0] + ry * self._ab[1]) / self._len2
        if dist < 0.0:
            st.last_before = now
        raw = 1 if dist >= self._margin else -1 if dist <= -self._margin else 0
        if raw == 0:
            return None
        if raw == st.side:
            st.streak = 0
            return None
        if raw == st.cand and st.streak > 0:
            st.streak += 1
        else:
            st.cand, st.streak, st.cand_since, st.cand_u = raw, 1, now, u
        if st.streak < self.cfg.inertia_frames:
            return None
        crossed = st.side == -1 and raw == 1 and -self._tol <= st.cand_u <= 1.0 + self._tol
        st.side, st.streak = raw, 0
        if not crossed or not is_vehicle:
            return None
        red_for = self._red_for(st.last_before, st.cand_since)
        if red_for is None or red_for < self.cfg.red_grace_s:
            return None
        return self._book.trigger(
            f"track-{track.track_id}",
            now,
            started=st.cand_since,
            objects=(TrackSnapshot.of(track),),
            measurements={
                "red_for_s": red_for,
                "crossing_gap_s": st.cand_since - st.last_before,
                "rider": 1.0 if st.vehicle.rider else 0.0,
            },
        )

    def _red_for(self, t_before: float, t_after: float) -> float | None:
        """How long the signal had been red at ``t_before`` if it was red on every sample from ``t_before``
        to ``t_after``; None otherwise (not red, unknown, or no sample at or before ``t_before``)."""
        samples = list(self._history)
        at_before = [i for i, (t, _) in enumerate(samples) if t <= t_before + 1e-9]
        if not at_before:
            return None
        i0 = at_before[-1]
        for t, state in samples[i0:]:
            if t > t_after + 1e-9:
                break
            if state not in self._flagged:
                return None
        onset = i0
        while onset > 0 and samples[onset - 1][1] in self._flagged:
            onset -= 1
        return t_before - samples[onset][0]

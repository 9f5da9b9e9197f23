"""Illegal stopping: a vehicle that stays within a small radius inside a no-stopping zone for too long.

One small state machine per track. Two debounced facts feed it:

* *inside*: the bottom-centre anchor must be in the zone on ``inertia_frames`` consecutive observations to
  count as inside, and out of it as many times to count as gone, so box jitter on the kerb line flips nothing;
* *still*: the anchor stays within ``max_radius * frame_width`` px of a reference point. The reference is the
  per-axis median of the first few anchors of the stationary period (one jittery first box does not become
  the yardstick), and the vehicle counts as moved only after ``inertia_frames`` consecutive anchors beyond the
  radius; the stationary period then restarts from the new position.

The incident starts at ``max(still since, inside since)``; once it has lasted ``min_dwell_s`` the rule emits
one START and stays quiet until END (moved, left the zone, or unseen for more than ``end_grace_s``).

Continuity: a parked car's track breaks when a bus passes in front of it, the stream reconnects or a demo clip
loops, and the tracker gives it a new id. A track that settles (inside, still for a second) within ``max_radius`` of an
open incident whose vehicle has been unseen for at most ``end_grace_s`` continues that incident: same key (so
the same event id), dwell counted from the original start, no new START; the END lists every track id the
incident covered. The END's dwell runs to the last frame the vehicle was seen stopped, however late the END
is sent, so it is never shorter than the START's.

With a ``schedule`` the rule is in force only inside its windows: dwell counts from the later of the window's
opening and the stop, and open incidents end when the window closes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_agent.contract import EventType, Phase
from edge_agent.geometry import Point, point_in_polygon, scale
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.ruleconfig import IllegalStoppingRuleConfig
from edge_agent.rules.sceneconfig import ZoneConfig
from edge_agent.rules.schedule import ScheduleGate, WallClock
from edge_agent.types import Track

# Anchors that form the stationary reference (their median). Few enough to be fixed within a second or two.
_REF_SAMPLES = 5
# Seconds a new track must stand still before it may continue an incident (a bus passing in front is not it).
_SETTLE_S = 1.0
# Seconds a track's state is kept after it was last seen (and any event ended, any cooldown ran out).
_FORGET_AFTER_S = 60.0


@dataclass(slots=True)
class _State:
    """What the rule remembers about one track."""

    snapshot: TrackSnapshot
    last_seen: float
    # zone membership with hysteresis
    inside: bool = False
    in_streak: int = 0
    out_streak: int = 0
    streak_since: float = 0.0  # time of the first observation of the current in-zone streak
    inside_since: float = 0.0
    # stationary period
    still_since: float = 0.0
    ref: Point = (0.0, 0.0)
    ref_samples: list[Point] = field(default_factory=list)
    move_streak: int = 0
    displacement: float = 0.0
    ok_last: float = 0.0  # last observation that was in the zone and within the radius
    # incident
    event_started: float | None = None
    dwell_sent: float = 0.0  # the dwell the START reported (an END never reports less)
    joined: float = 0.0  # when this track took part in the incident (its own START or a rejoin)
    key: str = ""  # the incident's key (the first track's), kept when a new track id continues it
    covered: dict[int, TrackSnapshot] = field(default_factory=dict)  # every track the incident covered
    cooldown_until: float = -math.inf


class IllegalStoppingRule:
    """Raise ``illegal_stopping`` for vehicles parked in one zone; one instance per (rule, zone, camera).

    >>> from edge_agent.config import ZoneConfig
    >>> from edge_agent.rules.ruleconfig import IllegalStoppingRuleConfig
    >>> import numpy as np
    >>> cfg = IllegalStoppingRuleConfig(type="illegal_stopping", id="r1", zone="z1", min_dwell_s=10)
    >>> zone = ZoneConfig(id="z1", polygon=[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
    >>> rule = IllegalStoppingRule(cfg, zone, frame_size=(1920, 1080))
    >>> car = Track(7, 2, "car", np.array([900, 500, 1000, 560], np.float32), 0.9, 0.0, 0.0)
    >>> [f.phase.value for t in range(0, 12) for f in rule.evaluate([car], float(t))]
    ['start']
    """

    def __init__(
        self,
        cfg: IllegalStoppingRuleConfig,
        zone: ZoneConfig,
        frame_size: tuple[int, int],
        clock: WallClock | None = None,
    ) -> None:
        """``frame_size`` is (width, height) in pixels; the normalized zone is scaled to it once here.
        ``clock`` maps monotonic seconds to UTC; a rule with a schedule needs it."""
        width, height = frame_size
        if width <= 0 or height <= 0:
            raise ValueError(f"frame_size must be positive, got {frame_size}")
        if zone.id != cfg.zone:
            raise ValueError(f"rule {cfg.id} watches zone {cfg.zone!r}, was given zone {zone.id!r}")
        self.cfg = cfg
        self.rule_id: str = cfg.id
        self.zone_id: str = zone.id
        self._polygon = scale(zone.polygon, width, height)
        xs = [p[0] for p in self._polygon]
        ys = [p[1] for p in self._polygon]
        self._bbox = (min(xs), min(ys), max(xs), max(ys))
        self._radius = cfg.max_radius * width
        self._classes = frozenset(cfg.classes)
        self._forget_after = max(cfg.end_grace_s, _FORGET_AFTER_S)
        self._states: dict[int, _State] = {}
        self._gate = ScheduleGate(cfg.schedule, clock)
        self.rejoined = 0  # incidents continued by a new track id

    @property
    def tracked_count(self) -> int:
        """Tracks the rule holds state for; bounded because unseen tracks are forgotten."""
        return len(self._states)

    def evaluate(self, tracks: Sequence[Track], now: float) -> list[Finding]:
        """Advance with this frame's tracks; tracks not updated this frame (``time_since_update > 0``) are
        treated as unseen."""
        findings: list[Finding] = []
        was_active = self._gate.active
        if not self._gate.update(now) and was_active:
            # The window closed: every open stop ends now.
            findings += [
                self._end(t, st, now) for t, st in self._states.items() if st.event_started is not None
            ]
        seen: set[int] = set()
        for track in tracks:
            if track.label not in self._classes or track.time_since_update > 0 or track.track_id in seen:
                continue
            seen.add(track.track_id)
            st = self._states.get(track.track_id)
            if st is not None:
                # A track back after more than end_grace_s: the old stop ended while it was unseen, even if
                # no frame was evaluated in between.
                findings += self._lapse(track.track_id, st, now)
            finding = self._observe(track, now)
            if finding is not None:
                findings.append(finding)
        for tid in [tid for tid in self._states if tid not in seen]:
            st = self._states[tid]
            findings += self._lapse(tid, st, now)
            if now - st.last_seen > self._forget_after and now >= st.cooldown_until:
                del self._states[tid]
        return findings

    def close(self, now: float) -> list[Finding]:
        """End every open stop now (shutdown, config change)."""
        return [self._end(tid, st, now) for tid, st in self._states.items() if st.event_started is not None]

    def _rejoin(self, tid: int, st: _State, now: float) -> bool:
        """A settled track without an incident continues an open one at the same place whose vehicle is
        unseen (see the module notes)."""
        for otid, other in self._states.items():
            if otid == tid or other.event_started is None or other.last_seen >= now:
                continue
            if now - other.last_seen > self.cfg.end_grace_s or math.dist(st.ref, other.ref) > self._radius:
                continue
            st.event_started, st.joined, st.key = other.event_started, now, other.key
            st.dwell_sent = other.dwell_sent
            st.covered = {**other.covered, tid: st.snapshot}
            st.ok_last = now
            other.event_started, other.covered = None, {}
            other.cooldown_until = now + self.cfg.cooldown_s  # its old id coming back is no new stop either
            self.rejoined += 1
            return True
        return False

    def _lapse(self, tid: int, st: _State, now: float) -> list[Finding]:
        """End the stop of a track unseen for over ``end_grace_s`` (last snapshot kept); reset its state."""
        if now - st.last_seen <= self.cfg.end_grace_s:
            return []
        ended = [self._end(tid, st, now)] if st.event_started is not None else []
        # Whatever it was doing, it is not a continuing stop: a return starts from scratch.
        st.inside, st.in_streak, st.out_streak = False, 0, 0
        st.ref_samples = []
        return ended

    def _observe(self, track: Track, now: float) -> Finding | None:
        anchor = track.anchor
        snapshot = TrackSnapshot.of(track)
        st = self._states.get(track.track_id)
        if st is None:
            st = _State(snapshot=snapshot, last_seen=now)
            self._states[track.track_id] = st
        st.snapshot, st.last_seen = snapshot, now

        raw_in = self._in_zone(anchor)
        self._update_inside(st, raw_in, now)
        within = self._update_still(st, anchor, now)
        if raw_in and within:
            st.ok_last = now

        if st.event_started is not None:
            st.covered[track.track_id] = snapshot
            if not st.inside or st.still_since > st.joined:
                return self._end(track.track_id, st, now)
            return None
        if not st.inside or not self._gate.active:
            return None
        if within and now - st.still_since >= _SETTLE_S and self._rejoin(track.track_id, st, now):
            return None
        if now < st.cooldown_until:
            return None
        started = max(st.still_since, st.inside_since, self._gate.since)
        if now - started < self.cfg.min_dwell_s:
            return None
        st.event_started, st.joined, st.key = started, started, f"track-{track.track_id}"
        st.covered = {track.track_id: snapshot}
        st.dwell_sent = now - started
        return self._finding(track.track_id, st, Phase.START, started, now, now - started)

    def _in_zone(self, p: Point) -> bool:
        x1, y1, x2, y2 = self._bbox
        if not (x1 <= p[0] <= x2 and y1 <= p[1] <= y2):
            return False
        return point_in_polygon(p, self._polygon)

    def _update_inside(self, st: _State, raw_in: bool, now: float) -> None:
        n = self.cfg.inertia_frames
        if raw_in:
            if st.in_streak == 0:
                st.streak_since = now
            st.in_streak += 1
            st.out_streak = 0
            if not st.inside and st.in_streak >= n:
                st.inside, st.inside_since = True, st.streak_since
        else:
            st.out_streak += 1
            st.in_streak = 0
            if st.inside and st.out_streak >= n:
                st.inside = False

    def _update_still(self, st: _State, anchor: Point, now: float) -> bool:
        """Advance the stationary period; returns whether this anchor is within the radius."""
        if not st.ref_samples:
            self._restart_still(st, anchor, now)
            st.displacement = 0.0
            return True
        st.displacement = math.dist(anchor, st.ref)
        if st.displacement <= self._radius:
            st.move_streak = 0
            if len(st.ref_samples) < _REF_SAMPLES:
                st.ref_samples.append(anchor)
                st.ref = _median(st.ref_samples)
                st.displacement = math.dist(anchor, st.ref)
            return True
        st.move_streak += 1
        if st.move_streak >= self.cfg.inertia_frames:
            self._restart_still(st, anchor, now)
        return False

    @staticmethod
    def _restart_still(st: _State, anchor: Point, now: float) -> None:
        # ``displacement`` keeps the distance that ended the old period, for the END finding of this frame.
        st.still_since, st.ref, st.ref_samples = now, anchor, [anchor]
        st.move_streak = 0

    def _end(self, tid: int, st: _State, now: float) -> Finding:
        """END with the dwell up to the last observation that still satisfied the rule."""
        started = st.event_started if st.event_started is not None else now
        dwell = max(0.0, st.ok_last - started, st.dwell_sent)
        st.event_started = None
        st.cooldown_until = now + self.cfg.cooldown_s
        return self._finding(tid, st, Phase.END, started, now, dwell)

    def _finding(
        self, tid: int, st: _State, phase: Phase, started: float, now: float, dwell: float
    ) -> Finding:
        return Finding(
            rule_id=self.rule_id,
            zone_id=self.zone_id,
            type=EventType.ILLEGAL_STOPPING,
            phase=phase,
            key=st.key or f"track-{tid}",
            started=started,
            now=now,
            objects=tuple(st.covered.values()) or (st.snapshot,),
            measurements={"dwell_s": dwell, "displacement_px": st.displacement},
        )


def _median(points: list[Point]) -> Point:
    xs = sorted(p[0] for p in points)
    ys = sorted(p[1] for p in points)
    mid = len(points) // 2
    if len(points) % 2:
        return (xs[mid], ys[mid])
    return ((xs[mid - 1] + xs[mid]) / 2.0, (ys[mid - 1] + ys[mid]) / 2.0)

"""Speeding: ground speed from the camera's homography, smoothed over the track, above the limit.

Per track, the rule maps the in-zone anchors of its history (``Track.history``) to metres on the ground plane
and fits a straight-line motion to the latest ``samples`` of them, or to as many more of the latest as it takes to
span ``min_span_s`` (least squares, which smooths box jitter: a single anchor 1 m off changes a 10-sample fit
over 1 s by well under 1 m/s). At 10 detect-fps and more, 10 anchors span under a second, so a fixed count
with ``min_span_s`` 1 s would never give a speed. ``min_frames`` consecutive estimates above
``limit_kmh + tolerance_kmh`` start the incident; it carries the current and the highest speed and ends
``end_grace_s`` after the last over-limit estimate. A step between two samples, or an estimate, above
``max_plausible_kmh`` (an id switch between two road users) restarts the fit. Person tracks are measured too
when ``riders`` is enabled (anyone that fast is on a vehicle), except riders sitting on a motorcycle track the
rule measures already (``motion.carried_persons``: one road user, one event).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_agent.contract import EventType
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.homography import GroundPlane
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.motion import CARRIED_HOLD_S, Sample, carried_persons, fit_velocity
from edge_agent.rules.ruleconfig import SpeedingRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.schedule import ScheduleGate
from edge_agent.rules.zonestate import TrackStates, ZoneShape
from edge_agent.types import Track

_FORGET_AFTER_S = 30.0
_MAX_SAMPLES = 256  # hard cap of a track's fit window (60 detect-fps for 4 s)


@dataclass(slots=True)
class _State:
    samples: deque[Sample] = field(default_factory=deque)  # (t, X m, Y m), in the zone
    last_t: float = -math.inf
    over: int = 0
    max_kmh: float = 0.0


class SpeedingRule:
    """Raise ``speeding`` for road users faster than the limit in one zone."""

    def __init__(self, cfg: SpeedingRuleConfig, scene: Scene) -> None:
        if scene.ground_plane is None:
            raise ValueError(f"rule {cfg.id} needs the camera's ground_plane")
        self.cfg = cfg
        self.rule_id: str = cfg.id
        self.zone_id: str = cfg.zone
        self._plane: GroundPlane = scene.ground_plane
        self._zone = ZoneShape(scene.zone(cfg.zone).polygon, scene.frame_size)
        self._vehicles = frozenset(cfg.classes)
        self._classes = self._vehicles | ({"person"} if cfg.riders.enabled else set())
        self._carried_until: dict[int, float] = {}  # riders seen on a motorcycle track, until when
        self._threshold = cfg.limit_kmh + cfg.tolerance_kmh
        self._book = IncidentBook(
            cfg.id,
            cfg.zone,
            EventType.SPEEDING,
            end_grace_s=cfg.end_grace_s,
            cooldown_s=cfg.cooldown_s,
            gate=ScheduleGate(cfg.schedule, scene.clock),
        )
        self._states: TrackStates[_State] = TrackStates(
            lambda: _State(deque(maxlen=_MAX_SAMPLES)), _FORGET_AFTER_S
        )

    @property
    def tracked_count(self) -> int:
        return len(self._states)

    def speed_kmh(self, track_id: int) -> float | None:
        """The latest fitted speed of a track (None before enough samples); for tests and overlays."""
        st = self._states.peek(track_id)
        return None if st is None else self._fit(st)

    def close(self, now: float) -> list[Finding]:
        """End every open incident now (shutdown, config change): nothing stays open."""
        return self._book.end_all(now)

    def evaluate(self, tracks: Sequence[Track], now: float) -> list[Finding]:
        out = self._book.begin(now)
        for tid in carried_persons(tracks, self._vehicles):
            self._carried_until[tid] = now + CARRIED_HOLD_S
        for track in tracks:
            if track.time_since_update > 0 or track.label not in self._classes:
                continue
            if track.label not in self._vehicles and now < self._carried_until.get(track.track_id, -math.inf):
                continue
            finding = self._observe(track, now)
            if finding is not None:
                out.append(finding)
        out += self._book.finish(now)
        self._states.prune(now, keep=lambda tid: self._book.is_open(f"track-{tid}"))
        for tid in [tid for tid, until in self._carried_until.items() if until <= now]:
            del self._carried_until[tid]
        return out

    def _observe(self, track: Track, now: float) -> Finding | None:
        st, gap = self._states.observe(track.track_id, now)
        if gap > self.cfg.end_grace_s:
            st.samples.clear()
            st.over = 0
        new = [(t, x, y) for t, x, y in track.history if t > st.last_t]
        if new:
            st.last_t = new[-1][0]
            inside = [s for s in new if self._zone.contains((s[1], s[2]))]
            if inside:
                world = self._plane.to_world([(x, y) for _, x, y in inside])
                for (t, _, _), (wx, wy) in zip(inside, world, strict=True):
                    if math.isfinite(wx) and math.isfinite(wy):
                        self._append(st, (t, float(wx), float(wy)))
        if not self._zone.contains(track.anchor):
            st.over = 0
            return None
        kmh = self._fit(st)
        if kmh is None:
            return None
        if kmh > self.cfg.max_plausible_kmh:
            st.samples.clear()
            st.over = 0
            return None
        if kmh <= self._threshold:
            st.over = 0
            return None
        st.over += 1
        key = f"track-{track.track_id}"
        if st.over < self.cfg.min_frames and not self._book.is_open(key):
            return None
        st.max_kmh = kmh if not self._book.is_open(key) else max(st.max_kmh, kmh)
        return self._book.trigger(
            key,
            now,
            started=st.samples[0][0],
            objects=(TrackSnapshot.of(track),),
            measurements={"speed_kmh": kmh, "speed_max_kmh": st.max_kmh, "limit_kmh": self.cfg.limit_kmh},
        )

    def _append(self, st: _State, sample: Sample) -> None:
        """Add a ground sample; a step faster than ``max_plausible_kmh`` from the previous one is an id switch
        (two road users under one id): the fit restarts from the new sample."""
        if st.samples:
            t0, x0, y0 = st.samples[-1]
            dt = sample[0] - t0
            if dt > 0 and math.dist((x0, y0), sample[1:]) / dt * 3.6 > self.cfg.max_plausible_kmh:
                st.samples.clear()
                st.over = 0
        st.samples.append(sample)
        # Keep the fit window: the latest ``samples`` anchors, or more while they span under ``min_span_s``.
        while (
            len(st.samples) > self.cfg.samples and st.samples[-1][0] - st.samples[1][0] >= self.cfg.min_span_s
        ):
            st.samples.popleft()

    def _fit(self, st: _State) -> float | None:
        if len(st.samples) < 3:
            return None
        v = fit_velocity(list(st.samples), min_span_s=self.cfg.min_span_s)
        return None if v is None else math.hypot(*v) * 3.6

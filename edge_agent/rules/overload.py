"""Motorbike overload: more riders on one motorbike than the law allows (Vietnam: two), seen over frames.

**With a motorcycle box.** A person rides a motorcycle when their box sits on it (``motion.on_motorcycle``:
bottom-centre within the bike's width and between a little above its top and near its bottom, overlapping
it). Each (motorcycle, person) pair keeps its last ``window_frames`` joint observations; the person counts as a
rider once associated on ``min_frames`` of them. A person associated with two bikes rides the one they sit on
most often. With ``require_moving`` a bike must move (``min_speed_hps`` of its own height per second): people
around a parked bike are not riding it.

**Without one (the usual case on Vietnamese footage, where the COCO model finds riders but misses the scooter
under them).** With ``rider_groups``, persons that move at riding speed (``riders.min_speed_hps``) count as
riders, and two riders ride the same bike when their anchors lie within ``group_link`` body heights of each
other and their velocities differ by at most ``max_velocity_diff`` of their speed, on ``min_frames`` of the last
``window_frames`` joint observations: people stacked on one scooter move as one rigid body, while two scooters
side by side drift apart or are further apart than half a body height. Connected riders form one bike.
Known weakness: in a dense, slow jam two scooters nose to tail (about 1.5 m apart) can come within
``group_link`` of each other seen from a low camera; the pair persistence and the velocity test only reduce
that. Lower ``group_link`` for such views, or turn ``rider_groups`` off where the scooters are detected.

A group with more than ``max_riders`` riders for ``min_duration_s`` starts an incident (objects: the bike, if
seen, and its riders; measurements ``riders``, ``motorcycle_detected``). Incidents are keyed by the bike
(``moto-<id>``) or the lowest rider id (``riders-<id>``); a group sharing a rider with an open or cooling
incident continues it, so the scooter appearing in the middle does not raise a second event.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_agent.contract import EventType
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.motion import on_motorcycle, speed_hps, velocity
from edge_agent.rules.ruleconfig import MotorbikeOverloadRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.schedule import ScheduleGate
from edge_agent.rules.zonestate import ZoneShape
from edge_agent.types import Track

_PAIR_FORGET_S = 5.0


@dataclass(slots=True)
class _Pair:
    hits: deque[bool]
    last: float

    @property
    def count(self) -> int:
        return sum(self.hits)


@dataclass(slots=True)
class _Group:
    key: str
    bike: Track | None
    riders: list[Track] = field(default_factory=list)


class MotorbikeOverloadRule:
    """Raise ``motorbike_overload`` for bikes carrying more than ``max_riders`` persons in one zone."""

    def __init__(self, cfg: MotorbikeOverloadRuleConfig, scene: Scene) -> None:
        self.cfg = cfg
        self.rule_id: str = cfg.id
        self.zone_id: str = cfg.zone
        self._zone = ZoneShape(scene.zone(cfg.zone).polygon, scene.frame_size)
        self._book = IncidentBook(
            cfg.id,
            cfg.zone,
            EventType.MOTORBIKE_OVERLOAD,
            end_grace_s=cfg.end_grace_s,
            cooldown_s=cfg.cooldown_s,
            gate=ScheduleGate(cfg.schedule, scene.clock),
        )
        self._bike_pairs: dict[tuple[int, int], _Pair] = {}
        self._rider_pairs: dict[tuple[int, int], _Pair] = {}
        self._held: dict[str, tuple[float, float]] = {}  # key -> (overloaded since, last overloaded)
        self._member_key: dict[int, str] = {}  # person id -> key of an open or cooling incident

    @property
    def state_size(self) -> int:
        return len(self._bike_pairs) + len(self._rider_pairs) + len(self._held) + len(self._member_key)

    def close(self, now: float) -> list[Finding]:
        """End every open incident now (shutdown, config change): nothing stays open."""
        return self._book.end_all(now)

    def evaluate(self, tracks: Sequence[Track], now: float) -> list[Finding]:
        out = self._book.begin(now)
        seen = [t for t in tracks if t.time_since_update == 0 and self._zone.contains(t.anchor)]
        persons = [t for t in seen if t.label == "person"]
        bikes = [t for t in seen if t.label == "motorcycle"]
        for group in self._groups(bikes, persons, now):
            finding = self._judge(group, now)
            if finding is not None:
                out.append(finding)
        out += self._book.finish(now)
        self._forget(now)
        return out

    # --- association --------------------------------------------------------------------------------

    def _note(self, pairs: dict[tuple[int, int], _Pair], key: tuple[int, int], hit: bool, now: float) -> None:
        pair = pairs.get(key)
        if pair is None:
            if not hit:
                return
            pair = pairs[key] = _Pair(deque(maxlen=self.cfg.window_frames), now)
        pair.hits.append(hit)
        pair.last = now

    def _groups(self, bikes: list[Track], persons: list[Track], now: float) -> list[_Group]:
        for b in bikes:
            for p in persons:
                self._note(self._bike_pairs, (b.track_id, p.track_id), on_motorcycle(p.xyxy, b.xyxy), now)
        by_id = {b.track_id: b for b in bikes}
        groups = {b.track_id: _Group(f"moto-{b.track_id}", b) for b in bikes}
        unassigned: list[Track] = []
        for p in persons:
            best = max(
                (
                    (pair.count, -bid)
                    for (bid, pid), pair in self._bike_pairs.items()
                    if pid == p.track_id and bid in by_id and pair.count >= self.cfg.min_frames
                ),
                default=None,
            )
            if best is None:
                unassigned.append(p)
            else:
                groups[-best[1]].riders.append(p)
        out = [g for g in groups.values() if g.riders]
        if self.cfg.rider_groups:
            out += self._rider_groups(unassigned, now)
        return out

    def _rider_groups(self, persons: list[Track], now: float) -> list[_Group]:
        w = self.cfg.riders.window_s
        moving = []
        for p in persons:
            v = velocity(p, now, w)
            if v is not None and math.hypot(*v) / max(p.height, 1.0) >= self.cfg.riders.min_speed_hps:
                moving.append((p, v))
        parent = {p.track_id: p.track_id for p, _ in moving}

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, (a, va) in enumerate(moving):
            for b, vb in moving[i + 1 :]:
                key = (min(a.track_id, b.track_id), max(a.track_id, b.track_id))
                self._note(self._rider_pairs, key, self._together(a, va, b, vb), now)
                pair = self._rider_pairs.get(key)
                if pair is not None and pair.count >= self.cfg.min_frames:
                    parent[root(a.track_id)] = root(b.track_id)
        comps: dict[int, list[Track]] = {}
        for p, _ in moving:
            comps.setdefault(root(p.track_id), []).append(p)
        return [
            _Group(f"riders-{min(p.track_id for p in members)}", None, members)
            for members in comps.values()
            if len(members) > 1
        ]

    def _together(self, a: Track, va: tuple[float, float], b: Track, vb: tuple[float, float]) -> bool:
        h = (a.height + b.height) / 2.0
        if math.dist(a.anchor, b.anchor) > self.cfg.group_link * h:
            return False
        speed = max(math.hypot(*va), math.hypot(*vb))
        return math.hypot(va[0] - vb[0], va[1] - vb[1]) <= self.cfg.max_velocity_diff * speed

    # --- incidents ------------------------------------------------------------------------------------

    def _judge(self, group: _Group, now: float) -> Finding | None:
        key = next(
            (self._member_key[p.track_id] for p in group.riders if p.track_id in self._member_key), None
        )
        key = key or group.key
        overloaded = len(group.riders) > self.cfg.max_riders
        if overloaded and group.bike is not None and self.cfg.require_moving:
            overloaded = speed_hps(group.bike, now, self.cfg.riders.window_s) >= self.cfg.min_speed_hps
        if not overloaded:
            return None
        since, _ = self._held.get(key, (now, now))
        self._held[key] = (since, now)
        if now - since < self.cfg.min_duration_s and not self._book.is_open(key):
            return None
        for p in group.riders:
            self._member_key[p.track_id] = key
        bike = () if group.bike is None else (TrackSnapshot.of(group.bike),)
        return self._book.trigger(
            key,
            now,
            started=since,
            objects=bike + tuple(TrackSnapshot.of(p) for p in group.riders),
            measurements={
                "riders": float(len(group.riders)),
                "motorcycle_detected": 0.0 if group.bike is None else 1.0,
            },
        )

    def _forget(self, now: float) -> None:
        for pairs in (self._bike_pairs, self._rider_pairs):
            for pk in [pk for pk, p in pairs.items() if now - p.last > _PAIR_FORGET_S or p.count == 0]:
                del pairs[pk]
        for key in [key for key, (_, last) in self._held.items() if now - last > self.cfg.end_grace_s]:
            del self._held[key]
        for pid in [
            pid
            for pid, k in self._member_key.items()
            if not self._book.is_open(k) and not self._book.cooling(k, now)
        ]:
            del self._member_key[pid]

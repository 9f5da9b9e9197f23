"""Gathering: at least ``min_persons`` persons within a radius of each other that persist as a group.

Distances are in *body heights* (box height, roughly 1.6 m), so the same ``radius`` works near and far from
the camera. Each frame, persons in the zone are linked when their anchors are within ``2 * radius`` heights
(mean of the two: two members on opposite sides of the circle), linked persons form candidate groups, and each
group sheds its member farthest from the group centre until every member is within ``radius`` median heights
of it (a queue of people is not a gathering). A group whose centre moves faster than ``max_speed`` body heights
per second (over ``speed_window_s``) is walking through: its persistence restarts until it stands (``max_speed``
0: a group moving together counts too, a march). Groups are followed across frames by
shared members (or, when every id changed, by a centre within ``radius`` heights): a group that has persisted
``min_duration_s`` starts the incident, which sends UPDATEs every ``update_interval_s`` and ends when the group
has not been seen for ``end_grace_s``; a group re-forming from the same people during the cooldown continues
the cooled-down key and raises nothing.

Every phase carries ``count``, ``count_max``, ``radius_heights`` (the group's measured radius), ``radius_px``
and its convex hull (member boxes), normalized: ``hull_points`` and ``hull_x00``, ``hull_y00``, ... (at most
16 vertices) until the contract has a geometry field. ``objects`` are the persons.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_agent.contract import EventType
from edge_agent.geometry import Point
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.ruleconfig import GatheringRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.schedule import ScheduleGate
from edge_agent.rules.zonestate import ZoneShape
from edge_agent.types import Track

_MAX_HULL = 16


@dataclass(slots=True)
class _Candidate:
    key: str
    members: set[int]
    centre: Point
    height: float
    since: float
    last: float
    count_max: int = 0
    path: deque[tuple[float, float, float, float]] = field(default_factory=deque)  # (t, x, y, height)
    speed: float = 0.0  # body heights per second of the centre over the speed window


class GatheringRule:
    """Raise ``gathering`` for persistent groups of persons in one zone."""

    def __init__(self, cfg: GatheringRuleConfig, scene: Scene) -> None:
        self.cfg = cfg
        self.rule_id: str = cfg.id
        self.zone_id: str = cfg.zone
        self._size = scene.frame_size
        self._zone = ZoneShape(scene.zone(cfg.zone).polygon, scene.frame_size)
        self._classes = frozenset(cfg.classes)
        self._book = IncidentBook(
            cfg.id,
            cfg.zone,
            EventType.GATHERING,
            end_grace_s=cfg.end_grace_s,
            cooldown_s=cfg.cooldown_s,
            update_interval_s=cfg.update_interval_s,
            gate=ScheduleGate(cfg.schedule, scene.clock),
        )
        self._candidates: list[_Candidate] = []
        self._seq = 0

    @property
    def candidate_count(self) -> int:
        return len(self._candidates)

    def close(self, now: float) -> list[Finding]:
        """End every open incident now (shutdown, config change): nothing stays open."""
        return self._book.end_all(now)

    def evaluate(self, tracks: Sequence[Track], now: float) -> list[Finding]:
        out = self._book.begin(now)
        persons = [
            t
            for t in tracks
            if t.time_since_update == 0 and t.label in self._classes and self._zone.contains(t.anchor)
        ]
        for group in groups(persons, self.cfg.radius, self.cfg.min_persons):
            cand = self._match(group, now)
            if (
                self.cfg.max_speed > 0.0
                and cand.speed > self.cfg.max_speed
                and not self._book.is_open(cand.key)
            ):
                cand.since = now  # walking through together: standing together counts from when it stops
                continue
            if now - cand.since >= self.cfg.min_duration_s or self._book.is_open(cand.key):
                finding = self._book.trigger(
                    cand.key,
                    now,
                    started=cand.since,
                    objects=tuple(TrackSnapshot.of(p) for p in group),
                    measurements=self._measurements(group, cand),
                )
                if finding is not None:
                    out.append(finding)
        out += self._book.finish(now)
        self._candidates = [
            c
            for c in self._candidates
            if now - c.last <= self.cfg.end_grace_s
            or self._book.is_open(c.key)
            or self._book.cooling(c.key, now)
        ]
        return out

    def _match(self, group: list[Track], now: float) -> _Candidate:
        ids = {p.track_id for p in group}
        centre, height = _centre(group)
        best: _Candidate | None = None
        best_score = 0.0
        for c in self._candidates:
            if c.last == now:
                continue  # already taken by another group this frame
            shared = len(ids & c.members)
            score = float(shared)
            if shared < 2 and math.dist(centre, c.centre) <= self.cfg.radius * max(height, c.height):
                score = 1.5  # ids changed, same place
            if (shared >= 2 or score > 1.0) and score > best_score:
                best, best_score = c, score
        if best is None:
            self._seq += 1
            best = _Candidate(f"group-{self._seq}", ids, centre, height, now, now)
            self._candidates.append(best)
        elif now - best.last > self.cfg.end_grace_s:
            best.since = now  # re-formed after a break: persistence counts again
        best.members, best.centre, best.height, best.last = ids, centre, height, now
        best.count_max = max(best.count_max, len(ids))
        best.path.append((now, centre[0], centre[1], height))
        while len(best.path) > 2 and now - best.path[1][0] >= self.cfg.speed_window_s:
            best.path.popleft()
        t0, x0, y0, _ = best.path[0]
        # Speed only once the window is (nearly) covered: a group just formed has not shown it stands.
        if now - t0 >= 0.5 * self.cfg.speed_window_s:
            best.speed = math.dist((x0, y0), centre) / (now - t0) / max(height, 1.0)
        else:
            best.speed = 0.0
        return best

    def _measurements(self, group: list[Track], cand: _Candidate) -> dict[str, float]:
        anchors = np.array([p.anchor for p in group], np.float64)
        radius_px = float(np.linalg.norm(anchors - np.array(cand.centre), axis=1).max())
        m = {
            "count": float(len(group)),
            "count_max": float(cand.count_max),
            "radius_heights": radius_px / max(cand.height, 1.0),
            "radius_px": radius_px,
        }
        hull = _hull(group, self._size)
        m["hull_points"] = float(len(hull))
        for i, (x, y) in enumerate(hull):
            m[f"hull_x{i:02d}"], m[f"hull_y{i:02d}"] = x, y
        return m


def _centre(group: Sequence[Track]) -> tuple[Point, float]:
    anchors = np.array([p.anchor for p in group], np.float64)
    heights = np.array([max(p.height, 1.0) for p in group], np.float64)
    c = anchors.mean(axis=0)
    return (float(c[0]), float(c[1])), float(np.median(heights))


def groups(persons: Sequence[Track], radius: float, min_persons: int) -> list[list[Track]]:
    """Groups of at least ``min_persons`` whose members all lie within ``radius`` median body heights of the
    group centre (see the module notes)."""
    n = len(persons)
    if n < min_persons:
        return []
    anchors = np.array([p.anchor for p in persons], np.float64)
    heights = np.array([max(p.height, 1.0) for p in persons], np.float64)
    dist = np.linalg.norm(anchors[:, None, :] - anchors[None, :, :], axis=2)
    link = dist <= radius * (heights[:, None] + heights[None, :])  # 2 * radius * mean height
    seen = np.zeros(n, bool)
    out: list[list[Track]] = []
    for i in range(n):
        if seen[i]:
            continue
        comp, stack = [], [i]
        seen[i] = True
        while stack:
            j = stack.pop()
            comp.append(j)
            for k in np.flatnonzero(link[j] & ~seen):
                seen[k] = True
                stack.append(int(k))
        while len(comp) >= min_persons:
            pts = anchors[comp]
            centre = pts.mean(axis=0)
            d = np.linalg.norm(pts - centre, axis=1)
            far = int(d.argmax())
            if d[far] <= radius * float(np.median(heights[comp])):
                out.append([persons[j] for j in sorted(comp, key=lambda j: persons[j].track_id)])
                break
            comp.pop(far)
    return out


def _hull(group: Sequence[Track], frame_size: tuple[int, int]) -> list[Point]:
    """Convex hull of the members' boxes, normalized, at most ``_MAX_HULL`` vertices."""
    w, h = frame_size
    corners = np.array(
        [(x, y) for p in group for x in (p.xyxy[0], p.xyxy[2]) for y in (p.xyxy[1], p.xyxy[3])], np.float32
    )
    hull = cv2.convexHull(corners).reshape(-1, 2)
    eps = 1.0
    while len(hull) > _MAX_HULL:
        hull = cv2.approxPolyDP(hull.reshape(-1, 1, 2), eps, True).reshape(-1, 2)
        eps *= 2.0
    return [(min(1.0, max(0.0, float(x) / w)), min(1.0, max(0.0, float(y) / h))) for x, y in hull]

"""Encroachment: a sidewalk zone occupied by static things above a fraction for longer than a duration.

Occupancy is the fraction of the zone's area (on a raster downscaled to ``background.width``) covered by

* the boxes of *static* objects of the configured classes standing in the zone (anchor inside: street
  furniture, goods, parked two-wheelers): an object counts once its anchor has been seen staying within
  ``static_radius`` for ``static_after_s``, and its last box
  keeps counting for ``_HOLD_S`` after it was last detected (low-score goods flicker in and out); boxes are
  image-space, so a tall object covers more of the zone than its footprint: the figure is a proxy, and
* the persistent foreground of a slow background model (``background``), for goods COCO has no class for.

Once occupancy has stayed at or above ``min_occupancy`` for ``min_duration_s`` (dips shorter than
``end_grace_s`` do not break the run) the incident starts; it sends an UPDATE every ``update_interval_s`` and
ends when occupancy has been below the threshold for ``end_grace_s``. Every phase carries ``occupancy``,
``occupancy_max``, ``occupancy_mean``, the object and foreground parts, ``static_objects`` and a compact
series of the run: ``series_step_s`` and ``occupancy_s00`` .. (``series_points`` bucket means, oldest first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_agent.contract import EventType
from edge_agent.geometry import Point, scale
from edge_agent.rules.background import PersistentForeground, ZoneRaster
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.ruleconfig import EncroachmentRuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.schedule import ScheduleGate
from edge_agent.rules.zonestate import TrackStates, ZoneShape
from edge_agent.types import Frame, Track

_HOLD_S = 10.0
_FORGET_AFTER_S = 60.0
_MAX_BINS = 1024


@dataclass(slots=True)
class _Object:
    ref: Point = (math.nan, math.nan)
    still_since: float = 0.0
    snapshot: TrackSnapshot | None = None


@dataclass(slots=True)
class _Series:
    """Occupancy of one run in time bins (1 s wide, doubling when there are too many): bounded memory."""

    start: float
    step: float = 1.0
    sums: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    peak: float = 0.0

    def add(self, t: float, value: float) -> None:
        i = int((t - self.start) / self.step)
        while i >= _MAX_BINS:
            self.sums = [sum(self.sums[j : j + 2]) for j in range(0, len(self.sums), 2)]
            self.counts = [sum(self.counts[j : j + 2]) for j in range(0, len(self.counts), 2)]
            self.step *= 2.0
            i = int((t - self.start) / self.step)
        while len(self.sums) <= i:
            self.sums.append(0.0)
            self.counts.append(0)
        self.sums[i] += value
        self.counts[i] += 1
        self.peak = max(self.peak, value)

    def mean(self) -> float:
        n = sum(self.counts)
        return sum(self.sums) / n if n else 0.0

    def buckets(self, points: int) -> list[float]:
        """``points`` means over equal parts of the run (a part without samples repeats the previous one)."""
        n = len(self.sums)
        out: list[float] = []
        for k in range(points):
            lo, hi = k * n // points, max(k * n // points + 1, (k + 1) * n // points)
            c = sum(self.counts[lo:hi])
            out.append(sum(self.sums[lo:hi]) / c if c else (out[-1] if out else 0.0))
        return out


class EncroachmentRule:
    """Raise ``encroachment`` for one sidewalk zone; ``inputs`` lists the frame consumer the pipeline feeds."""

    def __init__(self, cfg: EncroachmentRuleConfig, scene: Scene) -> None:
        self.cfg = cfg
        self.rule_id: str = cfg.id
        self.zone_id: str = cfg.zone
        polygon = scale(scene.zone(cfg.zone).polygon, scene.width, scene.height)
        self.raster = ZoneRaster(polygon, scene.frame_size, cfg.background.width)
        self._zone = ZoneShape(scene.zone(cfg.zone).polygon, scene.frame_size)
        self.background = (
            PersistentForeground(self.raster, cfg.background) if cfg.background.enabled else None
        )
        self._radius = cfg.static_radius * scene.width
        self._classes = frozenset(cfg.classes)
        self._book = IncidentBook(
            cfg.id,
            cfg.zone,
            EventType.ENCROACHMENT,
            end_grace_s=cfg.end_grace_s,
            cooldown_s=cfg.cooldown_s,
            update_interval_s=cfg.update_interval_s,
            gate=ScheduleGate(cfg.schedule, scene.clock),
        )
        self._objects: TrackStates[_Object] = TrackStates(_Object, _FORGET_AFTER_S)
        self._run: _Series | None = None
        self._last_above = -math.inf
        self.occupancy = 0.0

    @property
    def inputs(self) -> list[PersistentForeground]:
        return [] if self.background is None else [self.background]

    def update(self, frame: Frame) -> None:
        """Feed the background model (what the pipeline calls through ``inputs``; handy in tests)."""
        if self.background is not None:
            self.background.update(frame)

    def close(self, now: float) -> list[Finding]:
        """End every open incident now (shutdown, config change): nothing stays open."""
        return self._book.end_all(now)

    def evaluate(self, tracks: Sequence[Track], now: float) -> list[Finding]:
        out = self._book.begin(now)
        for track in tracks:
            if (
                track.time_since_update == 0
                and track.label in self._classes
                and self._zone.contains(track.anchor)
            ):
                self._observe(track, now)
        static = self._static(now)
        objects = self.raster.box_mask([s.xyxy.tolist() for s in static]) & self.raster.mask
        fg = self.background.mask() if self.background is not None else np.zeros_like(objects)
        area = float(self.raster.area)
        occ = float((objects | fg).sum()) / area
        self.occupancy = occ
        if occ >= self.cfg.min_occupancy:
            if self._run is None:
                self._run = _Series(now)
            self._last_above = now
        elif self._run is not None and now - self._last_above > self.cfg.end_grace_s:
            self._run = None
        if self._run is not None:
            self._run.add(now, occ)
            if occ >= self.cfg.min_occupancy and (
                now - self._run.start >= self.cfg.min_duration_s or self._book.is_open("zone")
            ):
                finding = self._book.trigger(
                    "zone",
                    now,
                    started=self._run.start,
                    objects=tuple(static[:256]),
                    measurements=self._measurements(
                        occ, float(objects.sum()) / area, float(fg.sum()) / area, len(static)
                    ),
                )
                if finding is not None:
                    out.append(finding)
        out += self._book.finish(now)
        self._objects.prune(now)
        return out

    def _observe(self, track: Track, now: float) -> None:
        st, _ = self._objects.observe(track.track_id, now)
        anchor = track.anchor
        if not math.dist(anchor, st.ref) <= self._radius:  # also true for the first (nan) reference
            st.ref, st.still_since = anchor, now
        st.snapshot = TrackSnapshot.of(track)

    def _static(self, now: float) -> list[TrackSnapshot]:
        out = []
        for tid, st in self._objects.items():
            last = self._objects.last_seen(tid)
            if st.snapshot is None or now - last > _HOLD_S:
                continue
            # Still for static_after_s *while seen*: a vehicle that drove through the zone and left is not
            # static just because time passed since it was last seen moving.
            if last - st.still_since >= self.cfg.static_after_s:
                out.append(st.snapshot)
        return out

    def _measurements(self, occ: float, objects: float, fg: float, n_static: int) -> dict[str, float]:
        run = self._run
        assert run is not None
        m = {
            "occupancy": occ,
            "occupancy_max": run.peak,
            "occupancy_mean": run.mean(),
            "occupancy_objects": objects,
            "occupancy_foreground": fg,
            "static_objects": float(n_static),
            "series_step_s": (len(run.sums) * run.step) / self.cfg.series_points,
        }
        for i, v in enumerate(run.buckets(self.cfg.series_points)):
            m[f"occupancy_s{i:02d}"] = v
        return m

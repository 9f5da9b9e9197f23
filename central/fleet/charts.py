"""Small server-rendered SVG line charts of a node's heartbeats (no JavaScript, no chart library).

A technician on a phone needs the shape of the last hours (did fps drop at 14:00? is the outbox growing?),
not an analytics tool; a polyline per series in a fixed ``viewBox`` scales to any width and passes the strict
Content-Security-Policy (presentation attributes only, no inline style or script).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from edge_agent.contract import Heartbeat

WIDTH = 300.0
HEIGHT = 60.0
PAD = 2.0
COLOURS = ("#1f6feb", "#d97706", "#059669", "#b91c1c", "#7c3aed", "#0e7490")


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    colour: str
    points: str  # SVG polyline "x,y x,y ..."; several polylines split by gaps are joined with "|"
    last: float | None

    @property
    def polylines(self) -> list[str]:
        return [p for p in self.points.split("|") if p]


@dataclass(frozen=True, slots=True)
class Chart:
    key: str  # i18n key of the title
    unit: str
    series: tuple[Series, ...]
    low: float
    high: float
    start: datetime | None
    end: datetime | None

    @property
    def empty(self) -> bool:
        return not any(s.polylines for s in self.series)


def _scale(value: float, low: float, high: float) -> float:
    span = high - low or 1.0
    return HEIGHT - PAD - (value - low) / span * (HEIGHT - 2 * PAD)


def chart(
    key: str,
    unit: str,
    beats: Sequence[Heartbeat],
    lines: Sequence[tuple[str, Callable[[Heartbeat], float | None]]],
    *,
    gap_s: float = 120.0,
) -> Chart:
    """One chart with a line per ``(label, value of a heartbeat)``; a missing value or a gap breaks the line."""
    if not beats:
        return Chart(key, unit, (), 0.0, 0.0, None, None)
    t0, t1 = beats[0].at.timestamp(), beats[-1].at.timestamp()
    span = max(t1 - t0, 1.0)
    values = [[fn(b) for b in beats] for _, fn in lines]
    known = [v for vs in values for v in vs if v is not None]
    low = min([0.0, *known])
    high = max([1.0, *known]) * 1.05 if known else 1.0
    series = []
    for i, ((label, _fn), vs) in enumerate(zip(lines, values, strict=True)):
        runs: list[list[str]] = [[]]
        previous_t: float | None = None
        for beat, v in zip(beats, vs, strict=True):
            t = beat.at.timestamp()
            if v is None or (previous_t is not None and t - previous_t > gap_s):
                runs.append([])
            if v is not None:
                x = PAD + (t - t0) / span * (WIDTH - 2 * PAD)
                runs[-1].append(f"{x:.1f},{_scale(v, low, high):.1f}")
            previous_t = t
        points = "|".join(" ".join(r) for r in runs if len(r) >= 1)
        last = next((v for v in reversed(vs) if v is not None), None)
        series.append(Series(label, COLOURS[i % len(COLOURS)], points, last))
    return Chart(key, unit, tuple(series), low, high, beats[0].at, beats[-1].at)


def node_charts(beats: Sequence[Heartbeat]) -> list[Chart]:
    """The node page's charts: camera fps, detect fps, inference p95, outbox depth, free disk, temperature."""
    cameras = sorted({c.camera_id for b in beats for c in b.cameras})

    def cam(camera_id: str, field: str) -> Callable[[Heartbeat], float | None]:
        def value(beat: Heartbeat) -> float | None:
            for c in beat.cameras:
                if c.camera_id == camera_id:
                    v = getattr(c, field)
                    return None if v is None else float(v)
            return None

        return value

    gib = float(1 << 30)
    return [
        chart("chart_fps", "fps", beats, [(c, cam(c, "fps")) for c in cameras]),
        chart("chart_detect_fps", "fps", beats, [(c, cam(c, "detect_fps")) for c in cameras]),
        chart("chart_inference_p95", "ms", beats, [(c, cam(c, "inference_ms_p95")) for c in cameras]),
        chart("chart_outbox", "", beats, [("depth", lambda b: float(b.outbox.depth))]),
        chart(
            "chart_disk",
            "GiB",
            beats,
            [("free", lambda b: None if b.disk_free_bytes is None else b.disk_free_bytes / gib)],
        ),
        chart("chart_temperature", "°C", beats, [("cpu", lambda b: b.cpu_temp_c)]),
    ]

"""Config models of what a camera's rules refer to besides zones: lines, travel directions, schedules, traffic
signals and the ground plane. Strict pydantic, imported by ``edge_agent.config`` (and nothing of it imported
back, so there is no cycle).

Coordinates are normalized (0..1 of the frame) like zone polygons. Directions are *on screen*: an angle in
degrees, 0 towards the right edge, 90 towards the top, counter-clockwise (as on a map), or one of the names
``up``, ``down``, ``left``, ``right``, ``up-left``, ``up-right``, ``down-left``, ``down-right``.
"""

from __future__ import annotations

import math
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.contract import Identifier
from edge_agent.geometry import polygon_area, self_intersection

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NormPoint = Annotated[tuple[float, float], Field(description="(x, y), each a fraction 0..1 of the frame.")]
DirectionName = Literal["up", "down", "left", "right", "up-left", "up-right", "down-left", "down-right"]


def _check_direction(value: float | str) -> float | str:
    if isinstance(value, float | int) and not (math.isfinite(value) and -360.0 <= value <= 360.0):
        raise ValueError(f"direction {value} must be an angle in degrees between -360 and 360")
    return value


Direction = Annotated[
    float | DirectionName,
    AfterValidator(_check_direction),
    Field(
        description="On-screen direction: degrees (0 = towards the right edge, 90 = towards the top, "
        "counter-clockwise) or a name (up, down, left, right, up-left, up-right, down-left, down-right)."
    ),
]
_NAMED_DEG = {
    "right": 0.0,
    "up-right": 45.0,
    "up": 90.0,
    "up-left": 135.0,
    "left": 180.0,
    "down-left": 225.0,
    "down": 270.0,
    "down-right": 315.0,
}


def direction_vector(direction: float | str) -> tuple[float, float]:
    """Unit vector of an on-screen direction in image axes (x right, y *down*).

    >>> [round(v, 6) + 0.0 for v in direction_vector("up")]
    [0.0, -1.0]
    >>> [round(v, 6) + 0.0 for v in direction_vector(0)]
    [1.0, 0.0]
    """
    deg = _NAMED_DEG[direction] if isinstance(direction, str) else float(direction)
    rad = math.radians(deg)
    return (math.cos(rad), -math.sin(rad))


def _check_in_frame(points: Any) -> None:
    for i, (x, y) in enumerate(points):
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"point {i} ({x}, {y}) lies outside the frame; use normalized 0..1")


class ZoneConfig(Strict):
    """A named polygon of the scene (no-stopping area, sidewalk, lane); rules refer to it by id."""

    id: Identifier = Field(description="Zone id, unique within the camera.")
    name: str = Field(default="", max_length=128, description="Human name shown to officers.")
    polygon: list[NormPoint] = Field(min_length=3, max_length=64, description="Vertices, normalized 0..1.")
    direction: Direction | None = Field(
        default=None, description="Allowed travel direction on screen (lane zones; wrong-way needs it)."
    )

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for i, (x, y) in enumerate(pts):
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"vertex {i} ({x}, {y}) lies outside the frame; use normalized 0..1")
        crossing = self_intersection(pts)
        if crossing is not None:
            raise ValueError(f"polygon is self-intersecting: edges {crossing[0]} and {crossing[1]} cross")
        if polygon_area(pts) < 1e-6:
            raise ValueError("polygon has no area (collinear or repeated vertices)")
        return pts


class LineConfig(Strict):
    """A line drawn on the road, e.g. a stop line: two points and the crossing direction it controls."""

    id: Identifier = Field(description="Line id, unique among the camera's zones and lines.")
    name: str = Field(default="", max_length=128, description="Human name shown to officers.")
    points: tuple[NormPoint, NormPoint] = Field(description="The two ends (a, b), normalized 0..1.")
    direction: Direction = Field(
        description="Crossing direction of the traffic this line controls, on screen (e.g. 'up' for traffic "
        "driving up the image into the junction). Red-light flags crossings this way while the signal is "
        "red; crossings the other way are ignored. Must not run along the line."
    )

    @model_validator(mode="after")
    def _geometry(self) -> LineConfig:
        _check_in_frame(self.points)
        (ax, ay), (bx, by) = self.points
        length = math.hypot(bx - ax, by - ay)
        if length < 0.01:
            raise ValueError(f"line {self.id} has zero length (ends {length:.4f} apart; need >= 0.01)")
        dx, dy = direction_vector(self.direction)
        # |sin| of the angle between the line and the crossing direction (normalized axes, near enough).
        if abs((bx - ax) * dy - (by - ay) * dx) / length < math.sin(math.radians(15.0)):
            raise ValueError(
                f"line {self.id}: direction {self.direction!r} runs along the line, not across it"
            )
        return self


def _parse_time(value: object) -> object:
    # YAML 1.1 reads an unquoted 06:30 as the sexagesimal number 390: refuse numbers instead of guessing.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError('write times as quoted "HH:MM" strings (unquoted 06:30 is a number in YAML)')
    return value


class TimeWindow(Strict):
    """A daily window of local time; ``end`` before ``start`` runs past midnight into the next day."""

    start: time = Field(description='Local start time, "HH:MM" (inclusive).')
    end: time = Field(description='Local end time, "HH:MM" (exclusive); earlier than start: past midnight.')
    days: list[Weekday] = Field(
        default=list(WEEKDAYS),
        min_length=1,
        max_length=7,
        description="Days of the week the window starts on (mon..sun); default every day.",
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _times(cls, v: object) -> object:
        return _parse_time(v)

    @model_validator(mode="after")
    def _valid(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("window is empty (start == end); leave the schedule out for 'always'")
        if len(set(self.days)) != len(self.days):
            raise ValueError(f"days {self.days} repeat a day")
        return self


class ScheduleConfig(Strict):
    """When a rule is in force: it fires only inside one of the windows, in the given timezone."""

    timezone: str = Field(
        default=DEFAULT_TIMEZONE, max_length=64, description="IANA timezone of the windows' local times."
    )
    windows: list[TimeWindow] = Field(min_length=1, max_length=32, description="Daily windows.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown timezone {v!r} (use an IANA name such as {DEFAULT_TIMEZONE})") from err
        return v


class ColourSignalConfig(Strict):
    """A traffic light read from the camera image: which lamp of one signal head is lit (brightness and position
    along the head, hue as a veto; see ``edge_agent.rules.lamps``), or the hue of a one-lamp head.

    The head must be seen from the front. It then faces the drivers who obey it, the traffic on the camera's side
    of it driving towards it: away from the camera when the camera looks up the approach from behind the queue
    (the Hai Phong and Saigon clips), towards it when the camera looks at the approach from beyond the junction.
    Pair it with the stop line of that approach.
    """

    source: Literal["colour"] = Field(description="Signal state from the colour of a region of the image.")
    id: Identifier = Field(description="Signal id, unique within the camera.")
    roi: tuple[NormPoint, NormPoint] = Field(
        description="Box around one signal head: top-left and bottom-right corners, normalized 0..1."
    )
    lamps: int = Field(
        default=3,
        ge=1,
        le=3,
        description="Lamps of the head, red first (top or left): 3 red/amber/green, 2 red/green; 1 for a head "
        "of one lamp (an arrow head, a pedestrian lamp), whose colour then comes from the hue alone.",
    )
    layout: Literal["auto", "vertical", "horizontal"] = Field(
        default="auto",
        description="How the lamps are stacked; auto: along the longer side of the roi.",
    )
    min_lamp_value: int = Field(
        default=120,
        ge=1,
        le=255,
        description="Brightness (max of B, G, R) the brightest lamp must reach to count as lit.",
    )
    min_contrast: int = Field(
        default=45,
        ge=1,
        le=255,
        description="How much brighter than the housing (the median along the head) the lit lamp must be.",
    )
    min_chroma: int = Field(
        default=40,
        ge=0,
        le=255,
        description="Colourfulness (max - min of B, G, R) that marks lamp light; grey or white background "
        "without it counts as dark (a lamp's white core counts through its coloured rim).",
    )
    ambiguity: float = Field(
        default=0.75,
        gt=0.0,
        lt=1.0,
        description="A second lamp this bright (fraction of the lit lamp's contrast) makes the reading "
        "ambiguous: UNKNOWN.",
    )
    learn_rate: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="How fast the learned lamp positions follow the lit positions seen (0: fixed equal cells).",
    )
    min_saturation: int = Field(
        default=40,
        ge=0,
        le=255,
        description="HSV saturation a lit pixel needs (low: an overexposed lamp's core is nearly white).",
    )
    min_value: int = Field(default=150, ge=0, le=255, description="HSV brightness a lit pixel needs.")
    red_hue: tuple[int, int] = Field(
        default=(160, 12), description="OpenCV hue band (0..179) of red; low > high wraps through 0."
    )
    amber_hue: tuple[int, int] = Field(default=(13, 35), description="Hue band of amber (0..179).")
    green_hue: tuple[int, int] = Field(default=(40, 100), description="Hue band of green (0..179).")
    min_lit_fraction: float = Field(
        default=0.03,
        gt=0.0,
        le=1.0,
        description="One-lamp heads: fraction of the box the winning colour must cover.",
    )
    dominance: float = Field(
        default=1.5,
        ge=1.0,
        le=100.0,
        description="One-lamp heads: the winning colour needs this many times the runner-up.",
    )
    min_frames: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Lit readings of a new colour (dark frames between them allowed) before it is reported; "
        "until then the state is UNKNOWN.",
    )
    dark_hold_s: float = Field(
        default=1.5,
        ge=0.0,
        le=10.0,
        description="How long an unlit head keeps the last state (LED flicker, blinking amber) before UNKNOWN.",
    )
    stale_after_s: float = Field(
        default=2.0, gt=0.0, le=60.0, description="Without a new frame for this long the state is UNKNOWN."
    )

    @field_validator("red_hue", "amber_hue", "green_hue")
    @classmethod
    def _hue(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(0 <= h <= 179 for h in v):
            raise ValueError(f"hue band {v} must lie in OpenCV's 0..179")
        return v

    @model_validator(mode="after")
    def _roi(self) -> ColourSignalConfig:
        _check_in_frame(self.roi)
        (x1, y1), (x2, y2) = self.roi
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"signal {self.id}: roi corners must be top-left then bottom-right, non-empty")
        return self


class ExternalSignalConfig(Strict):
    """A traffic light whose state arrives as timestamped messages (e.g. from the signal controller)."""

    source: Literal["external"] = Field(description="Signal state from messages pushed by another system.")
    id: Identifier = Field(description="Signal id, unique within the camera.")
    feed: Identifier | None = Field(
        default=None,
        description=(
            "Controller feed whose messages set this signal (MQTT topic <prefix>/signals/<feed>); "
            "unset: the signal id."
        ),
    )
    max_age_s: float = Field(
        default=2.0, gt=0.0, le=60.0, description="A state message expires this long after its timestamp."
    )
    max_skew_s: float = Field(
        default=1.0, ge=0.0, le=10.0, description="How far in the future a message's timestamp may lie."
    )


SignalConfig = Annotated[ColourSignalConfig | ExternalSignalConfig, Field(discriminator="source")]


def _collinear_triple(points: list[tuple[float, float]], tol: float) -> tuple[int, int, int] | None:
    n = len(points)
    for i in range(n):
        for j in range(i + 1, n):
            for k in range(j + 1, n):
                (ax, ay), (bx, by), (cx, cy) = points[i], points[j], points[k]
                area2 = abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))
                scale = max(math.dist(points[i], points[j]), math.dist(points[i], points[k]), 1e-12)
                if area2 / scale**2 < tol:
                    return (i, j, k)
    return None


class GroundPlaneConfig(Strict):
    """Image points on the road and where they are on the ground, in metres: the homography for speeds.

    Compute and check it with ``python -m edge_agent.node.calibrate``.
    """

    image: list[NormPoint] = Field(
        min_length=4, max_length=16, description="Points on the road surface in the image, normalized 0..1."
    )
    world: list[tuple[float, float]] = Field(
        min_length=4, max_length=16, description="The same points on the ground, (x, y) in metres."
    )

    @model_validator(mode="after")
    def _pairs(self) -> GroundPlaneConfig:
        if len(self.image) != len(self.world):
            raise ValueError(f"{len(self.image)} image points but {len(self.world)} world points")
        _check_in_frame(self.image)
        for name, pts in (("image", self.image), ("world", self.world)):
            if not all(math.isfinite(c) for p in pts for c in p):
                raise ValueError(f"{name} points must be finite numbers")
            if len(pts) == 4 and (triple := _collinear_triple(list(pts), 1e-3)) is not None:
                raise ValueError(f"{name} points {list(triple)} are (nearly) on one line: no homography")
        return self

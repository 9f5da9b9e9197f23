"""What a rule may know about its camera besides its own parameters: frame size, zones, lines, signals, the
ground plane and the wall clock (for schedules). ``pipeline.build_rule_set`` makes one per camera."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edge_agent.rules.homography import GroundPlane
from edge_agent.rules.sceneconfig import LineConfig, ZoneConfig
from edge_agent.rules.schedule import WallClock
from edge_agent.rules.signal import SignalSource


@dataclass(frozen=True)
class Scene:
    frame_size: tuple[int, int]
    zones: Mapping[str, ZoneConfig]
    lines: Mapping[str, LineConfig] = field(default_factory=dict)
    clock: WallClock | None = None
    signals: Mapping[str, SignalSource] = field(default_factory=dict)
    ground_plane: GroundPlane | None = None

    def __post_init__(self) -> None:
        width, height = self.frame_size
        if width <= 0 or height <= 0:
            raise ValueError(f"frame_size must be positive, got {self.frame_size}")

    @property
    def width(self) -> int:
        return self.frame_size[0]

    @property
    def height(self) -> int:
        return self.frame_size[1]

    def zone(self, zone_id: str) -> ZoneConfig:
        try:
            return self.zones[zone_id]
        except KeyError:
            raise ValueError(f"unknown zone {zone_id!r}") from None

    def line(self, line_id: str) -> LineConfig:
        try:
            return self.lines[line_id]
        except KeyError:
            raise ValueError(f"unknown line {line_id!r}") from None

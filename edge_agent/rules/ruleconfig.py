"""Parameters of every rule type: strict pydantic models, one per rule, members of ``config.RuleConfig``.

Distances on screen are fractions of the frame (width unless said otherwise) so a rule survives a change of
resolution; distances in "body heights" use a person's box height as a rough metre proxy (about 1.6 m) where
no ground plane is calibrated.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edge_agent.classes import (
    PERSON,
    STATIC_OBJECT_CLASSES,
    TRAFFIC_CLASSES,
    VEHICLE_CLASSES,
    check_classes,
)
from edge_agent.contract import Identifier
from edge_agent.rules.sceneconfig import ScheduleConfig, Strict

# (kind, id) of something a rule refers to: "zone", "directed_zone" (a zone with a direction), "line",
# "signal", or "ground_plane" (id "").
Reference = tuple[str, str]


class RiderConfig(Strict):
    """The scooter heuristic: on Vietnamese footage the COCO model often finds the rider ('person') but not
    the scooter under them. A person track moving faster than walking pace counts as a motorbike."""

    enabled: bool = Field(default=True, description="Count fast-moving persons as motorbike riders.")
    min_speed_hps: float = Field(
        default=1.5,
        gt=0.0,
        le=20.0,
        description="Speed, in body heights per second, above which a person is riding (walking measures "
        "about 0.5, at most 1.2-1.6 on single frames).",
    )
    window_s: float = Field(
        default=1.5, gt=0.1, le=10.0, description="Seconds of track history the speed is fitted over."
    )


class RuleBase(Strict):
    id: Identifier = Field(description="Rule id, unique within the camera.")
    schedule: ScheduleConfig | None = Field(
        default=None, description="When the rule is in force (default: always)."
    )

    @field_validator("classes", check_fields=False)
    @classmethod
    def _known_classes(cls, v: list[str]) -> list[str]:
        return check_classes(v)

    def references(self) -> list[Reference]:
        zone: str = getattr(self, "zone")  # noqa: B009 - every rule but line/turn rules has a zone
        return [("zone", zone)]


def _classes(default: tuple[str, ...], what: str = "Detector class names the rule applies to.") -> list[str]:
    return Field(default=list(default), min_length=1, max_length=80, description=what)


def _cooldown(default: float) -> float:
    return Field(
        default=default,
        ge=0.0,
        le=86_400.0,
        description="After an event ends, seconds before it may re-fire.",
    )


def _end_grace(default: float) -> float:
    return Field(
        default=default,
        ge=0.0,
        le=3_600.0,
        description="Seconds the condition may lapse (or the object be unseen) before the event ends.",
    )


def _inertia() -> int:
    return Field(
        default=3, ge=1, le=100, description="Consecutive frames needed to enter or leave a zone (debounce)."
    )


def _update_interval(default: float) -> float:
    return Field(
        default=default,
        ge=0.0,
        le=86_400.0,
        description="While an event lasts, send an update this often (seconds; 0: never).",
    )


class IllegalStoppingRuleConfig(RuleBase):
    """A vehicle that stays within a small radius inside a no-stopping zone for longer than ``min_dwell_s``."""

    type: Literal["illegal_stopping"] = Field(description="Rule type.")
    zone: Identifier = Field(description="Id of the zone this rule watches.")
    classes: list[str] = _classes(VEHICLE_CLASSES)
    min_dwell_s: float = Field(
        default=30.0, gt=0.0, le=86_400.0, description="Seconds stationary before start."
    )
    max_radius: float = Field(
        default=0.03,
        gt=0.0,
        le=0.5,
        description="How far (fraction of frame width) the anchor may wander and still count as stationary.",
    )
    inertia_frames: int = _inertia()
    end_grace_s: float = Field(
        default=10.0,
        ge=0.0,
        le=600.0,
        description="Seconds a stopped vehicle may be unseen (a bus in front, a reconnect, a loop) before the "
        "event ends; a vehicle seen stopped at the same place within it, under any track id, continues it.",
    )
    cooldown_s: float = _cooldown(60.0)


class SidewalkVehicleRuleConfig(RuleBase):
    """A car / motorbike / truck / bus anchored in a sidewalk zone for longer than a short grace time."""

    type: Literal["sidewalk_vehicle"] = Field(description="Rule type.")
    zone: Identifier = Field(description="Id of the sidewalk zone.")
    classes: list[str] = _classes(VEHICLE_CLASSES)
    riders: RiderConfig = Field(default_factory=RiderConfig, description="Fast persons count as motorbikes.")
    grace_s: float = Field(
        default=5.0, ge=0.0, le=3_600.0, description="Seconds on the sidewalk before the event starts."
    )
    inertia_frames: int = _inertia()
    end_grace_s: float = _end_grace(3.0)
    update_interval_s: float = _update_interval(0.0)
    cooldown_s: float = _cooldown(120.0)


class WrongWayRuleConfig(RuleBase):
    """Displacement inside a lane zone against the zone's allowed direction over a minimum distance."""

    type: Literal["wrong_way"] = Field(description="Rule type.")
    zone: Identifier = Field(description="Id of the lane zone; the zone must have a direction.")
    classes: list[str] = _classes(TRAFFIC_CLASSES)
    riders: RiderConfig = Field(default_factory=RiderConfig, description="Fast persons count as motorbikes.")
    min_distance: float = Field(
        default=0.06,
        gt=0.0,
        le=1.0,
        description="Distance (fraction of frame width) travelled against the direction before the event.",
    )
    max_angle_deg: float = Field(
        default=60.0,
        gt=0.0,
        lt=90.0,
        description="How far the net displacement may point away from exactly opposite the allowed direction.",
    )
    window_s: float = Field(
        default=4.0, gt=0.0, le=60.0, description="The displacement is measured over at most these seconds."
    )
    min_samples: int = Field(
        default=5, ge=3, le=64, description="In-zone anchors needed before a track is judged."
    )
    inertia_frames: int = _inertia()
    end_grace_s: float = _end_grace(2.0)
    cooldown_s: float = _cooldown(60.0)

    def references(self) -> list[Reference]:
        return [("directed_zone", self.zone)]


class RedLightRuleConfig(RuleBase):
    """A road user crossing a stop line in its controlled direction while the signal is red."""

    type: Literal["red_light"] = Field(description="Rule type.")
    line: Identifier = Field(description="Id of the stop line.")
    signal: Identifier = Field(description="Id of the traffic signal that governs the line.")
    classes: list[str] = _classes(TRAFFIC_CLASSES)
    riders: RiderConfig = Field(default_factory=RiderConfig, description="Fast persons count as motorbikes.")
    margin: float = Field(
        default=0.01,
        ge=0.0,
        le=0.2,
        description="Dead band (fraction of frame height) on both sides of the line: an anchor must be this "
        "far beyond it to count as on that side (box jitter on the line crosses nothing).",
    )
    inertia_frames: int = Field(
        default=2, ge=1, le=100, description="Consecutive frames on the far side that confirm a crossing."
    )
    red_grace_s: float = Field(
        default=0.5,
        ge=0.0,
        le=10.0,
        description="A crossing counts only if the road user was still before the line this long after the "
        "light turned red.",
    )
    flag_amber: bool = Field(default=False, description="Also flag crossings on amber.")
    end_grace_s: float = _end_grace(2.0)
    cooldown_s: float = _cooldown(60.0)

    def references(self) -> list[Reference]:
        return [("line", self.line), ("signal", self.signal)]


class SpeedingRuleConfig(RuleBase):
    """Speed on the ground plane (camera ``ground_plane``) above the limit, smoothed over the track."""

    type: Literal["speeding"] = Field(description="Rule type.")
    zone: Identifier = Field(description="Id of the zone where speed is measured.")
    classes: list[str] = _classes(VEHICLE_CLASSES)
    riders: RiderConfig = Field(
        default_factory=RiderConfig, description="Also measure fast persons (riders)."
    )
    limit_kmh: float = Field(default=50.0, gt=0.0, le=200.0, description="Speed limit, km/h.")
    tolerance_kmh: float = Field(
        default=5.0, ge=0.0, le=50.0, description="The event needs a speed above limit + tolerance."
    )
    samples: int = Field(
        default=10,
        ge=3,
        le=64,
        description="Latest in-zone anchors the speed is fitted over (least squares); more of the latest ones "
        "are taken while they span under min_span_s (high detect rates).",
    )
    min_span_s: float = Field(
        default=1.0, gt=0.0, le=30.0, description="The fitted anchors must span at least this many seconds."
    )
    min_frames: int = Field(
        default=2, ge=1, le=100, description="Consecutive over-limit estimates needed before the event."
    )
    max_plausible_kmh: float = Field(
        default=200.0, gt=0.0, le=400.0, description="Faster estimates are tracking glitches and are ignored."
    )
    end_grace_s: float = _end_grace(2.0)
    cooldown_s: float = _cooldown(60.0)

    @model_validator(mode="after")
    def _limits(self) -> SpeedingRuleConfig:
        if self.limit_kmh + self.tolerance_kmh >= self.max_plausible_kmh:
            raise ValueError("limit_kmh + tolerance_kmh must stay below max_plausible_kmh")
        return self

    def references(self) -> list[Reference]:
        return [("zone", self.zone), ("ground_plane", "")]


class TurnPair(Strict):
    from_zone: Identifier = Field(description="Zone the road user comes from (entry).")
    to_zone: Identifier = Field(description="Zone it must not go to from there (exit).")

    @model_validator(mode="after")
    def _distinct(self) -> TurnPair:
        if self.from_zone == self.to_zone:
            raise ValueError(f"from_zone and to_zone are both {self.from_zone!r}")
        return self


class IllegalTurnRuleConfig(RuleBase):
    """A road user entering a forbidden exit zone after an entry zone (time of day via ``schedule``)."""

    type: Literal["illegal_turn"] = Field(description="Rule type.")
    forbidden: list[TurnPair] = Field(
        min_length=1, max_length=32, description="Forbidden entry -> exit pairs."
    )
    classes: list[str] = _classes(TRAFFIC_CLASSES)
    riders: RiderConfig = Field(default_factory=RiderConfig, description="Fast persons count as motorbikes.")
    max_transit_s: float = Field(
        default=20.0, gt=0.0, le=600.0, description="The exit must follow the entry within this many seconds."
    )
    inertia_frames: int = _inertia()
    end_grace_s: float = _end_grace(2.0)
    cooldown_s: float = _cooldown(60.0)

    def references(self) -> list[Reference]:
        return [("zone", z) for p in self.forbidden for z in (p.from_zone, p.to_zone)]


class MotorbikeOverloadRuleConfig(RuleBase):
    """More riders than allowed on one motorbike, seen over several frames."""

    type: Literal["motorbike_overload"] = Field(description="Rule type.")
    zone: Identifier = Field(description="Id of the carriageway zone watched.")
    max_riders: int = Field(
        default=2, ge=1, le=10, description="Riders allowed (Vietnam: 2); more than this is flagged."
    )
    window_frames: int = Field(
        default=10, ge=1, le=100, description="Frames over which a rider's association is counted."
    )
    min_frames: int = Field(
        default=6,
        ge=1,
        le=100,
        description="Of those, frames a person must be on the bike to count as rider.",
    )
    min_duration_s: float = Field(
        default=1.0, ge=0.0, le=600.0, description="Seconds the overload must persist before the event."
    )
    require_moving: bool = Field(
        default=True,
        description="Only moving motorbikes (a parked bike with people around it is not ridden).",
    )
    min_speed_hps: float = Field(
        default=0.5, ge=0.0, le=20.0, description="Speed (bike heights per second) that counts as moving."
    )
    rider_groups: bool = Field(
        default=True,
        description="Without a motorcycle box, persons moving together at riding speed count as one bike.",
    )
    group_link: float = Field(
        default=0.45, gt=0.0, le=3.0, description="Max anchor distance (body heights) of persons on one bike."
    )
    max_velocity_diff: float = Field(
        default=0.35,
        gt=0.0,
        le=2.0,
        description="Max velocity difference, relative to speed, within a group.",
    )
    riders: RiderConfig = Field(default_factory=RiderConfig, description="Riding speed of person groups.")
    end_grace_s: float = _end_grace(2.0)
    cooldown_s: float = _cooldown(60.0)

    @model_validator(mode="after")
    def _window(self) -> MotorbikeOverloadRuleConfig:
        if self.min_frames > self.window_frames:
            raise ValueError("min_frames must not exceed window_frames")
        return self


class BackgroundConfig(Strict):
    """The slow background model that finds goods COCO has no class for (persistent foreground)."""

    enabled: bool = Field(default=True, description="Count persistent foreground as occupied.")
    width: int = Field(default=160, ge=32, le=640, description="The zone is downscaled to this width (px).")
    learning_s: float = Field(
        default=1_800.0, gt=0.0, le=86_400.0, description="Time constant (s) of the background's adaptation."
    )
    persistence_s: float = Field(
        default=60.0, gt=0.0, le=3_600.0, description="A pixel counts once foreground for about this long."
    )
    var_threshold: float = Field(
        default=25.0, gt=0.0, le=400.0, description="MOG2 varThreshold (squared distance to the model)."
    )


class EncroachmentRuleConfig(RuleBase):
    """A sidewalk zone occupied by static things above a fraction for longer than a duration."""

    type: Literal["encroachment"] = Field(description="Rule type.")
    zone: Identifier = Field(description="Id of the sidewalk zone.")
    classes: list[str] = _classes(STATIC_OBJECT_CLASSES, "Classes of static things (counted while still).")
    static_after_s: float = Field(
        default=10.0, ge=0.0, le=3_600.0, description="Seconds an object must stay put to count."
    )
    static_radius: float = Field(
        default=0.02, gt=0.0, le=0.5, description="How far (fraction of width) a static object may wander."
    )
    min_occupancy: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Fraction of the zone that must be occupied."
    )
    min_duration_s: float = Field(
        default=300.0, ge=0.0, le=86_400.0, description="Seconds above the fraction before the event."
    )
    background: BackgroundConfig = Field(
        default_factory=BackgroundConfig, description="Persistent foreground for goods without a class."
    )
    series_points: int = Field(
        default=12, ge=1, le=48, description="Points of the occupancy series carried by the event."
    )
    end_grace_s: float = _end_grace(60.0)
    update_interval_s: float = _update_interval(300.0)
    cooldown_s: float = _cooldown(600.0)


class GatheringRuleConfig(RuleBase):
    """At least N persons within a radius (in body heights) that persist as a group."""

    type: Literal["gathering"] = Field(description="Rule type.")
    zone: Identifier = Field(description="Id of the zone watched.")
    classes: list[str] = _classes((PERSON,), "Classes that make up a group.")
    min_persons: int = Field(default=5, ge=2, le=256, description="Persons that make a gathering.")
    radius: float = Field(
        default=1.5,
        gt=0.0,
        le=20.0,
        description="Members lie within this many body heights (box height, ~1.6 m) of the group's centre.",
    )
    min_duration_s: float = Field(
        default=60.0, ge=0.0, le=86_400.0, description="Seconds the group must persist before the event."
    )
    max_speed: float = Field(
        default=0.35,
        ge=0.0,
        le=20.0,
        description="A group whose centre moves faster than this (body heights per second over the last "
        "speed_window_s; walking is about 0.9) is passing through, not gathering: its persistence restarts. "
        "0 counts moving groups too (a march).",
    )
    speed_window_s: float = Field(
        default=1.5,
        gt=0.0,
        le=30.0,
        description="Seconds of group-centre history the speed is measured over.",
    )
    end_grace_s: float = _end_grace(10.0)
    update_interval_s: float = _update_interval(60.0)
    cooldown_s: float = _cooldown(300.0)


# One camera's rule list holds any of these, told apart by ``type``.
RuleConfig = Annotated[
    IllegalStoppingRuleConfig
    | SidewalkVehicleRuleConfig
    | WrongWayRuleConfig
    | RedLightRuleConfig
    | SpeedingRuleConfig
    | IllegalTurnRuleConfig
    | MotorbikeOverloadRuleConfig
    | EncroachmentRuleConfig
    | GatheringRuleConfig,
    Field(discriminator="type"),
]

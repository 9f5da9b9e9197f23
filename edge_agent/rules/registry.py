"""Build one camera's rules from its config: the rule objects, the frame consumers the pipeline must feed
before the rules run (signal heads read by colour, background models), and the signal sources by id (the
agent pushes external signal messages into the ``ExternalSignalFeed`` ones)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.rules.base import Rule
from edge_agent.rules.encroachment import EncroachmentRule
from edge_agent.rules.gathering import GatheringRule
from edge_agent.rules.homography import GroundPlane
from edge_agent.rules.overload import MotorbikeOverloadRule
from edge_agent.rules.redlight import RedLightRule
from edge_agent.rules.ruleconfig import RuleConfig
from edge_agent.rules.scene import Scene
from edge_agent.rules.sceneconfig import GroundPlaneConfig, LineConfig, SignalConfig, ZoneConfig
from edge_agent.rules.schedule import WallClock
from edge_agent.rules.sidewalk import SidewalkVehicleRule
from edge_agent.rules.signal import ColourSignal, ExternalSignalFeed, SignalSource
from edge_agent.rules.speeding import SpeedingRule
from edge_agent.rules.stopping import IllegalStoppingRule
from edge_agent.rules.turns import IllegalTurnRule
from edge_agent.rules.wrongway import WrongWayRule
from edge_agent.types import Frame


class CameraScene(Protocol):
    """What the rules need of a camera's config (``edge_agent.config.CameraConfig`` has it): the rules package
    depends on its own config models only, never on the node's config."""

    @property
    def zones(self) -> Sequence[ZoneConfig]: ...
    @property
    def lines(self) -> Sequence[LineConfig]: ...
    @property
    def signals(self) -> Sequence[SignalConfig]: ...
    @property
    def ground_plane(self) -> GroundPlaneConfig | None: ...
    @property
    def rules(self) -> Sequence[RuleConfig]: ...


class FrameInput(Protocol):
    """Something that must see the frame before the rules evaluate (one verb: ``update``)."""

    def update(self, frame: Frame) -> None: ...


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    inputs: list[FrameInput] = field(default_factory=list)
    signals: dict[str, SignalSource] = field(default_factory=dict)


def build_rule_set(cam: CameraScene, frame_size: tuple[int, int], clock: WallClock) -> RuleSet:
    """``clock`` maps monotonic seconds to UTC (schedules, external signal messages)."""
    out = RuleSet()
    for sc in cam.signals:
        if sc.source == "colour":
            colour = ColourSignal(sc, frame_size)
            out.signals[sc.id] = colour
            out.inputs.append(colour)
        else:
            out.signals[sc.id] = ExternalSignalFeed(sc, clock)
    scene = Scene(
        frame_size=frame_size,
        zones={z.id: z for z in cam.zones},
        lines={line.id: line for line in cam.lines},
        clock=clock,
        signals=out.signals,
        ground_plane=None
        if cam.ground_plane is None
        else GroundPlane.from_config(cam.ground_plane, frame_size),
    )
    for rc in cam.rules:
        if rc.type == "illegal_stopping":
            out.rules.append(IllegalStoppingRule(rc, scene.zone(rc.zone), frame_size, clock))
        elif rc.type == "sidewalk_vehicle":
            out.rules.append(SidewalkVehicleRule(rc, scene))
        elif rc.type == "wrong_way":
            out.rules.append(WrongWayRule(rc, scene))
        elif rc.type == "red_light":
            out.rules.append(RedLightRule(rc, scene))
        elif rc.type == "speeding":
            out.rules.append(SpeedingRule(rc, scene))
        elif rc.type == "illegal_turn":
            out.rules.append(IllegalTurnRule(rc, scene))
        elif rc.type == "motorbike_overload":
            out.rules.append(MotorbikeOverloadRule(rc, scene))
        elif rc.type == "encroachment":
            rule = EncroachmentRule(rc, scene)
            out.rules.append(rule)
            out.inputs += rule.inputs
        elif rc.type == "gathering":
            out.rules.append(GatheringRule(rc, scene))
    return out

"""Build one camera's rules from its config: the rule objects, the frame consumers the pipeline must feed
before the rules run (signal heads read by colour, background models), and the signal sources by id (the
agent pushes external signal messages into the ``ExternalSignalFeed`` ones)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.config import CameraConfig
from edge_agent.rules.base import Rule
from edge_agent.rules.encroachment import EncroachmentRule
from edge_agent.rules.gathering import GatheringRule
from edge_agent.rules.homography import GroundPlane
from edge_agent.rules.overload import MotorbikeOverloadRule
from edge_agent.rules.redlight import RedLightRule
from edge_agent.rules.scene import Scene
from edge_agent.rules.schedule import WallClock
from edge_agent.rules.sidewalk import SidewalkVehicleRule
from edge_agent.rules.signal import ColourSignal, ExternalSignalFeed, SignalSource
from edge_agent.rules.speeding import SpeedingRule
from edge_agent.rules.stopping import IllegalStoppingRule
from edge_agent.rules.turns import IllegalTurnRule
from edge_agent.rules.wrongway import WrongWayRule
from edge_agent.types import Frame


class FrameInput(Protocol):
    """Something that must see the frame before the rules evaluate (one verb: ``update``)."""

    def update(self, frame: Frame) -> None: ...


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    inputs: list[FrameInput] = field(default_factory=list)
    signals: dict[str, SignalSource] = field(default_factory=dict)


def build_rule_set(cam: CameraConfig, frame_size: tuple[int, int], clock: WallClock) -> RuleSet:
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

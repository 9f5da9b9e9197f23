"""Turn rule findings into contract ``Event``s: stable event ids per incident, UTC times, normalized boxes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from edge_agent.contract import Event, EventObject, EvidenceRef, ModelRef, NormBox, Phase, uuid7
from edge_agent.rules.base import Finding, TrackSnapshot
from edge_agent.types import Frame


def _clip01(v: float) -> float:
    return min(1.0, max(0.0, v))


def normalize_box(obj: TrackSnapshot, width: int, height: int) -> NormBox:
    x1, y1, x2, y2 = (float(v) for v in obj.xyxy)
    return NormBox(
        x1=_clip01(x1 / width), y1=_clip01(y1 / height), x2=_clip01(x2 / width), y2=_clip01(y2 / height)
    )


@dataclass(frozen=True, slots=True)
class Context:
    """What the builder needs to know about where a finding happened."""

    node_id: str
    camera_id: str
    model: ModelRef
    config_version: int


class EventBuilder:
    """One per camera. Keeps the event id of each open incident so later phases reuse it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._open: dict[tuple[str, str], tuple[str, object]] = {}

    @property
    def open_incidents(self) -> int:
        return len(self._open)

    def build(self, finding: Finding, frame: Frame, evidence: list[EvidenceRef]) -> Event:
        """Map the monotonic times of a finding onto the frame's UTC clock and mint or reuse the event id."""
        key = (finding.rule_id, finding.key)
        started_wall = frame.wall - timedelta(seconds=max(0.0, frame.mono - finding.started))
        if finding.phase is Phase.START or key not in self._open:
            started_ms = int(started_wall.timestamp() * 1000)
            self._open[key] = (str(uuid7(started_ms)), started_wall)
        event_id, first_started = self._open[key]
        if finding.phase is Phase.END:
            del self._open[key]
        return Event.model_validate(
            {
                "event_id": event_id,
                "node_id": self.ctx.node_id,
                "camera_id": self.ctx.camera_id,
                "zone_id": finding.zone_id,
                "rule_id": finding.rule_id,
                "type": finding.type,
                "phase": finding.phase,
                "started_at": first_started,
                "observed_at": frame.wall,
                "ended_at": frame.wall if finding.phase is Phase.END else None,
                "objects": [
                    EventObject(
                        track_id=o.track_id,
                        label=o.label,
                        score=_clip01(o.score),
                        box=normalize_box(o, frame.width, frame.height),
                    )
                    for o in finding.objects
                ],
                "measurements": {k: round(float(v), 3) for k, v in finding.measurements.items()},
                "evidence": evidence,
                "model": self.ctx.model,
                "config_version": self.ctx.config_version,
            }
        )

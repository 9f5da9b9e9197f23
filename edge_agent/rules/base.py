"""What every rule shares: the finding it emits and the verb it implements.

A rule is a small state machine over tracks and time. It knows nothing of MQTT, UUIDs or wall clocks: it gets
tracks and a monotonic ``now`` and returns findings; the event builder turns findings into contract ``Event``s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge_agent.contract import EventType, Phase
from edge_agent.types import FloatArray, Track


@dataclass(frozen=True, slots=True)
class TrackSnapshot:
    """A frozen copy of a track's state at the moment of a finding (tracks mutate every frame)."""

    track_id: int
    label: str
    score: float
    xyxy: FloatArray

    @classmethod
    def of(cls, track: Track) -> TrackSnapshot:
        return cls(track.track_id, track.label, float(track.score), np.array(track.xyxy, dtype=np.float32))


@dataclass(frozen=True, slots=True)
class Finding:
    """One phase of one incident seen by a rule.

    ``key`` identifies the incident within the rule (e.g. ``"track-12"``) so every phase of it maps to the same
    ``event_id``; ``started`` and ``now`` are monotonic seconds.
    """

    rule_id: str
    zone_id: str
    type: EventType
    phase: Phase
    key: str
    started: float
    now: float
    objects: tuple[TrackSnapshot, ...]
    measurements: dict[str, float] = field(default_factory=dict)


class Rule(Protocol):
    rule_id: str
    zone_id: str

    def evaluate(self, tracks: Sequence[Track], now: float) -> list[Finding]:
        """Advance the state machine with this frame's confirmed tracks at monotonic time ``now``. The pipeline
        also calls it with no tracks when the camera's frames stop coming (the clock goes on, nothing is
        seen), so incidents end on time without frames."""
        ...

    def close(self, now: float) -> list[Finding]:
        """End every open incident at ``now`` (shutdown, config change)."""
        ...

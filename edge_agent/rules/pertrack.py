"""The evaluation loop shared by rules that judge each vehicle track on its own (sidewalk, wrong way, turns).

Each frame: open the incident book, note which persons ride a detected motorcycle (so a rider is not counted
as a second vehicle beside its scooter), hand every fresh track of the rule's classes (or, with the rider
heuristic on, every person) to the rule's ``_observe``, close the book and forget tracks gone long enough.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from edge_agent.rules.base import Finding
from edge_agent.rules.incidents import IncidentBook
from edge_agent.rules.motion import carried_persons
from edge_agent.rules.zonestate import TrackStates
from edge_agent.types import Track


class PerTrackRule(ABC):
    """Subclasses set ``_book``, ``_states``, ``_classes`` and ``_riders_on`` in ``__init__``."""

    _book: IncidentBook
    _states: TrackStates[Any]
    _classes: frozenset[str]
    _riders_on: bool
    _carried: frozenset[int] = frozenset()  # riders on a motorcycle track this frame

    @property
    def tracked_count(self) -> int:
        return len(self._states)

    def close(self, now: float) -> list[Finding]:
        """End every open incident now (shutdown, config change): nothing stays open."""
        return self._book.end_all(now)

    def evaluate(self, tracks: Sequence[Track], now: float) -> list[Finding]:
        out = self._book.begin(now)
        self._carried = carried_persons(tracks, self._classes)
        for track in tracks:
            if track.time_since_update > 0:
                continue
            if track.label not in self._classes and not (self._riders_on and track.label == "person"):
                continue
            finding = self._observe(track, now)
            if finding is not None:
                out.append(finding)
        out += self._book.finish(now)
        self._states.prune(now, keep=lambda tid: self._book.is_open(f"track-{tid}"))
        return out

    @abstractmethod
    def _observe(self, track: Track, now: float) -> Finding | None:
        """Advance this track's state; a finding when its incident starts, updates or ends."""

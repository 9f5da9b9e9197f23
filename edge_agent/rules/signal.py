"""Traffic-signal state for the red-light rule: from the colour of a signal head in the image, or from an
external feed of timestamped state messages.

Both sources answer ``state(now)`` with RED, AMBER, GREEN or UNKNOWN, and UNKNOWN whenever they are not sure
(no frame or message recently, nothing lit for too long, two colours lit): the red-light rule raises nothing
on UNKNOWN, it never guesses.

A head seen by the camera is read from its lamps (``lamps.read_lamps``): which lamp is lit, by brightness and
position along the head, with the hue only as a veto (an overexposed red lamp is an orange-white core); the lamp
layout is learned from the frames. A head of one lamp (an arrow head) is read by hue (``classify_hue``). LED
heads flicker against the camera's shutter (on the Hai Phong clip the red lamp reads dark on one frame in five),
so a dark head keeps the last state for ``dark_hold_s``; a new colour is reported after ``min_frames`` lit
readings of it, and a lit reading of another colour drops the old one at once (``ColourSignal``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import numpy as np

from edge_agent.rules.lamps import LampReading, Layout, hue_fractions, read_lamps
from edge_agent.rules.sceneconfig import ColourSignalConfig, ExternalSignalConfig
from edge_agent.rules.schedule import WallClock
from edge_agent.types import Frame, Image


class SignalState(StrEnum):
    RED = "red"
    AMBER = "amber"
    GREEN = "green"
    UNKNOWN = "unknown"


class SignalSource(Protocol):
    id: str

    def update(self, frame: Frame) -> None:
        """Look at a frame (the pipeline calls this before the rules); sources without a picture ignore it."""
        ...

    def state(self, now: float) -> SignalState:
        """The state at monotonic ``now``; UNKNOWN when not sure."""
        ...


@dataclass(frozen=True, slots=True)
class Reading:
    """One classification of one crop: ``dark`` when nothing is lit enough to decide; ``lamp`` the lamp
    reader's detail (heads of two or three lamps)."""

    state: SignalState
    dark: bool
    fractions: dict[str, float]
    lamp: LampReading | None = None


def classify_hue(crop: Image, cfg: ColourSignalConfig) -> Reading:
    """A head of one lamp: the hue band with the most lit pixels, which must cover ``min_lit_fraction`` of
    the box and ``dominance`` times the runner-up."""
    if crop.size == 0:
        return Reading(SignalState.UNKNOWN, True, {})
    fractions = hue_fractions(crop, cfg)
    ranked = sorted(fractions.items(), key=lambda kv: kv[1], reverse=True)
    (best, best_f), (_, second_f) = ranked[0], ranked[1]
    if best_f < cfg.min_lit_fraction:
        return Reading(SignalState.UNKNOWN, True, fractions)
    if best_f < cfg.dominance * second_f:
        return Reading(SignalState.UNKNOWN, False, fractions)
    return Reading(SignalState(best), False, fractions)


def classify(crop: Image, cfg: ColourSignalConfig, layout: Layout | None = None) -> Reading:
    """Classify a BGR crop of one signal head: by lamp position (``lamps`` 2 or 3, learning into ``layout``
    when given) or by hue (``lamps: 1``)."""
    if cfg.lamps == 1:
        return classify_hue(crop, cfg)
    lamp = read_lamps(crop, cfg, layout or Layout(cfg.lamps, 0.0))
    state = SignalState.UNKNOWN if lamp.colour is None else SignalState(lamp.colour)
    return Reading(state, lamp.dark, {}, lamp)


class ColourSignal:
    """Signal state from the lamps of one head in the image, with hysteresis over frames.

    Hysteresis: a new colour is reported after ``min_frames`` lit readings of it (dark frames between them
    allowed, another colour restarts the count); a lit reading that contradicts the reported colour makes the
    state UNKNOWN at once (a head never keeps saying red while it shows green); a dark head keeps its colour for
    ``dark_hold_s`` after its last lit reading (LED flicker, blinking amber); no frame for ``stale_after_s``
    is UNKNOWN.
    """

    def __init__(self, cfg: ColourSignalConfig, frame_size: tuple[int, int]) -> None:
        width, height = frame_size
        (x1, y1), (x2, y2) = cfg.roi
        self.id: str = cfg.id
        self.cfg = cfg
        self._box = (
            max(0, int(x1 * width)),
            max(0, int(y1 * height)),
            min(width, max(int(x1 * width) + 1, round(x2 * width))),
            min(height, max(int(y1 * height) + 1, round(y2 * height))),
        )
        self.layout = Layout(cfg.lamps, cfg.learn_rate) if cfg.lamps > 1 else None
        self._state = SignalState.UNKNOWN
        self.since = 0.0
        self.last_reading: Reading | None = None
        self._last_frame: float | None = None
        self._last_lit = -np.inf
        self._cand = SignalState.UNKNOWN
        self._cand_n = 0
        self._cand_since = 0.0

    def crop(self, image: Image) -> Image:
        x1, y1, x2, y2 = self._box
        return image[y1:y2, x1:x2]

    def update(self, frame: Frame) -> None:
        if self._last_frame is not None and frame.mono <= self._last_frame:
            return  # the same frame again (the pipeline reads heads on every frame and on detect frames)
        self.observe(classify(self.crop(frame.image), self.cfg, self.layout), frame.mono)

    def observe(self, reading: Reading, now: float) -> None:
        """Advance the hysteresis with one reading taken at ``now``."""
        self.last_reading, self._last_frame = reading, now
        glow = reading.lamp.glow if reading.lamp is not None else None
        if reading.dark and glow is None:
            if self._state is not SignalState.UNKNOWN and now - self._last_lit > self.cfg.dark_hold_s:
                self._set(SignalState.UNKNOWN, now)
            return
        # A lamp glowing faintly in its own colour on a dark frame is a weak reading of that colour.
        raw = SignalState(glow) if reading.dark and glow is not None else reading.state
        if raw is self._state:
            self._last_lit = now
            self._cand_n = 0
            return
        if raw is not SignalState.UNKNOWN and self._state is not SignalState.UNKNOWN:
            self._set(SignalState.UNKNOWN, now)  # a lit lamp of another colour: not the old colour any more
        if raw is self._cand and self._cand_n > 0:
            self._cand_n += 1
        else:
            self._cand, self._cand_n, self._cand_since = raw, 1, now
        if self._cand_n >= self.cfg.min_frames:
            self._set(raw, self._cand_since)
            self._last_lit = now

    def _set(self, state: SignalState, since: float) -> None:
        self._state, self.since, self._cand_n = state, since, 0

    def state(self, now: float) -> SignalState:
        if self._last_frame is None or now - self._last_frame > self.cfg.stale_after_s:
            return SignalState.UNKNOWN
        return self._state


class ExternalSignalFeed:
    """Signal state pushed by another system (``edge_agent.node.signal_feed`` routes the MQTT messages of
    ``<prefix>/signals/<feed>`` here): each message carries its UTC time and expires ``max_age_s`` after it;
    older-than-latest messages are ignored. Thread-safe."""

    def __init__(self, cfg: ExternalSignalConfig, clock: WallClock) -> None:
        self.id: str = cfg.id
        self.feed: str = cfg.feed or cfg.id  # the controller feed (MQTT <prefix>/signals/<feed>)
        self.cfg = cfg
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: tuple[SignalState, datetime] | None = None

    def push(self, state: SignalState | str, at: datetime) -> bool:
        """Accept one state message; returns False when it is older than the latest one (ignored)."""
        if at.tzinfo is None:
            raise ValueError("signal message time must be timezone-aware (UTC)")
        value = SignalState(state)
        with self._lock:
            if self._latest is not None and at < self._latest[1]:
                return False
            self._latest = (value, at)
        return True

    def update(self, frame: Frame) -> None:
        return None

    def state(self, now: float) -> SignalState:
        with self._lock:
            latest = self._latest
        if latest is None:
            return SignalState.UNKNOWN
        value, at = latest
        age = (self._clock(now) - at).total_seconds()
        if age > self.cfg.max_age_s or age < -self.cfg.max_skew_s:
            return SignalState.UNKNOWN
        return value

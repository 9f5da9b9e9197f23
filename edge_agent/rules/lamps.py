"""Which lamp of a signal head is lit, read from brightness first and hue second.

On real CCTV a lit lamp is the brightest thing on its head, but its colour is not reliable: a red LED lamp
saturates the sensor into an orange-white core with a thin red halo (on the Hai Phong and phone clips most of
the lamp reads amber or white by hue), a cyan-green lamp reads white. So the reader looks at *where* along the
head the light is, like a driver does, and uses the hue only as a veto:

* the brightness profile along the head's axis (vertical or horizontal) is the 75th percentile of max(B, G, R)
  across the central band of the box, lightly smoothed; the housing level is its median;
* the lit lamp is the profile's peak, when it reaches ``min_lamp_value`` and stands ``min_contrast`` above the
  housing; a second peak at least one lamp spacing away with ``ambiguity`` of that contrast makes the reading
  ambiguous (two lamps lit, a reflection as bright as the lamp);
* the peak's position picks the lamp: the nearest learned lamp centre, red first from the top (or the left);
* the saturated pixels around the peak vote by hue; red and amber are one family (overexposure shifts red
  towards amber), green another; a vote of the other family makes the reading ambiguous, never the wrong
  colour; no saturated pixels (a white core only) is no vote;
* ``Layout`` learns the lamp centres from clear readings (the lit position moves between phases, so each lamp
  is seen in turn): a lamp seen lit moves its centre towards where it was seen, the unseen ones keep the
  spacing of the seen ones (or the equal cells of the box), so a loosely drawn box still maps the right lamps.

A head of one lamp (``lamps: 1``, an arrow head) has no position to read: its colour is the hue band with the
most lit pixels (``classify_hue``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_agent.rules.sceneconfig import ColourSignalConfig
from edge_agent.types import Image

# Lamp colours in position order, by number of lamps (Vietnamese heads: red on top, or on the left).
ORDER: dict[int, tuple[str, ...]] = {2: ("red", "green"), 3: ("red", "amber", "green")}
FAMILY = {"red": "warm", "amber": "warm", "green": "cool"}
_MIN_VOTE_PX = 3  # saturated pixels a hue vote needs
_SEEN_TO_TRUST = 5  # clear readings of a lamp before its learned centre is trusted over the equal cell


@dataclass(frozen=True, slots=True)
class LampReading:
    """One frame of one head: ``colour`` is None when dark or ambiguous (``dark`` tells which)."""

    colour: str | None
    dark: bool
    position: float  # peak along the axis, 0..1 (top or left = 0)
    lamp: int  # index of the lamp the peak was assigned to, -1 if none
    peak: float  # brightness of the peak
    contrast: float  # peak minus housing level
    vote: str | None  # hue family vote of the saturated pixels around the peak
    glow: str | None = None  # on a dark frame: a lamp glowing faintly in its own colour


def is_vertical(cfg: ColourSignalConfig, shape: tuple[int, int]) -> bool:
    """Whether the lamps are stacked top to bottom (``auto``: the box is taller than wide)."""
    if cfg.layout != "auto":
        return cfg.layout == "vertical"
    h, w = shape
    return h >= w


class Layout:
    """The lamp centres along the head's axis (0..1), learned from where the lit lamps are seen."""

    def __init__(self, lamps: int, learn_rate: float) -> None:
        self.lamps = lamps
        self.learn_rate = learn_rate
        self.default = [(i + 0.5) / lamps for i in range(lamps)]
        self.learned: list[float | None] = [None] * lamps
        self.seen = [0] * lamps

    def centres(self) -> list[float]:
        trusted = [i for i in range(self.lamps) if self.seen[i] >= _SEEN_TO_TRUST]
        if not trusted:
            return list(self.default)
        pts = [(i, float(self.learned[i])) for i in trusted]  # type: ignore[arg-type]
        if len(pts) >= 2:
            xs = np.array([p[0] for p in pts], np.float64)
            ys = np.array([p[1] for p in pts], np.float64)
            slope, icpt = np.polyfit(xs, ys, 1)
            if slope <= 0.0:
                return list(self.default)  # lamps out of order: a reflection taught it; do not trust it
        else:
            i, c = pts[0]
            slope, icpt = 1.0 / self.lamps, c - i / self.lamps
        fitted = [float(icpt + slope * i) for i in range(self.lamps)]
        return [float(self.learned[i]) if i in trusted else fitted[i] for i in range(self.lamps)]  # type: ignore[arg-type]

    def spacing(self) -> float:
        c = self.centres()
        return (c[-1] - c[0]) / (self.lamps - 1) if self.lamps > 1 else 1.0

    def assign(self, position: float) -> int:
        c = self.centres()
        return int(np.argmin([abs(position - x) for x in c]))

    def learn(self, lamp: int, position: float) -> None:
        if self.learn_rate <= 0.0:
            return
        prev = self.learned[lamp]
        # The first sightings average quickly, later ones follow slowly (a shaking pole, a refocused camera).
        rate = max(self.learn_rate, 1.0 / (self.seen[lamp] + 1))
        self.learned[lamp] = position if prev is None else prev + rate * (position - prev)
        self.seen[lamp] += 1


def brightness_profile(crop: Image, vertical: bool, min_chroma: int = 40) -> np.ndarray:
    """Brightness along the head's axis: 75th percentile, across the central band, of max(B, G, R) of the
    pixels that are coloured (max - min of B, G, R >= ``min_chroma``) or near coloured ones (an overexposed
    core is white, its rim is not); grey and white background counts as dark."""
    img = crop if vertical else crop.transpose(1, 0, 2)
    hi = img.max(axis=2)
    chroma = hi.astype(np.int16) - img.min(axis=2).astype(np.int16)
    w = img.shape[1]
    k = max(3, round(0.4 * w)) | 1
    mask = cv2.dilate(
        (chroma >= min_chroma).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    v = hi.astype(np.float32) * mask
    margin = w // 5 if w >= 5 else 0
    band = v[:, margin : w - margin] if w - 2 * margin >= 1 else v
    prof: np.ndarray = np.percentile(band, 75, axis=1).astype(np.float32)
    k = max(1, len(prof) // 24) * 2 + 1
    if len(prof) >= k:
        kernel = np.ones(k, np.float32) / k
        prof = np.convolve(np.pad(prof, k // 2, mode="edge"), kernel, mode="valid").astype(np.float32)
    return prof


def _span(crop: Image, vertical: bool, lo: int, hi: int) -> Image:
    return crop[max(0, lo) : hi] if vertical else crop[:, max(0, lo) : hi]


def _hue_family(part: Image, cfg: ColourSignalConfig) -> str | None:
    """The hue family of the saturated lit pixels: warm (red, amber), cool (green), other (a magenta
    reflection, a blue sign: not lamp light) or mixed; None when too few."""
    if part.size == 0:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(part), cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    lit = (sat >= max(cfg.min_saturation, 60)) & (val >= cfg.min_lamp_value)
    warm_band = _band(hue, cfg.red_hue) | _band(hue, cfg.amber_hue)
    cool_band = _band(hue, cfg.green_hue)
    warm = int((lit & warm_band).sum())
    cool = int((lit & cool_band).sum())
    other = int((lit & ~warm_band & ~cool_band).sum())
    if max(warm, cool, other) < _MIN_VOTE_PX:
        return None
    if other > warm + cool:
        return "other"
    if warm >= 2 * cool:
        return "warm"
    if cool >= 2 * warm:
        return "cool"
    return "mixed"


def _glow(crop: Image, vertical: bool, layout: Layout, cfg: ColourSignalConfig) -> str | None:
    """On a dark frame, the lamp that glows faintly in its own colour (a dim LED, a faint arrow): pixels of
    that lamp's hue band with at least ``0.6 * min_chroma`` colour, 2 % of its cell or more. None if none."""
    n = crop.shape[0] if vertical else crop.shape[1]
    half = max(1, round(layout.spacing() * n * 0.5))
    best, best_count = None, 0
    for lamp, centre in enumerate(layout.centres()):
        c = round(centre * n)
        part = _span(crop, vertical, c - half, c + half + 1)
        if part.size == 0:
            continue
        hsv = cv2.cvtColor(np.ascontiguousarray(part), cv2.COLOR_BGR2HSV)
        chroma = part.max(axis=2).astype(np.int16) - part.min(axis=2).astype(np.int16)
        colour = ORDER[layout.lamps][lamp]
        band = {"red": cfg.red_hue, "amber": cfg.amber_hue, "green": cfg.green_hue}[colour]
        count = int(((chroma >= 0.6 * cfg.min_chroma) & _band(hsv[..., 0], band)).sum())
        if count >= max(_MIN_VOTE_PX, 0.02 * part.shape[0] * part.shape[1]) and count > best_count:
            best, best_count = colour, count
    return best


def read_lamps(crop: Image, cfg: ColourSignalConfig, layout: Layout) -> LampReading:
    """Read one crop of a head of two or three lamps (see the module notes); learns into ``layout``."""
    if crop.size == 0 or crop.shape[0] < 2 or crop.shape[1] < 2:
        return LampReading(None, True, 0.0, -1, 0.0, 0.0, None)
    vertical = is_vertical(cfg, crop.shape[:2])
    prof = brightness_profile(crop, vertical, cfg.min_chroma)
    n = len(prof)
    p = int(np.argmax(prof))
    peak = float(prof[p])
    housing = float(np.median(prof))
    contrast = peak - housing
    # The middle of the plateau around the peak (an overexposed core is flat at 255).
    top = prof >= peak - 0.1 * max(contrast, 1.0)
    lo, hi = p, p
    while lo > 0 and top[lo - 1]:
        lo -= 1
    while hi < n - 1 and top[hi + 1]:
        hi += 1
    p = (lo + hi) // 2
    position = (lo + hi + 1) / 2.0 / n
    if peak < cfg.min_lamp_value or contrast < cfg.min_contrast:
        return LampReading(None, True, position, -1, peak, contrast, None, _glow(crop, vertical, layout, cfg))
    half = max(1, round(layout.spacing() * n * 0.5))
    vote = _hue_family(_span(crop, vertical, p - half, p + half + 1), cfg)
    if vote == "other":  # bright and coloured, but not in a lamp colour: a reflection, not a lamp
        return LampReading(None, True, position, -1, peak, contrast, vote, _glow(crop, vertical, layout, cfg))
    # A second lamp: the brightest point at least one lamp spacing away from the peak.
    far = np.ones(n, bool)
    far[max(0, p - 2 * half) : p + 2 * half + 1] = False
    if far.any():
        q = int(np.flatnonzero(far)[np.argmax(prof[far])])
        second = _hue_family(_span(crop, vertical, q - half, q + half + 1), cfg)
        if float(prof[q]) - housing >= cfg.ambiguity * contrast and second != "other":
            return LampReading(None, False, position, -1, peak, contrast, vote)
    lamp = layout.assign(position)
    colour = ORDER[layout.lamps][lamp]
    if vote is not None and vote != FAMILY[colour]:
        # The position says one lamp, the hue another: not this frame. If the hue names one lamp of the
        # head (green), this is where that lamp is: learn it, so a loosely drawn box maps it in time.
        owners = [i for i, c in enumerate(ORDER[layout.lamps]) if FAMILY[c] == vote]
        if len(owners) == 1:
            layout.learn(owners[0], position)
        return LampReading(None, False, position, lamp, peak, contrast, vote)
    layout.learn(lamp, position)
    return LampReading(colour, False, position, lamp, peak, contrast, vote)


def _band(hue: np.ndarray, band: tuple[int, int]) -> np.ndarray:
    lo, hi = band
    return (hue >= lo) & (hue <= hi) if lo <= hi else (hue >= lo) | (hue <= hi)


def hue_fractions(crop: Image, cfg: ColourSignalConfig) -> dict[str, float]:
    """Fraction of the crop lit (saturation and brightness above thresholds) in each colour's hue band."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    lit = (sat >= cfg.min_saturation) & (val >= cfg.min_value)
    total = float(hue.size)
    return {
        "red": float((lit & _band(hue, cfg.red_hue)).sum()) / total,
        "amber": float((lit & _band(hue, cfg.amber_hue)).sum()) / total,
        "green": float((lit & _band(hue, cfg.green_hue)).sum()) / total,
    }

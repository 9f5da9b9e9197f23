"""Signal heads on the real clips, read frame by frame against labels made by looking at the frames
(``tests/scenarios/data/signal_heads.yaml``): the accuracy the red-light rule can count on.

Every frame of the clip goes through the ``ColourSignal`` of the head (as the pipeline does: heads are read on
every decoded frame). A frame *counts* when the label is a colour (a person can tell); it is *correct* when the
reported state (after hysteresis) is that colour, *unknown* when the state is UNKNOWN, *wrong* when it is
another colour. On ``unclear`` frames any colour the head showed around them is allowed; a colour that is
neither side's is wrong too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

import cv2
import yaml
from pydantic import BaseModel, ConfigDict, Field

from edge_agent.rules.sceneconfig import ColourSignalConfig
from edge_agent.rules.signal import ColourSignal, SignalState
from edge_agent.types import Frame, Image
from tests.scenarios.harness import DATA, MONO0, VIDEOS, WALL0, NormPoint


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Span(_Strict):
    frames: tuple[int, int]
    state: Literal["red", "amber", "green", "unclear"]


class HeadLabels(_Strict):
    id: str
    clip: str
    roi: tuple[NormPoint, NormPoint]
    lamps: int = Field(ge=1, le=3)
    note: str = Field(min_length=1)
    states: list[Span] = Field(min_length=1)

    def label(self, index: int) -> str | None:
        for span in self.states:
            if span.frames[0] <= index <= span.frames[1]:
                return span.state
        return None

    def colours(self) -> set[str]:
        return {s.state for s in self.states if s.state != "unclear"}


def load_heads(path: Path | None = None) -> list[HeadLabels]:
    doc = yaml.safe_load((path or DATA / "signal_heads.yaml").read_text(encoding="utf-8"))
    return [HeadLabels.model_validate(h) for h in doc["heads"]]


@dataclass(slots=True)
class HeadScore:
    head: HeadLabels
    frames: int = 0
    counted: int = 0
    correct: int = 0
    unknown: int = 0
    wrong: int = 0
    raw_correct: int = 0  # single-frame readings (before hysteresis) equal to the label
    raw_dark: int = 0
    wrong_frames: list[tuple[int, str, str]] = field(default_factory=list)  # (frame, label, read)
    states: Counter[str] = field(default_factory=Counter)

    @property
    def accuracy(self) -> float:
        return self.correct / self.counted if self.counted else 0.0


def clip_images(clip: str) -> Iterator[tuple[int, float, Image]]:
    """Every decoded frame of a clip: (index, file seconds, BGR image)."""
    cap = cv2.VideoCapture(str(VIDEOS / clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    index = 0
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                return
            yield index, index / fps, img
            index += 1
    finally:
        cap.release()


def score_head(head: HeadLabels, **overrides: object) -> HeadScore:
    """Read every frame of the head's clip and score the states against the labels (module notes);
    ``overrides`` change the ``ColourSignalConfig`` defaults (for tuning)."""
    cfg = ColourSignalConfig.model_validate(
        {"source": "colour", "id": head.id, "roi": head.roi, "lamps": head.lamps, **overrides}
    )
    sig: ColourSignal | None = None
    sc = HeadScore(head)
    allowed_unclear = head.colours()
    for index, t, img in clip_images(head.clip):
        if sig is None:
            sig = ColourSignal(cfg, (img.shape[1], img.shape[0]))
        frame = Frame("signal-eval", index, img, MONO0 + t, WALL0 + timedelta(seconds=t))
        sig.update(frame)
        state = sig.state(frame.mono).value
        reading = sig.last_reading
        sc.frames += 1
        sc.states[state] += 1
        label = head.label(index)
        if label is None:
            continue
        if label == "unclear":
            if state != SignalState.UNKNOWN.value and state not in allowed_unclear:
                sc.wrong += 1
                sc.wrong_frames.append((index, label, state))
            continue
        sc.counted += 1
        if reading is not None:
            sc.raw_correct += reading.state.value == label
            sc.raw_dark += reading.dark
        if state == label:
            sc.correct += 1
        elif state == SignalState.UNKNOWN.value:
            sc.unknown += 1
        else:
            sc.wrong += 1
            sc.wrong_frames.append((index, label, state))
    return sc

"""Traffic-signal state: the colour classifier on synthetic and real crops, its hysteresis, the external feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from edge_agent.rules.sceneconfig import ColourSignalConfig, ExternalSignalConfig
from edge_agent.rules.schedule import fixed_clock
from edge_agent.rules.signal import ColourSignal, ExternalSignalFeed, Reading, SignalState, classify
from edge_agent.types import Frame
from tests.edge_agent.rules.rulekit import LOCAL_MIDNIGHT_MON
from tests.paths import ASSETS

R, A, G, U = SignalState.RED, SignalState.AMBER, SignalState.GREEN, SignalState.UNKNOWN
CFG = ColourSignalConfig(source="colour", id="s", roi=((0.0, 0.0), (1.0, 1.0)))


def head(lamps: dict[int, tuple[int, int, int]], core: tuple[int, int, int] | None = None) -> np.ndarray:
    """A 24x60 BGR signal head: dark housing, three lamp positions (0 top .. 2 bottom), the given lamps lit
    (with an optional overexposed core colour)."""
    img = np.full((60, 24, 3), (40, 35, 35), np.uint8)
    for pos in range(3):
        cv2.circle(img, (12, 10 + 20 * pos), 8, (55, 50, 50), -1)
    for pos, bgr in lamps.items():
        cv2.circle(img, (12, 10 + 20 * pos), 8, bgr, -1)
        if core is not None:
            cv2.circle(img, (12, 10 + 20 * pos), 4, core, -1)
    return img


@pytest.mark.parametrize(
    ("crop", "state", "dark"),
    [
        pytest.param(head({0: (30, 30, 230)}), R, False, id="red"),
        pytest.param(head({1: (0, 170, 255)}), A, False, id="amber"),
        pytest.param(head({2: (60, 220, 30)}), G, False, id="green"),
        pytest.param(head({2: (200, 230, 0)}), G, False, id="cyan-green-led"),
        pytest.param(head({0: (40, 40, 235)}, core=(200, 240, 255)), R, False, id="red-overexposed-core"),
        pytest.param(head({2: (120, 230, 40)}, core=(245, 255, 240)), G, False, id="green-overexposed-core"),
        pytest.param(head({}), U, True, id="all-dark"),
        pytest.param(head({0: (30, 30, 230), 2: (60, 220, 30)}), U, False, id="red-and-green-ambiguous"),
        pytest.param(np.zeros((0, 0, 3), np.uint8), U, True, id="empty-crop"),
    ],
)
def test_classify_synthetic_heads(crop, state, dark):
    reading = classify(crop, CFG)
    assert (reading.state, reading.dark) == (state, dark)


def test_a_tiny_lit_spot_is_dark():
    img = head({})
    img[30, 12] = (30, 30, 230)  # one pixel: 0.07 % of the box, below min_lit_fraction 3 %
    assert classify(img, CFG).dark


def test_hue_bands_are_configurable():
    one = CFG.model_copy(update={"lamps": 1})
    orange = head({0: (0, 100, 255)})  # hue ~12: red by default
    assert classify(orange, one).state is R
    cfg = one.model_copy(update={"red_hue": (170, 8), "amber_hue": (9, 35)})
    assert classify(orange, cfg).state is A


@pytest.mark.parametrize(
    ("crop", "state"),
    [
        # Overexposed: the whole lamp reads amber or white by hue; its position says red.
        pytest.param(head({0: (0, 150, 255)}, core=(230, 250, 255)), R, id="orange-white-top-lamp-is-red"),
        pytest.param(head({2: (200, 230, 0)}, core=(250, 255, 250)), G, id="white-core-cyan-rim-is-green"),
        pytest.param(head({2: (250, 255, 250)}), U, id="white-without-a-coloured-rim-is-no-lamp"),
        pytest.param(head({1: (0, 180, 255)}), A, id="middle-is-amber"),
        pytest.param(head({0: (60, 220, 30)}), U, id="green-light-in-the-red-lamp-is-ambiguous"),
        pytest.param(head({1: (200, 60, 200)}), U, id="magenta-reflection-is-no-lamp"),
    ],
)
def test_the_lamp_position_decides_and_the_hue_only_vetoes(crop, state):
    assert classify(crop, CFG).state is state


def test_horizontal_heads_read_left_to_right():
    img = np.ascontiguousarray(head({2: (60, 220, 30)}).transpose(1, 0, 2))  # 60 wide, 24 high
    assert classify(img, CFG).state is G
    assert classify(img, CFG.model_copy(update={"layout": "vertical"})).state is not G


def test_two_lamp_heads():
    img = head({0: (30, 30, 230)})[:40]  # top two lamps of the synthetic head: red and amber positions
    cfg = CFG.model_copy(update={"lamps": 2})
    assert classify(img, cfg).state is R
    img = head({1: (60, 220, 30)})[:40]
    assert classify(img, cfg).state is G


def test_the_layout_is_learned_from_the_lit_positions():
    """A box drawn with empty space below the head: equal cells would put the head's green lamp in the amber
    cell; after red and green were each seen lit a few times the lamp centres follow them."""

    def loose(lamps: dict[int, tuple[int, int, int]]) -> np.ndarray:
        return np.vstack([head(lamps), np.full((30, 24, 3), (90, 90, 90), np.uint8)])  # 90 px, head on top

    red, green = loose({0: (30, 30, 230)}), loose({2: (60, 220, 30)})
    fixed = ColourSignal(CFG.model_copy(update={"learn_rate": 0.0}), (24, 90))
    assert classify(green, fixed.cfg, fixed.layout).state is U  # the middle cell, green light: vetoed
    sig = ColourSignal(CFG, (24, 90))
    assert sig.layout is not None
    for _ in range(6):
        classify(red, CFG, sig.layout)  # red lamp learned near 1/9 of the box
    assert sig.layout.centres()[0] == pytest.approx(10.5 / 90, abs=0.02)
    # Green light in the middle cell: vetoed by its hue, but the only green lamp is learned there.
    assert [classify(green, CFG, sig.layout).state for _ in range(6)][:5] == [U] * 5
    assert sig.layout.centres()[2] == pytest.approx(50.5 / 90, abs=0.02)
    assert classify(green, CFG, sig.layout).state is G
    assert classify(red, CFG, sig.layout).state is R


def signal(**kw: object) -> ColourSignal:
    return ColourSignal(CFG.model_copy(update=kw), (24, 60))


def feed(sig: ColourSignal, pattern: str, start: float = 0.0, dt: float = 0.2) -> str:
    """Feed readings ('R', 'A', 'G', '?' ambiguous, '.' dark) and return the reported states, one letter each."""
    out = []
    for i, c in enumerate(pattern):
        t = start + i * dt
        if c == ".":
            reading = Reading(U, True, {})
        elif c == "?":
            reading = Reading(U, False, {})
        else:
            reading = Reading({"R": R, "A": A, "G": G}[c], False, {})
        sig.observe(reading, t)
        out.append(sig.state(t).value[0].upper())
    return "".join(out)


@pytest.mark.parametrize(
    ("pattern", "states"),
    [
        pytest.param("RRRR", "URRR", id="two-readings-to-switch"),
        pytest.param("R.RRR", "UURRR", id="a-dark-frame-does-not-break-the-streak"),
        pytest.param("RRRGRRGRR", "URRUURUUR", id="a-green-reading-drops-red-at-once"),
        pytest.param("RRRGGG", "URRUGG", id="switches-after-two"),
        pytest.param("RRR.R..R...R", "URRRRRRRRRRR", id="led-flicker-holds-red"),
        pytest.param(
            "RRR" + "." * 10, "U" + "R" * 9 + "UUU", id="dark-longer-than-hold-is-unknown"
        ),  # 1.5 s hold
        pytest.param("RRR???", "URRRUU", id="ambiguous-readings-become-unknown"),
        pytest.param("AAA.A.A.A", "UAAAAAAAA", id="blinking-amber"),
    ],
)
def test_hysteresis(pattern, states):
    assert feed(signal(), pattern) == states


def test_since_is_the_first_frame_of_the_confirming_streak():
    sig = signal()
    feed(sig, "GGGRRR", start=10.0)
    assert sig.state(11.0) is R and sig.since == pytest.approx(10.6)
    sig = signal()
    feed(sig, "GGGR.R", start=10.0)  # dark frames inside the confirming streak
    assert sig.state(11.0) is R and sig.since == pytest.approx(10.6)


def test_stale_without_frames():
    sig = signal()
    feed(sig, "RRR")
    assert sig.state(0.4 + 2.0) is R
    assert sig.state(0.4 + 2.01) is U


# --- real frames ---------------------------------------------------------------------------------------------
# Heads located by looking at the clips (frames 0, 1/4, 1/2, 3/4): on both, the main head facing the camera
# at the right shows red throughout the clip and the right-turn arrow head below it shows green.
SAIGON = ASSETS / "videos" / "vn_saigon_intersection_cctv_1018x720.mp4"
HAIPHONG = ASSETS / "videos" / "vn_haiphong_intersection_cctv_1006x720.mp4"
REAL = [
    pytest.param(SAIGON, (864, 62, 890, 140), 3, R, id="saigon-main-head-red"),
    pytest.param(SAIGON, (862, 143, 892, 170), 1, G, id="saigon-right-arrow-green"),
    pytest.param(HAIPHONG, (976, 124, 1004, 190), 3, R, id="haiphong-main-head-red"),
    pytest.param(HAIPHONG, (978, 196, 1000, 224), 1, G, id="haiphong-right-arrow-green"),
]


def _frames(path, n: int) -> list[Frame]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 20.0
    out = []
    epoch = datetime(2024, 5, 13, 1, 0, tzinfo=UTC)
    for i in range(n):
        ok, img = cap.read()
        if not ok:
            break
        out.append(Frame("cam", i, img, i / fps, epoch + timedelta(seconds=i / fps)))
    cap.release()
    return out


@pytest.mark.parametrize(("path", "box", "lamps", "expected"), REAL)
def test_real_signal_heads(path, box, lamps, expected):
    if not path.is_file():
        pytest.skip(f"{path.name} is not in {ASSETS} (make assets)")
    frames = _frames(path, 60)  # 3 s
    w, h = frames[0].width, frames[0].height
    x1, y1, x2, y2 = box
    sig = ColourSignal(
        ColourSignalConfig(source="colour", id="s", roi=((x1 / w, y1 / h), (x2 / w, y2 / h)), lamps=lamps),
        (w, h),
    )
    seen = set()
    lit = 0
    for f in frames:
        sig.update(f)
        assert sig.last_reading is not None
        if not sig.last_reading.dark:
            lit += 1
            seen.add(sig.last_reading.state)
        seen.add(sig.state(f.mono))
    assert sig.state(frames[-1].mono) is expected
    assert seen <= {expected, U}, seen  # never the wrong colour, frame by frame
    assert lit >= len(frames) // 2  # LED flicker: some frames read dark, most do not


def test_external_feed():
    clock = fixed_clock(LOCAL_MIDNIGHT_MON)
    f = ExternalSignalFeed(
        ExternalSignalConfig(source="external", id="x", max_age_s=2.0, max_skew_s=0.5), clock
    )
    assert f.state(0.0) is U
    assert f.push("red", clock(10.0))
    assert f.state(10.0) is R and f.state(12.0) is R
    assert f.state(12.01) is U  # expired
    assert f.state(9.6) is R and f.state(9.4) is U  # a message from the future beyond the skew
    assert not f.push(G, clock(9.0))  # older than the latest: ignored
    assert f.state(10.5) is R
    assert f.push(G, clock(11.0)) and f.state(11.0) is G
    with pytest.raises(ValueError, match="aware"):
        f.push(R, datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        f.push("purple", clock(12.0))

"""Motion gating on synthetic frames: a moving square counts, sensor noise does not, a masked region does not."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.capture.motion import MotionDetector, build_mask
from edge_agent.config import MotionConfig

H, W = 360, 640


def background(seed: int = 0) -> np.ndarray:
    """A textured still scene (fixed noise, like asphalt), BGR uint8."""
    rng = np.random.default_rng(seed)
    return rng.integers(60, 140, size=(H, W, 3), dtype=np.uint8)


def with_square(base: np.ndarray, x: int, y: int, size: int = 40, value: int = 250) -> np.ndarray:
    out = base.copy()
    out[y : y + size, x : x + size] = value
    return out


def sensor_noise(base: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    noisy = base.astype(np.float32) + rng.normal(0.0, sigma, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def run(detector: MotionDetector, frames: list[np.ndarray]) -> list[bool]:
    return [detector.update(f).moving for f in frames]


def moving_square(x0: int, y0: int, dx: int, n: int = 5) -> list[np.ndarray]:
    bg = background()
    return [with_square(bg, x0 + i * dx, y0) for i in range(n)]


# A square moving right across the open road: 40 px at 640 wide is 10 px at 160 wide.
LEFT_HALF = [[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]]


@pytest.mark.parametrize(
    ("name", "frames", "mask", "expected"),
    [
        ("moving square", moving_square(100, 150, 30), [], [True, True, True, True, True]),
        ("still scene", [background()] * 5, [], [True, False, False, False, False]),
        ("masked moving square", moving_square(50, 150, 30), LEFT_HALF, [True, False, False, False, False]),
        ("square outside the mask", moving_square(400, 150, 30), LEFT_HALF, [True, True, True, True, True]),
    ],
)
def test_motion_table(
    name: str, frames: list[np.ndarray], mask: list[list[tuple[float, float]]], expected: list[bool]
) -> None:
    detector = MotionDetector(MotionConfig(mask=mask))
    assert run(detector, frames) == expected, name


@pytest.mark.parametrize("sigma", [2.0, 5.0, 8.0])
def test_sensor_noise_is_not_motion(sigma: float) -> None:
    """Fresh noise on every frame (sensor grain, compression shimmer) stays below the threshold after the blur."""
    rng = np.random.default_rng(1)
    bg = background()
    detector = MotionDetector(MotionConfig())
    results = [detector.update(sensor_noise(bg, rng, sigma)) for _ in range(6)]
    assert results[0].first
    assert [r.moving for r in results[1:]] == [False] * 5
    assert max(r.changed_fraction for r in results[1:]) < MotionConfig().min_changed_fraction


def test_changed_fraction_counts_only_unmasked_pixels() -> None:
    bg = np.zeros((H, W, 3), np.uint8)
    lit = bg.copy()
    lit[:, W // 2 :] = 255  # the right half lights up
    plain = MotionDetector(MotionConfig(blur=1))
    plain.update(bg)
    assert plain.update(lit).changed_fraction == pytest.approx(0.5, abs=0.01)
    masked = MotionDetector(MotionConfig(blur=1, mask=LEFT_HALF))
    masked.update(bg)
    assert masked.update(lit).changed_fraction == pytest.approx(1.0, abs=0.02)


def test_everything_masked_never_moves() -> None:
    whole = [[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]]
    detector = MotionDetector(MotionConfig(mask=whole))
    assert run(detector, moving_square(100, 100, 50)) == [True, False, False, False, False]


def test_resolution_change_restarts_the_reference() -> None:
    detector = MotionDetector(MotionConfig())
    detector.update(background())
    assert not detector.update(background()).moving
    small = np.ascontiguousarray(background()[: H // 2, : W // 2])
    assert detector.update(small).first
    assert not detector.update(small).moving


def test_reset_forgets_the_reference() -> None:
    detector = MotionDetector(MotionConfig())
    detector.update(background())
    detector.reset()
    assert detector.update(background()).first


@pytest.mark.parametrize(
    ("size", "poly", "zero_fraction"),
    [
        ((160, 90), [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)], 0.5),
        ((160, 90), [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)], 1.0),
        ((100, 100), [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)], 0.5),
    ],
)
def test_build_mask(size: tuple[int, int], poly: list[tuple[float, float]], zero_fraction: float) -> None:
    mask = build_mask(size, [poly])
    assert mask.shape == (size[1], size[0])
    assert float(np.mean(mask == 0)) == pytest.approx(zero_fraction, abs=0.03)


def test_low_resolution_width_is_honoured() -> None:
    detector = MotionDetector(MotionConfig(width=80))
    detector.update(background())
    assert detector._size == (80, 45)

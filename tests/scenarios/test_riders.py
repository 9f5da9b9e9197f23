"""How often the COCO model finds a rider but not the scooter under them on the Vietnamese CCTV clips, and what
the rider heuristic (``edge_agent/rules/motion.py``: a person faster than 1.5 body heights per second counts as
a motorbike) makes of those riders. The figures go to docs/benchmarks.md (scripts/eval_rules.py); these tests
keep them honest and catch a regression of the heuristic."""

from __future__ import annotations

import pytest

from tests.scenarios.harness import DetectionCache, RiderStats, load_rider_data, rider_stats

pytestmark = pytest.mark.scenario

DATA = load_rider_data()


@pytest.fixture(scope="module")
def stats(detection_cache: DetectionCache) -> dict[str, RiderStats]:
    return {
        c.clip: rider_stats(c, DATA.min_travel_heights, detection_cache) for c in DATA.clips if c.in_tests
    }


def test_the_model_misses_the_scooter_under_many_riders(stats: dict[str, RiderStats]) -> None:
    frames = sum(s.rider_frames for s in stats.values())
    missed = sum(s.rider_frames_without_bike for s in stats.values())
    riders = sum(len(s.riders) for s in stats.values())
    print(f"rider frames without a motorcycle box: {missed}/{frames}; riders: {riders}")
    assert riders >= 10, "the clips show well over ten riders travelling on the carriageway"
    # Saigon and Nga 4: the model misses the scooter on most frames of a rider; Hai Phong: rarely (close, sharp).
    for name, s in stats.items():
        print(
            f"  {name}: {s.rider_frames_without_bike}/{s.rider_frames} frames, "
            f"{len(s.tracks_mostly_without_bike)}/{len(s.riders)} tracks mostly without"
        )
    assert 0.3 <= missed / frames <= 0.8
    assert any(s.frame_rate_without_bike > 0.5 for s in stats.values())


def test_the_rider_heuristic_covers_some_riders_without_a_scooter(stats: dict[str, RiderStats]) -> None:
    need = [r for s in stats.values() for r in s.tracks_mostly_without_bike]
    flagged = [r for r in need if r.flagged]
    print(f"rider tracks mostly without a scooter box: {len(need)}; flagged by the heuristic: {len(flagged)}")
    assert need, "no rider without a scooter: the measurement lost its subject"
    assert flagged, "the heuristic no longer recognizes any rider whose scooter is missed"

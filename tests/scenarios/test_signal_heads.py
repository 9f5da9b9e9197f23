"""Signal heads on every real clip with a head in view, frame by frame against labels made by looking at the
frames (tests/scenarios/signals.py, data/signal_heads.yaml): per clip, at least 95 % of the frames where a
person can tell are read correctly, and no frame is read as a colour the head does not show."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from tests.scenarios.harness import VIDEOS, load_scenarios, score
from tests.scenarios.signals import HeadScore, load_heads, score_head

pytestmark = pytest.mark.scenario

HEADS = load_heads()
CLIPS = sorted({h.clip for h in HEADS})


def test_the_labels_cover_every_frame_of_every_head():
    for head in HEADS:
        spans = sorted(s.frames for s in head.states)
        assert spans[0][0] == 0, head.id
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start == end + 1, f"{head.id}: gap or overlap at {end}-{start}"


@pytest.mark.parametrize("clip", CLIPS)
def test_signal_accuracy_per_clip(clip: str) -> None:
    if not (VIDEOS / clip).is_file():
        pytest.skip(f"{clip} is not in the assets (make assets)")
    scores: list[HeadScore] = [score_head(h) for h in HEADS if h.clip == clip]
    per: dict[str, int] = defaultdict(int)
    for sc in scores:
        per["frames"] += sc.frames
        per["counted"] += sc.counted
        per["correct"] += sc.correct
        per["wrong"] += sc.wrong
        assert sc.frames >= sc.head.states[-1].frames[1] + 1, f"{sc.head.id}: clip shorter than its labels"
        assert sc.wrong == 0, f"{sc.head.id}: read the wrong colour on (frame, label, read) {sc.wrong_frames}"
        assert sc.accuracy >= 0.95, f"{sc.head.id}: {sc.correct}/{sc.counted}, unknown on {sc.unknown}"
    assert per["counted"] > 0
    assert per["correct"] / per["counted"] >= 0.95, dict(per)


def test_the_queue_leaving_on_green_raises_no_red_light(scenario_run) -> None:
    """The phone clip's head turns green at frame 738 (24.6 s): the riders and the car waiting at the line
    leave then; no START may date after the change (the labelled red-phase crossings are scored as usual)."""
    [scenario] = [s for s in load_scenarios() if s.id == "redlight-phone-whole-clip"]
    if not (VIDEOS / scenario.clip).is_file():
        pytest.skip(f"{scenario.clip} is not in the assets (make assets)")
    run = scenario_run(scenario)
    assert run.starts, "the red-phase crossings raise events"
    assert all(s.t < 24.5 for s in run.starts), [s.label() for s in run.starts]
    assert score(scenario, run.starts).fp == 0

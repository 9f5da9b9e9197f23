"""Incidents survive track breaks on real footage: the illegal-stopping scenarios played as the demo plays
them, looped (the tracker loses every car at the cut and finds it again, often under a new id), raise the
same incidents as the clip played once: no second START for a car that stands through the loop."""

from __future__ import annotations

import pytest

from edge_agent.contract import EventType, Phase
from tests.scenarios.harness import DetectionCache, load_scenarios, run_scenario, score

pytestmark = pytest.mark.scenario

STOPPING = [s for s in load_scenarios() if s.rule is EventType.ILLEGAL_STOPPING and s.expect == "positive"]


@pytest.mark.parametrize("scenario", STOPPING, ids=[s.id for s in STOPPING])
def test_a_looped_clip_raises_the_same_incidents_as_once(scenario, detection_cache: DetectionCache, tmp_path):
    once = run_scenario(scenario, detection_cache, tmp_path / "once")
    twice = run_scenario(scenario, detection_cache, tmp_path / "twice", passes=2)
    assert twice.frames == 2 * once.frames
    starts_once = sorted(round(s.t, 2) for s in once.starts)
    starts_twice = sorted(round(s.t, 2) for s in twice.starts)
    assert starts_once, "the scenario raises incidents"
    assert starts_twice == starts_once, (
        f"once: {[s.label() for s in once.starts]}; looped: {[s.label() for s in twice.starts]}"
    )
    assert score(scenario, twice.starts).tp == score(scenario, once.starts).tp
    # Every incident ends (at the end of the run at the latest), each exactly once, under its START's id.
    for run in (once, twice):
        starts = {e.event_id for e, _ in run.events if e.phase is Phase.START}
        ends = [e.event_id for e, _ in run.events if e.phase is Phase.END]
        assert sorted(ends) == sorted(starts)
    # Some incident outlived a track break at the loop: its END lists more than one track id.
    ends_twice = [e for e, _ in twice.events if e.phase is Phase.END]
    assert any(len({o.track_id for o in e.objects}) > 1 for e in ends_twice), [
        [o.track_id for o in e.objects] for e in ends_twice
    ]

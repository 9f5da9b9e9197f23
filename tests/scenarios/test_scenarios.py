"""Every rule on the real clips (tests/scenarios/data/*.yaml): positives raise an event whose START lies in a
window labelled from the footage, negatives raise none. Scenarios the model, tracker or rule cannot pass today
carry a ``known_failure`` and are strict xfails (they count in docs/benchmarks.md all the same)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge_agent.contract import EventType
from tests.scenarios.harness import TOLERANCE_S, Run, Scenario, load_scenarios, score

pytestmark = pytest.mark.scenario

SCENARIOS = load_scenarios()


def _param(s: Scenario) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=s.known_failure)] if s.known_failure else []
    return pytest.param(s, id=s.id, marks=marks)


def _explain(s: Scenario, run: Run) -> str:
    windows = "; ".join(f"{w.start} {w.note}" for w in s.windows) or "none"
    starts = "; ".join(st.label() for st in run.starts) or "none"
    return f"{s.id}: expected windows (+/- {TOLERANCE_S} s): {windows}. Got: {starts}"


def test_every_rule_has_a_positive_and_a_negative_scenario():
    for rule in EventType:
        kinds = {s.expect for s in SCENARIOS if s.rule is rule}
        assert kinds == {"positive", "negative"}, f"{rule.value}: {kinds}"


@pytest.mark.parametrize("scenario", [_param(s) for s in SCENARIOS])
def test_scenario(scenario: Scenario, scenario_run: Callable[[Scenario], Run]) -> None:
    run = scenario_run(scenario)
    assert run.detect_frames > 0, f"{scenario.clip} gave no frames"
    result = score(scenario, run.starts)
    if scenario.expect == "positive":
        assert result.tp >= 1, _explain(scenario, run)
    else:
        assert not result.starts, _explain(scenario, run)

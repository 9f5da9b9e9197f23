"""The scenario scorer and data loader (no model): how STARTs are matched to labelled windows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from tests.scenarios.harness import WALL0, Scenario, Start, load_scenarios, metrics, score

BASE: dict[str, Any] = {
    "rule": "wrong_way",
    "clip": "x.mp4",
    "labelled": "by hand",
    "demonstrates": "scoring",
    "camera": {
        "zones": [{"id": "lane", "polygon": [[0, 0], [1, 0], [1, 1]], "direction": "up"}],
        "rules": [{"id": "ww", "type": "wrong_way", "zone": "lane"}],
    },
}


def scenario(expect: str = "positive", windows: list[dict[str, Any]] | None = None) -> Scenario:
    return Scenario.model_validate({"id": "s", "expect": expect, "windows": windows or [], **BASE})


def start(t: float, anchor: tuple[float, float] = (0.5, 0.5)) -> Start:
    event = SimpleNamespace(started_at=WALL0 + timedelta(seconds=t), objects=[])
    return Start(event, t, t + 1.0, (anchor,))  # type: ignore[arg-type]


def test_a_start_inside_a_window_or_its_tolerance_matches():
    s = scenario(windows=[{"start": [2.0, 3.0], "note": "car"}])
    assert score(s, [start(2.5)]).tp == 1
    assert score(s, [start(1.6)]).tp == 1  # 0.4 s early: within the 0.5 s tolerance
    result = score(s, [start(3.7)])
    assert (result.tp, result.fp, len(result.matched)) == (0, 1, 0)


def test_one_event_per_window_unless_many():
    one = scenario(windows=[{"start": [0.0, 10.0], "note": "car"}])
    assert (score(one, [start(1.0), start(2.0)]).tp, score(one, [start(1.0), start(2.0)]).fp) == (1, 1)
    many = scenario(windows=[{"start": [0.0, 10.0], "many": True, "note": "traffic"}])
    assert score(many, [start(1.0), start(2.0)]).tp == 2


def test_regions_tell_simultaneous_incidents_apart():
    s = scenario(
        windows=[
            {"start": [0.0, 5.0], "region": [[0.0, 0.0], [0.5, 1.0]], "note": "left car"},
            {"start": [0.0, 5.0], "region": [[0.5, 0.0], [1.0, 1.0]], "note": "right car"},
        ]
    )
    result = score(s, [start(1.0, (0.7, 0.5)), start(1.0, (0.2, 0.5)), start(1.0, (0.8, 0.5))])
    assert (result.tp, result.fp, result.matched) == (2, 1, {0, 1})


def test_negative_scenarios_pass_only_without_events():
    s = scenario("negative")
    assert score(s, []).passed and not score(s, [start(1.0)]).passed


def test_metrics_per_rule():
    pos = scenario(windows=[{"start": [0.0, 1.0], "note": "a"}, {"start": [5.0, 6.0], "note": "b"}])
    m = metrics([score(pos, [start(0.5), start(3.0)]), score(scenario("negative"), [start(2.0)])])[
        "wrong_way"
    ]
    assert (m.events, m.tp, m.windows, m.windows_hit) == (3, 1, 2, 1)
    assert m.precision == pytest.approx(1 / 3) and m.recall == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expect": "positive", "windows": []}, "needs expected windows"),
        ({"expect": "negative", "windows": [{"start": [0, 1], "note": "x"}]}, "has no expected windows"),
        ({"rule": "red_light"}, "must all be of type red_light"),
    ],
)
def test_inconsistent_scenarios_are_refused(change, message):
    with pytest.raises(ValidationError, match=message):
        Scenario.model_validate({"id": "s", "expect": "negative", **{**BASE, **change}})


def test_the_data_loads_and_every_camera_config_is_valid():
    scenarios = load_scenarios()
    files = sorted(p.stem for p in (Path(__file__).parent / "data").glob("*.yaml"))
    assert {s.rule.value for s in scenarios} <= set(files)  # one file per rule type (and riders.yaml)
    assert len(scenarios) >= 18

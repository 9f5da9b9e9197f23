"""Fixtures of the rule scenarios: one detection cache and one run per scenario for the whole session.

The real model runs once per (clip, detect_fps) frame; every scenario on that clip reuses the boxes (see
``harness.DetectionCache``). Set ``STREETWATCH_SCENARIO_CACHE`` to a folder to keep the boxes on disk between
sessions while working on the scenarios (keyed by model, clip and detector settings).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.scenarios.harness import DetectionCache, Run, Scenario, run_scenario


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "scenario: rule scenarios on the real clips through the real detector and tracker (about 2 minutes on 2 "
        "cores, nearly all of it detection: about 900 frames)",
    )


@pytest.fixture(scope="session")
def detection_cache() -> Iterator[DetectionCache]:
    folder = os.environ.get("STREETWATCH_SCENARIO_CACHE")
    cache = DetectionCache(Path(folder) if folder else None)
    yield cache
    cache.save()


@pytest.fixture(scope="session")
def scenario_run(
    detection_cache: DetectionCache, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Scenario], Run]:
    """Run a scenario once per session (snapshot evidence only) and hand out the same result afterwards."""
    runs: dict[str, Run] = {}

    def get(scenario: Scenario) -> Run:
        if scenario.id not in runs:
            runs[scenario.id] = run_scenario(
                scenario, detection_cache, tmp_path_factory.mktemp(f"evidence-{scenario.id}")
            )
        return runs[scenario.id]

    return get

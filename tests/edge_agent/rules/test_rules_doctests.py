"""The runnable examples in the rule modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "edge_agent.classes",
    "edge_agent.rules.sceneconfig",
    "edge_agent.rules.schedule",
    "edge_agent.rules.zonestate",
    "edge_agent.rules.motion",
    "edge_agent.rules.homography",
    "edge_agent.rules.sidewalk",
    "edge_agent.rules.stopping",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0

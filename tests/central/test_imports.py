"""Central must not load the edge's heavy libraries: a server without the `edge` extra has to start, and the
wire contract it shares with the nodes is pydantic only."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "cv2", "onnxruntime", "openvino", "scipy")


@pytest.mark.parametrize("module", ["central.app", "edge_agent.contract", "edge_agent.config"])
def test_importing_loads_no_heavy_edge_library(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "", f"{module} loaded {done.stdout.strip()}"

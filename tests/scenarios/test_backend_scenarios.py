"""Every installed inference backend gives the same scenario results as onnxruntime (same model file).

The fp32 graph (what OpenVINO deploys) runs through onnxruntime and through each other installed backend; the
rule scenarios on three clips (speeding, gathering, illegal stopping) must end with the same verdicts and the
same incidents: as many STARTs, dated within one detect interval of each other.
"""

from __future__ import annotations

import pytest

from edge_agent.config import ModelConfig
from edge_agent.perception.detector import backends
from tests.fp32_model import make_fp32_dynbatch
from tests.paths import MODEL_640
from tests.scenarios.harness import DetectionCache, load_scenarios, run_scenario, score

IDS = (
    "speeding-motorway-low-limit",
    "speeding-motorway-high-limit",
    "gathering-parkinglot-group-of-four",
    "gathering-parkinglot-five-needed",
    "stopping-tokyo-left-kerb",
    "stopping-tokyo-moving-lanes",
)
OTHERS = [b for b in backends.installed_backends() if b != backends.ONNXRUNTIME]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", OTHERS)
def test_same_scenario_results_as_onnxruntime(backend, tmp_path_factory):
    if not MODEL_640.is_file():
        pytest.skip("assets missing: python scripts/fetch_assets.py --mirror <dir>")
    pytest.importorskip("onnx")
    model = make_fp32_dynbatch(tmp_path_factory.mktemp("models"))
    scenarios = [s for s in load_scenarios() if s.id in IDS]
    assert len(scenarios) == len(IDS)
    caches = {
        name: DetectionCache(config=ModelConfig(path=model, backend=name, threads=1))  # type: ignore[arg-type]
        for name in (backends.ONNXRUNTIME, backend)
    }
    compared = 0
    for s in scenarios:
        runs = {n: run_scenario(s, c, tmp_path_factory.mktemp(f"{n}-{s.id}")) for n, c in caches.items()}
        ref, got = runs[backends.ONNXRUNTIME], runs[backend]
        assert score(s, got.starts).passed == score(s, ref.starts).passed, s.id
        ref_t = sorted(x.t for x in ref.starts)
        got_t = sorted(x.t for x in got.starts)
        assert len(got_t) == len(ref_t), f"{s.id}: {backend} {got_t} vs onnxruntime {ref_t}"
        interval = 1.0 / s.camera_config().detect_fps
        assert all(abs(a - b) <= interval + 1e-6 for a, b in zip(got_t, ref_t, strict=True)), s.id
        compared += len(ref_t)
    assert caches[backend].detector.backend_name == backend
    assert compared >= 5, "the scenarios must raise incidents for the comparison to mean something"

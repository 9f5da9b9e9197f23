"""Smoke test of the edge benchmark: a 2-second, one-camera run of the real agent path writes every field.

No timing thresholds: the figures depend on the machine and its load; only their presence and finiteness are
checked. The docs are not touched (``--no-write``) and the Ultralytics baseline is skipped.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from tests.paths import MODEL_640, ROOT, TOKYO

SCRIPT = ROOT / "scripts" / "bench_edge.py"
RUN_FIELDS = (
    "analysed_per_s",
    "wanted_per_s",
    "decoded_per_s",
    "converted_per_s",
    "skipped_no_motion",
    "dropped_scheduler",
    "dropped_unseen",
    "dropped_total",
    "cpu_percent",
    "peak_rss_mb",
    "load_before",
    "load_after",
    "loop_ms_per_frame",
)
STAGES = ("decode", "preprocess", "inference", "postprocess", "tracking", "rules", "other")


def _finite_numbers(obj: object) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _finite_numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _finite_numbers(v)]
    return []


def test_bench_edge_one_camera_two_seconds(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--cameras", "1", "--seconds", "2", "--no-baseline", "--no-write"]
    cmd += ["--model", str(MODEL_640), "--clips", str(TOKYO), "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    md = proc.stdout
    assert "<!-- bench:edge -->" in md and "<!-- /bench:edge -->" in md
    assert "| backend | K | mode | analysed/s | wanted/s | served |" in md
    assert "| backend | K | mode | decode | preprocess | inference |" in md

    report = json.loads(out.read_text(encoding="utf-8"))
    for key in ("machine", "load_start", "load_end", "runs", "clips"):
        assert key in report
    assert report["baseline"] == []
    (run,) = report["runs"]
    assert run["k"] == 1 and run["mode"] == "gated"
    for key in RUN_FIELDS:
        assert key in run, key
    assert set(run["stages_ms"]) == set(STAGES)
    assert run["analysed"] > 0  # a 2 s window at 5 fps sees frames
    assert run["agent_errors"] == []
    numbers = _finite_numbers(report)
    assert numbers and all(math.isfinite(x) for x in numbers)

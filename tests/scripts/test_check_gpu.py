"""scripts/check_gpu.py without a GPU: it says so and exits 0 (the project never needs a GPU); with a fake
``nvidia-smi`` but a CPU-only onnxruntime it names the missing provider and still exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.paths import ROOT

SCRIPT = ROOT / "scripts" / "check_gpu.py"


def _run(env_path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": env_path}
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_no_gpu_exits_cleanly_saying_so(tmp_path):
    proc = _run(str(tmp_path))  # an empty PATH folder: no nvidia-smi
    assert proc.returncode == 0, proc.stderr
    assert "no GPU check on this machine: no NVIDIA GPU" in proc.stdout


def test_gpu_without_gpu_provider_names_the_fix(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return  # a real GPU build: the other test path applies
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Fake GPU, 1.0'\n")
    smi.chmod(0o755)
    proc = _run(f"{tmp_path}{os.pathsep}/usr/bin:/bin")
    assert proc.returncode == 0, proc.stderr
    assert "GPU Fake GPU, 1.0 present but onnxruntime" in proc.stdout
    assert "onnxruntime-gpu" in proc.stdout

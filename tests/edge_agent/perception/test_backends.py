"""Inference backends: every installed runtime gives onnxruntime's detections on real frames; ``auto`` keeps the
fastest; a runtime named in the config but missing is refused at start.

The real-frame comparison runs the fp32 graph of the shipped model (made by models/tooling at fixture time, as
scripts/quantize_openvino.py does) through each installed runtime: that is the graph OpenVINO deploys. The
shipped dynamic-int8 file itself is not compared: its activation scales are computed at run time, and OpenVINO's
ConvInteger path rounds them differently (boxes up to ~5 px apart, and 5x slower than fp32 there anyway).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.config import ModelConfig
from edge_agent.perception.detector import backends
from edge_agent.perception.detector.onnx_detector import DetectorError, OnnxDetector
from edge_agent.types import Detections, Image
from tests.fp32_model import make_fp32_dynbatch
from tests.paths import ASSETS, MODEL_640

CLIPS = (
    "vn_saigon_intersection_cctv_1018x720.mp4",
    "vn_haiphong_intersection_cctv_1006x720.mp4",
    "tokyo_omotesando_street_sidewalk_960x540.mp4",
)
OTHERS = [b for b in backends.installed_backends() if b != backends.ONNXRUNTIME]
BOX_TOL_PX = 2.0
# Boxes scored near the threshold may appear in one runtime and not the other (float summation order);
# the comparison is over confident boxes, which is what tracks and rules are made of.
CONFIDENT = 0.3


def _frames() -> list[Image]:
    out = []
    for name in CLIPS:
        cap = cv2.VideoCapture(str(ASSETS / "videos" / name))
        for index in (0, 40):
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, img = cap.read()
            assert ok, f"{name} frame {index}"
            out.append(np.asarray(img, np.uint8))
        cap.release()
    return out


@pytest.fixture(scope="module")
def frames() -> list[Image]:
    if not MODEL_640.is_file():
        pytest.skip("assets missing: python scripts/fetch_assets.py --mirror <dir>")
    return _frames()


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model dequantized to fp32 with a dynamic batch (what the OpenVINO path runs)."""
    pytest.importorskip("onnx")
    return make_fp32_dynbatch(tmp_path_factory.mktemp("models"))


def _confident(d: Detections) -> Detections:
    return d.filter(d.scores >= CONFIDENT)


def assert_same_detections(ref: Detections, other: Detections, where: str) -> None:
    """Every confident box of one has a same-label box within 2 px (every edge) in the other, both ways."""
    for a, b, direction in ((ref, other, "missing"), (other, ref, "extra")):
        strong = _confident(a)
        for i in range(len(strong)):
            same = b.class_ids == strong.class_ids[i]
            err = np.abs(b.xyxy[same] - strong.xyxy[i]).max(axis=1) if same.any() else np.array([np.inf])
            assert err.min() <= BOX_TOL_PX, (
                f"{where}: {direction} {strong.label(i)} {strong.xyxy[i].round(1).tolist()} "
                f"score {strong.scores[i]:.2f}; nearest same-label box {err.min():.1f} px away"
            )


@pytest.mark.parametrize("backend", OTHERS)
def test_backend_gives_onnxruntimes_detections(frames, fp32_model, backend):
    path = fp32_model
    ref = OnnxDetector(ModelConfig(path=path, backend="onnxruntime", threads=1))
    other = OnnxDetector(ModelConfig(path=path, backend=backend, threads=1))
    assert other.backend_name == backend
    assert other.model_sha256 == ref.model_sha256
    assert other.names == ref.names and other.input_size == ref.input_size
    total = 0
    for i, (r, o) in enumerate(zip(ref.detect(frames), other.detect(frames), strict=True)):
        assert_same_detections(r, o, f"{backend} frame {i}")
        total += len(_confident(r))
    assert total >= 20, "the frames must hold enough street objects for the comparison to mean something"


@pytest.mark.parametrize("backend", OTHERS)
def test_batched_run_equals_single_runs(frames, fp32_model, backend):
    det = OnnxDetector(ModelConfig(path=fp32_model, backend=backend, threads=1))
    batch = det.detect(frames[:3])
    for i, img in enumerate(frames[:3]):
        assert_same_detections(det.detect([img])[0], batch[i], f"{backend} batch item {i}")


def test_missing_backend_is_refused_at_start(monkeypatch):
    monkeypatch.setattr(backends, "installed", lambda name: name != backends.OPENVINO)
    with pytest.raises(DetectorError, match=r"backend 'openvino' is configured but not installed"):
        OnnxDetector(ModelConfig(path=MODEL_640, backend="openvino"))


def test_onnxruntime_cannot_read_openvino_ir(tmp_path):
    xml = tmp_path / "m.xml"
    xml.write_text("<net/>")
    xml.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(DetectorError, match=r"onnxruntime reads \.onnx files only"):
        OnnxDetector(ModelConfig(path=xml, backend="onnxruntime"))


class _Timed:
    """A runtime stand-in that takes ``ms`` per run."""

    def __init__(self, name: str, ms: float) -> None:
        self.name, self.version, self.device = name, "0", "CPU"
        self.input_shape: list[int | str | None] = [1, 3, 64, 64]
        self.output_shape: list[int | str | None] = [1, 84, 8]
        self.metadata: dict[str, str] = {}
        self.ms = ms
        self.runs = 0

    def run(self, tensor):
        self.runs += 1
        time.sleep(self.ms / 1e3)
        return np.zeros((tensor.shape[0], 84, 8), np.float32)


@pytest.mark.parametrize(
    ("times", "chosen"),
    [
        ({"onnxruntime": 30.0, "openvino": 5.0}, "openvino"),
        ({"onnxruntime": 5.0, "openvino": 30.0}, "onnxruntime"),
        ({"onnxruntime": 10.0, "openvino": None}, "onnxruntime"),  # openvino cannot load this model
    ],
)
def test_auto_keeps_the_fastest_loadable_backend(monkeypatch, times, chosen):
    def load(name, data, path, threads, providers):
        if times[name] is None:
            raise backends.BackendError("cannot read it")
        return _Timed(name, times[name])

    monkeypatch.setattr(backends, "load", load)
    backend, choice = backends.choose(
        b"", Path("m.onnx"), 1, None, lambda b: np.zeros((1, 3, 64, 64), np.float32), list(times)
    )
    assert backend.name == chosen == choice.chosen
    assert (choice.ms["openvino"] is None) == (times["openvino"] is None)
    assert chosen in choice.describe()


def test_auto_with_nothing_usable_says_why(monkeypatch):
    def load(name, data, path, threads, providers):
        raise backends.BackendError(f"{name} says no")

    monkeypatch.setattr(backends, "load", load)
    with pytest.raises(backends.BackendError, match=r"onnxruntime says no.*openvino says no"):
        backends.choose(
            b"", Path("m.onnx"), 1, None, lambda b: np.zeros(1, np.float32), list(backends.BACKENDS)
        )


def test_auto_on_the_real_model_reports_its_choice():
    det = OnnxDetector(ModelConfig(path=MODEL_640, backend="auto", threads=1))
    assert det.choice is not None
    assert det.backend_name == det.choice.chosen
    assert det.choice.ms[det.backend_name] is not None
    assert set(det.choice.ms) == set(backends.installed_backends())

"""OnnxDetector's reading of model I/O and its batching, against a fake onnxruntime session (backend onnxruntime).

The shipped models all have a fixed batch of 1 and fixed 640/320 inputs, so the dynamic-axis branches can only
be reached with a stand-in session; the real model is exercised in test_detector_real.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from edge_agent.config import ModelConfig
from edge_agent.perception.detector.onnx_detector import DetectorError, OnnxDetector

COCO_NAMES = "{" + ", ".join(f"{i}: 'c{i}'" for i in range(80)) + "}"


@dataclass
class Arg:
    name: str
    shape: list[Any]


@dataclass
class Meta:
    custom_metadata_map: dict[str, str]


@dataclass
class FakeSession:
    """Answers like an Ultralytics export: one box per image, class = the image's centre red value."""

    in_shape: list[Any]
    out_shape: list[Any]
    metadata: dict[str, str]
    batches: list[int] = field(default_factory=list)
    threads: int = 0
    providers: list[str] = field(default_factory=list)
    fail: bool = False

    def get_inputs(self) -> list[Arg]:
        return [Arg("images", self.in_shape)]

    def get_outputs(self) -> list[Arg]:
        return [Arg("output0", self.out_shape)]

    def get_modelmeta(self) -> Meta:
        return Meta(self.metadata)

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.fail:
            raise RuntimeError("boom")
        x = feed["images"]
        b, _, s, _ = x.shape
        self.batches.append(b)
        channels = self.out_shape[1] if isinstance(self.out_shape[1], int) else 84
        out = np.zeros((b, channels, 8), np.float32)
        for i in range(b):
            out[i, :4, 0] = (s / 2, s / 2, s / 4, s / 4)
            out[i, 4 + round(float(x[i, 0, s // 2, s // 2]) * 255) % (channels - 4), 0] = 0.9
        return [out]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "fake.onnx"
    path.write_bytes(b"not really onnx, the session is faked")
    return path


def install(monkeypatch, in_shape, out_shape=None, metadata=None) -> FakeSession:
    fake = FakeSession(
        in_shape,
        out_shape or [in_shape[0], 84, 8],
        {"names": COCO_NAMES, "imgsz": "[640, 640]"} if metadata is None else metadata,
    )

    def factory(data: bytes, sess_options: Any = None, providers: Any = None) -> FakeSession:
        fake.threads = sess_options.intra_op_num_threads
        fake.providers = list(providers)
        return fake

    monkeypatch.setattr(ort, "InferenceSession", factory)
    return fake


@pytest.mark.parametrize(
    ("in_shape", "metadata", "configured", "size", "dynamic"),
    [
        ([1, 3, 640, 640], None, None, 640, False),
        ([1, 3, 640, 640], None, 640, 640, False),
        (["batch", 3, 640, 640], None, None, 640, True),
        ([None, 3, 640, 640], None, None, 640, True),
        (["b", 3, "h", "w"], {"names": COCO_NAMES, "imgsz": "[416, 416]"}, None, 416, True),
        (["b", 3, "h", "w"], {"names": COCO_NAMES, "imgsz": "512"}, None, 512, True),
        (["b", 3, "h", "w"], None, 320, 320, True),
    ],
)
def test_input_size_and_batch_axis_come_from_the_model(
    monkeypatch, model_file, in_shape, metadata, configured, size, dynamic
):
    install(monkeypatch, in_shape, metadata=metadata)
    det = OnnxDetector(ModelConfig(backend="onnxruntime", path=model_file, input_size=configured))
    assert (det.input_size, det.dynamic_batch) == (size, dynamic)
    assert det.names[:2] == ("c0", "c1") and len(det.names) == 80
    assert det.model_name == "fake.onnx"
    assert det.model_sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("in_shape", "out_shape", "metadata", "configured", "error", "match"),
    [
        ([1, 3, 640, 640], None, None, 320, ValueError, "input_size: 320 .* fixed 640x640"),
        ([1, 3, "h", "w"], None, {"names": COCO_NAMES}, None, DetectorError, "set model.input_size"),
        ([4, 3, 640, 640], None, None, None, DetectorError, "fixed batch size 4"),
        ([1, 3, 640, 480], None, None, None, DetectorError, "not square"),
        ([1, 3, 640, 640], [1, 9, 8], None, None, DetectorError, "5 class rows but metadata names 80"),
        ([1, 3, 640, 640], [1, "c", 8], {}, None, DetectorError, "no 'names' metadata"),
        ([1, 3, 640], None, None, None, DetectorError, "expected input"),
    ],
)
def test_unusable_model_io_is_rejected(
    monkeypatch, model_file, in_shape, out_shape, metadata, configured, error, match
):
    install(monkeypatch, in_shape, out_shape=out_shape or [1, 84, 8], metadata=metadata)
    with pytest.raises(error, match=match):
        OnnxDetector(ModelConfig(backend="onnxruntime", path=model_file, input_size=configured))


def test_names_fall_back_to_indices_without_metadata(monkeypatch, model_file):
    install(monkeypatch, [1, 3, 640, 640], out_shape=[1, 7, 8], metadata={})
    assert OnnxDetector(ModelConfig(backend="onnxruntime", path=model_file)).names == ("0", "1", "2")


def frames() -> list[np.ndarray]:
    """Three frames of different sizes whose centre red value (3, 7, 11) the fake turns into the class id."""
    out = []
    for red, (h, w) in zip((3, 7, 11), [(480, 640), (720, 1280), (640, 480)], strict=True):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 2] = red
        out.append(img)
    return out


@pytest.mark.parametrize(("in_shape", "runs"), [(["batch", 3, 640, 640], [3]), ([1, 3, 640, 640], [1, 1, 1])])
def test_detect_batches_only_when_the_batch_axis_is_dynamic(monkeypatch, model_file, in_shape, runs):
    fake = install(monkeypatch, in_shape)
    det = OnnxDetector(ModelConfig(backend="onnxruntime", path=model_file))
    assert fake.batches == [1], "one warm-up run at construction"
    assert det.last_timing is None
    results = det.detect(frames())
    assert fake.batches[1:] == runs
    assert [r.class_ids.tolist() for r in results] == [[3], [7], [11]]
    # each box is mapped back into its own frame: 160 input px centred -> 320 px centred in the 1280x720 frame
    np.testing.assert_allclose(results[1].xyxy, [[480, 200, 800, 520]], atol=1e-3)
    timing = det.last_timing
    assert timing is not None and timing.images == 3
    assert min(timing.preprocess_ms, timing.inference_ms, timing.postprocess_ms) >= 0.0
    assert timing.total_ms == pytest.approx(
        timing.preprocess_ms + timing.inference_ms + timing.postprocess_ms
    )


def test_detect_of_nothing_runs_nothing(monkeypatch, model_file):
    fake = install(monkeypatch, [1, 3, 640, 640])
    assert OnnxDetector(ModelConfig(backend="onnxruntime", path=model_file)).detect([]) == []
    assert fake.batches == [1]


def test_class_filter_uses_model_names(monkeypatch, model_file):
    install(monkeypatch, [1, 3, 640, 640])
    det = OnnxDetector(ModelConfig(backend="onnxruntime", path=model_file, classes=["c7"]))
    assert [len(r) for r in det.detect(frames())] == [0, 1, 0]


def test_runtime_failure_is_a_detector_error(monkeypatch, model_file):
    fake = install(monkeypatch, [1, 3, 640, 640])
    det = OnnxDetector(ModelConfig(backend="onnxruntime", path=model_file))
    fake.fail = True
    with pytest.raises(DetectorError, match=r"inference failed on fake\.onnx"):
        det.detect(frames()[:1])


@pytest.mark.parametrize(("threads", "expected"), [(0, 0), (3, 3)])
def test_threads_and_default_provider(monkeypatch, model_file, threads, expected):
    fake = install(monkeypatch, [1, 3, 640, 640])
    OnnxDetector(ModelConfig(backend="onnxruntime", path=model_file, threads=threads))
    assert fake.threads == expected
    assert fake.providers == ["CPUExecutionProvider"]


def test_unavailable_provider_is_named(monkeypatch, model_file):
    install(monkeypatch, [1, 3, 640, 640])
    with pytest.raises(DetectorError, match=r"\['NoSuchExecutionProvider'\] are not available"):
        OnnxDetector(
            ModelConfig(backend="onnxruntime", path=model_file), providers=["NoSuchExecutionProvider"]
        )


def test_providers_from_config_auto_and_refusal() -> None:
    import onnxruntime as ort

    from edge_agent.config import ModelConfig
    from edge_agent.perception.detector.onnx_detector import DetectorError, OnnxDetector, resolve_providers
    from tests.paths import MODEL_640

    assert resolve_providers(["auto"], ort.get_available_providers())[-1] == "CPUExecutionProvider"
    det = OnnxDetector(ModelConfig(path=MODEL_640, backend="onnxruntime", providers=["auto"]))
    assert det.backend.session.get_providers()[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(DetectorError, match=r"CUDAExecutionProvider.*not available"):
            OnnxDetector(
                ModelConfig(
                    path=MODEL_640,
                    backend="onnxruntime",
                    providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                )
            )

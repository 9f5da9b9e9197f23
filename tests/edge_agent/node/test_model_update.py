"""The ``model`` command on the node: download checked by hash, trial, live swap, automatic rollback."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from edge_agent.config import ModelConfig
from edge_agent.contract import ModelArgs
from edge_agent.node.commands import CommandRefused, Progress
from edge_agent.node.model_update import ACTIVE_FILE, ModelUpdate
from edge_agent.perception.detector.onnx_detector import OnnxDetector
from edge_agent.perception.detector.slot import DetectorSlot
from edge_agent.types import Detections, Frame, Image
from tests.paths import ASSETS, MODEL_640

MODEL_320 = ASSETS / "models" / "yolo11n_coco_320_int8dyn.onnx"


class FakeDetector:
    def __init__(self, name: str, *, fail: bool = False, block: threading.Event | None = None) -> None:
        self.model_name, self.model_sha256 = name, hashlib.sha256(name.encode()).hexdigest()
        self.fail, self.block, self.calls = fail, block, 0
        self.backend_name, self.backend_version = "fake", "1"

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        self.calls += 1
        if self.block is not None:
            self.block.wait(10)
        if self.fail:
            raise RuntimeError("bad output shape")
        return [Detections.empty() for _ in images]


def frame() -> Frame:
    image = np.zeros((360, 640, 3), dtype=np.uint8)
    return Frame(camera_id="cam-1", index=0, image=image, mono=0.0, wall=datetime.now(UTC))


def args_for(data: bytes, name: str = "new.onnx", **extra: float) -> ModelArgs:
    sha = hashlib.sha256(data).hexdigest()
    return ModelArgs(name=name, sha256=sha, size=len(data), url=f"/api/v1/models/{sha}/file", **extra)  # type: ignore[arg-type]


def http_serving(data: bytes) -> httpx.Client:
    return httpx.Client(
        base_url="http://central", transport=httpx.MockTransport(lambda r: httpx.Response(200, content=data))
    )


def progress() -> Progress:
    return Progress(lambda fraction, message: None)


def update(slot: DetectorSlot, data: bytes, tmp: Path, new: object, swapped: list[str]) -> ModelUpdate:
    return ModelUpdate(
        slot,
        lambda: http_serving(data),
        tmp / "models",
        lambda path: new,  # type: ignore[arg-type,return-value]
        frame,
        lambda d: swapped.append(d.model_name),
        sleep=lambda s: None,
    )


def test_slot_falls_back_when_a_new_model_raises() -> None:
    old, new = FakeDetector("old"), FakeDetector("new", fail=True)
    slot = DetectorSlot(old)
    slot.swap(new, fallback=old)
    assert len(slot.detect([np.zeros((4, 4, 3), np.uint8)])) == 1  # served by the old one, no exception
    assert slot.current is old and slot.failure == "RuntimeError: bad output shape"
    assert slot.last_ref.name == "old"


def test_a_corrupt_download_is_refused_and_the_old_model_keeps_running(tmp_path: Path) -> None:
    old = FakeDetector("old")
    slot, swapped = DetectorSlot(old), []
    good = b"onnx bytes"
    handler = update(slot, b"onnx bytez", tmp_path, FakeDetector("new"), swapped)
    with pytest.raises(CommandRefused, match=r"sha256: the downloaded file .* refused, old keeps running"):
        handler(args_for(good), progress())
    assert slot.current is old and swapped == []
    assert not list((tmp_path / "models").rglob("*.onnx*"))  # nothing half-downloaded left behind


def test_a_model_that_stalls_is_rolled_back_automatically(tmp_path: Path) -> None:
    old, release = FakeDetector("old"), threading.Event()
    new = FakeDetector("new", block=release)
    clock = [0.0]
    slot, swapped = DetectorSlot(old, clock=lambda: clock[0]), []
    data = b"a model"
    handler = ModelUpdate(
        slot,
        lambda: http_serving(data),
        tmp_path / "models",
        lambda path: new,  # type: ignore[arg-type,return-value]
        frame,
        lambda d: swapped.append(d.model_name),
        clock=lambda: clock[0],
        sleep=lambda s: clock.__setitem__(0, clock[0] + s),
    )
    new.block = None  # the trial run passes quickly...
    loop = threading.Thread(target=lambda: None)

    def stuck_call() -> None:
        new.block = release  # ...but in the loop a call never returns
        slot.detect([np.zeros((4, 4, 3), np.uint8)])

    original_swap = slot.swap

    def swap_and_start_loop(detector, *, fallback=None):  # type: ignore[no-untyped-def]
        old_one = original_swap(detector, fallback=fallback)
        nonlocal loop
        if detector is new:
            loop = threading.Thread(target=stuck_call, daemon=True)
            loop.start()
            while new.calls < 2:  # the trial was call 1; the loop's call is in progress
                threading.Event().wait(0.01)
        return old_one

    slot.swap = swap_and_start_loop  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="rolled back to old: the detector loop stalled"):
        handler(args_for(data, stall_s=5, watch_s=60), progress())
    release.set()
    loop.join(5)
    assert slot.current is old and swapped == ["new", "old"]
    assert not (tmp_path / "models" / ACTIVE_FILE).exists()  # a restart does not bring the bad model back


def test_a_real_second_model_is_downloaded_tried_and_swapped_in(tmp_path: Path) -> None:
    if not MODEL_320.exists():
        pytest.skip("assets missing (make assets)")
    old = OnnxDetector(ModelConfig(path=MODEL_640))
    slot, swapped = DetectorSlot(old), []
    data = MODEL_320.read_bytes()
    handler = ModelUpdate(
        slot,
        lambda: http_serving(data),
        tmp_path / "models",
        lambda path: OnnxDetector(ModelConfig(path=path)),
        frame,
        lambda d: swapped.append(d.model_name),
        sleep=lambda s: None,
    )
    result = handler(args_for(data, name=MODEL_320.name, watch_s=0), progress())
    assert (
        result.model.sha256 == hashlib.sha256(data).hexdigest() and result.previous.sha256 == old.model_sha256
    )
    assert result.input_size == 320 and result.classes == 80
    assert slot.current.model_sha256 == result.model.sha256 and swapped == [MODEL_320.name]
    assert (tmp_path / "models" / ACTIVE_FILE).exists()

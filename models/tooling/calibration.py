"""Calibration frames for static INT8 quantization, taken from the site's own cameras.

Static quantization fixes every activation's range from what the calibration frames produce, so those frames
should look like what the model will see in service: the site's clips or live streams, not a stock dataset.
Frames are spread evenly over each file (a clip's first seconds alone would under-represent the scene), and
letterboxed with the detector's own :func:`~edge_agent.perception.detector.preprocess.letterbox`, because a calibration
that saw differently scaled or padded inputs would fit the wrong ranges.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edge_agent.capture.sources import SourceKind, open_capture, source_kind
from edge_agent.perception.detector.preprocess import letterbox
from edge_agent.types import FloatArray, Image
from models.tooling import ToolingError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
STREAM_STRIDE = 15  # live sources: keep one frame in 15 (~0.5 s at 30 fps) so the samples are not near-copies
STREAM_TIMEOUT_S = 10.0

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def split_quota(total: int, parts: int) -> list[int]:
    """``total`` frames over ``parts`` sources as evenly as possible (earlier sources take the remainder)."""
    if parts <= 0:
        raise ValueError("no calibration sources")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def even_indices(count: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(count)``, each in the middle of its stretch."""
    if count <= 0 or k <= 0:
        return []
    k = min(k, count)
    return sorted({min(count - 1, int((i + 0.5) * count / k)) for i in range(k)})


def _image(path: Path) -> Image:
    decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ToolingError(f"cannot decode calibration image {path}")
    return np.asarray(decoded, dtype=np.uint8)


def _folder_frames(folder: Path, k: int) -> list[Image]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ToolingError(f"calibration folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [_image(paths[i]) for i in even_indices(len(paths), k)]


def _file_frames(path: Path, k: int) -> list[Image]:
    """Evenly spaced frames of a video file, decoded in order (seeking in H.264 is not frame-exact)."""
    if not path.is_file():
        raise FileNotFoundError(f"calibration source {path} does not exist")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)  # the backend open_capture uses for files
    if not cap.isOpened():
        raise ToolingError(f"cannot open calibration video {path}")
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            raise ToolingError(f"{path}: unknown frame count; convert it or pass frames as an image folder")
        wanted = set(even_indices(count, k))
        frames: list[Image] = []
        for i in range(max(wanted) + 1):
            grabbed = cap.grab()  # grab without retrieve skips the colour conversion of unwanted frames
            if not grabbed:
                break
            if i in wanted:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    frames.append(np.asarray(frame, dtype=np.uint8))
        return frames
    finally:
        cap.release()


def _stream_frames(url: str, k: int, stride: int, timeout_s: float) -> list[Image]:
    cap = open_capture(url, source_kind(url), timeout_s, timeout_s)
    if not cap.isOpened():
        raise ToolingError(f"cannot open calibration stream {url}")
    frames: list[Image] = []
    try:
        deadline = time.monotonic() + timeout_s + k * stride / 5.0  # generous: 5 fps worst case
        i = 0
        while len(frames) < k and time.monotonic() < deadline:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if i % stride == 0:
                frames.append(np.asarray(frame, dtype=np.uint8))
            i += 1
        return frames
    finally:
        cap.release()


def sample_frames(
    sources: Sequence[str], total: int, log: Log = _stderr, stream_stride: int = STREAM_STRIDE
) -> list[Image]:
    """About ``total`` BGR frames spread over ``sources`` (video files, RTSP/HTTP URLs, image folders or images).

    A source that yields fewer frames than its share (a short clip) is reported, not padded with repeats.
    """
    if total <= 0:
        raise ValueError("the number of calibration frames must be positive")
    frames: list[Image] = []
    for source, quota in zip(sources, split_quota(total, len(sources)), strict=True):
        if quota == 0:
            continue
        kind = source_kind(source)
        path = Path(source)
        if kind is not SourceKind.FILE:
            got = _stream_frames(source, quota, stream_stride, STREAM_TIMEOUT_S)
        elif path.is_dir():
            got = _folder_frames(path, quota)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            got = [_image(path)]
        else:
            got = _file_frames(path, quota)
        note = "" if len(got) == quota else f" (wanted {quota})"
        log(f"  calibration: {len(got)} frames from {source}{note}")
        frames.extend(got)
    if not frames:
        raise ToolingError(f"no calibration frames could be read from {', '.join(sources)}")
    return frames


class LetterboxCalibrationReader(CalibrationDataReader):  # type: ignore[misc]  # untyped base class
    """Feeds frames to onnxruntime's calibrator one at a time, letterboxed exactly like the detector.

    Frames are kept as decoded uint8 and letterboxed on demand: 64 float 640x640 tensors would hold 300 MB.
    """

    def __init__(self, frames: Sequence[Image], input_name: str, size: int, log: Log | None = None) -> None:
        self._frames = list(frames)
        self._input_name = input_name
        self._size = size
        self._log = log
        self._iter: Iterator[int] = iter(range(len(self._frames)))

    def __len__(self) -> int:
        return len(self._frames)

    def tensor(self, i: int) -> FloatArray:
        tensor, _ = letterbox(self._frames[i], self._size)
        return tensor[None]

    def get_next(self) -> dict[str, FloatArray] | None:
        i = next(self._iter, None)
        if i is None:
            return None
        if self._log is not None and ((i + 1) % 8 == 0 or i + 1 == len(self._frames)):
            self._log(f"  calibrating: frame {i + 1}/{len(self._frames)}")
        return {self._input_name: self.tensor(i)}

    def rewind(self) -> None:
        self._iter = iter(range(len(self._frames)))

"""Letterboxing: the exact input transform the Ultralytics exports were trained and validated with.

The detector's accuracy depends on reproducing Ultralytics' ``LetterBox`` bit for bit (same rounding of the
resized size and of the padding split, same interpolation, same pad value): a one-pixel shift of the pad moves
every box and costs measurable mAP. The inverse mapping lives here too so that both directions share one
definition of ``scale`` and ``pad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge_agent.types import FloatArray, Image

PAD_VALUE = 114
"""Grey used by Ultralytics for padding; the models saw it during training."""


@dataclass(frozen=True, slots=True)
class LetterboxMeta:
    """How one original image was placed in the square model input, needed to map boxes back.

    ``scale`` is the resize ratio (input pixels per original pixel); ``pad_x``/``pad_y`` are the left/top
    padding in input pixels; ``orig_w``/``orig_h`` bound the clipping of mapped-back boxes.
    """

    scale: float
    pad_x: int
    pad_y: int
    orig_w: int
    orig_h: int


def letterbox_geometry(orig_w: int, orig_h: int, size: int) -> tuple[LetterboxMeta, int, int]:
    """Return the placement of an ``orig_w`` x ``orig_h`` image in a ``size`` square and its resized size.

    Kept separate from the pixel work so the geometry can be tested by hand and reused for the inverse.
    Python's ``round`` (banker's rounding) is used on purpose: Ultralytics does the same.
    """
    if orig_w <= 0 or orig_h <= 0:
        raise ValueError(f"image has no pixels: {orig_w}x{orig_h}")
    scale = min(size / orig_h, size / orig_w)
    new_w, new_h = round(orig_w * scale), round(orig_h * scale)
    dw, dh = (size - new_w) / 2.0, (size - new_h) / 2.0
    pad_x, pad_y = round(dw - 0.1), round(dh - 0.1)
    return LetterboxMeta(scale, pad_x, pad_y, orig_w, orig_h), new_w, new_h


def letterbox_into(image_bgr: Image, size: int, out_chw: FloatArray) -> LetterboxMeta:
    """Letterbox ``image_bgr`` into the preallocated float32 [3, size, size] ``out_chw`` (RGB, 0..1).

    Writing into a caller-owned buffer lets the batch path fill an NCHW tensor without an extra stack copy.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a BGR uint8 HxWx3 image, got shape {image_bgr.shape} {image_bgr.dtype}")
    h, w = int(image_bgr.shape[0]), int(image_bgr.shape[1])
    meta, new_w, new_h = letterbox_geometry(w, h, size)
    resized: Image = image_bgr
    if (new_w, new_h) != (w, h):
        resized = np.asarray(cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR), np.uint8)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[meta.pad_y : meta.pad_y + new_h, meta.pad_x : meta.pad_x + new_w] = resized
    # BGR -> RGB and HWC -> CHW in one strided view; the division writes the contiguous result.
    np.divide(canvas[:, :, ::-1].transpose(2, 0, 1), np.float32(255.0), out=out_chw, dtype=np.float32)
    return meta


def letterbox(image_bgr: Image, size: int) -> tuple[FloatArray, LetterboxMeta]:
    """Letterbox one BGR image to a float32 [3, size, size] RGB tensor in 0..1 like Ultralytics ``LetterBox``.

    Resize keeps the aspect ratio with ``cv2.INTER_LINEAR``; the rest is padded with 114 grey, centred with
    Ultralytics' split (``left = round(dw - 0.1)``), so the odd pixel goes right/bottom.
    """
    out = np.empty((3, size, size), dtype=np.float32)
    meta = letterbox_into(image_bgr, size, out)
    return out, meta


def letterbox_batch(images: Sequence[Image], size: int) -> tuple[FloatArray, list[LetterboxMeta]]:
    """Letterbox several frames (any sizes) into one float32 NCHW tensor for a dynamic-batch model."""
    batch = np.empty((len(images), 3, size, size), dtype=np.float32)
    metas = [letterbox_into(img, size, batch[i]) for i, img in enumerate(images)]
    return batch, metas


def to_letterbox(xyxy: npt.ArrayLike, meta: LetterboxMeta) -> FloatArray:
    """Map original-image ``xyxy`` boxes [N, 4] to model-input pixels (inverse of :func:`from_letterbox`)."""
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    pad = np.array([meta.pad_x, meta.pad_y, meta.pad_x, meta.pad_y], dtype=np.float64)
    return (b * meta.scale + pad).astype(np.float32)


def from_letterbox(xyxy: npt.ArrayLike, meta: LetterboxMeta, clip: bool = True) -> FloatArray:
    """Map model-input ``xyxy`` boxes [N, 4] back to original-image pixels, clipped to the image by default.

    Computed in float64 so that a round trip through :func:`to_letterbox` is exact to well under a
    thousandth of a pixel even on 4K frames; returned as float32 like every other box in the pipeline.
    """
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    pad = np.array([meta.pad_x, meta.pad_y, meta.pad_x, meta.pad_y], dtype=np.float64)
    out = (b - pad) / meta.scale
    if clip:
        np.clip(out[:, 0::2], 0.0, meta.orig_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, meta.orig_h, out=out[:, 1::2])
    return out.astype(np.float32)

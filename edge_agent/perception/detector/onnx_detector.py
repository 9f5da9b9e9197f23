"""The detector: an Ultralytics YOLO export run by one inference backend, frames in, :class:`Detections` out.

The runtime (onnxruntime or OpenVINO, ``backends``) is chosen by ``model.backend``; letterbox, decode, NMS and
the look-alike merge are ours and identical for every runtime, so backends can only differ in the raw numbers.

Everything that can be read from the model file (class names, input size, whether the batch axis is dynamic)
is read from it rather than configured, so a config cannot silently disagree with the model it points at.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.config import ModelConfig
from edge_agent.perception.detector import backends
from edge_agent.perception.detector.backends import (
    AUTO_ORDER,
    DEFAULT_PROVIDERS,
    Backend,
    BackendError,
    Choice,
    resolve_providers,
)
from edge_agent.perception.detector.merge import merge_class_groups
from edge_agent.perception.detector.postprocess import decode
from edge_agent.perception.detector.preprocess import PAD_VALUE, LetterboxMeta, letterbox, letterbox_batch
from edge_agent.perception.detector.riders import associate_riders
from edge_agent.types import Detections, FloatArray, Image, IntArray

log = logging.getLogger(__name__)

FETCH_HINT = "python scripts/fetch_assets.py --mirror <dir>"
__all__ = [
    "AUTO_ORDER",
    "DEFAULT_PROVIDERS",
    "DetectorError",
    "OnnxDetector",
    "StageTiming",
    "resolve_providers",
]


class DetectorError(RuntimeError):
    """The model cannot be loaded or run: missing or corrupt file, unusable I/O, unavailable provider."""


@dataclass(frozen=True, slots=True)
class StageTiming:
    """Wall time of the stages of one :meth:`OnnxDetector.detect` call in milliseconds, for ``images`` frames.

    Kept per call (not averaged) so that benchmarks and the agent's health report can aggregate as they like.
    """

    images: int
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


def _model_bytes(path: Path) -> bytes:
    """The bytes that define the model: the file, plus the weights file of an OpenVINO IR (.xml + .bin)."""
    data = path.read_bytes()
    if path.suffix.lower() == ".xml":
        data += path.with_suffix(".bin").read_bytes()
    return data


def _parse_literal(meta: dict[str, str], key: str) -> object:
    """Ultralytics stores metadata as Python-literal strings (``"{0: 'person', ...}"``, ``"[640, 640]"``)."""
    raw = meta.get(key)
    if raw is None:
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None


def _names_from_metadata(meta: dict[str, str], num_classes: int | None) -> tuple[str, ...]:
    parsed = _parse_literal(meta, "names")
    if isinstance(parsed, dict) and parsed and all(isinstance(k, int) for k in parsed):
        n = max(parsed) + 1
        return tuple(str(parsed.get(i, i)) for i in range(n))
    if isinstance(parsed, list | tuple) and parsed:
        return tuple(str(v) for v in parsed)
    if num_classes is None:
        raise DetectorError("model has no 'names' metadata and a dynamic class axis: cannot tell its classes")
    return tuple(str(i) for i in range(num_classes))


def _imgsz_from_metadata(meta: dict[str, str]) -> int | None:
    parsed = _parse_literal(meta, "imgsz")
    if isinstance(parsed, int):
        return parsed
    if isinstance(parsed, list | tuple) and len(parsed) == 2 and all(isinstance(v, int) for v in parsed):
        if parsed[0] != parsed[1]:
            raise DetectorError(
                f"model metadata imgsz {list(parsed)} is not square; only square inputs are supported"
            )
        return int(parsed[0])
    return None


class OnnxDetector:
    """Runs an Ultralytics YOLO ONNX export ([B, 3, S, S] in, [B, 4 + C, N] out) on BGR frames.

    ``detect`` may be called from several threads (onnxruntime's ``run`` is thread-safe and the pre/post
    steps are pure functions); ``last_timing`` then holds whichever call finished last. Configuration that
    contradicts the model (unknown class names, an input size the model does not take) raises ``ValueError``
    like other config mistakes; an unusable model file or runtime raises :class:`DetectorError`.
    """

    def __init__(self, config: ModelConfig, providers: Sequence[str] | None = None) -> None:
        self._config = config
        path = Path(config.path)
        try:
            data = _model_bytes(path)
        except OSError as err:
            raise DetectorError(
                f"cannot read model file {path}: {err.strerror or err}. Fetch the models with: {FETCH_HINT}"
            ) from err
        # Hash the very bytes that are loaded, so the reported hash cannot differ from the running model.
        self._sha256 = hashlib.sha256(data).hexdigest()
        self._path = path
        self.choice: Choice | None = None  # what ``backend: auto`` measured
        self.backend = self._open_backend(data, path, config, providers or config.providers)

        in_shape, out_shape = list(self.backend.input_shape), list(self.backend.output_shape)
        if len(in_shape) != 4 or len(out_shape) != 3:
            raise DetectorError(
                f"{path}: expected input [B,3,S,S] and output [B,4+C,N], got {in_shape} {out_shape}"
            )
        self._dynamic_batch = not isinstance(in_shape[0], int)
        if not self._dynamic_batch and in_shape[0] != 1:
            raise DetectorError(f"{path}: fixed batch size {in_shape[0]} is not supported (use 1 or dynamic)")

        meta = dict(self.backend.metadata)
        channels = out_shape[1] - 4 if isinstance(out_shape[1], int) else None
        self._names = _names_from_metadata(meta, channels)
        if channels is not None and channels != len(self._names):
            raise DetectorError(
                f"{path}: output has {channels} class rows but metadata names {len(self._names)}"
            )
        self._input_size = self._resolve_input_size(in_shape, meta, config.input_size)
        self._class_filter = (
            None if config.classes is None else self._class_ids(config.classes, "model.classes")
        )
        groups = config.merge_classes
        if "merge_classes" not in config.model_fields_set:  # the COCO default: keep what this model has
            groups = [[n for n in g if n in self._names] for g in groups]
        self._merge_groups = [
            self._class_ids(g, "model.merge_classes").tolist() for g in groups if len(g) > 1
        ]
        index = {n: i for i, n in enumerate(self._names)}
        self._bike_ids = [index[n] for n in ("motorcycle", "bicycle") if n in index]
        self._person_id = index.get("person")
        self._riders_on = config.rider_association and self._person_id is not None and bool(self._bike_ids)
        self.last_timing: StageTiming | None = None
        self._warm_up()

    def _open_backend(
        self, data: bytes, path: Path, config: ModelConfig, providers: Sequence[str] | None
    ) -> Backend:
        try:
            if config.backend != "auto":
                return backends.load(config.backend, data, path, config.threads, providers)
            backend, self.choice = backends.choose(
                data, path, config.threads, providers, lambda b: self._probe_tensor(b, config)
            )
        except BackendError as err:
            raise DetectorError(f"{err}. Re-fetch the models with: {FETCH_HINT}") from err
        log.info("%s", self.choice.describe())
        return backend

    @staticmethod
    def _probe_tensor(backend: Backend, config: ModelConfig) -> FloatArray:
        """A grey frame of the size the model takes: what ``auto`` times each runtime on."""
        h = backend.input_shape[2]
        size = h if isinstance(h, int) else config.input_size or _imgsz_from_metadata(backend.metadata) or 640
        return np.full((1, 3, size, size), PAD_VALUE / 255.0, dtype=np.float32)

    def _resolve_input_size(
        self, in_shape: Sequence[object], meta: dict[str, str], configured: int | None
    ) -> int:
        h, w = in_shape[2], in_shape[3]
        if isinstance(h, int) and isinstance(w, int):
            if h != w:
                raise DetectorError(
                    f"{self._path}: input {h}x{w} is not square; only square inputs are supported"
                )
            if configured is not None and configured != h:
                raise ValueError(
                    f"model.input_size: {configured} was configured but {self._path.name} has a fixed "
                    f"{h}x{h} input; remove input_size or set it to {h}"
                )
            return h
        if configured is not None:
            return configured
        from_meta = _imgsz_from_metadata(meta)
        if from_meta is None:
            raise DetectorError(
                f"{self._path}: input size is dynamic and the model has no 'imgsz' metadata; "
                "set model.input_size"
            )
        return from_meta

    def _class_ids(self, classes: list[str], field: str) -> IntArray:
        index = {n: i for i, n in enumerate(self._names)}
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise ValueError(
                f"{field}: unknown class names {unknown} for {self._path.name}; valid: {list(self._names)}"
            )
        return np.array(sorted({index[c] for c in classes}), dtype=np.int64)

    def _warm_up(self) -> None:
        """One run at load: the first ``session.run`` allocates and is several times slower than the rest."""
        grey = np.full((self._input_size, self._input_size, 3), PAD_VALUE, dtype=np.uint8)
        self.detect([grey])
        self.last_timing = None

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def input_size(self) -> int:
        return self._input_size

    @property
    def model_name(self) -> str:
        return self._path.name

    @property
    def model_sha256(self) -> str:
        return self._sha256

    @property
    def dynamic_batch(self) -> bool:
        return self._dynamic_batch

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def backend_version(self) -> str:
        return self.backend.version

    def _run(self, tensor: FloatArray) -> FloatArray:
        try:
            return self.backend.run(tensor)
        except Exception as err:
            raise DetectorError(f"inference failed on {self._path.name}: {err}") from err

    def _decode(self, raw: FloatArray, meta: LetterboxMeta) -> Detections:
        """Boxes at ``conf_threshold``; with rider association, weak two-wheelers under riders too."""
        cfg = self._config
        if not self._riders_on or cfg.rider_floor >= cfg.conf_threshold:
            dets = decode(raw, meta, cfg.conf_threshold, cfg.iou_threshold, self._class_filter, self._names)
            if self._riders_on and self._person_id is not None:
                dets = associate_riders(
                    dets,
                    self._bike_ids,
                    self._person_id,
                    person_min=cfg.rider_person_min,
                    gain=cfg.rider_gain,
                    floor=cfg.rider_floor,
                )
            return dets
        low = decode(raw, meta, cfg.rider_floor, cfg.iou_threshold, self._class_filter, self._names)
        assert self._person_id is not None
        boosted = associate_riders(
            low,
            self._bike_ids,
            self._person_id,
            person_min=cfg.rider_person_min,
            gain=cfg.rider_gain,
            floor=cfg.rider_floor,
        )
        # NMS is greedy by score, so the boxes at or above conf_threshold are exactly those a plain decode
        # at conf_threshold keeps; below it only boosted bikes survive.
        keep = boosted.scores >= cfg.conf_threshold
        return Detections(boosted.xyxy[keep], boosted.scores[keep], boosted.class_ids[keep], boosted.names)

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        """Detect objects in BGR frames; one :class:`Detections` per frame, boxes in that frame's pixels.

        One batched ``session.run`` when the model's batch axis is dynamic, else one run per frame.
        """
        if not images:
            return []
        t0 = time.perf_counter()
        pre = 0.0
        infer = 0.0
        raw: list[FloatArray] = []
        if self._dynamic_batch:
            batch, metas = letterbox_batch(images, self._input_size)
            t1 = time.perf_counter()
            out = self._run(batch)
            t2 = time.perf_counter()
            pre, infer = t1 - t0, t2 - t1
            raw = [out[i] for i in range(len(images))]
        else:
            metas = []
            for img in images:
                ta = time.perf_counter()
                tensor, meta = letterbox(img, self._input_size)
                tb = time.perf_counter()
                raw.append(self._run(tensor[None])[0])
                metas.append(meta)
                pre += tb - ta
                infer += time.perf_counter() - tb
        t3 = time.perf_counter()
        cfg = self._config
        results = [
            merge_class_groups(self._decode(r, m), self._merge_groups, cfg.merge_iou)
            for r, m in zip(raw, metas, strict=True)
        ]
        post = time.perf_counter() - t3
        self.last_timing = StageTiming(len(images), pre * 1e3, infer * 1e3, post * 1e3)
        return results

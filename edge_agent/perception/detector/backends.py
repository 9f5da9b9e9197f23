"""Inference runtimes behind the detector: onnxruntime (everywhere) and OpenVINO (x86 CPUs, Intel GPUs/NPUs).

Why more than one: on the same 2-core x86 box the same YOLO graph runs 2-3x faster in OpenVINO than in
onnxruntime's CPU provider (docs/benchmarks.md), while onnxruntime is the one runtime with wheels for every edge
board (Pi/aarch64 with its ARM kernels, Jetson with CUDA/TensorRT providers). The detector only needs "tensor
in, raw YOLO output out" plus the model's I/O shapes and metadata, which is what :class:`Backend` gives.

``auto`` measures: every installed runtime that can read the model file is loaded and timed on a few runs of
the real input shape, and the fastest one is kept (the others are released before the agent starts). A runtime
named in the config but not installed, or unable to read the model, is refused at start with the reason.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_agent.types import FloatArray

log = logging.getLogger(__name__)

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
BACKENDS = (ONNXRUNTIME, OPENVINO)
# Preference when measurements tie (within AUTO_TIE): the runtime with more boards behind it.
AUTO_TIE = 0.05
AUTO_RUNS = 3
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
# Preference for ``providers: [auto]``. The int8-dynamic models' ConvInteger nodes run on the CPU provider only;
# onnxruntime places them there by itself, so CPU always stays last in the list as the fallback.
AUTO_ORDER = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)


class BackendError(RuntimeError):
    """A runtime is not installed, cannot read the model, or failed to run it."""


def resolve_providers(wanted: list[str], available: Sequence[str]) -> list[str]:
    """``["auto"]`` -> the installed providers in ``AUTO_ORDER``; anything else is taken as given.

    >>> resolve_providers(["auto"], ["CPUExecutionProvider", "CUDAExecutionProvider"])
    ['CUDAExecutionProvider', 'CPUExecutionProvider']
    >>> resolve_providers(["CPUExecutionProvider"], ["CPUExecutionProvider"])
    ['CPUExecutionProvider']
    """
    if wanted == ["auto"]:
        return [p for p in AUTO_ORDER if p in available]
    return wanted


def installed(name: str) -> bool:
    """Whether a runtime's Python package can be imported here (without importing it)."""
    return importlib.util.find_spec(name) is not None


def installed_backends() -> list[str]:
    return [b for b in BACKENDS if installed(b)]


class Backend(Protocol):
    """One loaded model in one runtime: shapes and metadata as the file states them, and a ``run``."""

    name: str  # "onnxruntime" / "openvino"
    version: str  # the runtime's version
    device: str  # where it runs: execution providers, or the OpenVINO device
    input_shape: list[int | str | None]  # [B, 3, S, S]; non-int entries are dynamic
    output_shape: list[int | str | None]  # [B, 4 + C, N]
    metadata: dict[str, str]  # Ultralytics' custom metadata (names, imgsz, ...)

    def run(self, tensor: FloatArray) -> FloatArray: ...


def _dims(shape: Sequence[object]) -> list[int | str | None]:
    return [d if isinstance(d, int) or d is None else str(d) for d in shape]


class OrtBackend:
    """onnxruntime ``InferenceSession`` from the model bytes (so the hash is of what runs)."""

    name = ONNXRUNTIME

    def __init__(self, data: bytes, path: Path, threads: int, providers: Sequence[str] | None) -> None:
        import onnxruntime as ort

        self.version = str(ort.__version__)
        available = ort.get_available_providers()
        wanted = resolve_providers(list(providers) if providers else list(DEFAULT_PROVIDERS), available)
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendError(
                f"execution providers {missing} are not available here; available: {available}"
            )
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(data, sess_options=opts, providers=wanted)
        except Exception as err:  # onnxruntime raises its own pybind exception types for bad files
            raise BackendError(
                f"onnxruntime cannot load model {path} (corrupt or not an ONNX model?): {err}"
            ) from err
        self.device = ",".join(wanted)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise BackendError(f"{path}: expected one image input and an output, got {len(inputs)} inputs")
        self.input_shape = _dims(inputs[0].shape)
        self.output_shape = _dims(outputs[0].shape)
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, tensor: FloatArray) -> FloatArray:
        out = self.session.run([self._output_name], {self._input_name: tensor})[0]
        return np.asarray(out, dtype=np.float32)


def _ov_metadata(model: Any) -> dict[str, str]:
    """Ultralytics metadata: OpenVINO's ONNX reader (and our IR export) keep it in rt_info['framework']."""
    meta: dict[str, str] = {}
    try:
        rt = model.get_rt_info()
        if "framework" not in rt:
            return meta
        section = rt["framework"]
        for key in ("names", "imgsz", "stride", "task", "description"):
            try:
                meta[key] = str(section[key].astype(str))
            except Exception:  # absent key: OpenVINO raises a bare RuntimeError
                continue
    except Exception as err:  # metadata is optional; the detector says what it needs if it is missing
        log.debug("no OpenVINO rt_info metadata: %s", err)
    return meta


class OpenVinoBackend:
    """OpenVINO on its CPU plugin (latency hint, fixed thread count); reads ONNX files and IR (.xml + .bin)."""

    name = OPENVINO

    def __init__(self, path: Path, threads: int, device: str = "CPU") -> None:
        try:
            import openvino as ov
        except ImportError as err:
            raise BackendError("openvino is not installed: pip install -e '.[edge-openvino]'") from err
        self.version = str(ov.__version__).split("-")[0]
        self.device = device
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as err:
            raise BackendError(f"OpenVINO cannot read {path.name}: {err}") from err
        if len(model.inputs) != 1 or not model.outputs:
            raise BackendError(
                f"{path}: expected one image input and an output, got {len(model.inputs)} inputs"
            )

        def dims(partial: Any) -> list[int | str | None]:
            return [d.get_length() if d.is_static else None for d in partial]

        shape = model.inputs[0].get_partial_shape()
        if shape.rank.is_static and len(shape) == 4 and shape[0].is_dynamic and shape[2].is_static:
            # Batch 1, static: OpenVINO sizes its buffers for the largest batch it has run, and on a CPU a
            # batch is no faster per image than single runs (measured: +45 MB per extra image at 640).
            model.reshape([1, 3, shape[2].get_length(), shape[3].get_length()])
        self.input_shape = dims(model.inputs[0].get_partial_shape())
        self.output_shape = dims(model.outputs[0].get_partial_shape())
        self.metadata = _ov_metadata(model)
        # f32, not the plugin's default bf16 on CPUs that have it (recent EPYC/Xeon): bf16 moves boxes by
        # pixels, and the same model must give the same boxes on every box of the fleet.
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._compiled = core.compile_model(model, device, config)
        except Exception as err:
            raise BackendError(f"OpenVINO cannot compile {path.name} for {device}: {err}") from err
        self._request = self._compiled.create_infer_request()

    def run(self, tensor: FloatArray) -> FloatArray:
        self._request.infer({0: tensor})
        return np.asarray(self._request.get_output_tensor(0).data, dtype=np.float32).copy()


def _ort_reads(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


def load(name: str, data: bytes, path: Path, threads: int, providers: Sequence[str] | None) -> Backend:
    """One runtime, by name; :class:`BackendError` with the reason when it is missing or refuses the model."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; known: {list(BACKENDS)} or 'auto'")
    if not installed(name):
        extra = "edge" if name == ONNXRUNTIME else "edge-openvino"
        raise BackendError(
            f"backend {name!r} is configured but not installed here (pip install -e '.[{extra}]'); "
            f"installed: {installed_backends() or 'none'}"
        )
    if name == ONNXRUNTIME:
        if not _ort_reads(path):
            raise BackendError(f"onnxruntime reads .onnx files only, not {path.name}")
        return OrtBackend(data, path, threads, providers)
    return OpenVinoBackend(path, threads)


@dataclass(slots=True)
class Choice:
    """What ``auto`` measured: ms per run by runtime (None = could not load), and the reasons."""

    chosen: str
    ms: dict[str, float | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [
            f"{n} {'n/a (' + self.reasons.get(n, '?') + ')' if v is None else f'{v:.1f} ms'}"
            for n, v in self.ms.items()
        ]
        return f"auto chose {self.chosen}: " + ", ".join(parts)


def _time_runs(backend: Backend, tensor: FloatArray, runs: int) -> float:
    backend.run(tensor)  # first run allocates
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        backend.run(tensor)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def choose(
    data: bytes,
    path: Path,
    threads: int,
    providers: Sequence[str] | None,
    probe_tensor: Callable[[Backend], FloatArray],
    candidates: Sequence[str] | None = None,
    runs: int = AUTO_RUNS,
) -> tuple[Backend, Choice]:
    """``auto``: load every installed runtime that reads the file, time it, keep the fastest.

    Ties (within ``AUTO_TIE``) go to the earlier entry of ``BACKENDS``.
    """
    names = list(candidates) if candidates is not None else installed_backends()
    ms: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    best: tuple[float, int, Backend] | None = None
    for rank, name in enumerate(names):
        try:
            backend = load(name, data, path, threads, providers)
            took = _time_runs(backend, probe_tensor(backend), runs)
        except (BackendError, ValueError) as err:
            ms[name], reasons[name] = None, str(err).split("\n")[0][:200]
            log.info("backend %s not usable for %s: %s", name, path.name, reasons[name])
            continue
        except Exception as err:  # a runtime failing on this model must not stop the others being tried
            ms[name], reasons[name] = None, f"failed: {err!r}"[:200]
            log.info("backend %s failed on %s: %r", name, path.name, err)
            continue
        ms[name] = took
        if best is None or took < best[0] * (1.0 - AUTO_TIE):
            best = (took, rank, backend)
        del backend
    if best is None:
        detail = "; ".join(f"{n}: {r}" for n, r in reasons.items()) or "no runtime installed"
        raise BackendError(f"no installed backend can run {path.name} ({detail})")
    chosen = best[2]
    gc.collect()  # release the runtimes that lost before the agent starts (peak RSS)
    return chosen, Choice(chosen.name, ms, reasons)

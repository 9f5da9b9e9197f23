"""Before/after report of a quantization: size, latency and coco128 accuracy of each model, side by side.

Accuracy comes from ``scripts/eval_detector.py`` itself (imported, not copied), so the numbers here are the
same kind as every other mAP in ``docs/benchmarks.md``. Latency is the detector's own end-to-end time per
frame (letterbox, ``session.run``, decode at the agent's default thresholds) at batch 1 and a fixed thread
count, and the models are timed *interleaved*, image by image in rotating order: the development machines
are shared, and timing the models one after another would hand each a different background load.
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort

from edge_agent.config import ModelConfig
from edge_agent.perception.detector.evaluation import EvalResult
from edge_agent.perception.detector.onnx_detector import OnnxDetector
from edge_agent.types import Image
from models.tooling import ToolingError

REPO = Path(__file__).resolve().parents[2]
EVAL_SCRIPT = REPO / "scripts" / "eval_detector.py"
MAP_CONF, MAP_IOU = 0.001, 0.7  # the evaluation thresholds of scripts/eval_detector.py

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def eval_script() -> ModuleType:
    """``scripts/eval_detector.py`` as a module (it is a script, not part of an installed package)."""
    name = "streetwatch_eval_detector"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EVAL_SCRIPT)
    if spec is None or spec.loader is None:
        raise ToolingError(f"cannot load {EVAL_SCRIPT}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True, slots=True)
class Measurement:
    """One model's row of the report."""

    label: str
    path: Path
    size_bytes: int
    sha256: str
    map50: float
    map50_95: float
    inference_p50_ms: float
    total_p50_ms: float
    total_p95_ms: float
    latency_samples: int

    def finite(self) -> bool:
        values = (self.map50, self.map50_95, self.inference_p50_ms, self.total_p50_ms, self.total_p95_ms)
        return all(math.isfinite(v) for v in values)


@dataclass(frozen=True, slots=True)
class Accuracy:
    map50: float
    map50_95: float
    images: int
    boxes: int


def evaluate_map(model: Path, data: Path, limit: int | None, threads: int, quiet: bool) -> Accuracy:
    """coco128 mAP exactly as ``scripts/eval_detector.py`` computes it (no look-alike merge)."""
    script = eval_script()
    detector = OnnxDetector(
        ModelConfig(
            path=model,
            backend="onnxruntime",  # this report compares onnxruntime models (QDQ vs dynamic int8)
            conf_threshold=MAP_CONF,
            iou_threshold=MAP_IOU,
            threads=threads,
            merge_classes=[],
        )
    )
    result, _latency, n_boxes = script.evaluate(detector, data, limit, quiet)
    if not isinstance(result, EvalResult):
        raise ToolingError("scripts/eval_detector.py evaluate() changed: no EvalResult returned")
    return Accuracy(result.map50, result.map50_95, result.n_images, int(n_boxes))


def load_images(data: Path, limit: int | None) -> list[Image]:
    script = eval_script()
    return [image for _sample, image in script.iter_samples(data, limit)]


def interleaved_latency(
    models: Sequence[Path], images: Sequence[Image], threads: int, log: Log = _stderr
) -> list[tuple[list[float], list[float]]]:
    """Per model, (total ms, inference ms) of every image at batch 1; the models take turns on each image."""
    script = eval_script()
    detectors = [
        OnnxDetector(
            ModelConfig(
                path=m,
                backend="onnxruntime",
                conf_threshold=script.DEPLOY_CONF,
                iou_threshold=script.DEPLOY_IOU,
                threads=threads,
            )
        )
        for m in models
    ]
    totals: list[list[float]] = [[] for _ in models]
    infers: list[list[float]] = [[] for _ in models]
    for i, image in enumerate(images):
        for k in range(len(detectors)):
            j = (i + k) % len(detectors)  # rotate who goes first, so no model always runs on a cold cache
            detectors[j].detect([image])
            timing = detectors[j].last_timing
            if timing is None:
                raise ToolingError("detector returned no timing")
            totals[j].append(timing.total_ms)
            infers[j].append(timing.inference_ms)
        if (i + 1) % 32 == 0 or i + 1 == len(images):
            log(f"  latency: image {i + 1}/{len(images)} x {len(detectors)} models")
    return list(zip(totals, infers, strict=True))


def measure(
    labelled: Sequence[tuple[str, Path]],
    data: Path,
    *,
    limit: int | None,
    threads: int,
    sha256: Callable[[Path], str],
    log: Log = _stderr,
    quiet: bool = False,
) -> list[Measurement]:
    """Accuracy of each model (one pass each), then their interleaved latency."""
    accuracies = []
    for label, path in labelled:
        log(f"mAP of {label} ({path.name}) on {data.name}")
        accuracies.append(evaluate_map(path, data, limit, threads, quiet))
    log(f"latency of {len(labelled)} models, batch 1, {threads} intra-op thread(s)")
    timings = interleaved_latency([p for _, p in labelled], load_images(data, limit), threads, log)
    rows = []
    for (label, path), acc, (totals, infers) in zip(labelled, accuracies, timings, strict=True):
        rows.append(
            Measurement(
                label=label,
                path=path,
                size_bytes=path.stat().st_size,
                sha256=sha256(path),
                map50=acc.map50,
                map50_95=acc.map50_95,
                inference_p50_ms=float(np.percentile(infers, 50)),
                total_p50_ms=float(np.percentile(totals, 50)),
                total_p95_ms=float(np.percentile(totals, 95)),
                latency_samples=len(totals),
            )
        )
    return rows


def table(rows: Sequence[Measurement], markdown: bool) -> str:
    """The before/after table; the first row is the reference for the deltas."""
    head = [
        "model",
        "file",
        "size MB",
        "mAP50",
        "mAP50-95",
        "inference p50 ms",
        "total p50 ms",
        "total p95 ms",
    ]
    base = rows[0]
    body = []
    for r in rows:
        delta = "" if r is base else f" ({round(r.map50_95 - base.map50_95, 3) + 0.0:+.3f})"  # no "-0.000"
        body.append(
            [
                r.label,
                f"`{r.path.name}`" if markdown else r.path.name,
                f"{r.size_bytes / 1e6:.2f}",
                f"{r.map50:.3f}",
                f"{r.map50_95:.3f}{delta}",
                f"{r.inference_p50_ms:.1f}",
                f"{r.total_p50_ms:.1f}",
                f"{r.total_p95_ms:.1f}",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join([*lines, *("| " + " | ".join(b) + " |" for b in body)])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line) for line in [head, *body])


def cpu_description() -> str:
    model = str(eval_script().cpu_model())
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def markdown_section(
    key: str,
    title: str,
    rows: Sequence[Measurement],
    facts: Sequence[str],
    extra: Sequence[str] = (),
) -> str:
    """A self-contained section between ``<!-- quantize:KEY -->`` markers, replaced on the next run."""
    return "\n".join(
        [
            f"<!-- quantize:{key} -->",
            f"### {title}",
            "",
            f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- machine: {cpu_description()}; onnxruntime {ort.__version__} CPUExecutionProvider",
            *(f"- {f}" for f in facts),
            "",
            table(rows, markdown=True),
            *([""] if extra else []),
            *extra,
            f"<!-- /quantize:{key} -->",
        ]
    )


def write_section(path: Path, key: str, section: str) -> None:
    """Insert or replace this run's section only; the rest of the file is left byte for byte."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# streetwatch benchmarks\n"
    pattern = re.compile(
        rf"<!-- quantize:{re.escape(key)} -->.*?<!-- /quantize:{re.escape(key)} -->", re.DOTALL
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")

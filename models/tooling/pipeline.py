"""The whole quantization job behind ``scripts/quantize_model.py``: dequantize, dynamic batch, QDQ, report.

Kept out of the script so the tests drive exactly what the command runs. Every step logs a line (these jobs
take minutes at 640 on two cores) and every check that can fail says which model and why.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from edge_agent.node.assets import ModelEntry, sha256_file
from edge_agent.perception.detector.preprocess import letterbox
from edge_agent.types import FloatArray, Image
from models.tooling import manifest
from models.tooling.batch import input_size, make_batch_dynamic, max_batch_deviation
from models.tooling.calibration import LetterboxCalibrationReader, sample_frames
from models.tooling.dequantize import dequantize_dynamic
from models.tooling.graph import load_model, metadata, save_model
from models.tooling.qdq import HeadScope, QdqSettings, describe_exclusions, ensure_qdq_opset, quantize_qdq
from models.tooling.report import Accuracy, Measurement, evaluate_map, load_images, measure
from models.tooling.verify import RawDeviation, compare_outputs

Log = Callable[[str], None]
COMPARE_IMAGES = 8  # coco128 images for the int8-vs-fp32 raw-output check
BATCH_CHECK = 3  # frames in the batched-vs-single proof


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    """One job, as the command line describes it (see ``scripts/quantize_model.py --help`` for each flag)."""

    model: Path
    calib: Sequence[str]
    out: Path
    frames: int = 64
    fp32_out: Path | None = None
    dynamic_batch: bool = False
    settings: QdqSettings = field(default_factory=QdqSettings)
    compare_scopes: bool = False
    report: bool = False
    data: Path | None = None
    limit: int | None = None
    threads: int = 1
    manifest_path: Path | None = None  # local manifest to upsert; None: only print the snippet
    main_manifest: Path = Path(__file__).resolve().parents[1] / "manifest.yaml"
    quiet: bool = False


@dataclass
class Outcome:
    """What the job produced and measured (``rows`` and ``scopes`` only with a report)."""

    fp32_path: Path
    qdq_path: Path
    dequantized: bool
    raw_deviation: RawDeviation | None = None
    batch_deviation: dict[str, float] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    rows: list[Measurement] = field(default_factory=list)
    scopes: dict[str, Accuracy] = field(default_factory=dict)
    entries: list[ModelEntry] = field(default_factory=list)
    calib_frames: int = 0
    load: tuple[float, float] = (math.nan, math.nan)


def default_fp32_path(model: Path, out: Path, dynamic: bool) -> Path:
    stem = model.stem.replace("int8dyn", "fp32") if "int8dyn" in model.stem else f"{model.stem}_fp32"
    return out.parent / f"{stem}{'_dynbatch' if dynamic else ''}.onnx"


def _tensors(images: Sequence[Image], size: int) -> list[FloatArray]:
    return [letterbox(img, size)[0][None] for img in images]


def _has_coco(data: Path | None) -> bool:
    return data is not None and (data / "images" / "train2017").is_dir()


def _to_fp32(
    opts: Options, source: onnx.ModelProto, size: int, outcome: Outcome, log: Log
) -> onnx.ModelProto:
    """Step 1: dequantize a dynamic-int8 model and compare it with the original on real images."""
    if not outcome.dequantized:
        return source
    fp32, stats = dequantize_dynamic(source)
    log(
        f"  dequantized {stats.convs} Conv + {stats.matmuls} MatMul ({stats.biases_folded} biases folded); "
        f"{stats.nodes_before} -> {stats.nodes_after} nodes; onnx.checker passed"
    )
    if opts.data is not None and _has_coco(opts.data):
        images = load_images(opts.data, COMPARE_IMAGES)
        outcome.raw_deviation = compare_outputs(source, fp32, _tensors(images, size), opts.threads)
        log(f"  fp32 vs int8 raw output on coco128, {outcome.raw_deviation.describe()}")
    return fp32


def _quantize(
    opts: Options,
    fp32: onnx.ModelProto,
    frames: Sequence[Image],
    size: int,
    tmp: Path,
    outcome: Outcome,
    log: Log,
) -> dict[str, Path]:
    """Step 3: the chosen QDQ model, plus one per other head scope with --compare-scopes (in ``tmp``)."""
    ready = ensure_qdq_opset(fp32, log)
    name = ready.graph.input[0].name
    cache = tmp / "calibration.json"  # one calibration serves every scope
    reader = LetterboxCalibrationReader(frames, name, size, None if opts.quiet else log)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    outcome.excluded = quantize_qdq(ready, opts.out, reader, opts.settings, cache_path=cache, log=log)
    log(f"  kept in float: {describe_exclusions(outcome.excluded)}")
    others: dict[str, Path] = {}
    if opts.compare_scopes:
        for scope in HeadScope:
            if scope is not opts.settings.head_scope:
                path = tmp / f"{opts.out.stem}.{scope.value}.onnx"
                alt = replace(opts.settings, head_scope=scope)
                quantize_qdq(
                    ready,
                    path,
                    LetterboxCalibrationReader(frames, name, size),
                    alt,
                    cache_path=cache,
                    log=log,
                )
                others[scope.value] = path
    return others


def _report(opts: Options, data: Path, others: dict[str, Path], outcome: Outcome, log: Log) -> None:
    """Step 5: the before/after rows, then the mAP of the other head scopes."""
    load_before = os.getloadavg()[0]
    original = "int8 dynamic (original)" if outcome.dequantized else "fp32 (original)"
    labelled = [(original, opts.model)]
    if outcome.dequantized:
        labelled.append(("fp32 (dequantized)", outcome.fp32_path))
    labelled.append((f"int8 static QDQ ({opts.settings.head_scope.value})", opts.out))
    outcome.rows = measure(
        labelled, data, limit=opts.limit, threads=opts.threads, sha256=sha256_file, log=log, quiet=opts.quiet
    )
    for scope_name, path in others.items():
        log(f"mAP of QDQ with head scope {scope_name}")
        outcome.scopes[scope_name] = evaluate_map(path, data, opts.limit, opts.threads, opts.quiet)
    outcome.load = (load_before, os.getloadavg()[0])


def run_job(opts: Options, log: Log = _stderr) -> Outcome:
    """Run the steps in order; each model is written only after the step that makes it has been checked."""
    if not opts.model.is_file():
        raise FileNotFoundError(f"model {opts.model} not found")
    if opts.report and not _has_coco(opts.data):
        raise FileNotFoundError(f"--report needs coco128: {opts.data} has no images/train2017")
    source = load_model(opts.model)
    size = input_size(source)
    quantized = any(n.op_type == "DynamicQuantizeLinear" for n in source.graph.node)
    unchanged = not quantized and not opts.dynamic_batch  # a float input needs no new fp32 file
    fp32_path = (
        opts.model
        if unchanged
        else opts.fp32_out or default_fp32_path(opts.model, opts.out, opts.dynamic_batch)
    )
    outcome = Outcome(fp32_path=fp32_path, qdq_path=opts.out, dequantized=quantized)

    log(f"[1/5] {opts.model.name}: input {size}, {'dynamic int8' if quantized else 'float'} graph")
    fp32 = _to_fp32(opts, source, size, outcome, log)

    log(f"[2/5] calibration frames: {opts.frames} from {len(opts.calib)} source(s)")
    frames = sample_frames(opts.calib, opts.frames, log)
    outcome.calib_frames = len(frames)
    probe = np.concatenate(_tensors(frames[:BATCH_CHECK], size))
    if opts.dynamic_batch:
        fp32, rewritten = make_batch_dynamic(fp32)
        dev = max_batch_deviation(fp32, probe, opts.threads) if len(probe) >= 2 else math.nan
        outcome.batch_deviation["fp32"] = dev
        log(f"  dynamic batch: rewrote {len(rewritten)} Reshape(s); batched vs single max |diff| {dev:.3g}")
    if not unchanged:
        sha = save_model(fp32, fp32_path)
        log(f"  wrote {fp32_path} ({fp32_path.stat().st_size / 1e6:.2f} MB, sha256 {sha[:16]}...)")

    log("[3/5] static INT8 (QDQ) quantization")
    with tempfile.TemporaryDirectory(prefix="streetwatch-quant-") as tmp:
        others = _quantize(opts, fp32, frames, size, Path(tmp), outcome, log)
        if opts.dynamic_batch and len(probe) >= 2:
            outcome.batch_deviation["qdq"] = max_batch_deviation(load_model(opts.out), probe, opts.threads)
            log(f"  QDQ batched vs single max |diff| {outcome.batch_deviation['qdq']:.3g}")

        log("[4/5] manifest entries")
        outcome.entries = _entries(opts, source, quantized, fp32_path, size)
        for e in outcome.entries:
            log(f"  {e.file}: sha256 {e.sha256}")
        if opts.manifest_path is not None:
            manifest.upsert(opts.manifest_path, outcome.entries)
            log(f"  updated {opts.manifest_path}")

        if opts.report and opts.data is not None:
            log("[5/5] report: coco128 mAP and latency")
            _report(opts, opts.data, others, outcome, log)
        else:
            log("[5/5] no report (--report not given)")
    return outcome


def _entries(
    opts: Options, source: onnx.ModelProto, dequantized: bool, fp32_path: Path, size: int
) -> list[ModelEntry]:
    main = manifest.load_main_manifest(opts.main_manifest)
    names = manifest.class_names(metadata(source))
    batch = ", dynamic batch" if opts.dynamic_batch else ""
    how = "dequantizing its int8 weights" if dequantized else "making its batch axis dynamic"
    fp32_desc = f"fp32 graph made from {opts.model.name} by {how}{batch}."
    qdq_desc = (
        f"Static INT8 of {opts.model.name}: {opts.settings.describe()}; "
        f"{len(opts.calib)} calibration source(s){batch}."
    )
    return [
        manifest.entry_for(
            path, manifest=main, source=opts.model, input_size=size, class_names=names, description=desc
        )
        for path, desc in ((fp32_path, fp32_desc), (opts.out, qdq_desc))
        if path != opts.model  # the input already has its own entry (or none of ours)
    ]

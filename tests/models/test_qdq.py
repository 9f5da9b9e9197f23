"""Static QDQ of the real 320 model calibrated on 8 frames of a real street clip: the job, its report, and
detections that still land on the labelled objects."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from edge_agent.config import ModelConfig
from edge_agent.node.assets import ModelEntry, sha256_file
from edge_agent.perception.detector.onnx_detector import OnnxDetector
from edge_agent.perception.detector.postprocess import box_iou
from models.tooling.pipeline import Options, Outcome, run_job
from models.tooling.report import write_section
from models.tooling.summary import console, markdown
from tests.models.conftest import IMAGES, labels_xyxy, read_image
from tests.paths import ROOT

STREET = (0, 2, 3, 5, 7)  # person, car, motorcycle, bus, truck
BIG = 0.08  # objects covering at least 8% of the image


@pytest.fixture(scope="module")
def job(model_320_path, clip_path, coco128, tmp_path_factory) -> tuple[Options, Outcome]:
    out_dir = tmp_path_factory.mktemp("qdq")
    opts = Options(
        model=model_320_path,
        calib=[str(clip_path)],
        frames=8,
        out=out_dir / "yolo11n_320_qdq.onnx",
        dynamic_batch=True,
        report=True,
        data=coco128,
        limit=8,
        threads=1,
        manifest_path=out_dir / "local-manifest.yaml",
        main_manifest=ROOT / "models" / "manifest.yaml",
        quiet=True,
    )
    return opts, run_job(opts, log=lambda _m: None)


def test_models_written_and_valid(job):
    opts, outcome = job
    assert outcome.dequantized and outcome.calib_frames == 8
    assert outcome.fp32_path == opts.out.parent / "yolo11n_coco_320_fp32_dynbatch.onnx"
    qdq = onnx.load(str(opts.out))
    onnx.checker.check_model(qdq)
    ops = {n.op_type for n in qdq.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "ConvInteger" not in ops
    float_decode = {n.name for n in qdq.graph.node if n.name.startswith("/model.23/dfl/")}
    assert "/model.23/dfl/Softmax" in float_decode and set(outcome.excluded) >= {"/model.23/dfl/Softmax"}
    assert outcome.batch_deviation["fp32"] <= 1e-4 and outcome.batch_deviation["qdq"] <= 1e-4


def test_report_fields(job, tmp_path):
    opts, outcome = job
    labels = [r.label for r in outcome.rows]
    assert labels == ["int8 dynamic (original)", "fp32 (dequantized)", "int8 static QDQ (decode+last-conv)"]
    for row in outcome.rows:
        assert row.finite() and 0.0 < row.map50_95 <= row.map50 <= 1.0
        assert row.size_bytes == row.path.stat().st_size > 1_000_000
        assert row.sha256 == sha256_file(row.path)
        assert row.latency_samples == 8 and 0 < row.inference_p50_ms <= row.total_p50_ms <= row.total_p95_ms
    assert outcome.rows[2].size_bytes < outcome.rows[1].size_bytes / 2  # int8 weights
    assert outcome.raw_deviation is not None and outcome.raw_deviation.max_abs_scores < 0.5
    assert all(math.isfinite(v) for v in outcome.load)

    text = console(outcome, opts)
    assert "mAP50-95" in text and "yolo11n_320_qdq.onnx" in text
    section = markdown(outcome, opts, "python scripts/quantize_model.py ...")
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept text\n", encoding="utf-8")
    write_section(doc, opts.out.name, section)
    write_section(doc, opts.out.name, section)  # replaced in place, not appended twice
    body = doc.read_text(encoding="utf-8")
    assert body.startswith("# Benchmarks\n\nkept text\n")
    assert body.count("<!-- quantize:yolo11n_320_qdq.onnx -->") == 1
    assert re.search(r"\| int8 static QDQ \(decode\+last-conv\) \| `yolo11n_320_qdq.onnx` \| [\d.]+ \|", body)


def test_local_manifest_entries(job):
    opts, outcome = job
    assert opts.manifest_path is not None
    data = yaml.safe_load(opts.manifest_path.read_text(encoding="utf-8"))
    entries = [ModelEntry.model_validate(m) for m in data["models"]]
    by_file = {e.file: e for e in entries}
    for path in (outcome.fp32_path, opts.out):
        entry = by_file[path.name]
        assert entry.sha256 == sha256_file(path)
        assert entry.input_size == 320 and entry.classes == "coco80" and entry.export_from == "yolo11n"


@pytest.mark.parametrize("stem", IMAGES)
def test_quantized_model_finds_the_labelled_objects(job, coco128, stem):
    opts, _ = job
    detector = OnnxDetector(
        ModelConfig(path=Path(opts.out), backend="onnxruntime", conf_threshold=0.25, iou_threshold=0.45)
    )
    image = read_image(coco128, stem)
    gt, classes, area = labels_xyxy(coco128, stem, image.shape[1], image.shape[0])
    wanted = (area >= BIG) & np.isin(classes, STREET)
    assert wanted.any()
    det = detector.detect([image])[0]
    for box, cls in zip(gt[wanted], classes[wanted], strict=True):
        same = det.class_ids == cls
        best = float(box_iou(box[None], det.xyxy[same]).max()) if same.any() else 0.0
        assert best >= 0.5, f"{stem}: class {cls} box {box.round()} best IoU {best:.2f}"

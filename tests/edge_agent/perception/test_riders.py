"""Rider-scooter association: geometry table, score arithmetic, one bike per rider, the detector wiring, and the
labelled VN set (real model, real clips) with its benchmark record."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import ModelConfig
from edge_agent.perception.detector.labelled_set import LabelledSet, evaluate
from edge_agent.perception.detector.onnx_detector import OnnxDetector
from edge_agent.perception.detector.riders import associate_riders, rides
from edge_agent.types import Detections
from tests.paths import ASSETS, MODEL_640

ROOT = Path(__file__).resolve().parents[3]
LABELS = ROOT / "tests" / "data" / "vn_motorbikes.json"
NAMES = ("person", "bicycle", "car", "motorcycle")
PERSON, BICYCLE, MOTO = 0, 1, 3


@pytest.mark.parametrize(
    ("person", "bike", "expected"),
    [
        ([100, 100, 140, 200], [95, 150, 145, 230], True),  # seated: feet inside the bike box, head above it
        ([100, 100, 140, 240], [95, 150, 145, 230], True),  # feet a little below the bike's bottom edge
        (
            [100, 100, 140, 300],
            [95, 150, 145, 230],
            False,
        ),  # standing in front of it: feet on the ground below
        (
            [100, 180, 140, 225],
            [95, 150, 145, 230],
            False,
        ),  # wholly inside the bike box: a part of it, not a rider
        ([300, 100, 340, 200], [95, 150, 145, 230], False),  # beside it
        ([100, 100, 140, 140], [95, 150, 145, 230], False),  # above it, not touching
    ],
)
def test_rides(person: list[int], bike: list[int], expected: bool) -> None:
    assert rides(np.array(person, np.float32), np.array(bike, np.float32)) is expected


def dets(rows: list[tuple[int, float, list[float]]]) -> Detections:
    return Detections(
        np.array([r[2] for r in rows], np.float32).reshape(-1, 4),
        np.array([r[1] for r in rows], np.float32),
        np.array([r[0] for r in rows], np.int64),
        NAMES,
    )


def test_the_best_bike_under_a_rider_is_lifted_once_and_others_are_left_alone() -> None:
    d = dets(
        [
            (PERSON, 0.8, [100, 100, 140, 200]),
            (MOTO, 0.08, [95, 150, 145, 230]),  # the scooter under the rider
            (MOTO, 0.05, [97, 152, 147, 232]),  # a shifted duplicate: stays low
            (MOTO, 0.09, [400, 150, 450, 230]),  # a bike nobody rides: unchanged
            (PERSON, 0.3, [600, 100, 640, 300]),  # a pedestrian without a bike: unchanged
        ]
    )
    out = associate_riders(d, [BICYCLE, MOTO], PERSON, person_min=0.25, gain=0.6)
    assert out.scores[1] == pytest.approx(1 - (1 - 0.08) * (1 - 0.6 * 0.8))
    assert out.scores[1] > 0.25  # now starts a track
    np.testing.assert_allclose(out.scores[[0, 2, 3, 4]], d.scores[[0, 2, 3, 4]])
    np.testing.assert_array_equal(out.xyxy, d.xyxy)  # no box is moved or invented


def test_a_weak_rider_or_a_candidate_under_the_floor_changes_nothing() -> None:
    d = dets([(PERSON, 0.2, [100, 100, 140, 200]), (MOTO, 0.1, [95, 150, 145, 230])])
    assert associate_riders(d, [MOTO], PERSON, person_min=0.25).scores.tolist() == d.scores.tolist()
    d = dets([(PERSON, 0.9, [100, 100, 140, 200]), (MOTO, 0.02, [95, 150, 145, 230])])
    assert associate_riders(d, [MOTO], PERSON, floor=0.03).scores.tolist() == d.scores.tolist()


@pytest.fixture(scope="module")
def labelled() -> LabelledSet:
    return LabelledSet.load(LABELS)


def test_the_labelled_set_is_what_the_docs_say(labelled: LabelledSet) -> None:
    assert len(labelled.frames) == 60
    assert {f.clip for f in labelled.frames} == {
        "vn_haiphong_intersection_cctv_1006x720.mp4",
        "vn_saigon_intersection_cctv_1018x720.mp4",
        "vn_nga4_truccat_intersection_highview_1280x720.mp4",
        "vn_intersection_phone_screenrec_1620x720.mp4",
    }
    motos = sum(f.labels.count("motorcycle") for f in labelled.frames)
    assert motos > 300
    for f in labelled.frames:
        assert (f.xyxy[:, 2] > f.xyxy[:, 0]).all() and (f.xyxy[:, 3] > f.xyxy[:, 1]).all(), f


@pytest.mark.slow
def test_association_raises_motorcycle_recall_on_the_vn_set_without_losing_ap(labelled: LabelledSet) -> None:
    """The real model on a third of the set (every third frame), plain vs associated, decoded from the clips."""
    subset = LabelledSet(labelled.classes, labelled.min_height_px, labelled.frames[::3])
    plain = OnnxDetector(
        ModelConfig(path=MODEL_640, conf_threshold=0.001, rider_association=False, threads=1)
    )
    assoc = OnnxDetector(ModelConfig(path=MODEL_640, conf_threshold=0.001, threads=1))
    before = evaluate(subset, ASSETS / "videos", lambda im: plain.detect([im])[0])
    after = evaluate(subset, ASSETS / "videos", lambda im: assoc.detect([im])[0])
    print(
        f"moto AP50 {before.ap50['motorcycle']:.3f} -> {after.ap50['motorcycle']:.3f}, recall "
        f"{before.recall['motorcycle']:.3f} -> {after.recall['motorcycle']:.3f}, riders without scooter "
        f"{before.rider_without_scooter_rate:.1%} -> {after.rider_without_scooter_rate:.1%}"
    )
    assert after.recall["motorcycle"] > before.recall["motorcycle"] + 0.03
    assert after.rider_without_scooter_rate < before.rider_without_scooter_rate - 0.05
    assert after.ap50["motorcycle"] >= before.ap50["motorcycle"] - 0.02
    assert after.ap50["person"] == before.ap50["person"] and after.ap50["car"] == before.ap50["car"]


def test_the_detector_keeps_boxes_at_its_threshold_exactly_as_before_except_lifted_bikes() -> None:
    """At the agent's conf 0.1 the association decodes down to 0.03 but returns only boxes >= 0.1."""
    import cv2

    cap = cv2.VideoCapture(str(ASSETS / "videos" / "vn_saigon_intersection_cctv_1018x720.mp4"))
    ok, image = cap.read()
    cap.release()
    assert ok
    plain = OnnxDetector(ModelConfig(path=MODEL_640, rider_association=False, threads=1)).detect([image])[0]
    assoc = OnnxDetector(ModelConfig(path=MODEL_640, threads=1)).detect([image])[0]
    assert (assoc.scores >= 0.1).all()
    key = {(int(c), *np.round(b, 1)) for c, b in zip(plain.class_ids, plain.xyxy, strict=True)}
    new = [(int(c), *np.round(b, 1)) for c, b in zip(assoc.class_ids, assoc.xyxy, strict=True)]
    extra = [k for k in new if k not in key]
    assert key <= set(new)  # nothing the plain decode kept is lost
    assert all(k[0] in (BICYCLE, MOTO) for k in extra)  # only two-wheelers are added
    assert len(extra) >= 1  # the Saigon riders waiting at the light: at least one scooter lifted


def test_benchmarks_record_motorcycle_ap_for_every_mirror_model() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    section = text[text.index("<!-- vn-motorbikes:begin -->") : text.index("<!-- vn-motorbikes:end -->")]
    for model in ("yolo11n_coco_640_int8dyn", "yolov8n_coco_640_int8dyn", "yolo11n_coco_320_int8dyn"):
        for setting in ("plain", "rider association"):
            row = re.search(rf"\| {model} \| {setting} \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", section)
            assert row, (model, setting)
            assert 0.0 < float(row.group(1)) <= 1.0

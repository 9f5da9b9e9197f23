"""COCO-style AP arithmetic on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.perception.detector.evaluation import (
    IOU_THRESHOLDS,
    DetectionEvaluator,
    EvalResult,
    average_precision,
    match_detections,
)

GT = np.array([[0, 0, 100, 100], [200, 200, 300, 300]], float)
FAR = [500.0, 500.0, 550.0, 550.0]


def evaluate_one_image(pred, scores, gt=GT, pred_cls=None, gt_cls=None) -> EvalResult:
    ev = DetectionEvaluator()
    pred = np.array(pred, float).reshape(-1, 4)
    ev.add(
        pred,
        np.array(scores, float),
        np.zeros(len(pred), np.int64) if pred_cls is None else np.array(pred_cls),
        gt,
        np.zeros(len(gt), np.int64) if gt_cls is None else np.array(gt_cls),
    )
    return ev.result()


def test_thresholds_are_coco():
    np.testing.assert_allclose(IOU_THRESHOLDS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])


@pytest.mark.parametrize(
    ("pred", "scores", "map50", "map50_95"),
    [
        pytest.param(GT, [0.9, 0.8], 1.0, 1.0, id="perfect"),
        pytest.param([], [], 0.0, 0.0, id="no-predictions"),
        # one GT found, one never: recall stops at 0.5, precision 1 -> 51 of 101 recall points
        pytest.param(GT[:1], [0.9], 51 / 101, 51 / 101, id="half-recall"),
        # FP ranked above both TPs: precision 1/2 at recall 0.5, 2/3 at recall 1 -> envelope 2/3 everywhere
        pytest.param([FAR, *GT], [0.95, 0.9, 0.8], 2 / 3, 2 / 3, id="fp-first"),
        # TP, FP, TP: precision 1 up to recall 0.5 (51 points), then 2/3 (50 points)
        pytest.param(
            [GT[0], FAR, GT[1]],
            [0.9, 0.8, 0.7],
            (51 + 50 * 2 / 3) / 101,
            (51 + 50 * 2 / 3) / 101,
            id="tp-fp-tp",
        ),
        # IoU 0.72 for the first GT: TP at 0.50..0.70 (5 thresholds), FP above; second GT found exactly
        pytest.param(
            [[0, 0, 100, 72], GT[1]],
            [0.9, 0.8],
            1.0,
            (5 * 1.0 + 5 * (51 / 101 * 0.5)) / 10,
            id="loose-box",
        ),
    ],
)
def test_ap_hand_cases(pred, scores, map50, map50_95):
    result = evaluate_one_image(pred, scores)
    assert result.map50 == pytest.approx(map50)
    assert result.map50_95 == pytest.approx(map50_95)


def test_one_fp_ranked_above_the_only_tp_gives_one_half():
    tp = np.array([[False], [True]])
    ap = average_precision(tp, np.array([0.9, 0.8]), n_gt=1)
    assert ap.tolist() == [0.5]


def test_duplicate_detection_is_a_false_positive():
    tp = match_detections(np.array([GT[0], GT[0]]), np.array([0.9, 0.8]), GT[:1], np.array([0.5]))
    assert tp[:, 0].tolist() == [True, False]


def test_match_takes_the_best_overlapping_unmatched_gt():
    gts = np.array([[0, 0, 100, 100], [10, 0, 110, 100]], float)
    # the first detection overlaps GT 1 best (IoU 1), so the second detection can still match GT 0 (IoU 0.82)
    tp = match_detections(np.array([[10, 0, 110, 100], [0, 0, 100, 100]], float), np.array([0.9, 0.8]), gts)
    assert tp[:, 0].tolist() == [True, True]


def test_classes_without_ground_truth_do_not_count_and_missed_classes_count_zero():
    # class 0 found perfectly; class 1 has GT but no prediction; class 2 has only a false positive
    result = evaluate_one_image([GT[0], FAR], [0.9, 0.9], gt=GT, pred_cls=[0, 2], gt_cls=[0, 1])
    assert result.class_ids == (0, 1)
    assert result.class_ap(0) == (1.0, 1.0)
    assert result.class_ap(1) == (0.0, 0.0)
    assert result.class_ap(2) is None
    assert result.map50 == pytest.approx(0.5)


def test_images_accumulate():
    ev = DetectionEvaluator()
    for _ in range(3):
        ev.add(GT, np.array([0.9, 0.8]), np.zeros(2, np.int64), GT, np.zeros(2, np.int64))
    ev.add(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), GT[:1], np.zeros(1, np.int64))
    result = ev.result()
    assert result.n_images == 4 and result.n_gt == (7,)
    # every prediction is a TP and recall stops at 6/7 = 0.857: points 0.00..0.85 (86 of 101) at precision 1
    assert result.map50 == pytest.approx(86 / 101)


def test_ap_needs_ground_truth():
    with pytest.raises(ValueError, match="ground truth"):
        average_precision(np.zeros((1, 1), bool), np.array([0.5]), n_gt=0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=30), st.integers(1, 40))
def test_ap_is_a_fraction_and_perfect_ranking_is_best(flags, extra_gt):
    tp = np.array(flags)[:, None]
    n_gt = int(tp.sum()) + extra_gt - 1 if tp.sum() else extra_gt
    scores = np.linspace(1.0, 0.1, len(flags))
    ap = float(average_precision(tp, scores, n_gt)[0])
    best = float(average_precision(np.sort(tp, axis=0)[::-1], scores, n_gt)[0])
    assert 0.0 <= ap <= best <= 1.0

"""Letterbox geometry, box mapping, NMS and head decoding on hand-built inputs (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.perception.detector.postprocess import (
    MAX_DET,
    batched_nms_offset,
    batched_nms_per_class,
    box_iou,
    cxcywh_to_xyxy,
    decode,
    nms,
)
from edge_agent.perception.detector.preprocess import (
    PAD_VALUE,
    LetterboxMeta,
    from_letterbox,
    letterbox,
    letterbox_batch,
    letterbox_geometry,
    to_letterbox,
)

# ------------------------------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize(
    ("w", "h", "size", "scale", "pad_x", "pad_y", "new_w", "new_h"),
    [
        # bus.jpg, portrait 810x1080: 640/1080 = 0.5926; width 810*0.5926 = 480 -> 160 px of pad split 80/80
        (810, 1080, 640, 640 / 1080, 80, 0, 480, 640),
        (1080, 810, 640, 640 / 1080, 0, 80, 640, 480),
        (1280, 720, 640, 0.5, 0, 140, 640, 360),
        (1920, 1080, 320, 1 / 6, 0, 70, 320, 180),
        (640, 640, 640, 1.0, 0, 0, 640, 640),
        # odd pad: 33*6.4 = 211.2 -> 211 rows, dh = 214.5 -> top round(214.4) = 214, bottom 215
        (100, 33, 640, 6.4, 0, 214, 640, 211),
        (33, 100, 640, 6.4, 214, 0, 211, 640),
    ],
)
def test_letterbox_geometry_hand_cases(w, h, size, scale, pad_x, pad_y, new_w, new_h):
    meta, nw, nh = letterbox_geometry(w, h, size)
    assert meta.scale == pytest.approx(scale, rel=1e-12)
    assert (meta.pad_x, meta.pad_y, nw, nh) == (pad_x, pad_y, new_w, new_h)
    assert (meta.orig_w, meta.orig_h) == (w, h)


def test_letterbox_pixels_are_rgb_chw_unit_range_with_grey_pad():
    image = np.zeros((1080, 810, 3), np.uint8)
    image[:] = (10, 20, 30)  # BGR
    tensor, meta = letterbox(image, 640)
    assert tensor.shape == (3, 640, 640) and tensor.dtype == np.float32
    assert (meta.pad_x, meta.pad_y) == (80, 0)
    grey = PAD_VALUE / 255.0
    np.testing.assert_allclose(tensor[:, :, :80], grey, rtol=1e-6)
    np.testing.assert_allclose(tensor[:, :, 560:], grey, rtol=1e-6)
    rgb = np.broadcast_to(np.array([30, 20, 10], np.float32).reshape(3, 1, 1) / 255.0, (3, 640, 480))
    np.testing.assert_allclose(tensor[:, :, 80:560], rgb, rtol=1e-6)


def test_letterbox_odd_pad_goes_bottom():
    tensor, meta = letterbox(np.zeros((33, 100, 3), np.uint8), 640)
    assert meta.pad_y == 214
    rows_black = np.flatnonzero((tensor[0] == 0).all(axis=1))
    assert (rows_black[0], rows_black[-1]) == (214, 424)  # 211 image rows, then 215 pad rows


def test_letterbox_rejects_non_bgr_images():
    with pytest.raises(ValueError, match="BGR uint8"):
        letterbox(np.zeros((10, 10), np.uint8), 640)
    with pytest.raises(ValueError, match="BGR uint8"):
        letterbox(np.zeros((10, 10, 3), np.float32), 640)


def test_letterbox_batch_stacks_frames_of_different_sizes():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(480, 640), (1080, 810), (50, 70)]]
    batch, metas = letterbox_batch(frames, 320)
    assert batch.shape == (3, 3, 320, 320)
    for i, frame in enumerate(frames):
        single, meta = letterbox(frame, 320)
        np.testing.assert_array_equal(batch[i], single)
        assert metas[i] == meta


def test_box_round_trip_hand_case():
    meta, _, _ = letterbox_geometry(810, 1080, 640)
    box = np.array([[100.0, 200.0, 400.0, 800.0]])
    k = 640 / 1080
    lb = to_letterbox(box, meta)
    np.testing.assert_allclose(lb, [[100 * k + 80, 200 * k, 400 * k + 80, 800 * k]], rtol=1e-6)
    np.testing.assert_allclose(from_letterbox(lb, meta), box, atol=1e-3)


def test_from_letterbox_clips_to_image():
    meta = LetterboxMeta(scale=0.5, pad_x=0, pad_y=140, orig_w=1280, orig_h=720)
    out = from_letterbox(np.array([[-10.0, 100.0, 700.0, 600.0]]), meta)
    np.testing.assert_array_equal(out, [[0.0, 0.0, 1280.0, 720.0]])


@settings(max_examples=300, deadline=None)
@given(
    w=st.integers(16, 4096),
    h=st.integers(16, 4096),
    size=st.sampled_from([320, 640, 1280]),
    fx=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2),
    fy=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2),
)
def test_box_round_trip_property(w, h, size, fx, fy):
    meta, _, _ = letterbox_geometry(w, h, size)
    box = np.array([[min(fx) * w, min(fy) * h, max(fx) * w, max(fy) * h]])
    back = from_letterbox(to_letterbox(box, meta), meta)
    np.testing.assert_allclose(back, box, atol=1e-3, rtol=0)


# ------------------------------------------------------------------------------------------------------- NMS


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 20]], float)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.5]])


@pytest.mark.parametrize(
    ("boxes", "scores", "thr", "expected"),
    [
        # IoU 81/119 = 0.68: suppressed at 0.5, kept at 0.7
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.9, 0.8], 0.5, [0]),
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.9, 0.8], 0.7, [0, 1]),
        # IoU exactly 0.5 is not "greater than" 0.5: kept (torchvision's rule)
        ([[0, 0, 10, 10], [0, 0, 10, 20]], [0.9, 0.8], 0.5, [0, 1]),
        # chain: A suppresses B; C overlaps only B (0.54) and A a little (0.25), so it survives
        ([[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]], [0.9, 0.8, 0.7], 0.5, [0, 2]),
        # order is by score, not by input position
        ([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], [0.3, 0.9, 0.5], 0.5, [1, 2]),
        ([], [], 0.5, []),
    ],
)
def test_nms_hand_cases(boxes, scores, thr, expected):
    keep = nms(np.array(boxes, float).reshape(-1, 4), np.array(scores, float), thr)
    assert keep.tolist() == expected


def test_nms_max_keep_stops_early_with_the_best():
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(10)], float)
    scores = np.linspace(0.1, 1.0, 10)
    assert nms(boxes, scores, 0.5, max_keep=3).tolist() == [9, 8, 7]


@pytest.mark.parametrize("batched", [batched_nms_offset, batched_nms_per_class])
def test_batched_nms_separates_classes(batched):
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11]], float)
    scores = np.array([0.9, 0.8, 0.7])
    classes = np.array([0, 0, 1])
    assert batched(boxes, scores, classes, 0.5).tolist() == [0, 2]


def _naive_nms(boxes, scores, thr) -> list[int]:
    """Reference: the textbook double loop."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if all(box_iou(boxes[i : i + 1], boxes[k : k + 1])[0, 0] <= thr for k in keep):
            keep.append(i)
    return keep


boxes_strategy = st.integers(0, 40).flatmap(
    lambda n: st.tuples(
        st.lists(
            st.tuples(*[st.floats(0, 100, width=32)] * 2, *[st.floats(1, 60, width=32)] * 2),
            min_size=n,
            max_size=n,
        ),
        st.lists(st.floats(0.0625, 1.0, width=32), min_size=n, max_size=n),
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None)
@given(data=boxes_strategy, thr=st.sampled_from([0.3, 0.45, 0.7]))
def test_nms_strategies_agree_with_reference(data, thr):
    raw, scores, classes = data
    xywh = np.array(raw, np.float32).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    sc, cls = np.array(scores, np.float32), np.array(classes, np.int64)
    offset = batched_nms_offset(boxes, sc, cls, thr)
    per_class = batched_nms_per_class(boxes, sc, cls, thr)
    np.testing.assert_array_equal(offset, per_class)
    for c in range(4):
        idx = np.flatnonzero(cls == c)
        ref = sorted(idx[_naive_nms(boxes[idx], sc[idx], thr)].tolist())
        assert sorted(i for i in offset.tolist() if cls[i] == c) == ref


# ---------------------------------------------------------------------------------------------------- decode

IDENTITY = LetterboxMeta(scale=1.0, pad_x=0, pad_y=0, orig_w=640, orig_h=640)


def make_head(
    anchors: list[tuple[tuple[float, float, float, float], dict[int, float]]], n: int = 16
) -> np.ndarray:
    """A [84, n] head: anchor i gets box (cx, cy, w, h) and the given class scores; other anchors are zero."""
    head = np.zeros((84, n), np.float32)
    for i, (box, scores) in enumerate(anchors):
        head[:4, i] = box
        for c, s in scores.items():
            head[4 + c, i] = s
    return head


BOX_A = (100.0, 100.0, 50.0, 50.0)
BOX_A_SHIFTED = (105.0, 100.0, 50.0, 50.0)  # IoU with A = 45*50 / (2*2500 - 2250) = 0.82
BOX_FAR = (400.0, 400.0, 40.0, 40.0)


@pytest.mark.parametrize(
    ("anchors", "class_filter", "expected"),
    [
        pytest.param(
            [(BOX_A, {2: 0.9}), (BOX_A_SHIFTED, {2: 0.8})], None, [(2, 0.9)], id="same-class-overlap-one-kept"
        ),
        pytest.param(
            [(BOX_A, {2: 0.9}), (BOX_A_SHIFTED, {7: 0.8})],
            None,
            [(2, 0.9), (7, 0.8)],
            id="different-classes-both-kept",
        ),
        pytest.param(
            [(BOX_A, {2: 0.9}), (BOX_FAR, {0: 0.2})], None, [(2, 0.9)], id="below-threshold-dropped"
        ),
        pytest.param([(BOX_A, {2: 0.25})], None, [], id="equal-to-threshold-dropped"),
        pytest.param(
            [(BOX_A, {2: 0.9}), (BOX_FAR, {0: 0.7}), (BOX_A_SHIFTED, {5: 0.6})],
            [0, 5],
            [(0, 0.7), (5, 0.6)],
            id="class-filter",
        ),
        pytest.param([(BOX_A, {7: 0.6, 2: 0.5})], [2], [], id="filter-never-relabels"),
        pytest.param([(BOX_A, {7: 0.6, 2: 0.5})], None, [(7, 0.6)], id="best-class-wins"),
        pytest.param([], None, [], id="empty"),
    ],
)
def test_decode_hand_cases(anchors, class_filter, expected):
    det = decode(make_head(anchors), IDENTITY, 0.25, 0.45, class_filter, names=("n",) * 80)
    got = [(int(c), round(float(s), 3)) for c, s in zip(det.class_ids, det.scores, strict=True)]
    assert got == expected
    assert det.names == ("n",) * 80


def test_decode_undoes_letterbox_and_accepts_batch_dim():
    # 1280x720 frame in 640: scale 0.5, pad_y 140. Box centre (320, 320), 100x100 in input pixels.
    meta = LetterboxMeta(scale=0.5, pad_x=0, pad_y=140, orig_w=1280, orig_h=720)
    head = make_head([((320.0, 320.0, 100.0, 100.0), {0: 0.9})])[None]
    det = decode(head, meta, 0.25, 0.45)
    np.testing.assert_allclose(det.xyxy, [[540.0, 260.0, 740.0, 460.0]])  # ((270 - 140) / 0.5 = 260)
    assert det.xyxy.dtype == np.float32 and det.class_ids.dtype == np.int64


def test_decode_caps_at_max_det_keeping_the_best():
    n = 400
    head = np.zeros((84, n), np.float32)
    head[0] = (np.arange(n) % 20) * 30 + 10
    head[1] = (np.arange(n) // 20) * 30 + 10
    head[2:4] = 10.0
    head[4] = np.linspace(0.3, 0.99, n)
    det = decode(head, IDENTITY, 0.25, 0.45)
    assert len(det) == MAX_DET
    assert float(det.scores.min()) == pytest.approx(float(np.sort(head[4])[-MAX_DET]))
    assert np.all(np.diff(det.scores) <= 0)


def test_decode_rejects_bad_shapes():
    with pytest.raises(ValueError, match="4 \\+ classes"):
        decode(np.zeros((4, 10), np.float32), IDENTITY, 0.25, 0.45)


def test_cxcywh_to_xyxy():
    np.testing.assert_array_equal(cxcywh_to_xyxy(np.array([[10, 20, 4, 6]], np.float32)), [[8, 17, 12, 23]])

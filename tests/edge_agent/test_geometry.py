"""Zone geometry: membership (hand cases and properties), self-intersection and area."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.geometry import point_in_polygon, polygon_area, scale, self_intersection

SQUARE = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)]
# A "U": the notch between the arms (x in 1..3, y in 2..4) is outside.
U_SHAPE = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (3.0, 4.0), (3.0, 2.0), (1.0, 2.0), (1.0, 4.0), (0.0, 4.0)]
BOW_TIE = [(0.0, 0.0), (4.0, 4.0), (4.0, 0.0), (0.0, 4.0)]
TRIANGLE = [(0.0, 0.0), (4.0, 0.0), (0.0, 3.0)]


@pytest.mark.parametrize(
    ("point", "polygon", "expected"),
    [
        pytest.param((2.0, 2.0), SQUARE, True, id="inside"),
        pytest.param((5.0, 2.0), SQUARE, False, id="outside-right"),
        pytest.param((-0.1, 2.0), SQUARE, False, id="outside-left"),
        pytest.param((2.0, 4.0), SQUARE, True, id="on-top-edge"),
        pytest.param((0.0, 1.5), SQUARE, True, id="on-left-edge"),
        pytest.param((4.0, 4.0), SQUARE, True, id="on-vertex"),
        pytest.param((0.0, 0.0), SQUARE, True, id="on-origin-vertex"),
        pytest.param((2.0, 3.0), U_SHAPE, False, id="concave-notch"),
        pytest.param((0.5, 3.0), U_SHAPE, True, id="concave-left-arm"),
        pytest.param((3.5, 3.0), U_SHAPE, True, id="concave-right-arm"),
        pytest.param((2.0, 1.0), U_SHAPE, True, id="concave-base"),
        pytest.param((2.0, 2.0), U_SHAPE, True, id="concave-notch-floor-edge"),
        pytest.param((1.0, 1.0), TRIANGLE, True, id="triangle-inside"),
        pytest.param((3.0, 2.0), TRIANGLE, False, id="triangle-beyond-hypotenuse"),
        pytest.param((2.0, 1.5), TRIANGLE, True, id="triangle-on-hypotenuse"),
        pytest.param((1.0, 1.0), [(0.0, 0.0), (2.0, 2.0)], False, id="degenerate-two-points"),
    ],
)
def test_point_in_polygon_cases(point, polygon, expected):
    assert point_in_polygon(point, polygon) is expected


@pytest.mark.parametrize(
    ("polygon", "simple"),
    [
        pytest.param(BOW_TIE, False, id="bow-tie"),
        pytest.param(SQUARE, True, id="convex-square"),
        pytest.param(U_SHAPE, True, id="concave-u"),
        pytest.param(TRIANGLE, True, id="triangle"),
        pytest.param(
            [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, -1.0), (0.0, 4.0)], False, id="folded-pentagon"
        ),
    ],
)
def test_self_intersection(polygon, simple):
    result = self_intersection(polygon)
    if simple:
        assert result is None
    else:
        assert result is not None
        i, j = result
        assert 0 <= i < j < len(polygon)


def test_bow_tie_names_the_crossing_edges():
    # Edges 0 ((0,0)-(4,4)) and 2 ((4,0)-(0,4)) cross at (2, 2).
    assert self_intersection(BOW_TIE) == (0, 2)


@pytest.mark.parametrize(
    ("polygon", "area"),
    [
        pytest.param(SQUARE, 16.0, id="square"),
        pytest.param(list(reversed(SQUARE)), 16.0, id="square-clockwise"),
        pytest.param(TRIANGLE, 6.0, id="triangle"),
        pytest.param(U_SHAPE, 12.0, id="concave-u"),
        pytest.param([(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)], 0.0, id="collinear"),
        pytest.param([], 0.0, id="empty"),
    ],
)
def test_polygon_area(polygon, area):
    assert polygon_area(polygon) == pytest.approx(area)


def test_scale_to_pixels():
    assert scale([(0.0, 0.0), (0.5, 1.0)], 1920, 1080) == [(0.0, 0.0), (960.0, 1080.0)]


# --- properties -------------------------------------------------------------------------------------------

coord = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
size = st.floats(min_value=1e-2, max_value=1e4, allow_nan=False, allow_infinity=False)
frac = st.floats(min_value=0.0, max_value=1.0)
small_int = st.integers(min_value=-100, max_value=100)


@given(x=coord, y=coord, w=size, h=size, u=frac, v=frac)
def test_point_in_axis_aligned_rectangle_is_inside(x, y, w, h, u, v):
    rect = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    # Points on the border count as inside, so clamping the rounding of x + u*w into the rectangle is enough.
    px = min(max(x + u * w, x), x + w)
    py = min(max(y + v * h, y), y + h)
    assert point_in_polygon((px, py), rect)


@given(
    polygon=st.lists(st.tuples(small_int, small_int), min_size=3, max_size=10),
    point=st.tuples(small_int, small_int),
    dx=st.integers(min_value=-1000, max_value=1000),
    dy=st.integers(min_value=-1000, max_value=1000),
)
def test_translation_preserves_membership(polygon, point, dx, dy):
    # Integer coordinates keep every intermediate exact, so the property must hold exactly, edges included.
    poly = [(float(a), float(b)) for a, b in polygon]
    moved = [(a + dx, b + dy) for a, b in poly]
    p = (float(point[0]), float(point[1]))
    assert point_in_polygon(p, poly) == point_in_polygon((p[0] + dx, p[1] + dy), moved)


@given(
    polygon=st.lists(st.tuples(coord, coord), min_size=3, max_size=12),
    side=st.sampled_from(["left", "right", "below", "above"]),
    gap=st.floats(min_value=1e-3, max_value=1e6),
    along=coord,
)
def test_points_outside_bounding_box_are_outside(polygon, side, gap, along):
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    point = {
        "left": (min(xs) - gap, along),
        "right": (max(xs) + gap, along),
        "below": (along, min(ys) - gap),
        "above": (along, max(ys) + gap),
    }[side]
    assert not point_in_polygon(point, polygon)

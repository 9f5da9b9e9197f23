"""Ground-plane homography (hand cases and properties) and the calibration CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.node.calibrate import main
from edge_agent.rules.homography import GroundPlane
from edge_agent.rules.sceneconfig import GroundPlaneConfig

# A road seen in perspective: a 7 m x 20 m rectangle, its far edge (y = 0 m) higher and narrower in the image.
IMAGE_PX = [(576.0, 648.0), (1344.0, 648.0), (1728.0, 1026.0), (192.0, 1026.0)]
WORLD_M = [(0.0, 0.0), (7.0, 0.0), (7.0, 20.0), (0.0, 20.0)]


def test_four_pairs_map_exactly():
    gp = GroundPlane.from_points(IMAGE_PX, WORLD_M)
    np.testing.assert_allclose(gp.to_world(IMAGE_PX), WORLD_M, atol=1e-6)
    np.testing.assert_allclose(gp.to_image(WORLD_M), IMAGE_PX, atol=1e-6)
    assert gp.reprojection_errors_px(IMAGE_PX, WORLD_M).max() < 1e-6
    assert gp.distance_m(IMAGE_PX[0], IMAGE_PX[3]) == pytest.approx(20.0)
    assert gp.distance_m(IMAGE_PX[0], IMAGE_PX[1]) == pytest.approx(7.0)


def test_perspective_foreshortening():
    gp = GroundPlane.from_points(IMAGE_PX, WORLD_M)
    # The image midpoint between the far and near edges is more than halfway along the ground (from far).
    mid = gp.to_world([(960.0, 837.0)])[0]
    assert mid[0] == pytest.approx(3.5) and mid[1] > 10.0
    # A pixel covers more ground far away than near.
    assert gp.metres_per_pixel((960.0, 660.0)) > gp.metres_per_pixel((960.0, 1000.0))


def test_points_above_the_horizon_have_no_ground_position():
    gp = GroundPlane.from_points(IMAGE_PX, WORLD_M)
    assert np.isnan(gp.to_world([(960.0, 100.0)])).all()
    assert math.isnan(gp.distance_m((960.0, 100.0), (960.0, 900.0)))


def test_more_pairs_are_fitted_by_least_squares():
    gp_true = GroundPlane.from_points(IMAGE_PX, WORLD_M)
    world = [(x, y) for x in (0.0, 3.5, 7.0) for y in (0.0, 5.0, 10.0, 20.0)]
    rng = np.random.default_rng(1)
    image = gp_true.to_image(world) + rng.normal(0.0, 1.0, (len(world), 2))
    gp = GroundPlane.from_points([tuple(p) for p in image], world)
    err = gp.reprojection_errors_px([tuple(p) for p in image], world)
    assert 0.0 < err.mean() < 2.0
    assert gp.distance_m(IMAGE_PX[0], IMAGE_PX[3]) == pytest.approx(20.0, rel=0.03)


@pytest.mark.parametrize(
    ("image", "world", "match"),
    [
        pytest.param([(0, 0), (1, 1), (2, 2), (0, 5)], WORLD_M, "degenerate", id="collinear-image"),
        pytest.param(IMAGE_PX[:3], WORLD_M[:3], "4 or more", id="three-pairs"),
        pytest.param(IMAGE_PX, WORLD_M[:3], "4 or more", id="count-mismatch"),
    ],
)
def test_bad_point_sets_are_refused(image, world, match):
    with pytest.raises(ValueError, match=match):
        GroundPlane.from_points(image, world)


def test_config_points_are_normalized_and_scale_with_the_frame():
    cfg = GroundPlaneConfig(image=[(x / 1920, y / 1080) for x, y in IMAGE_PX], world=WORLD_M)
    full = GroundPlane.from_config(cfg, (1920, 1080))
    half = GroundPlane.from_config(cfg, (960, 540))
    assert full.distance_m((960.0, 700.0), (960.0, 1000.0)) == pytest.approx(
        half.distance_m((480.0, 350.0), (480.0, 500.0))
    )


coord = st.floats(-60.0, 60.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    dx=st.tuples(coord, coord, coord, coord),
    dy=st.tuples(coord, coord, coord, coord),
    u=st.floats(0.05, 0.95),
    v=st.floats(0.05, 0.95),
)
def test_round_trip_inside_the_surveyed_quad(dx, dy, u, v):
    """For any gently perturbed quad: image -> ground -> image is the identity inside it, and the world
    point of a bilinear-interpolated image point lies inside the surveyed rectangle."""
    image = [(x + ddx, y + ddy) for (x, y), ddx, ddy in zip(IMAGE_PX, dx, dy, strict=True)]
    gp = GroundPlane.from_points(image, WORLD_M)
    top = np.add(np.multiply(image[0], 1 - u), np.multiply(image[1], u))
    bottom = np.add(np.multiply(image[3], 1 - u), np.multiply(image[2], u))
    p = tuple(np.add(np.multiply(top, 1 - v), np.multiply(bottom, v)))
    w = gp.to_world([p])[0]
    assert -1e-6 <= w[0] <= 7.0 + 1e-6 and -1e-6 <= w[1] <= 20.0 + 1e-6
    np.testing.assert_allclose(gp.to_image([tuple(w)])[0], p, atol=1e-6)


# --- the CLI ------------------------------------------------------------------------------------------------

ARGS = [
    "--image",
    "0.30,0.60",
    "0.70,0.60",
    "0.90,0.95",
    "0.10,0.95",
    "--world",
    "0,0",
    "7,0",
    "7,20",
    "0,20",
]


def test_cli_prints_checks_and_a_valid_snippet(capsys):
    rc = main([*ARGS, "--distance", "0.5,0.6", "0.5,0.95", "--check", "0.5,0.95=3.5,20"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "reprojection error: mean 0.00 px, max 0.00 px" in out
    assert "distance [0.5, 0.6] -> [0.5, 0.95]: 20.00 m" in out
    assert "error 0.00 m" in out
    snippet = out[out.index("ground_plane:") :]
    cfg = GroundPlaneConfig.model_validate(yaml.safe_load(snippet)["ground_plane"])
    assert cfg.image[2] == (0.9, 0.95) and cfg.world[2] == (7.0, 20.0)


def test_cli_takes_pixels(capsys):
    rc = main(
        ["--pixels", "--size", "1000x500", "--image", "300,300", "700,300", "900,475", "100,475", *ARGS[5:]]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "image: [[0.3, 0.6], [0.7, 0.6], [0.9, 0.95], [0.1, 0.95]]" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["--image", "0.1,0.1", "0.2,0.2", "0.3,0.3", "0.1,0.9", *ARGS[5:]], "on one line", id="collinear"
        ),
        pytest.param(["--image", "0.1", *ARGS[2:]], "not a point", id="bad-point"),
        pytest.param([*ARGS, "--size", "big"], "not a frame size", id="bad-size"),
        pytest.param([*ARGS, "--check", "0.5,0.5"], "write X,Y=WX,WY", id="bad-check"),
        pytest.param(["--image", "1.5,0.6", *ARGS[2:]], "outside the frame", id="outside-frame"),
    ],
)
def test_cli_refuses_bad_input(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err

"""The config schema of the full rule set: a YAML example with every rule, and clear errors naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from edge_agent.classes import COCO80, check_classes
from edge_agent.config import ConfigError, parse_config
from edge_agent.rules.registry import build_rule_set
from edge_agent.rules.schedule import fixed_clock
from tests.edge_agent.rules.rulekit import LOCAL_MIDNIGHT_MON
from tests.paths import ROOT

# A Hai Phong-style intersection camera with every rule (coordinates are illustrative).
EXAMPLE = """
node_id: hp-node-01
model: {path: ../assets/models/yolo11n_coco_640_int8dyn.onnx}
cameras:
  - id: hp-cam-01
    source: ../assets/videos/vn_haiphong_intersection_cctv_1006x720.mp4
    zones:
      - {id: kerb-lane, polygon: [[0.02, 0.62], [0.20, 0.62], [0.12, 0.98], [0.00, 0.98]]}
      - id: sidewalk-east
        polygon: [[0.84, 0.52], [0.99, 0.45], [0.99, 0.98], [0.90, 0.98]]
      - id: lane-north
        polygon: [[0.35, 0.55], [0.62, 0.55], [0.66, 0.98], [0.30, 0.98]]
        direction: up          # traffic drives up the image (away from the camera)
      - {id: approach-south, polygon: [[0.30, 0.60], [0.70, 0.60], [0.70, 0.98], [0.30, 0.98]]}
      - {id: exit-west, polygon: [[0.00, 0.30], [0.20, 0.30], [0.20, 0.50], [0.00, 0.50]]}
      - {id: junction, polygon: [[0.05, 0.25], [0.95, 0.25], [0.95, 0.55], [0.05, 0.55]]}
    lines:
      # Stop line of the far approach: its traffic drives down the image, towards the camera, and faces the
      # signal head the camera can read (a head seen from the front governs traffic coming towards it).
      - id: stop-far
        points: [[0.10, 0.27], [0.62, 0.27]]
        direction: down        # controlled direction: into the junction
    signals:
      - id: light-far          # the head on the right, seen from the front
        source: colour
        roi: [[0.970, 0.172], [0.998, 0.264]]
      - {id: controller-feed, source: external, max_age_s: 2}
    ground_plane:
      image: [[0.30, 0.60], [0.70, 0.60], [0.90, 0.95], [0.10, 0.95]]
      world: [[0, 0], [7, 0], [7, 20], [0, 20]]
    rules:
      - id: no-stopping-kerb
        type: illegal_stopping
        zone: kerb-lane
        min_dwell_s: 30
        schedule:
          timezone: Asia/Ho_Chi_Minh
          windows:
            - {start: "06:30", end: "09:00", days: [mon, tue, wed, thu, fri]}
            - {start: "16:30", end: "19:00", days: [mon, tue, wed, thu, fri]}
      - {id: sidewalk-vehicles, type: sidewalk_vehicle, zone: sidewalk-east, grace_s: 5}
      - {id: wrong-way-north, type: wrong_way, zone: lane-north, min_distance: 0.06}
      - {id: red-light-far, type: red_light, line: stop-far, signal: light-far}
      - {id: speed-south, type: speeding, zone: approach-south, limit_kmh: 50, tolerance_kmh: 5}
      - id: no-left-turn-peak
        type: illegal_turn
        forbidden: [{from_zone: approach-south, to_zone: exit-west}]
        schedule: {windows: [{start: "06:00", end: "20:00"}]}
      - {id: overload-south, type: motorbike_overload, zone: approach-south, max_riders: 2}
      - id: encroachment-east
        type: encroachment
        zone: sidewalk-east
        min_occupancy: 0.3
        min_duration_s: 300
        background: {learning_s: 1800, persistence_s: 60}
      - {id: gathering-junction, type: gathering, zone: junction, min_persons: 5, radius: 1.5}
"""


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE)
    return data


def cam(data: dict[str, Any]) -> dict[str, Any]:
    camera: dict[str, Any] = data["cameras"][0]
    return camera


def rule(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in cam(data)["rules"] if r["id"] == rule_id)


def test_example_with_every_rule_is_valid_and_builds():
    cfg = parse_config(example(), "example.yaml")
    camera = cfg.cameras[0]
    assert {r.type for r in camera.rules} == {
        "illegal_stopping",
        "sidewalk_vehicle",
        "wrong_way",
        "red_light",
        "speeding",
        "illegal_turn",
        "motorbike_overload",
        "encroachment",
        "gathering",
    }
    built = build_rule_set(camera, (1006, 720), fixed_clock(LOCAL_MIDNIGHT_MON))
    assert [r.rule_id for r in built.rules] == [r.id for r in camera.rules]
    assert set(built.signals) == {"light-far", "controller-feed"}
    assert len(built.inputs) == 2  # the colour signal head and the encroachment background model


def test_defaults_are_sensible():
    cfg = parse_config(example(), "example.yaml")
    rules = {r.id: r for r in cfg.cameras[0].rules}
    stop = rules["no-stopping-kerb"]
    assert stop.schedule is not None and stop.schedule.timezone == "Asia/Ho_Chi_Minh"
    assert rules["overload-south"].max_riders == 2  # Vietnam allows two riders: three or more are flagged
    assert rules["sidewalk-vehicles"].classes == ["car", "motorcycle", "bus", "truck"]
    assert rules["encroachment-east"].classes[:3] == ["bench", "chair", "couch"]
    no_tz = rules["no-left-turn-peak"].schedule
    assert no_tz is not None and no_tz.timezone == "Asia/Ho_Chi_Minh"
    assert no_tz.windows[0].days == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _set(path: list[Any], value: Any):
    def mutate(data: dict[str, Any]) -> None:
        node: Any = data
        for key in path[:-1]:
            node = (
                node[key] if not isinstance(key, str) or not key.startswith("rule:") else rule(data, key[5:])
            )
        node[path[-1]] = value

    return mutate


C = ["cameras", 0]


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        pytest.param(
            _set([*C, "lines", 0, "points"], [[0.2, 0.5], [1.3, 0.5]]),
            "cameras.0.lines.0",
            "point 1 (1.3, 0.5) lies outside the frame",
            id="line-outside-frame",
        ),
        pytest.param(
            _set([*C, "lines", 0, "points"], [[0.5, 0.5], [0.5, 0.5]]),
            "cameras.0.lines.0",
            "zero length",
            id="line-zero-length",
        ),
        pytest.param(
            _set([*C, "lines", 0, "direction"], "right"),
            "cameras.0.lines.0",
            "runs along the line",
            id="line-direction-along-it",
        ),
        pytest.param(
            _set([*C, "lines", 0, "direction"], "north"),
            "cameras.0.lines.0.direction",
            "Input should be",
            id="direction-unknown-name",
        ),
        pytest.param(
            _set([*C, "zones", 2, "direction"], 720),
            "cameras.0.zones.2.direction",
            "between -360 and 360",
            id="direction-angle-out-of-range",
        ),
        pytest.param(
            _set([*C, "rules", "rule:sidewalk-vehicles", "classes"], ["car", "scooter"]),
            "cameras.0.rules.1.sidewalk_vehicle.classes",
            "unknown class 'scooter'",
            id="unknown-class",
        ),
        pytest.param(
            _set([*C, "rules", "rule:no-stopping-kerb", "classes"], ["cars"]),
            "cameras.0.rules.0.illegal_stopping.classes",
            "did you mean 'car'",
            id="unknown-class-stopping-with-hint",
        ),
        pytest.param(
            _set([*C, "rules", "rule:gathering-junction", "classes"], ["person", "person"]),
            "cameras.0.rules.8.gathering.classes",
            "listed twice",
            id="duplicate-class",
        ),
        pytest.param(
            _set([*C, "rules", "rule:red-light-far", "line"], "stop-north"),
            "cameras.0",
            "rule red-light-far names unknown line 'stop-north'",
            id="unknown-line",
        ),
        pytest.param(
            _set([*C, "rules", "rule:red-light-far", "signal"], "light-x"),
            "cameras.0",
            "names unknown signal 'light-x'",
            id="unknown-signal",
        ),
        pytest.param(
            _set(
                [*C, "rules", "rule:no-left-turn-peak", "forbidden"],
                [{"from_zone": "a", "to_zone": "exit-west"}],
            ),
            "cameras.0",
            "rule no-left-turn-peak names unknown zone 'a'",
            id="unknown-turn-zone",
        ),
        pytest.param(
            _set([*C, "rules", "rule:no-left-turn-peak", "forbidden"], [{"from_zone": "a", "to_zone": "a"}]),
            "forbidden.0",
            "from_zone and to_zone are both 'a'",
            id="turn-to-itself",
        ),
        pytest.param(
            _set([*C, "rules", "rule:wrong-way-north", "zone"], "kerb-lane"),
            "cameras.0",
            "needs zone 'kerb-lane' to have a direction",
            id="wrong-way-zone-without-direction",
        ),
        pytest.param(
            _set([*C, "ground_plane"], None),
            "cameras.0",
            "rule speed-south needs the camera's ground_plane",
            id="speeding-without-ground-plane",
        ),
        pytest.param(
            _set([*C, "ground_plane", "image"], [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.1, 0.9]]),
            "cameras.0.ground_plane",
            "image points [0, 1, 2] are (nearly) on one line",
            id="ground-plane-collinear",
        ),
        pytest.param(
            _set([*C, "ground_plane", "world"], [[0, 0], [7, 0], [7, 20], [0, 20], [3, 3]]),
            "cameras.0.ground_plane",
            "4 image points but 5 world points",
            id="ground-plane-count",
        ),
        pytest.param(
            _set([*C, "signals", 0, "roi"], [[0.9, 0.3], [0.8, 0.2]]),
            "cameras.0.signals.0.colour",
            "top-left then bottom-right",
            id="signal-roi-reversed",
        ),
        pytest.param(
            _set([*C, "signals", 0, "red_hue"], [170, 200]),
            "cameras.0.signals.0.colour.red_hue",
            "0..179",
            id="signal-hue-out-of-range",
        ),
        pytest.param(
            _set([*C, "signals", 1, "id"], "light-far"),
            "cameras.0",
            "duplicate signal ids ['light-far']",
            id="duplicate-signal",
        ),
        pytest.param(
            _set([*C, "lines", 0, "id"], "kerb-lane"),
            "cameras.0",
            "duplicate zone/line ids ['kerb-lane']",
            id="line-id-clashes-with-zone",
        ),
        pytest.param(
            _set([*C, "rules", "rule:no-stopping-kerb", "schedule", "timezone"], "Asia/Hanoi-City"),
            "cameras.0.rules.0.illegal_stopping.schedule.timezone",
            "unknown timezone 'Asia/Hanoi-City'",
            id="unknown-timezone",
        ),
        pytest.param(
            _set([*C, "rules", "rule:no-stopping-kerb", "schedule", "windows", 0, "start"], 390),
            "cameras.0.rules.0.illegal_stopping.schedule.windows.0.start",
            'quoted "HH:MM"',
            id="unquoted-yaml-time",
        ),
        pytest.param(
            _set([*C, "rules", "rule:no-stopping-kerb", "schedule", "windows", 0, "end"], "06:30"),
            "cameras.0.rules.0.illegal_stopping.schedule.windows.0",
            "window is empty",
            id="empty-window",
        ),
        pytest.param(
            _set([*C, "rules", "rule:no-stopping-kerb", "schedule", "windows", 0, "days"], ["mon", "funday"]),
            "cameras.0.rules.0.illegal_stopping.schedule.windows.0.days.1",
            "Input should be",
            id="unknown-day",
        ),
        pytest.param(
            _set([*C, "rules", "rule:no-stopping-kerb", "schedule", "windows"], []),
            "cameras.0.rules.0.illegal_stopping.schedule.windows",
            "at least 1 item",
            id="schedule-without-windows",
        ),
        pytest.param(
            _set([*C, "rules", "rule:overload-south", "min_frames"], 20),
            "cameras.0.rules.6.motorbike_overload",
            "min_frames must not exceed window_frames",
            id="overload-window",
        ),
        pytest.param(
            _set([*C, "rules", "rule:speed-south", "limit_kmh"], 0),
            "cameras.0.rules.4.speeding.limit_kmh",
            "greater than 0",
            id="speed-limit-bound",
        ),
        pytest.param(
            _set([*C, "rules", "rule:encroachment-east", "min_occupancy"], 1.5),
            "cameras.0.rules.7.encroachment.min_occupancy",
            "less than or equal to 1",
            id="occupancy-bound",
        ),
        pytest.param(
            _set([*C, "rules", "rule:gathering-junction", "radius_m"], 3),
            "cameras.0.rules.8.gathering.radius_m",
            "Extra inputs are not permitted",
            id="unknown-rule-field",
        ),
    ],
)
def test_invalid_config_is_refused_naming_the_field(mutate, field, reason):
    data = copy.deepcopy(example())
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "example.yaml")
    msg = str(err.value)
    assert field in msg, msg
    assert reason in msg, msg


@pytest.mark.parametrize(
    ("direction", "ok"),
    [("up", True), (90, True), (-90.0, True), ("down-left", True), (0, False), ("left", False), (180, False)],
)
def test_line_direction_must_cross_a_horizontal_line(direction, ok):
    data = example()
    cam(data)["lines"][0]["direction"] = direction
    if ok:
        parse_config(data)
    else:
        with pytest.raises(ConfigError, match="runs along the line"):
            parse_config(data)


def test_coco80_matches_the_manifest():
    manifest = yaml.safe_load((ROOT / "models" / "manifest.yaml").read_text())
    assert tuple(manifest["class_sets"]["coco80"]) == COCO80
    assert len(COCO80) == 80


def test_check_classes_accepts_multi_word_labels():
    assert check_classes(["potted plant", "dining table", "traffic light"]) == [
        "potted plant",
        "dining table",
        "traffic light",
    ]

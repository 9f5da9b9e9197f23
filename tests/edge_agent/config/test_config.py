from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.config import ConfigError, load_config, parse_config
from tests.paths import ROOT


def base() -> dict[str, Any]:
    return {
        "node_id": "n1",
        "model": {"path": "m.onnx"},
        "cameras": [
            {
                "id": "cam-1",
                "source": "v.mp4",
                "zones": [{"id": "kerb", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]}],
                "rules": [{"id": "r1", "type": "illegal_stopping", "zone": "kerb", "min_dwell_s": 10}],
            }
        ],
    }


def test_demo_config_is_valid_and_paths_resolve_against_the_file() -> None:
    cfg = load_config(ROOT / "configs" / "demo-tokyo.yaml")
    assert cfg.model.path == (ROOT / "assets" / "models" / "yolo11n_coco_640_int8dyn.onnx").resolve()
    assert cfg.cameras[0].source.endswith("tokyo_omotesando_street_sidewalk_960x540.mp4")
    assert cfg.cameras[0].rules[0].min_dwell_s == 5


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (
            lambda c: c["cameras"][0]["zones"][0].update(polygon=[[0, 0], [1, 1], [1, 0], [0, 1]]),
            "cameras.0.zones.0.polygon",
            "self-intersecting",
        ),
        (
            lambda c: c["cameras"][0]["zones"][0].update(polygon=[[0, 0], [1.2, 0], [1, 1]]),
            "cameras.0.zones.0.polygon",
            "outside the frame",
        ),
        (
            lambda c: c["cameras"][0]["zones"][0].update(polygon=[[0, 0], [0.5, 0.5], [1, 1]]),
            "cameras.0.zones.0.polygon",
            "no area",
        ),
        (lambda c: c["cameras"][0]["rules"][0].update(zone="nowhere"), "cameras.0", "unknown zone 'nowhere'"),
        (
            lambda c: c["cameras"][0]["rules"][0].update(min_dwell_s=-1),
            "cameras.0.rules.0.illegal_stopping.min_dwell_s",
            "greater than 0",
        ),
        (
            lambda c: c["cameras"][0]["rules"][0].update(type="teleport"),
            "cameras.0.rules.0",
            "does not match any of the expected tags",
        ),
        (lambda c: c["cameras"][0].update(fps=5), "cameras.0.fps", "Extra inputs"),
        (lambda c: c["model"].update(input_size=500), "model.input_size", "multiple of 32"),
        (lambda c: c.update(node_id="no spaces"), "node_id", "pattern"),
        (lambda c: c["cameras"].append(dict(c["cameras"][0])), "(top level)", "duplicate camera ids"),
    ],
)
def test_invalid_config_is_refused_naming_the_field(mutate: Any, field: str, reason: str) -> None:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "test.yaml")
    msg = str(err.value)
    assert "test.yaml is invalid" in msg
    assert field in msg and reason in msg


def test_load_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("node_id: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(base()))
    cfg = load_config(ok)
    assert cfg.cameras[0].source == str(tmp_path / "v.mp4")
    assert cfg.evidence_dir.is_absolute()

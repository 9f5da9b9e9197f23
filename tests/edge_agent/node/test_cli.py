"""The agent's command line, run as a user runs it (a real process), for the bad-input paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml

from tests.paths import MODEL_640, ROOT, TOKYO


def run_agent(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.node.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_config(tmp_path: Path, **over: object) -> Path:
    cfg: dict[str, object] = {
        "node_id": "n1",
        "model": {"path": str(MODEL_640)},
        "evidence_dir": str(tmp_path / "ev"),
        "cameras": [
            {
                "id": "cam-1",
                "source": str(TOKYO),
                "zones": [
                    {"id": "kerb", "polygon": [[0.1, 0.96], [0.25, 0.96], [0.385, 0.62], [0.33, 0.62]]}
                ],
                "rules": [{"id": "r1", "type": "illegal_stopping", "zone": "kerb"}],
            }
        ],
    }
    cfg.update(over)
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_check_accepts_a_good_config(tmp_path: Path) -> None:
    r = run_agent("check", "--config", str(write_config(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert "ok: 1 camera(s), model yolo11n_coco_640_int8dyn.onnx (640px, 80 classes)" in r.stdout


@pytest.mark.parametrize("command", ["check", "run"])
def test_missing_model_exits_3_naming_the_file(tmp_path: Path, command: str) -> None:
    r = run_agent(
        command, "--config", str(write_config(tmp_path, model={"path": str(tmp_path / "nope.onnx")}))
    )
    assert r.returncode == 3
    assert "nope.onnx" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["check", "run"])
def test_missing_video_exits_3_naming_the_file(tmp_path: Path, command: str) -> None:
    cams = [{"id": "cam-1", "source": str(tmp_path / "gone.mp4")}]
    r = run_agent(command, "--config", str(write_config(tmp_path, cameras=cams)))
    assert r.returncode == 3
    assert "video file not found" in r.stderr and "gone.mp4" in r.stderr and "Traceback" not in r.stderr


def test_invalid_zone_exits_2_naming_the_field(tmp_path: Path) -> None:
    cams = [
        {
            "id": "cam-1",
            "source": str(TOKYO),
            "zones": [{"id": "kerb", "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}],
        }
    ]
    r = run_agent("run", "--config", str(write_config(tmp_path, cameras=cams)))
    assert r.returncode == 2
    assert "cameras.0.zones.0.polygon" in r.stderr and "self-intersecting" in r.stderr


def test_unknown_class_in_filter_exits_2(tmp_path: Path) -> None:
    r = run_agent(
        "check",
        "--config",
        str(write_config(tmp_path, model={"path": str(MODEL_640), "classes": ["tuktuk"]})),
    )
    assert r.returncode == 2
    assert "tuktuk" in r.stderr


def test_replay_writes_events_evidence_and_a_playable_video(tmp_path: Path) -> None:
    out = tmp_path / "replay"
    cfg = write_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    data["cameras"][0]["rules"][0]["min_dwell_s"] = 5
    cfg.write_text(yaml.safe_dump(data))
    # A hang guard, not a speed check: the replay blurs faces (CenterFace) in every snapshot and clip like a node,
    # several seconds per incident on a shared 2-core VM.
    r = run_agent("replay", "--config", str(cfg), "--out", str(out), "--max-seconds", "8", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "replayed" in r.stdout and "illegal_stopping" in r.stdout
    lines = (out / "events.jsonl").read_text().splitlines()
    assert lines, "no events written"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["events"].get("illegal_stopping.start", 0) >= 1
    assert summary["frames"] >= 8 * 29
    video = Path(summary["video"])
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened() and cap.read()[0]
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames"]
    assert any((out / "evidence").rglob("*"))
    # faces (the heads of the pedestrians on the Omotesando sidewalks) were blurred: the unblurred frame is kept
    # apart as restricted evidence for central
    assert any('"snapshot_original"' in line for line in lines)

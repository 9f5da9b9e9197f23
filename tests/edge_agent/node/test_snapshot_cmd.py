"""The snapshot command: newest frame per camera, stale or missing frames named, unknown cameras refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.contract import SnapshotArgs
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore
from edge_agent.node.commands import CommandRefused, Progress
from edge_agent.node.snapshot_cmd import SnapshotCommand
from edge_agent.types import Frame

NOW = 1000.0
WALL = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class FakeReader:
    def __init__(self, frame: Frame | None) -> None:
        self.frame = frame

    def latest(self) -> Frame | None:
        return self.frame


def frame(camera: str, age_s: float) -> Frame:
    image = np.full((54, 96, 3), 128, dtype=np.uint8)
    return Frame(camera_id=camera, index=1, image=image, mono=NOW - age_s, wall=WALL)


def command(tmp_path: Path, readers: dict[str, Any]) -> tuple[SnapshotCommand, list[EvidenceFile]]:
    uploaded: list[EvidenceFile] = []
    cmd = SnapshotCommand(lambda: readers, EvidenceStore(tmp_path), uploaded.append, clock=lambda: NOW)
    return cmd, uploaded


def test_fresh_frames_are_uploaded_and_stale_or_missing_ones_named(tmp_path: Path) -> None:
    readers = {"a": FakeReader(frame("a", 0.2)), "b": FakeReader(frame("b", 60)), "c": FakeReader(None)}
    cmd, uploaded = command(tmp_path, readers)
    steps: list[tuple[float | None, str]] = []
    result = cmd(SnapshotArgs(), Progress(lambda f, m: steps.append((f, m))))
    assert [s.camera_id for s in result.snapshots] == ["a"]
    shot = result.snapshots[0]
    assert (shot.width, shot.height, shot.captured_at) == (96, 54, WALL)
    assert [f.ref.sha256 for f in uploaded] == [shot.sha256]
    assert uploaded[0].path.read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    assert result.missing == {
        "b": "newest frame is 60 s old (camera stalled?)",
        "c": "no frame read yet (camera down or starting)",
    }
    assert steps == [(0.0, "uploading a")]


def test_unknown_cameras_are_refused_and_no_frame_at_all_fails(tmp_path: Path) -> None:
    cmd, uploaded = command(tmp_path, {"a": FakeReader(None)})
    with pytest.raises(CommandRefused, match="unknown camera"):
        cmd(SnapshotArgs(cameras=["zz"]), Progress(lambda f, m: None))
    with pytest.raises(RuntimeError, match="no camera had a fresh frame: a: no frame read yet"):
        cmd(SnapshotArgs(), Progress(lambda f, m: None))
    assert uploaded == []

"""The extract command's refusals: each says why nothing can be extracted (central shows it to the officer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.contract import ExtractArgs
from edge_agent.evidence.footage import FootageStore
from edge_agent.evidence.snapshot import EvidenceStore
from edge_agent.node.commands import CommandRefused, Progress
from edge_agent.node.extract_cmd import ExtractCommand

T0 = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def args(start_s: float, end_s: float, camera: str = "cam-1") -> ExtractArgs:
    return ExtractArgs(
        camera_id=camera, start=T0 + timedelta(seconds=start_s), end=T0 + timedelta(seconds=end_s)
    )


def command(tmp: Path, footage: FootageStore | None) -> ExtractCommand:
    return ExtractCommand(footage, lambda: ["cam-1", "cam-2"], EvidenceStore(tmp / "ev"), lambda f: None)


@pytest.mark.parametrize(
    ("recording", "asked", "words"),
    [
        (False, args(0, 10), "not-available: this node does not record footage"),
        (
            True,
            args(0, 10, camera="cam-2"),
            "not-available: no recording of cam-2 yet (camera offline or starting)",
        ),
        (
            True,
            args(-3600, -3590),
            "not-available: outside retention: the recording of cam-1 covers 2026-12-06 07:00:00 UTC",
        ),
        (True, args(0, 10, camera="cam-9"), "camera_id: unknown camera cam-9"),
    ],
    ids=["recording off", "camera never recorded", "outside retention", "unknown camera"],
)
def test_refusals_name_the_reason(tmp_path: Path, recording: bool, asked: ExtractArgs, words: str) -> None:
    footage = None
    if recording:
        footage = FootageStore(tmp_path / "rec", 10**9)
        folder = footage.camera_dir("cam-1")
        for i in range(3):  # 30 s of cam-1 from T0 (names only: nothing is cut when refusing)
            start = T0 + timedelta(seconds=10 * i)
            (folder / f"{ms(start)}-{ms(start + timedelta(seconds=10))}.mp4").write_bytes(b"x")
    with pytest.raises(CommandRefused) as refused:
        command(tmp_path, footage)(asked, Progress(lambda f, m: None))
    assert str(refused.value).startswith(words), str(refused.value)

"""Rolling footage recording on the node (footage extraction on request, issue 10)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edge_agent.config.base import Strict


class RecordingConfig(Strict):
    """Each camera is recorded in short segments; the oldest are deleted first to stay within ``max_bytes``.

    An officer's footage request is cut from these segments (stream copy, no re-encoding), so what can be
    extracted is what the budget holds: roughly ``max_bytes / (cameras x bitrate)`` of history.
    """

    enabled: bool = Field(default=False, description="Record every camera continuously (needs ffmpeg).")
    dir: Path | None = Field(
        default=None,
        description="Folder of the segments (relative: to the config file's folder). None: 'recordings' beside "
        "the evidence folder.",
    )
    max_bytes: int = Field(
        default=8 * 1024**3,
        ge=1024**2,
        le=16 * 1024**4,
        description="Disk budget of all cameras' segments together; the oldest segments are deleted first.",
    )
    segment_s: float = Field(default=10.0, ge=2.0, le=600.0, description="Length of one segment in seconds.")
    fps: float = Field(
        default=10.0,
        gt=0.0,
        le=30.0,
        description="Frames per second recorded from a camera's decoded frames.",
    )
    max_width: int = Field(default=1280, ge=160, le=3840, description="Wider frames are scaled down to this.")
    stream_copy: bool = Field(
        default=True,
        description=(
            "For rtsp:// cameras, record by copying the camera's own H.264 stream (a second RTSP session, no "
            "re-encoding); off: encode the decoded frames like other sources."
        ),
    )
    crf: int = Field(default=28, ge=15, le=40, description="H.264 quality (lower: better and bigger).")

"""Stream-copy recording of a real RTSP camera (GStreamer serving the Omotesando clip's own H.264 stream)."""

from __future__ import annotations

import itertools
import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from edge_agent.config.recording import RecordingConfig
from edge_agent.evidence.footage import FootageStore
from edge_agent.evidence.stream_copy import StreamCopyRecorder
from tests.conftest import wait_until
from tests.edge_agent.capture.test_capture_rtsp import RtspServer, rtsp_server  # noqa: F401 - fixture


def probe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,avg_frame_rate,nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return dict(json.loads(out.stdout)["streams"][0])


@pytest.mark.slow
def test_an_rtsp_camera_is_recorded_by_stream_copy_and_cut(
    rtsp_server: RtspServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    store = FootageStore(tmp_path / "rec", 10**9)
    cfg = RecordingConfig(enabled=True, segment_s=2.0, fps=5.0)  # fps applies to encoding only: not used here
    recorder = StreamCopyRecorder("cam-rtsp", rtsp_server.url, store, cfg)
    recorder.start()
    try:
        wait_until(
            lambda: len(store.segments("cam-rtsp")) >= 4, timeout_s=90, interval_s=0.5, message="segments"
        )
    finally:
        recorder.stop()
    segments = store.segments("cam-rtsp")
    assert recorder.stats.segments == len(segments) and not list(
        (tmp_path / "rec" / "cam-rtsp").glob("*.part")
    )
    first = probe(segments[0].path)
    # the camera's own stream: its resolution and ~30 fps, not the 5 fps an encoder would have written
    assert (first["codec_name"], first["width"], first["height"]) == ("h264", 960, 540)
    num, den = (int(x) for x in str(first["avg_frame_rate"]).split("/"))
    assert num / den > 20
    for a, b in itertools.pairwise(segments):  # back to back, within the timing noise of a busy box
        assert abs((b.start - a.end).total_seconds()) < 1.0, (a, b)

    start = segments[1].start + timedelta(seconds=0.5)
    end = segments[-1].end - timedelta(seconds=0.5)
    clip = tmp_path / "clip.mp4"
    got_start, got_end, used = store.cut("cam-rtsp", start, end, clip)
    assert used >= 2 and got_start <= start and got_end == end
    cut = probe(clip)
    assert (
        cut["codec_name"] == "h264"
        and int(str(cut["nb_read_frames"])) > 20 * (end - start).total_seconds() * 0.8
    )

"""Rolling footage of a network camera by copying its own H.264 stream (no decoding, no re-encoding).

For ``rtsp://`` sources (``recording.stream_copy``, on by default) a second ``ffmpeg`` connects to the camera and
writes ``segment_s`` segments with ``-c copy``: the clips officers get are the camera's own pictures, and the node
spends no CPU on encoding (the decoded frames of the capture reader are not used). The cost is a second RTSP
session per camera, which most cameras allow (two to four clients).

Segments end on the camera's keyframes, so they are about ``segment_s`` long (one GOP more at most), and a cut
starts on the keyframe at or before the asked time (up to one GOP earlier; ``FootageStore.cut`` reports the
range actually covered only to the second). Each finished segment is named ``<start ms>-<end ms>.mp4`` from its
file's modification time (when its last packet was written) and its duration from ffmpeg's segment list, then
the budget is enforced. ffmpeg is restarted with backoff when the camera drops; the gap is simply not recorded.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.config.recording import RecordingConfig
from edge_agent.evidence.footage import FootageStore, ffmpeg_binary

log = logging.getLogger(__name__)

POLL_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0


@dataclass
class StreamCopyStats:
    segments: int = 0
    restarts: int = 0
    failures: int = 0


class StreamCopyRecorder:
    """One ``ffmpeg -c copy -f segment`` per camera, supervised; finished segments join the footage store."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        store: FootageStore,
        cfg: RecordingConfig,
        *,
        binary: Callable[[], str] = ffmpeg_binary,
    ) -> None:
        self.camera_id = camera_id
        self._url = url
        self._store = store
        self._cfg = cfg
        self._binary = binary
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.stats = StreamCopyStats()
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"record-copy-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()  # ffmpeg finishes the open segment's index on SIGTERM
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            folder = self._store.camera_dir(self.camera_id)
            listing = folder / ".segments.csv"
            listing.unlink(missing_ok=True)
            command = [
                self._binary(), "-hide_banner", "-loglevel", "error", "-nostdin",
                "-rtsp_transport", "tcp", "-i", self._url, "-map", "0:v:0", "-c", "copy",
                "-f", "segment", "-segment_time", f"{self._cfg.segment_s:g}", "-segment_format", "mp4",
                "-reset_timestamps", "1", "-segment_list", str(listing), "-segment_list_type", "csv",
                str(folder / ".copy%06d.part"),
            ]  # fmt: skip
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            seen = 0
            while self._process.poll() is None and not self._stop.is_set():
                seen = self._collect(folder, listing, seen)
                self._stop.wait(POLL_S)
            if self._process.poll() is None:
                self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._collect(folder, listing, seen)
            err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
            for leftover in folder.glob(".copy*.part"):
                leftover.unlink(missing_ok=True)  # never listed: unfinished
            if self._stop.is_set():
                return
            self.stats.restarts += 1
            self.last_error = err.strip()[-300:] or f"ffmpeg exited with {self._process.returncode}"
            log.warning(
                "camera %s: stream copy stopped (%s); again in %.0f s", self.camera_id, self.last_error, delay
            )
            self._stop.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _collect(self, folder: Path, listing: Path, seen: int) -> int:
        """Name and keep every segment ffmpeg finished since the last look; returns how many lines were read."""
        try:
            lines = [line for line in listing.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return seen
        for line in lines[seen:]:
            name, start_s, end_s = (part.strip() for part in line.rsplit(",", 2))
            path = folder / name
            try:
                duration = float(end_s) - float(start_s)
                end_ms = round(path.stat().st_mtime * 1000)
            except (OSError, ValueError):
                self.stats.failures += 1
                continue
            if duration <= 0:
                path.unlink(missing_ok=True)
                continue
            start_ms = end_ms - round(duration * 1000)
            self._store.admit(path, folder / f"{start_ms}-{end_ms}.mp4")
            self.stats.segments += 1
        return len(lines)

"""Pre/post-roll evidence clips: a compact ring of recent frames and an H.264 encoder.

The ring keeps JPEG-compressed, decimated frames (e.g. 5 fps, <= 960 px wide): raw frames for a few seconds of
8 cameras would cost hundreds of MB on a Pi; JPEGs cost ~3 MB per camera. The agent feeds each camera's ring
from its capture reader (every decoded frame, or the camera's evidence stream), not from the detector, so a
clip has the configured fps even when motion gating sends one frame every few seconds to the detector. Encoding goes through the ``ffmpeg``
binary with libx264 (yuv420p, faststart) so the clip plays in any browser: the OpenCV wheels cannot write
H.264. Encoding runs on one background thread so a camera loop never waits for it.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from edge_agent.types import Frame

log = logging.getLogger(__name__)


class ClipError(RuntimeError):
    """A clip could not be encoded (no ffmpeg, or ffmpeg failed)."""


@dataclass(frozen=True, slots=True)
class ClipFrame:
    mono: float
    wall: datetime
    jpeg: bytes


@dataclass(slots=True)
class Collector:
    """The frames of one clip: those in the ring when it began, then every stored frame until ``until``."""

    until: float
    frames: list[ClipFrame]
    done: bool = False  # a frame at or after ``until`` went through the ring


class ClipRing:
    """The last ``seconds`` of a camera at ``fps``, as JPEGs, plus the clips being collected from it.

    Thread-safe: the camera's capture reader pushes every frame it decodes (so clips have the configured fps
    whatever the detector does), the detector thread starts and reads clips. Pushing costs one JPEG encode per
    stored frame (``fps`` per second), in the reader's thread.
    """

    def __init__(self, seconds: float, fps: float, max_width: int = 960, quality: int = 80) -> None:
        if seconds < 0 or fps <= 0 or max_width < 64:
            raise ValueError("need seconds >= 0, fps > 0, max_width >= 64")
        self.seconds = seconds
        self.interval = 1.0 / fps
        self.max_width = max_width
        self.quality = quality
        self._frames: deque[ClipFrame] = deque()
        self._collectors: list[Collector] = []
        self._last: float | None = None
        self._lock = threading.Lock()
        self.pushed = 0  # frames offered
        self.stored = 0  # frames encoded and kept
        self.bytes = 0  # JPEG bytes in the ring now

    def due_at(self, mono: float) -> bool:
        """Whether a frame of time ``mono`` would be stored (the reader converts only such frames)."""
        last = self._last
        return last is None or mono - last >= self.interval - 1e-6

    def due(self, frame: Frame) -> bool:
        return self.due_at(frame.mono)

    def _encode(self, frame: Frame) -> ClipFrame | None:
        image = frame.image
        if image.shape[1] > self.max_width:
            h = round(image.shape[0] * self.max_width / image.shape[1]) // 2 * 2
            image = np.asarray(cv2.resize(image, (self.max_width, h), interpolation=cv2.INTER_AREA), np.uint8)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        return ClipFrame(frame.mono, frame.wall, bytes(buf.tobytes()))

    def push(self, frame: Frame) -> ClipFrame | None:
        """Keep the frame if a clip slot is due; returns the stored frame or None when skipped.

        Every push also tells the open clips the time: a clip is done at the first frame at or after its end.
        """
        stored = None
        if self.due(frame):
            self._last = frame.mono
            stored = self._encode(frame)  # outside the lock: the detector thread never waits for an encode
        with self._lock:
            self.pushed += 1
            if stored is not None:
                self.stored += 1
                self._frames.append(stored)
                self.bytes += len(stored.jpeg)
                while self._frames and self._frames[0].mono < frame.mono - self.seconds:
                    self.bytes -= len(self._frames.popleft().jpeg)
            for c in self._collectors:
                if stored is not None and (not c.frames or stored.mono > c.frames[-1].mono):
                    c.frames.append(stored)
                if frame.mono >= c.until:
                    c.done = True
            self._collectors = [c for c in self._collectors if not c.done]
        return stored

    def collect(self, since: float, until: float) -> Collector:
        """Start a clip: the ring's frames from ``since`` on, then the frames pushed up to ``until``."""
        with self._lock:
            c = Collector(until, [f for f in self._frames if f.mono >= since])
            self._collectors.append(c)
            return c

    def finish(self, collector: Collector) -> list[ClipFrame]:
        """Stop collecting (done, timed out or shutting down) and take its frames."""
        with self._lock:
            collector.done = True
            self._collectors = [c for c in self._collectors if c is not collector]
            return list(collector.frames)

    def since(self, mono: float) -> list[ClipFrame]:
        with self._lock:
            return [f for f in self._frames if f.mono >= mono]

    def __len__(self) -> int:
        return len(self._frames)


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def encode_mp4(
    frames: list[ClipFrame], fps: float, ffmpeg: str | None = None, timeout_s: float = 60.0
) -> bytes:
    """H.264/yuv420p MP4 with the moov atom first (plays while downloading) from JPEG frames."""
    exe = ffmpeg or ffmpeg_path()
    if exe is None:
        raise ClipError("ffmpeg not found: install it (apt-get install ffmpeg) to record evidence clips")
    if not frames:
        raise ClipError("no frames to encode")
    with tempfile.TemporaryDirectory(prefix="sw-clip-") as tmp:
        out = Path(tmp) / "clip.mp4"
        cmd = [
            exe, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "image2pipe", "-framerate", f"{fps:.3f}", "-c:v", "mjpeg", "-i", "-",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p",
            "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-movflags", "+faststart", str(out),
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd,
                input=b"".join(f.jpeg for f in frames),
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise ClipError(f"ffmpeg took longer than {timeout_s:.0f}s") from err
        except OSError as err:
            raise ClipError(f"cannot run {exe}: {err}") from err
        if proc.returncode != 0 or not out.is_file():
            raise ClipError(
                f"ffmpeg failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}"
            )
        return out.read_bytes()


@dataclass(slots=True)
class EncoderStats:
    encoded: int = 0
    failed: int = 0
    seconds_encoded: float = 0.0
    last_error: str = ""


@dataclass(slots=True)
class _Job:
    frames: list[ClipFrame]
    fps: float
    done: Callable[[bytes | None, str], None]
    prepare: Callable[[list[ClipFrame]], list[ClipFrame]] | None = None


def _prepared(job: _Job) -> list[ClipFrame]:
    """The job's frames after ``prepare``; its failure fails the clip (never the raw frames instead)."""
    if job.prepare is None:
        return job.frames
    try:
        return job.prepare(job.frames)
    except Exception as err:
        raise ClipError(f"clip frames could not be prepared (privacy filter): {err}") from err


@dataclass(slots=True)
class ClipEncoder:
    """One background thread that encodes clips in order and reports each through its ``done`` callback."""

    ffmpeg: str | None = None
    stats: EncoderStats = field(default_factory=EncoderStats)
    _queue: queue.Queue[_Job | None] = field(default_factory=queue.Queue)
    _thread: threading.Thread | None = None

    def submit(
        self,
        frames: list[ClipFrame],
        fps: float,
        done: Callable[[bytes | None, str], None],
        prepare: Callable[[list[ClipFrame]], list[ClipFrame]] | None = None,
    ) -> None:
        """Queue a clip; ``prepare`` (e.g. face blurring) runs on the encoder thread, not the camera loop."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="clip-encoder", daemon=True)
            self._thread.start()
        self._queue.put(_Job(frames, fps, done, prepare))

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                data = encode_mp4(_prepared(job), job.fps, self.ffmpeg)
            except ClipError as err:
                self.stats.failed += 1
                self.stats.last_error = str(err)
                log.error("evidence clip not recorded: %s", err)
                job.done(None, str(err))
                continue
            self.stats.encoded += 1
            self.stats.seconds_encoded += len(job.frames) / job.fps
            job.done(data, "")

    def close(self, timeout_s: float = 180.0) -> None:
        """Finish the queued clips (face blurring makes a clip take tens of seconds on a busy small CPU)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():
                log.error(
                    "clip encoder still busy after %.0f s at shutdown: pending clips are lost", timeout_s
                )
            self._thread = None

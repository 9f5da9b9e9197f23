"""Rolling footage per camera, in short H.264 segments within a disk budget, and cutting a time range from them.

Why segments: deleting the oldest footage is deleting the oldest file, a request is answered by picking the
files that overlap it, and a crash loses at most the segment being written (``.part`` files are removed at the
next start). Segment files are named ``<start ms>-<end ms>.mp4`` (UTC epoch milliseconds), so the store needs no
index that could disagree with the disk.

The recorder samples the camera's newest decoded frame at a fixed ``fps`` (repeating a frame when the camera
is slower, or when the recorder itself was late), so a segment's duration is its frame count / fps and its
wall-clock range is known to a frame; keyframes every second keep a stream-copy cut within one second of the asked range. Recording from
decoded frames works for every source (files, USB, RTSP); it costs one small H.264 encode per camera (x264
``veryfast``, scaled to ``max_width``).

A cut is ``ffmpeg -f concat`` with ``inpoint``/``outpoint`` and ``-c copy``: no re-encoding, so the clip is
bit-for-bit the recorded frames.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from edge_agent.config.recording import RecordingConfig
from edge_agent.types import Frame

log = logging.getLogger(__name__)

SEGMENT_RE: Final = re.compile(r"^(\d{13})-(\d{13})\.mp4$")
FFMPEG_TIMEOUT_S: Final = 120.0
MAX_CATCH_UP_S: Final = 2.0  # a recorder further behind than this ends the segment (a gap) instead


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


@dataclass(frozen=True, slots=True)
class Segment:
    camera_id: str
    path: Path
    start: datetime
    end: datetime
    size: int


class FootageStore:
    """The segments on disk: listing, the budget, and cutting clips. Thread-safe (one lock for deletes/cuts)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.deleted = 0
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("*/*.part"):
            stale.unlink(missing_ok=True)  # a segment interrupted by a crash has no index: unreadable

    def camera_dir(self, camera_id: str) -> Path:
        path = self.root / camera_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def segments(self, camera_id: str | None = None) -> list[Segment]:
        """Finished segments, oldest first (of one camera, or of all)."""
        folders = [self.root / camera_id] if camera_id else [p for p in self.root.iterdir() if p.is_dir()]
        out: list[Segment] = []
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                match = SEGMENT_RE.match(path.name)
                if match is None:
                    continue
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                out.append(Segment(folder.name, path, _dt(int(match[1])), _dt(int(match[2])), size))
        return sorted(out, key=lambda s: (s.start, s.camera_id))

    def used_bytes(self) -> int:
        return sum(s.size for s in self.segments())

    def admit(self, part: Path, final: Path) -> Path:
        """Make room for a finished segment (oldest deleted first), then give it its name: the segments on disk
        never exceed ``max_bytes``, not even for a moment."""
        self.enforce_budget(incoming=part.stat().st_size)
        part.replace(final)
        return final

    def enforce_budget(self, incoming: int = 0) -> int:
        """Delete the oldest segments (any camera) until they and ``incoming`` bytes fit ``max_bytes``."""
        with self.lock:
            segments = self.segments()
            total = sum(s.size for s in segments) + incoming
            removed = 0
            for seg in segments:
                if total <= self.max_bytes:
                    break
                seg.path.unlink(missing_ok=True)
                total -= seg.size
                removed += 1
            self.deleted += removed
        if removed:
            log.info("recording budget: deleted %d oldest segment(s), %d bytes remain", removed, total)
        return removed

    def covered(self, camera_id: str) -> tuple[datetime, datetime] | None:
        segs = self.segments(camera_id)
        return None if not segs else (segs[0].start, segs[-1].end)

    def cut(
        self, camera_id: str, start: datetime, end: datetime, out: Path
    ) -> tuple[datetime, datetime, int]:
        """Write the recorded frames of ``[start, end]`` to ``out`` (stream copy); (first, last time, segments).

        Raises ``LookupError`` when no segment overlaps the range. The clip starts at the keyframe at or before
        ``start`` (within one second) and the returned times are what the clip really covers.
        """
        with self.lock:
            picked = [s for s in self.segments(camera_id) if s.end > start and s.start < end]
            if not picked:
                raise LookupError("no recording overlaps the range")
            lines = ["ffconcat version 1.0"]
            first = last = None
            for seg in picked:
                inpoint = max(0.0, (start - seg.start).total_seconds())
                inpoint = float(math.floor(inpoint))  # keyframes every second: copy starts on one
                outpoint = min((seg.end - seg.start).total_seconds(), (end - seg.start).total_seconds())
                lines.append(f"file '{seg.path.resolve()}'")
                if inpoint > 0:
                    lines.append(f"inpoint {inpoint:.3f}")
                if outpoint < (seg.end - seg.start).total_seconds():
                    lines.append(f"outpoint {outpoint:.3f}")
                seg_first = seg.start.timestamp() + inpoint
                seg_last = seg.start.timestamp() + outpoint
                first = seg_first if first is None else min(first, seg_first)
                last = seg_last if last is None else max(last, seg_last)
            listing = out.with_suffix(".ffconcat")
            listing.write_text("\n".join(lines) + "\n")
            command = [
                ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                "-i", str(listing), "-c", "copy", "-movflags", "+faststart", str(out),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
            listing.unlink(missing_ok=True)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"ffmpeg could not cut the clip: {done.stderr.decode(errors='replace')[-400:]}"
            )
        assert first is not None and last is not None
        return datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC), len(picked)


def ffmpeg_binary() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise RuntimeError("ffmpeg not found (apt-get install ffmpeg): footage recording needs it")
    return path


class _SegmentWriter:
    """One segment being encoded: raw BGR frames into ``ffmpeg`` (H.264, keyframe every second)."""

    def __init__(
        self, store: FootageStore, folder: Path, start: datetime, size: tuple[int, int], cfg: RecordingConfig
    ) -> None:
        self.store = store
        self.start = start
        self.frames = 0
        self.fps = cfg.fps
        self.part = folder / f"{_ms(start)}.part"
        width, height = size
        gop = max(1, round(cfg.fps))
        scale = f"scale='trunc(min(iw,{cfg.max_width})/2)*2':-2"
        command = [
            ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-framerate", f"{cfg.fps:g}",
            "-i", "pipe:0", "-vf", scale, "-c:v", "libx264", "-preset", "veryfast", "-crf", str(cfg.crf),
            "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
            "-threads", "1", "-f", "mp4", str(self.part),
        ]  # fmt: skip
        self.size = size
        self.start_mono = 0.0
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: Frame) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(frame.image.tobytes())
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and give it its final name; None when ffmpeg failed (the part is removed)."""
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=FFMPEG_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        err = self.process.stderr.read() if self.process.stderr is not None else b""
        if self.process.stderr is not None:
            self.process.stderr.close()
        if self.process.returncode != 0 or self.frames == 0:
            log.error("segment %s failed: %s", self.part, err.decode(errors="replace")[-300:])
            self.part.unlink(missing_ok=True)
            return None
        end_ms = _ms(self.start) + round(self.frames / self.fps * 1000)
        return self.store.admit(self.part, self.part.with_name(f"{_ms(self.start)}-{end_ms}.mp4"))


@dataclass
class RecorderStats:
    segments: int = 0
    failures: int = 0
    frames: int = 0
    gaps: int = 0  # ticks without any frame (camera down): the recording pauses, the segment ends


class CameraRecorder:
    """A thread per camera: every 1/fps take the newest frame and append it to the current segment."""

    def __init__(
        self,
        camera_id: str,
        latest: Callable[[], Frame | None],
        store: FootageStore,
        cfg: RecordingConfig,
        *,
        stale_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.camera_id = camera_id
        self._latest = latest
        self._store = store
        self._cfg = cfg
        self._stale_s = stale_s
        self._clock = clock
        self._wall = wall
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer: _SegmentWriter | None = None
        self._carry: tuple[datetime, float] | None = None  # (wall, mono) where the next segment starts
        self._closers: list[threading.Thread] = []
        self.stats = RecorderStats()
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"record-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=FFMPEG_TIMEOUT_S)
        self._finish()

    def _run(self) -> None:
        period = 1.0 / self._cfg.fps
        next_tick = self._clock()
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as err:  # a broken pipe, a full disk: count it, start a fresh segment
                self.stats.failures += 1
                self.last_error = f"{type(err).__name__}: {err}"
                log.exception("camera %s: recording failed", self.camera_id)
                self._abort()
            next_tick += period
            delay = next_tick - self._clock()
            if delay < -period:  # fell behind (loaded box): the next tick fills the missed slots
                next_tick = self._clock()
                delay = 0.0
            self._stop.wait(max(0.0, delay))

    def tick(self) -> None:
        """Append the newest frame (one call per 1/fps); close the segment when it is long enough."""
        frame = self._latest()
        if frame is None or self._clock() - frame.mono > self._stale_s:
            self.stats.gaps += 1
            self._finish()  # no footage while the camera is down: the segment ends where frames ended
            return
        writer = self._writer
        if writer is not None and (frame.width, frame.height) != writer.size:
            self._finish()
            writer = None
        now = self._clock()
        if (
            writer is not None
            and (now - writer.start_mono) * self._cfg.fps - writer.frames > MAX_CATCH_UP_S * self._cfg.fps
        ):
            self.stats.gaps += 1
            self._finish()  # too far behind (a stalled box): end here rather than fill seconds with one frame
            writer = None
        if writer is None:
            # A full segment is continued without a hole: the next one starts where it ended.
            start_wall, start_mono = self._carry or (self._wall(), now)
            self._carry = None
            writer = self._writer = _SegmentWriter(
                self._store,
                self._store.camera_dir(self.camera_id),
                start_wall,
                (frame.width, frame.height),
                self._cfg,
            )
            writer.start_mono = start_mono
        # Video time must stay wall time: a tick that came late repeats the frame for the slots it missed.
        due = int((now - writer.start_mono) * self._cfg.fps + 1e-6) + 1
        for _ in range(max(1, due - writer.frames)):
            writer.write(frame)
            self.stats.frames += 1
        if writer.frames >= round(self._cfg.segment_s * self._cfg.fps):
            length = writer.frames / self._cfg.fps
            self._carry = (_dt(_ms(writer.start) + round(length * 1000)), writer.start_mono + length)
            self._writer = None
            # Closing waits for ffmpeg to write the index; off this thread, so the next segment starts on time.
            closer = threading.Thread(target=self._close, args=(writer,), name=f"close-{self.camera_id}")
            closer.start()
            self._closers = [c for c in self._closers if c.is_alive()] + [closer]

    def _finish(self) -> None:
        writer, self._writer = self._writer, None
        self._carry = None
        for closer in self._closers:
            closer.join(timeout=FFMPEG_TIMEOUT_S)
        self._closers = []
        if writer is not None:
            self._close(writer)

    def _close(self, writer: _SegmentWriter) -> None:
        if writer.close() is None:
            self.stats.failures += 1
        else:
            self.stats.segments += 1

    def _abort(self) -> None:
        writer, self._writer = self._writer, None
        self._carry = None
        if writer is not None:
            writer.process.kill()
            writer.process.wait()
            writer.part.unlink(missing_ok=True)

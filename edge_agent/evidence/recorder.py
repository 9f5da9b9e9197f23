"""Evidence for each incident: snapshots and crops at START, a pre/post-roll clip for a later UPDATE.

Phase order is kept by the pipeline: central ignores an older phase that arrives late, so while an incident's
clip is pending (``clip_pending``) its END is held back and sent right after the UPDATE that carries the clip.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from edge_agent.config import EvidenceConfig
from edge_agent.contract import EvidenceKind
from edge_agent.evidence.clips import ClipEncoder, ClipFrame, ClipRing, Collector
from edge_agent.evidence.privacy import Anonymizer
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore, annotate, encode_jpeg
from edge_agent.rules.base import Finding
from edge_agent.types import FloatArray, Frame, Image, Track

log = logging.getLogger(__name__)


# A clip whose ring stopped being fed (camera lost) is encoded with what it has this long after its end.
FEED_TIMEOUT_S = 5.0


@dataclass(slots=True)
class _Pending:
    until: float
    collector: Collector
    submitted: bool = False


@dataclass(frozen=True, slots=True)
class Ready:
    """A finished clip job: ``files`` is the clip (empty when encoding failed) of incident ``key``."""

    key: tuple[str, str]
    files: tuple[EvidenceFile, ...]


@dataclass(slots=True)
class RecorderStats:
    clips: int = 0
    clip_failures: int = 0
    crops: int = 0
    originals: int = 0


def crop(
    image: Image, xyxy: Sequence[float] | FloatArray, pad: float = 0.15, min_side: int = 24
) -> Image | None:
    """The object with some context around it; None when the box is too small to be useful."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    bw, bh = x2 - x1, y2 - y1
    if bw < min_side / 2 or bh < min_side / 2:
        return None
    x1, x2 = max(0, int(x1 - pad * bw)), min(w, int(x2 + pad * bw))
    y1, y2 = max(0, int(y1 - pad * bh)), min(h, int(y2 + pad * bh))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def _jpeg_width(jpeg: bytes) -> int:
    """Width from the JPEG's SOF marker (no decode); 0 when it cannot be read."""
    i = 2
    while i + 9 < len(jpeg):
        if jpeg[i] != 0xFF:
            return 0
        marker, length = jpeg[i + 1], int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(jpeg[i + 7 : i + 9], "big")
        i += 2 + length
    return 0


class EvidenceRecorder:
    """One per camera; ``observe`` frames, ``start`` on a START finding; clips come back through ``ready``.

    ``ring``: a clip ring fed by someone else (the agent's capture reader pushes every decoded frame into it);
    ``observe`` then only checks pending clips. Without one the recorder keeps its own ring and ``observe``
    pushes into it, so it must see every frame (replay, tests).
    """

    def __init__(
        self,
        cfg: EvidenceConfig,
        store: EvidenceStore,
        zones_px: dict[str, list[tuple[float, float]]],
        encoder: ClipEncoder | None = None,
        ring: ClipRing | None = None,
        anonymizer: Anonymizer | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.zones_px = zones_px
        self.anonymizer = anonymizer
        # Person boxes of recent analysed frames (mono, frame width, boxes): heads to blur in snapshot and clip.
        self._people: deque[tuple[float, int, FloatArray]] = deque()
        self.encoder = encoder if cfg.clip else None
        self.stats = RecorderStats()
        self._owns_ring = ring is None
        if self.encoder is None:
            self.ring: ClipRing | None = None
        else:
            self.ring = (
                ring if ring is not None else ClipRing(cfg.pre_roll_s, cfg.clip_fps, cfg.clip_max_width)
            )
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._ready: list[Ready] = []
        self._lock = threading.Lock()

    def observe(self, frame: Frame) -> None:
        if self.ring is None:
            return
        if self._owns_ring:
            self.ring.push(frame)
        with self._lock:
            pending = list(self._pending.items())
        for key, p in pending:
            if p.submitted:
                continue
            if p.collector.done or frame.mono >= p.until + FEED_TIMEOUT_S:
                self._submit(key, p)

    def note_tracks(self, frame: Frame, tracks: Sequence[Track]) -> None:
        """The analysed frame's person boxes, so their heads are blurred in its snapshot and nearby clip frames."""
        if self.anonymizer is None:
            return
        boxes = [t.xyxy for t in tracks if t.label == "person"]
        arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        keep = self.cfg.pre_roll_s + self.cfg.post_roll_s + 2.0
        with self._lock:  # the encoder thread reads it
            self._people.append((frame.mono, frame.image.shape[1], arr))
            while self._people and self._people[0][0] < frame.mono - keep:
                self._people.popleft()

    def _persons_near(self, mono: float, width: int, within: float = 0.5) -> FloatArray | None:
        """Person boxes of the analysed frame nearest ``mono`` (within ``within`` s), scaled to ``width``."""
        with self._lock:
            people = list(self._people)
        best = min(people, key=lambda p: abs(p[0] - mono), default=None)
        if best is None or abs(best[0] - mono) > within:
            return None
        return best[2] * (width / best[1])

    def start(self, finding: Finding, frame: Frame, caption: str) -> tuple[EvidenceFile, ...]:
        """Snapshots (annotated and clean) and object crops now; a clip later if clips are on.

        With an anonymizer every image is made from the face-blurred frame; the unblurred frame goes only to
        central as a restricted ``snapshot_original`` (when something was blurred and ``keep_original``).
        """
        image = frame.image
        files: list[EvidenceFile] = []
        if self.anonymizer is not None and self.anonymizer.active:
            vehicles = [(o.label, o.xyxy) for o in finding.objects]
            persons = self._persons_near(frame.mono, image.shape[1], within=0.0)
            image, _ = self.anonymizer.anonymize(frame.image, vehicles, persons)
            if image is not frame.image and self.anonymizer.cfg.keep_original:
                files.append(
                    self.store.put(encode_jpeg(frame.image), EvidenceKind.SNAPSHOT_ORIGINAL, "image/jpeg")
                )
                self.stats.originals += 1
        files.insert(
            0,
            self.store.put(
                encode_jpeg(annotate(image, self.zones_px[finding.zone_id], finding.objects, caption)),
                EvidenceKind.SNAPSHOT_ANNOTATED,
                "image/jpeg",
            ),
        )
        if self.cfg.clean_snapshot:
            files.append(self.store.put(encode_jpeg(image), EvidenceKind.SNAPSHOT, "image/jpeg"))
        if self.cfg.crops:
            for obj in finding.objects[: self.cfg.max_crops]:
                piece = crop(image, obj.xyxy)
                if piece is not None:
                    files.append(self.store.put(encode_jpeg(piece), EvidenceKind.CROP, "image/jpeg"))
                    self.stats.crops += 1
        if self.ring is not None:
            until = frame.mono + self.cfg.post_roll_s
            collector = self.ring.collect(frame.mono - self.cfg.pre_roll_s, until)
            key = (finding.rule_id, finding.key)
            with self._lock:
                self._pending[key] = _Pending(until, collector)
        return tuple(files)

    def clip_pending(self, rule_id: str, key: str) -> bool:
        """Whether incident ``key`` still waits for its clip (it comes back through ``ready``)."""
        with self._lock:
            return (rule_id, key) in self._pending

    def _submit(self, key: tuple[str, str], p: _Pending) -> None:
        assert self.encoder is not None and self.ring is not None
        p.submitted = True
        frames = self.ring.finish(p.collector)

        def done(data: bytes | None, error: str) -> None:
            files: tuple[EvidenceFile, ...] = ()
            if data is not None:
                files = (self.store.put(data, EvidenceKind.CLIP, "video/mp4"),)
                self.stats.clips += 1
            else:
                self.stats.clip_failures += 1
                log.warning("incident %s/%s: no clip (%s)", key[0], key[1], error)
            with self._lock:  # stays pending until the pipeline drains it, so no END can overtake the clip
                self._ready.append(Ready(key, files))

        if not frames:
            done(None, "no frames in the ring")
            return
        self.encoder.submit(frames, self.cfg.clip_fps, done, self._blur_clip if self.anonymizer else None)

    def _blur_clip(self, frames: list[ClipFrame]) -> list[ClipFrame]:
        """Runs on the encoder thread: every clip frame face-blurred (undecodable frames dropped)."""
        assert self.anonymizer is not None
        persons = []
        for f in frames:
            width = _jpeg_width(f.jpeg)
            persons.append(self._persons_near(f.mono, width) if width else None)
        blurred = self.anonymizer.anonymize_jpegs([f.jpeg for f in frames], persons)
        return [replace(f, jpeg=j) for f, j in zip(frames, blurred, strict=True) if j is not None]

    def ready(self) -> list[Ready]:
        """Finished clip jobs, in completion order."""
        with self._lock:
            out, self._ready = self._ready, []
            for r in out:
                self._pending.pop(r.key, None)
        return out

    def flush(self) -> None:
        """At shutdown: encode what each pending clip has so far, and wait for the encoder."""
        with self._lock:
            pending = list(self._pending.items())
        for key, p in pending:
            if not p.submitted:
                self._submit(key, p)
        if self.encoder is not None:
            self.encoder.close()

    @property
    def pending(self) -> int:
        return len(self._pending)

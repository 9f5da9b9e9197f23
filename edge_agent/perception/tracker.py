"""A ByteTrack-style multi-object tracker: stable ids and velocities for one camera, numpy + scipy only.

Why in-house rather than the ``trackers`` package: that package pulls the GUI build of opencv-python (which
conflicts with opencv-python-headless), supervision and a tail of plotting/HTTP dependencies onto a Raspberry
Pi. ByteTrack itself is small: a constant-velocity Kalman filter plus two rounds of IoU assignment.

The algorithm follows ByteTrack (Zhang et al., ECCV 2022, ``ifzhang/ByteTrack`` ``BYTETracker.update``):

1. predict every confirmed track (tracked and lost) to ``now`` with the Kalman filter;
2. match high-score detections to them by IoU fused with the detection score;
3. match low-score detections to the still-unmatched *tracked* tracks by plain IoU (this recovers occluded
   objects whose score dropped), and mark the tracked ones left over as lost;
4. match the remaining high-score detections to tentative tracks; a tentative track that misses is dropped;
5. start tentative tracks from unmatched detections scoring at least ``new_track_thresh``;
6. remove lost tracks unseen for longer than ``max_lost_s``.

Two deliberate differences from the reference: time is in seconds (the filter's ``dt`` and the lost-track
budget come from ``now``, because the detect rate varies per camera and drops under load), and a small cost is
added to cross-class pairs so that a track prefers a detection of its own class while a car that the detector
momentarily calls a truck still keeps its id.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from edge_agent.types import Detections, Track

F64 = npt.NDArray[np.float64]

# Kalman noise weights of ByteTrack / DeepSORT, relative to the box height. They are per-frame figures at the
# 30 fps of the MOT benchmarks; ``_REF_DT`` converts them to seconds so that a 5 fps camera gets the same
# noise per second of motion as the reference got at 30 fps.
_STD_POS = 1.0 / 20.0
_STD_VEL = 1.0 / 160.0
_REF_DT = 1.0 / 30.0
_MIN_SIZE = 1.0  # px; keeps the aspect ratio finite for degenerate boxes


@dataclass(slots=True, eq=False)
class _Tracklet:
    """Internal state behind one public ``Track``: the filter state and the bookkeeping ByteTrack needs."""

    track: Track
    mean: F64  # (8,) cx, cy, a, h and their rates per second
    cov: F64  # (8, 8)
    confirmed: bool = False
    lost: bool = False
    votes: dict[int, int] = field(default_factory=dict)


class ByteTracker:
    """Track the detections of one camera over time.

    Defaults are ByteTrack's published ones (``track_thresh`` 0.5, low-score floor 0.1, ``det_thresh`` =
    track_thresh + 0.1, first/second/unconfirmed matching cost limits 0.8/0.5/0.7, i.e. minimum similarities
    0.2/0.5/0.3, score fusion on) except ``max_lost_s``: ByteTrack keeps lost tracks 30 frames at 30 fps
    (1 s); we keep them 3 s, long enough for a bus to pass in front of a parked car without the car changing
    id, which matches the stopping rule's default ``end_grace_s``.

    >>> import numpy as np
    >>> tracker = ByteTracker(min_hits=2)
    >>> def frame(x: float) -> Detections:
    ...     box = np.array([[x, 100, x + 50, 140]], np.float32)
    ...     return Detections(box, np.array([0.9], np.float32), np.array([2]), ("a", "b", "car"))
    >>> tracker.update(frame(10), now=0.0)
    []
    >>> [(t.track_id, t.label, t.anchor) for t in tracker.update(frame(12), now=0.2)]
    [(1, 'car', (37.0, 140.0))]
    """

    def __init__(
        self,
        *,
        high_thresh: float = 0.25,
        low_thresh: float = 0.1,
        new_track_thresh: float = 0.25,
        match_iou: float = 0.2,
        low_match_iou: float = 0.5,
        tentative_match_iou: float = 0.3,
        fuse_score: bool = True,
        class_mismatch_cost: float = 0.1,
        max_lost_s: float = 3.0,
        min_hits: int = 2,
    ) -> None:
        """Thresholds on scores and similarities, all in 0..1; ``max_lost_s`` in seconds.

        Score thresholds are Ultralytics' ``bytetrack.yaml`` values (0.25 / 0.1 / 0.25), not the paper's
        MOT17 ones (0.5 / 0.1 / 0.6): the int8 YOLO models score parked, partly occluded cars at 0.3-0.5, and
        with 0.6 such a car never became a track on the real kerbside clip.

        ``match_iou``, ``low_match_iou`` and ``tentative_match_iou`` are the minimum IoU for the first, second
        and tentative associations; with ``fuse_score`` the assignment prefers pairs by IoU times score.
        ``class_mismatch_cost`` is added to the matching cost of a track/detection pair of different classes.
        ``min_hits`` is how many matched frames a track needs before it is returned (confirmed).
        """
        if not 0.0 <= low_thresh <= high_thresh <= 1.0:
            raise ValueError("need 0 <= low_thresh <= high_thresh <= 1")
        if new_track_thresh < high_thresh:
            raise ValueError("new_track_thresh below high_thresh would start tracks from low-score boxes")
        for name, v in (("match_iou", match_iou), ("low_match_iou", low_match_iou)):
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1]")
        if not 0.0 < tentative_match_iou <= 1.0:
            raise ValueError("tentative_match_iou must be in (0, 1]")
        if max_lost_s < 0.0 or min_hits < 1 or class_mismatch_cost < 0.0:
            raise ValueError("need max_lost_s >= 0, min_hits >= 1 and class_mismatch_cost >= 0")
        self.high_thresh = high_thresh
        self.low_thresh = low_thresh
        self.new_track_thresh = new_track_thresh
        self.match_iou = match_iou
        self.low_match_iou = low_match_iou
        self.tentative_match_iou = tentative_match_iou
        self.fuse_score = fuse_score
        self.class_mismatch_cost = class_mismatch_cost
        self.max_lost_s = max_lost_s
        self.min_hits = min_hits
        self._tracklets: list[_Tracklet] = []
        self._ids = itertools.count(1)
        self._last_now: float | None = None

    @property
    def live_count(self) -> int:
        """Tracks kept in memory (tentative, tracked and lost); for health metrics and tests."""
        return len(self._tracklets)

    def update(self, dets: Detections, now: float) -> list[Track]:
        """Advance to monotonic time ``now`` with this frame's detections.

        Returns the confirmed tracks matched in this frame, ordered by id. The ``Track`` objects are updated
        in place on later calls; copy what must outlive the frame.
        """
        dt = 0.0 if self._last_now is None else max(0.0, now - self._last_now)
        self._last_now = now if self._last_now is None else max(self._last_now, now)

        finite = np.isfinite(dets.xyxy).all(axis=1) & np.isfinite(dets.scores)
        boxes = dets.xyxy.astype(np.float64)
        scores = dets.scores.astype(np.float64)
        classes = dets.class_ids
        high = np.flatnonzero(finite & (scores >= self.high_thresh))
        low = np.flatnonzero(finite & (scores >= self.low_thresh) & (scores < self.high_thresh))

        for t in self._tracklets:
            if t.lost:
                t.mean[7] = 0.0  # as ByteTrack: a lost box keeps drifting but stops growing or shrinking
        _predict(self._tracklets, dt)

        pool = [t for t in self._tracklets if t.confirmed]
        tentative = [t for t in self._tracklets if not t.confirmed]
        pairs: list[tuple[_Tracklet, int]] = []

        # First association: high-score detections with every confirmed track, tracked or lost.
        m, u_pool, u_high = self._associate(
            pool, high, boxes, scores, classes, self.match_iou, self.fuse_score
        )
        pairs += [(pool[i], int(high[j])) for i, j in m]

        # Second association: low-score detections with the tracked (not lost) tracks left over.
        remaining = [pool[i] for i in u_pool if not pool[i].lost]
        m, u_rem, _ = self._associate(remaining, low, boxes, scores, classes, self.low_match_iou, False)
        pairs += [(remaining[i], int(low[j])) for i, j in m]
        for i in u_rem:
            remaining[i].lost = True

        # Tentative tracks get one chance per frame with the high-score detections nobody took.
        left = high[u_high]
        m, u_tent, u_left = self._associate(
            tentative, left, boxes, scores, classes, self.tentative_match_iou, self.fuse_score
        )
        pairs += [(tentative[i], int(left[j])) for i, j in m]
        dropped = {id(tentative[i]) for i in u_tent}

        matched = self._apply(pairs, dets, boxes, scores, now)
        born = [
            self._spawn(dets, boxes, scores, int(j), now)
            for j in left[u_left]
            if scores[j] >= self.new_track_thresh
        ]

        kept: list[_Tracklet] = []
        for t in self._tracklets:
            if id(t) in dropped or (t.lost and now - t.track.last_seen > self.max_lost_s):
                continue
            if id(t) not in matched:
                t.track.time_since_update += 1
            t.track.age_frames += 1
            kept.append(t)
        self._tracklets = kept + born

        out = [t.track for t in self._tracklets if t.confirmed and t.track.time_since_update == 0]
        out.sort(key=lambda tr: tr.track_id)
        return out

    def _associate(
        self,
        tracklets: list[_Tracklet],
        det_idx: npt.NDArray[np.intp],
        boxes: F64,
        scores: F64,
        classes: npt.NDArray[np.int64],
        min_sim: float,
        fuse: bool,
    ) -> tuple[list[tuple[int, int]], list[int], npt.NDArray[np.intp]]:
        """Optimal one-to-one matching; returns (pairs of local indices, unmatched tracks, unmatched dets)."""
        n, k = len(tracklets), len(det_idx)
        if n == 0 or k == 0:
            return [], list(range(n)), np.arange(k, dtype=np.intp)
        track_boxes = _xyah_to_xyxy(np.stack([t.mean[:4] for t in tracklets]))
        iou = _iou(track_boxes, boxes[det_idx])
        # The gate is geometric; score fusion and the class preference only rank candidates. Gating on the
        # fused value (as ByteTrack does) dropped a parked van seen at score 0.34 with IoU 0.8 and a car/truck
        # flip on the real kerbside clip, which re-started its track and raised a second event.
        sim = iou * scores[det_idx][None, :] if fuse else iou
        cost = 1.0 - sim
        if self.class_mismatch_cost > 0.0:
            track_cls = np.array([t.track.class_id for t in tracklets], dtype=np.int64)
            cost = cost + self.class_mismatch_cost * (track_cls[:, None] != classes[det_idx][None, :])
        pairs = _assign(cost, iou >= min_sim)
        rows = {i for i, _ in pairs}
        cols = np.ones(k, dtype=bool)
        for _, j in pairs:
            cols[j] = False
        return pairs, [i for i in range(n) if i not in rows], np.flatnonzero(cols)

    def _apply(
        self, pairs: list[tuple[_Tracklet, int]], dets: Detections, boxes: F64, scores: F64, now: float
    ) -> set[int]:
        """Kalman-update every matched track in one batch and copy the detection into its public ``Track``."""
        if not pairs:
            return set()
        tracklets = [t for t, _ in pairs]
        det_idx = np.array([j for _, j in pairs], dtype=np.intp)
        means = np.stack([t.mean for t in tracklets])
        covs = np.stack([t.cov for t in tracklets])
        means, covs = _kf_update(means, covs, _xyxy_to_xyah(boxes[det_idx]))
        for i, (t, j) in enumerate(pairs):
            t.mean, t.cov = means[i], covs[i]
            t.lost = False
            tr = t.track
            tr.hits += 1
            if tr.hits >= self.min_hits:
                t.confirmed = True
            self._vote(t, dets, int(dets.class_ids[j]))
            self._refresh(t, dets.xyxy[j], float(scores[j]), now)
        return {id(t) for t in tracklets}

    def _spawn(self, dets: Detections, boxes: F64, scores: F64, j: int, now: float) -> _Tracklet:
        mean, cov = _kf_initiate(_xyxy_to_xyah(boxes[j : j + 1])[0])
        cid = int(dets.class_ids[j])
        track = Track(
            track_id=next(self._ids),
            class_id=cid,
            label=dets.label(j),
            xyxy=dets.xyxy[j].copy(),
            score=float(scores[j]),
            first_seen=now,
            last_seen=now,
        )
        t = _Tracklet(track, mean, cov, confirmed=self.min_hits <= 1, votes={cid: 1})
        self._refresh(t, dets.xyxy[j], float(scores[j]), now)
        return t

    @staticmethod
    def _vote(t: _Tracklet, dets: Detections, cid: int) -> None:
        """Majority class over the track's hits; a tie keeps the current class so the label does not flap."""
        t.votes[cid] = t.votes.get(cid, 0) + 1
        tr = t.track
        if cid != tr.class_id and t.votes[cid] > t.votes.get(tr.class_id, 0):
            tr.class_id = cid
            tr.label = dets.names[cid] if 0 <= cid < len(dets.names) else str(cid)

    @staticmethod
    def _refresh(t: _Tracklet, xyxy: npt.NDArray[np.float32], score: float, now: float) -> None:
        """Copy the detection (not the filtered box: evidence must show what was seen) and the KF velocity."""
        tr = t.track
        tr.xyxy = np.array(xyxy, dtype=np.float32)
        tr.score = score
        tr.last_seen = now
        tr.time_since_update = 0
        vx, vy, vh = float(t.mean[4]), float(t.mean[5]), float(t.mean[7])
        tr.velocity = (vx, vy + vh / 2.0)  # of the bottom-centre anchor: y2 = cy + h / 2
        ax, ay = tr.anchor
        tr.history.append((now, ax, ay))


def _xyxy_to_xyah(b: F64) -> F64:
    w = np.maximum(b[:, 2] - b[:, 0], _MIN_SIZE)
    h = np.maximum(b[:, 3] - b[:, 1], _MIN_SIZE)
    return np.stack([(b[:, 0] + b[:, 2]) / 2.0, (b[:, 1] + b[:, 3]) / 2.0, w / h, h], axis=1)


def _xyah_to_xyxy(s: F64) -> F64:
    h = np.maximum(s[:, 3], 0.0)
    w = np.maximum(s[:, 2], 0.0) * h
    return np.stack([s[:, 0] - w / 2, s[:, 1] - h / 2, s[:, 0] + w / 2, s[:, 1] + h / 2], axis=1)


def _iou(a: F64, b: F64) -> F64:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes, (N, M)."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out: F64 = np.where(union > 0.0, inter / np.maximum(union, 1e-12), 0.0)
    return out


def _assign(cost: F64, valid: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Minimum-cost matching in which a pair outside ``valid`` is never made.

    Shifting valid costs below zero and clamping the rest at zero makes "leave both unmatched" exactly as
    good as a forbidden pair, so the solver never trades a good match for two mediocre ones just to match
    more rows (the same optimum as ``lap.lapjv(..., cost_limit=...)`` that ByteTrack uses).
    """
    if not valid.any():
        return []
    shifted = np.where(valid, cost - float(cost[valid].max()) - 1e-9, 0.0)
    rows, cols = linear_sum_assignment(shifted)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if valid[r, c]]


def _kf_initiate(z: F64) -> tuple[F64, F64]:
    h = max(float(z[3]), _MIN_SIZE)
    mean = np.concatenate([z, np.zeros(4)])
    std = np.array(
        [
            2 * _STD_POS * h,
            2 * _STD_POS * h,
            1e-2,
            2 * _STD_POS * h,
            10 * _STD_VEL * h / _REF_DT,
            10 * _STD_VEL * h / _REF_DT,
            1e-5 / _REF_DT,
            10 * _STD_VEL * h / _REF_DT,
        ]
    )
    return mean, np.diag(std**2)


def _predict(tracklets: list[_Tracklet], dt: float) -> None:
    """Constant-velocity prediction of all tracks by ``dt`` seconds in one batch.

    Process noise grows linearly with ``dt`` (a random walk on the rates) and equals ByteTrack's per-frame
    noise when ``dt`` is one 30 fps frame.
    """
    if not tracklets or dt <= 0.0:
        return
    means = np.stack([t.mean for t in tracklets])
    covs = np.stack([t.cov for t in tracklets])
    f = np.eye(8)
    f[:4, 4:] = dt * np.eye(4)
    h = np.maximum(means[:, 3], _MIN_SIZE)
    k = dt / _REF_DT
    one = np.ones_like(h)
    std = np.stack(
        [
            _STD_POS * h,
            _STD_POS * h,
            1e-2 * one,
            _STD_POS * h,
            _STD_VEL * h / _REF_DT,
            _STD_VEL * h / _REF_DT,
            1e-5 / _REF_DT * one,
            _STD_VEL * h / _REF_DT,
        ],
        axis=1,
    )
    means = means @ f.T
    covs = f @ covs @ f.T
    diag = np.arange(8)
    covs[:, diag, diag] += std**2 * k
    for i, t in enumerate(tracklets):
        t.mean, t.cov = means[i], covs[i]


def _kf_update(means: F64, covs: F64, z: F64) -> tuple[F64, F64]:
    """Batched Kalman correction by a direct (cx, cy, a, h) measurement; noise as ByteTrack's ``project``."""
    h = np.maximum(means[:, 3], _MIN_SIZE)
    r = np.stack([_STD_POS * h, _STD_POS * h, np.full_like(h, 1e-1), _STD_POS * h], axis=1) ** 2
    s = covs[:, :4, :4].copy()
    diag = np.arange(4)
    s[:, diag, diag] += r
    pht = covs[:, :, :4]  # P H^T, (N, 8, 4)
    gain = np.linalg.solve(s, pht.transpose(0, 2, 1)).transpose(0, 2, 1)  # P H^T S^-1 (S is symmetric)
    innovation = z - means[:, :4]
    new_means = means + (gain @ innovation[:, :, None])[:, :, 0]
    new_covs = covs - gain @ s @ gain.transpose(0, 2, 1)
    return new_means, new_covs

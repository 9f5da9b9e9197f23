"""Identity stability and speed of our tracker vs maintained ByteTrack implementations, on the real clips.

The detector runs once per clip (here, in the project venv, at the agent's defaults: conf 0.1, NMS 0.45,
car/truck/bus merge) on frames sampled at ``--fps`` by frame time like the scheduler (0: every frame); the
detections are cached as .npz under ``--cache``. Every tracker gets exactly those detections with the frame
times:

- ours: ``edge_agent.perception.tracker.ByteTracker`` with its defaults (the agent's tracker);
- ``trackers-default``: the ``trackers`` package's ``ByteTrackTracker`` as a user gets it (frame rate set);
- ``trackers-tuned``: the same with our thresholds (0.25 high / new track, lost tracks kept 3 s);
- ``ultralytics``: Ultralytics' ``BYTETracker`` with its ``bytetrack.yaml`` (what ``model.track`` uses).

The peers run in a separate venv (``--peer-python``, default /work/ulvenv: torch, ultralytics, trackers)
through ``scripts/_bench_baseline.py trackers``; their outputs come back as .npz and every metric is computed
here by the same code. There is no ground truth, so identity is judged by proxies:

- ids vs the median number of tracks output per frame (one object that keeps its id adds 1 id);
- mean track length: frames in which an id is output;
- fragmentations: a new id whose first box has IoU > 0.5 with the last box of an id that ended in the
  preceding 1 s (the same object came back under a new id);
- jumps (likely id switches): an id whose boxes in two consecutive sampled frames do not overlap and whose
  centre moved more than the larger side of the earlier box;
- speed: milliseconds per ``update`` (input conversion not included).

The results replace the ``<!-- bench:tracker -->`` section of docs/benchmarks.md (``--write`` elsewhere,
``--no-write`` not at all).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT / "assets" / "videos"
DEFAULT_MODEL = ROOT / "assets" / "models" / "yolo11n_coco_640_int8dyn.onnx"
DEFAULT_CLIPS = (
    "tokyo_omotesando_street_sidewalk_960x540.mp4",
    "vn_haiphong_intersection_cctv_1006x720.mp4",
    "vn_saigon_intersection_cctv_1018x720.mp4",
    "vn_nga4_truccat_intersection_highview_1280x720.mp4",
    "city_avenue_traffic_ped_crossing_596x336_shutterstock_wm.mp4",
)
PEER_PYTHON = Path("/work/ulvenv/bin/python")
PEER_SCRIPT = ROOT / "scripts" / "_bench_baseline.py"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:tracker -->", "<!-- /bench:tracker -->"
OURS = "ours"
PEERS = ("trackers-default", "trackers-tuned", "ultralytics")
FRAG_IOU = 0.5
FRAG_WINDOW_S = 1.0

F64 = npt.NDArray[np.float64]


def load_1min() -> float:
    return os.getloadavg()[0]


def cpu_label() -> str:
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


# -- detections -------------------------------------------------------------------------------------------


def cache_path(cache: Path, clip: Path, model: Path, fps: float, max_seconds: float | None) -> Path:
    span = "all" if max_seconds is None else f"{max_seconds:g}s"
    return cache / f"{clip.stem}.{model.stem}.fps{fps:g}.{span}.npz"


def detect_clip(clip: Path, model: Path, fps: float, max_seconds: float | None, out: Path) -> float:
    """Run the agent's detector on the sampled frames of ``clip``; save them to ``out``. Returns seconds."""
    import cv2

    from edge_agent.config import ModelConfig
    from edge_agent.perception.detector.onnx_detector import OnnxDetector

    detector = OnnxDetector(ModelConfig(path=model))
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    clip_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    interval = 0.0 if fps <= 0 else 1.0 / fps
    next_due: float | None = None
    times: list[float] = []
    source_index: list[int] = []
    frame_idx: list[int] = []
    boxes: list[npt.NDArray[np.float32]] = []
    scores: list[npt.NDArray[np.float32]] = []
    classes: list[npt.NDArray[np.int64]] = []
    size = (0, 0)
    t0 = time.perf_counter()
    i = -1
    while True:
        ok, image = cap.read()
        if not ok or image is None:
            break
        i += 1
        t = i / clip_fps
        if max_seconds is not None and t >= max_seconds:
            break
        if next_due is not None and t < next_due - 1e-6:
            continue
        base = t if next_due is None else next_due
        next_due = max(base + interval, t)  # the scheduler's slot arithmetic
        size = (int(image.shape[1]), int(image.shape[0]))
        dets = detector.detect([np.asarray(image, dtype=np.uint8)])[0]
        frame_idx.extend([len(times)] * len(dets))
        times.append(t)
        source_index.append(i)
        boxes.append(dets.xyxy)
        scores.append(dets.scores)
        classes.append(dets.class_ids)
    cap.release()
    elapsed = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        frame=np.asarray(frame_idx, np.int64),
        xyxy=np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32),
        scores=np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32),
        class_ids=np.concatenate(classes).astype(np.int64) if classes else np.zeros(0, np.int64),
        times=np.asarray(times, np.float64),
        source_index=np.asarray(source_index, np.int64),
        fps=np.float64(fps if fps > 0 else clip_fps),
        clip_fps=np.float64(clip_fps),
        size=np.asarray(size, np.int64),
        names=np.asarray(detector.names),
    )
    return elapsed


# -- trackers ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TrackOutput:
    """What a tracker returned: one row per (frame, id), boxes in pixels; and ms per update call."""

    frame: npt.NDArray[np.int64]
    track_id: npt.NDArray[np.int64]
    xyxy: npt.NDArray[np.float32]
    update_ms: F64


def run_ours(data: Any) -> TrackOutput:
    from edge_agent.perception.tracker import ByteTracker
    from edge_agent.types import Detections

    names = tuple(str(n) for n in data["names"])
    tracker = ByteTracker()
    frames: list[int] = []
    ids: list[int] = []
    boxes: list[Any] = []
    ms: list[float] = []
    for i, t in enumerate(data["times"]):
        sel = data["frame"] == i
        dets = Detections(data["xyxy"][sel], data["scores"][sel], data["class_ids"][sel], names)
        t0 = time.perf_counter()
        tracks = tracker.update(dets, float(t))
        ms.append((time.perf_counter() - t0) * 1e3)
        for tr in tracks:
            frames.append(i)
            ids.append(tr.track_id)
            boxes.append(np.asarray(tr.xyxy, np.float32))
    return TrackOutput(
        np.asarray(frames, np.int64),
        np.asarray(ids, np.int64),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(ms, np.float64),
    )


def run_peers(
    dets: dict[str, Path], python: Path, variants: Sequence[str]
) -> tuple[dict[str, dict[str, TrackOutput]], dict[str, Any]]:
    """Peer trackers in the other venv, on the same cached detections."""
    with tempfile.TemporaryDirectory(prefix="bench-tracker-") as tmp:
        in_dir, out_dir = Path(tmp) / "in", Path(tmp) / "out"
        in_dir.mkdir()
        for clip, path in dets.items():
            os.symlink(path, in_dir / f"{clip}.npz")
        cmd = [str(python), str(PEER_SCRIPT), "trackers", "--dets", str(in_dir), "--out", str(out_dir)]
        proc = subprocess.run([*cmd, "--variants", *variants], stdout=subprocess.PIPE, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"peer trackers failed (exit code {proc.returncode})")
        info = json.loads(lines[-1])
        outs: dict[str, dict[str, TrackOutput]] = defaultdict(dict)
        for clip in dets:
            for v in variants:
                d = np.load(out_dir / f"{clip}.{v}.npz")
                outs[clip][v] = TrackOutput(d["frame"], d["track_id"], d["xyxy"], d["update_ms"])
    return outs, info["versions"]


# -- metrics ----------------------------------------------------------------------------------------------


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def metrics(out: TrackOutput, times: F64) -> dict[str, float]:
    """Identity proxies and speed of one tracker on one clip (see the module docstring)."""
    n_frames = len(times)
    per_frame = np.bincount(out.frame, minlength=n_frames) if len(out.frame) else np.zeros(n_frames, np.int64)
    rows: dict[int, list[tuple[int, list[float]]]] = defaultdict(list)
    for f, tid, box in zip(out.frame.tolist(), out.track_id.tolist(), out.xyxy.tolist(), strict=True):
        rows[int(tid)].append((int(f), box))
    for r in rows.values():
        r.sort(key=lambda x: x[0])
    ends = [(times[r[-1][0]], r[-1][1], tid) for tid, r in rows.items()]
    fragmentations = 0
    for tid, r in rows.items():
        t_first, box = times[r[0][0]], r[0][1]
        if any(
            other != tid and t_first - FRAG_WINDOW_S <= t_end < t_first and iou(end_box, box) > FRAG_IOU
            for t_end, end_box, other in ends
        ):
            fragmentations += 1
    jumps = 0
    for r in rows.values():
        for (f0, b0), (f1, b1) in itertools.pairwise(r):
            if f1 != f0 + 1 or iou(b0, b1) > 0.0:
                continue
            c0 = ((b0[0] + b0[2]) / 2, (b0[1] + b0[3]) / 2)
            c1 = ((b1[0] + b1[2]) / 2, (b1[1] + b1[3]) / 2)
            if np.hypot(c1[0] - c0[0], c1[1] - c0[1]) > max(b0[2] - b0[0], b0[3] - b0[1]):
                jumps += 1
    lengths = [len(r) for r in rows.values()]
    median_sim = float(np.median(per_frame)) if n_frames else 0.0
    ms = out.update_ms
    return {
        "frames": n_frames,
        "ids": len(rows),
        "median_simultaneous": median_sim,
        "ids_per_simultaneous": len(rows) / median_sim if median_sim > 0 else 0.0,
        "mean_length": statistics.mean(lengths) if lengths else 0.0,
        "track_frames": int(sum(lengths)),
        "fragmentations": fragmentations,
        "jumps": jumps,
        "ms_mean": float(ms.mean()) if len(ms) else 0.0,
        "ms_p95": float(np.percentile(ms, 95)) if len(ms) else 0.0,
        "ms_max": float(ms.max()) if len(ms) else 0.0,
    }


def summarize(per_clip: dict[str, dict[str, float]]) -> dict[str, float]:
    """All clips of one tracker: sums of counts, frame-weighted means of the rest."""
    vals = list(per_clip.values())
    ids = sum(v["ids"] for v in vals)
    frames = sum(v["frames"] for v in vals)
    return {
        "frames": frames,
        "ids": ids,
        "median_simultaneous": sum(v["median_simultaneous"] for v in vals),
        "ids_per_simultaneous": ids / max(1e-9, sum(v["median_simultaneous"] for v in vals)),
        "mean_length": sum(v["track_frames"] for v in vals) / ids if ids else 0.0,
        "track_frames": sum(v["track_frames"] for v in vals),
        "fragmentations": sum(v["fragmentations"] for v in vals),
        "jumps": sum(v["jumps"] for v in vals),
        "ms_mean": sum(v["ms_mean"] * v["frames"] for v in vals) / frames if frames else 0.0,
        "ms_p95": max(v["ms_p95"] for v in vals),
        "ms_max": max(v["ms_max"] for v in vals),
    }


def verdict(totals: dict[str, dict[str, float]]) -> tuple[str, str]:
    """Which tracker to keep. A peer replaces ours only if, while covering at least 90 % of our output
    track-frames (a tracker that follows fewer objects looks stable for free), it is better on BOTH identity
    proxies (fragmentations + jumps per 100 track-frames, and ids per simultaneous track) by more than 10 %:
    ours needs no extra dependency (the ``trackers`` package pulls opencv-python and supervision, Ultralytics
    pulls torch) and works in seconds, which the scheduler's varying detect rate needs."""

    def errors(t: dict[str, float]) -> float:
        return 100.0 * (t["fragmentations"] + t["jumps"]) / max(1.0, t["track_frames"])

    ours = totals[OURS]
    better = [
        name
        for name, t in totals.items()
        if name != OURS
        and t["track_frames"] >= 0.9 * ours["track_frames"]
        and errors(t) < 0.9 * errors(ours)
        and t["ids_per_simultaneous"] < 0.9 * ours["ids_per_simultaneous"]
    ]
    lines = [
        f"{name}: {t['track_frames']:.0f} track-frames ({100 * t['track_frames'] / max(1.0, ours['track_frames']):.0f} % "
        f"of ours), {errors(t):.2f} fragmentations + jumps per 100 track-frames, "
        f"{t['ids_per_simultaneous']:.2f} ids per simultaneous track, {t['ms_mean']:.2f} ms per update"
        for name, t in totals.items()
    ]
    if better:
        best = min(better, key=lambda n: errors(totals[n]))
        return best, (
            f"Better on both identity proxies by more than 10 % at comparable coverage: {', '.join(better)}; "
            f"the best is {best}. Figures: " + "; ".join(lines) + "."
        )
    return OURS, (
        "No peer covering at least 90 % of our track-frames is better than ours on both identity proxies by "
        "more than 10 %, so ours stays the default (it also needs no extra dependency and works in seconds, "
        "which the varying detect rate needs). Figures: " + "; ".join(lines) + "."
    )


# -- report -----------------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    lines = [
        BEGIN,
        "## Tracker comparison (`scripts/bench_tracker.py`)",
        "",
        f"- date: {report['date']}; machine: {report['machine']}; 1-min load average {report['load_start']:.2f} "
        f"at the start, {report['load_end']:.2f} at the end (other jobs inflate ms per update)",
        f"- detections: `{report['model']}` at the agent's defaults (conf 0.1, NMS 0.45, car/truck/bus merge), run "
        "once per clip and cached; every tracker gets the same boxes and frame times",
        f"- peers: trackers {report['versions'].get('trackers', '?')} `ByteTrackTracker` (default: as shipped with "
        "the frame rate set; tuned: high/new-track thresholds 0.25, lost tracks 3 s, like ours), Ultralytics "
        f"{report['versions'].get('ultralytics', '?')} `BYTETracker` with `bytetrack.yaml`; run in a separate "
        "venv, numpy " + str(report["versions"].get("numpy", "?")),
        f"- command: `{report['command']}`",
        "",
        "No ground truth: ids vs the median number of tracks per frame, mean track length (frames an id is "
        "output), fragmentations (a new id starting within IoU > 0.5 of an id that ended in the preceding 1 s) "
        "and jumps (an id's boxes in consecutive sampled frames do not overlap and the centre moved more than "
        "the box's larger side: a likely id switch). Fewer ids, fragmentations and jumps and longer tracks are "
        "better, at comparable coverage (track-frames: rows output over the clip; a tracker that starts fewer "
        "tracks looks stable for free). In the all-clips row, median tracks/frame is the sum of the clips' "
        "medians. ms per update excludes input conversion.",
    ]
    for fps_key, block in report["results"].items():
        lines += [
            "",
            f"### Detections at {fps_key}",
            "",
            "| clip | tracker | frames | track-frames | ids | median tracks/frame | ids per simultaneous | "
            "mean length | fragmentations | jumps | ms/update mean | p95 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        clips = [*block["clips"], "all clips"]
        for clip in clips:
            rows = block["clips"].get(clip) or block["totals"]
            for name, m in rows.items():
                lines.append(
                    f"| {clip} | {name} | {m['frames']} | {m['track_frames']} | {m['ids']} | "
                    f"{m['median_simultaneous']:g} | "
                    f"{m['ids_per_simultaneous']:.1f} | {m['mean_length']:.1f} | {m['fragmentations']} | "
                    f"{m['jumps']} | {m['ms_mean']:.2f} | {m['ms_p95']:.2f} |"
                )
        lines += ["", f"Kept: **{block['kept']}**. {block['why']}"]
    lines += ["", END]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.is_file() else "# streetwatch benchmarks\n"
    pattern = re.compile(rf"{re.escape(BEGIN)}.*?{re.escape(END)}", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--clips", nargs="+", default=list(DEFAULT_CLIPS), help="clip file names under assets/videos"
    )
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument(
        "--fps",
        type=float,
        nargs="+",
        default=[5.0],
        help="detect rates to sample at (0: every frame); default 5",
    )
    ap.add_argument("--max-seconds", type=float, help="only the first seconds of each clip (smoke runs)")
    ap.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "streetwatch-bench" / "tracker"
    )
    ap.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    ap.add_argument("--variants", nargs="+", default=list(PEERS), choices=PEERS)
    ap.add_argument("--no-peers", action="store_true", help="only our tracker")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument(
        "--write", type=Path, default=DOC, help="markdown file whose bench:tracker section is replaced"
    )
    ap.add_argument("--no-write", action="store_true", help="do not touch the docs")
    args = ap.parse_args(argv)

    started = time.monotonic()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python scripts/bench_tracker.py "
        + shlex.join(list(argv if argv is not None else sys.argv[1:])),
        "machine": cpu_label(),
        "model": args.model.name,
        "load_start": load_1min(),
        "results": {},
        "versions": {},
    }
    print(f"1-min load average at the start: {report['load_start']:.2f}", file=sys.stderr)
    for fps in args.fps:
        dets: dict[str, Path] = {}
        for name in args.clips:
            clip = Path(name) if Path(name).is_absolute() else VIDEOS / name
            path = cache_path(args.cache, clip, args.model, fps, args.max_seconds)
            if not path.is_file():
                s = detect_clip(clip, args.model, fps, args.max_seconds, path)
                print(f"detected {clip.name} at {fps:g} fps in {s:.0f} s -> {path}", file=sys.stderr)
            dets[clip.stem] = path
        per_tracker: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
        for clip, path in dets.items():
            data = np.load(path)
            per_tracker[OURS][clip] = metrics(run_ours(data), data["times"])
        if not args.no_peers:
            outs, versions = run_peers(dets, args.peer_python, args.variants)
            report["versions"] = versions
            for clip, by_variant in outs.items():
                times = np.load(dets[clip])["times"]
                for v, out in by_variant.items():
                    per_tracker[v][clip] = metrics(out, times)
        clips_block = {clip: {name: per_tracker[name][clip] for name in per_tracker} for clip in dets}
        totals = {name: summarize(per_tracker[name]) for name in per_tracker}
        kept, why = verdict(totals)
        key = "every frame" if fps <= 0 else f"{fps:g} fps"
        report["results"][key] = {"clips": clips_block, "totals": totals, "kept": kept, "why": why}
        for name, t in totals.items():
            print(
                f"{key} {name:17s} ids {t['ids']:4d}  ids/simultaneous {t['ids_per_simultaneous']:5.1f}  "
                f"mean length {t['mean_length']:5.1f}  fragmentations {t['fragmentations']:3d}  jumps "
                f"{t['jumps']:3d}  {t['ms_mean']:.2f} ms/update",
                file=sys.stderr,
            )
        print(f"{key}: keep {kept}", file=sys.stderr)
    report["load_end"] = load_1min()
    report["total_s"] = time.monotonic() - started
    print(f"1-min load average at the end: {report['load_end']:.2f}", file=sys.stderr)
    section = markdown(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if not args.no_write:
        write_section(args.write, section)
        print(f"wrote the {BEGIN} section of {args.write}", file=sys.stderr)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

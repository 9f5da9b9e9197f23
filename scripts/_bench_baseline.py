"""Peer baselines for the benchmarks, run as a subprocess inside a SEPARATE venv (torch, ultralytics, trackers,
matplotlib: none of them belongs in the project's runtime). Not imported by the project; no project imports.

Subcommands (each prints one JSON object on its last stdout line):

- ``track``: Ultralytics ``YOLO(model, task="detect").track(source=clip, tracker="bytetrack.yaml",
  stream=True)`` on each clip, every frame as fast as it goes; one process per clip running in parallel
  (``--mode parallel``, how a user watches K cameras at once) or the clips one after another in one process
  (``--mode sequential``);
- ``trackers``: the ``trackers`` package's ``ByteTrackTracker`` (and Ultralytics' ``BYTETracker``) on cached
  detections written by ``scripts/bench_tracker.py``;
- ``plot``: the throughput / drops figure of ``scripts/bench_edge.py`` from its JSON report.

Used by ``scripts/bench_edge.py`` and ``scripts/bench_tracker.py``; run them, not this.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path
from typing import Any

WARMUP_FRAMES = 3


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in ("ultralytics", "torch", "onnxruntime", "trackers", "supervision", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


# -- track ------------------------------------------------------------------------------------------------


def _track_clip(model: Any, clip: str, seconds: float) -> dict[str, Any]:
    """Track ``clip`` (restarting it at its end) until ``seconds`` have passed; every frame is processed."""
    frames = passes = 0
    speed = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for r in model.track(source=clip, tracker="bytetrack.yaml", stream=True, verbose=False):
            frames += 1
            for key in speed:
                speed[key] += float(r.speed.get(key) or 0.0)
            if time.perf_counter() - t0 >= seconds:
                break
        passes += 1
    wall = time.perf_counter() - t0
    return {
        "clip": Path(clip).name,
        "frames": frames,
        "passes": passes,
        "wall_s": wall,
        "fps": frames / wall if wall > 0 else 0.0,
        "cpu_s": time.process_time() - cpu0,
        "speed_ms": {k: v / frames if frames else 0.0 for k, v in speed.items()},
    }


def _load(model_path: str, clip: str) -> Any:
    from ultralytics import YOLO

    model = YOLO(model_path, task="detect")
    # Warm-up (session load, first runs, tracker registration), not timed.
    for i, _ in enumerate(model.track(source=clip, tracker="bytetrack.yaml", stream=True, verbose=False)):
        if i + 1 >= WARMUP_FRAMES:
            break
    return model


def _worker(model_path: str, clip: str, seconds: float, barrier: Any, out: Any) -> None:
    try:
        model = _load(model_path, clip)
        barrier.wait()
        r = _track_clip(model, clip, seconds)
        r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        out.put(r)
    except Exception as err:  # reported to the parent, which fails loudly
        barrier.abort()
        out.put({"error": f"{clip}: {err!r}"})


def cmd_track(args: argparse.Namespace) -> dict[str, Any]:
    clips: list[str] = args.clips
    k = len(clips)
    streams: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    if args.mode == "parallel":
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(k)
        out = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(args.model, c, args.seconds, barrier, out)) for c in clips]
        for p in procs:
            p.start()
        streams = [out.get(timeout=args.seconds + 600) for _ in procs]
        for p in procs:
            p.join(60)
        errors = [s["error"] for s in streams if "error" in s]
        if errors:
            raise RuntimeError("; ".join(errors))
        how = "one process" if k == 1 else f"{k} processes in parallel, one per clip"
        fps_total = sum(s["frames"] for s in streams) / max(s["wall_s"] for s in streams)
        cpu = sum(s["cpu_s"] for s in streams) / max(s["wall_s"] for s in streams)
    else:
        model = None
        for c in clips:
            model = _load(args.model, c) if model is None else model
            r = _track_clip(model, c, args.seconds / k)
            streams.append(r)
        for s in streams:
            s["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        how = "one process, the clips one after another"
        fps_total = sum(s["frames"] for s in streams) / sum(s["wall_s"] for s in streams)
        cpu = sum(s["cpu_s"] for s in streams) / sum(s["wall_s"] for s in streams)
    peak = [s["peak_rss_mb"] for s in streams]
    return {
        **_versions(),
        "how": how,
        "mode": args.mode,
        "streams": streams,
        "fps_total": fps_total,
        "fps_per_stream_mean": sum(s["fps"] for s in streams) / len(streams),
        "cpu_percent": 100.0 * cpu,
        "peak_rss_mb_sum": sum(peak) if args.mode == "parallel" else max(peak),
        "elapsed_s": time.perf_counter() - t0,
    }


# -- trackers ---------------------------------------------------------------------------------------------


def cmd_trackers(args: argparse.Namespace) -> dict[str, Any]:
    """Run peer trackers on every ``*.npz`` of cached detections; write ``<clip>.<variant>.npz`` outputs."""
    import numpy as np

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"versions": _versions(), "clips": {}}
    for path in sorted(Path(args.dets).glob("*.npz")):
        data = np.load(path, allow_pickle=False)
        times = data["times"]
        fps = float(data["fps"])
        per_clip: dict[str, Any] = {}
        for variant in args.variants:
            update, make_input = _peer_tracker(variant, fps)
            frames_out: list[int] = []
            ids_out: list[int] = []
            boxes_out: list[list[float]] = []
            ms: list[float] = []
            for i, t in enumerate(times):
                sel = data["frame"] == i
                inp = make_input(data["xyxy"][sel], data["scores"][sel], data["class_ids"][sel])
                t0 = time.perf_counter()
                ids, boxes = update(inp, float(t))
                ms.append((time.perf_counter() - t0) * 1e3)
                frames_out.extend([i] * len(ids))
                ids_out.extend(int(x) for x in ids)
                boxes_out.extend(boxes.tolist() if len(ids) else [])
            np.savez(
                out_dir / f"{path.stem}.{variant}.npz",
                frame=np.asarray(frames_out, np.int64),
                track_id=np.asarray(ids_out, np.int64),
                xyxy=np.asarray(boxes_out, np.float32).reshape(-1, 4),
                update_ms=np.asarray(ms, np.float64),
            )
            per_clip[variant] = {"updates": len(ms)}
        results["clips"][path.stem] = per_clip
    return results


def _peer_tracker(variant: str, fps: float) -> tuple[Any, Any]:
    """``(update(input, t) -> (ids, xyxy), make_input(xyxy, scores, class_ids))`` for a peer tracker.

    Only the ``update`` call is timed; building the input object (``sv.Detections``) is not.
    """
    import numpy as np

    if variant.startswith("trackers"):
        import supervision as sv
        from trackers import ByteTrackTracker

        if variant == "trackers-default":
            tracker = ByteTrackTracker(frame_rate=fps)
        else:  # thresholds of Ultralytics' bytetrack.yaml / the project's tracker, lost tracks kept 3 s
            tracker = ByteTrackTracker(
                frame_rate=fps,
                lost_track_buffer=90,
                track_activation_threshold=0.25,
                high_conf_det_threshold=0.25,
                minimum_consecutive_frames=2,
            )

        def make_input(xyxy: Any, scores: Any, cls: Any) -> Any:
            return sv.Detections(
                xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4), confidence=scores, class_id=cls
            )

        def update(d: Any, t: float) -> tuple[Any, Any]:
            out = tracker.update(d, timestamp=t)
            keep = out.tracker_id >= 0
            return out.tracker_id[keep], out.xyxy[keep]

        return update, make_input
    if variant == "ultralytics":
        from types import SimpleNamespace

        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import YAML
        from ultralytics.utils.checks import check_yaml

        cfg = SimpleNamespace(**YAML.load(check_yaml("bytetrack.yaml")))
        # As shipped: lost tracks are kept track_buffer (30) *frames*, whatever the frame rate.
        tracker_u = BYTETracker(cfg)

        class _Boxes:
            def __init__(self, xyxy: Any, conf: Any, cls: Any) -> None:
                self.xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
                self.conf = np.asarray(conf, np.float32)
                self.cls = np.asarray(cls, np.float32)
                xy = self.xyxy
                self.xywh = np.stack(
                    [
                        (xy[:, 0] + xy[:, 2]) / 2,
                        (xy[:, 1] + xy[:, 3]) / 2,
                        xy[:, 2] - xy[:, 0],
                        xy[:, 3] - xy[:, 1],
                    ],
                    axis=1,
                )

            def __len__(self) -> int:
                return len(self.conf)

            def __getitem__(self, idx: Any) -> _Boxes:
                return _Boxes(self.xyxy[idx], self.conf[idx], self.cls[idx])

        def update_u(d: Any, t: float) -> tuple[Any, Any]:
            out = tracker_u.update(d)
            if len(out) == 0:
                return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
            # rows: x1, y1, x2, y2, track_id, score, cls, det_idx; boxes are the detections' (as ours)
            idx = out[:, -1].astype(int)
            return out[:, 4].astype(np.int64), d.xyxy[idx]

        return update_u, _Boxes
    raise ValueError(f"unknown tracker variant {variant}")


# -- plot -------------------------------------------------------------------------------------------------


def cmd_plot(args: argparse.Namespace) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = json.loads(Path(args.json).read_text(encoding="utf-8"))
    runs = report["runs"]
    labels = {
        "gated": "ours: agent (5 fps/camera, motion gating)",
        "ungated": "ours: motion gating off",
        "every": "ours: every frame, lossless",
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"gated": "tab:blue", "ungated": "tab:orange", "every": "tab:green"}
    for mode in ("gated", "ungated", "every"):
        rs = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["k"])
        if not rs:
            continue
        ks = [r["k"] for r in rs]
        c = colours[mode]
        ax1.plot(ks, [r["analysed_per_s"] for r in rs], "o-", color=c, label=labels[mode])
        if mode == "every":
            continue
        ax1.plot(ks, [r["wanted_per_s"] for r in rs], ":", color="grey", linewidth=1)
        per_s = {
            "missed detect slots": [r["slots_missed_per_s"] for r in rs],
            "scheduler drops": [r["dropped_scheduler"] / r["wall_s"] for r in rs],
            "skipped (no motion)": [r["skipped_no_motion"] / r["wall_s"] for r in rs],
        }
        for (what, ys), style in zip(per_s.items(), ("o-", "x--", "s:"), strict=True):
            ax2.plot(ks, ys, style, color=c, label=f"{labels[mode]}: {what}")
    base = sorted(report.get("baseline", []), key=lambda b: b["k"])
    if base:
        ax1.plot(
            [b["k"] for b in base],
            [b["fps_total"] for b in base],
            "^-",
            color="black",
            label="Ultralytics model.track, all streams",
        )
    ax1.set_xlabel("cameras K")
    ax1.set_ylabel("camera-frames analysed per second")
    ax1.set_title("Throughput (dotted: 5 fps x K wanted)")
    ax1.set_xticks(sorted({r["k"] for r in runs}))
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    ax2.set_xlabel("cameras K")
    ax2.set_ylabel("frames per second")
    ax2.set_title("Detect slots missed, frames dropped / skipped")
    ax2.set_xticks(sorted({r["k"] for r in runs}))
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    m = report["machine"]
    fig.suptitle(
        f"{m['model']} on {m['cpu']} ({m['cores']} cores), {report['date']}, "
        f"load {report['load_start']:.1f}->{report['load_end']:.1f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    return {"plot": args.out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("track")
    t.add_argument("--model", required=True)
    t.add_argument("--clips", nargs="+", required=True)
    t.add_argument("--seconds", type=float, default=60.0)
    t.add_argument("--mode", choices=("parallel", "sequential"), default="parallel")
    tr = sub.add_parser("trackers")
    tr.add_argument("--dets", required=True, help="folder of cached detections (*.npz)")
    tr.add_argument("--out", required=True, help="folder for the trackers' outputs")
    tr.add_argument("--variants", nargs="+", default=["trackers-default", "trackers-tuned", "ultralytics"])
    p = sub.add_parser("plot")
    p.add_argument("--json", required=True)
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    handlers = {"track": cmd_track, "trackers": cmd_trackers, "plot": cmd_plot}
    result = handlers[args.cmd](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

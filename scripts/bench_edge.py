"""Cluster throughput of the edge agent: K cameras replaying real street clips through the full agent path.

Each measurement runs in its own child process (so peak RSS and CPU are per run) and drives the agent's own
objects: ``Agent`` builds the detector, the scheduler, the evidence store and the per-camera pipelines
(tracker + rules + evidence); this script only swaps the MQTT publisher for a sink that counts events and adds
light timers around the stages (capture decode, ``OnnxDetector.last_timing``, tracker update, rule
evaluation), without changing what they do. Modes:

- ``gated``: the agent as deployed: real-time readers (newest frame), detect fps 5, motion gating on;
- ``ungated`` (``--no-motion``): the same with motion gating off, plus a bare ``session.run`` over the same
  frames afterwards (pipeline time per analysed frame vs the model alone: the "within 15%" check);
- ``every`` (``--every-frame``): lossless replay, every frame through detector + tracker + rules as fast as
  the box allows (what the Ultralytics baseline does, so its ratio is like for like).

The peer baseline (``--no-baseline`` skips it) is Ultralytics ``model.track(source, tracker="bytetrack.yaml")``
with the same ONNX model on the same clips, one process per clip running in parallel, in the separate venv
given by ``--baseline-python`` (``scripts/_bench_baseline.py``). ``--event-check`` replays the Tokyo clip with
its demo zone twice (every frame; the scheduler at 5 fps with motion gating) and compares the
illegal-stopping incidents.

Results go to stdout (a markdown section), ``--json`` and, unless ``--no-write``, to the
``<!-- bench:edge -->`` section of docs/benchmarks.md plus a plot (drawn by the baseline venv's matplotlib).
The machine is usually shared: every run records the 1-minute load average before and after it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT / "assets" / "videos"
DEFAULT_MODEL = ROOT / "assets" / "models" / "yolo11n_coco_640_int8dyn.onnx"
DEMO_CONFIG = ROOT / "configs" / "demo-tokyo.yaml"
DEFAULT_CLIPS = (
    "tokyo_omotesando_street_sidewalk_960x540.mp4",
    "vn_haiphong_intersection_cctv_1006x720.mp4",
    "vn_saigon_intersection_cctv_1018x720.mp4",
    "vn_nga4_truccat_intersection_highview_1280x720.mp4",
    "city_avenue_traffic_ped_crossing_596x336_shutterstock_wm.mp4",
)
BASELINE_PYTHON = Path("/work/ulvenv/bin/python")
BASELINE_SCRIPT = ROOT / "scripts" / "_bench_baseline.py"
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "bench_edge.png"
BEGIN, END = "<!-- bench:edge -->", "<!-- /bench:edge -->"
STAGES = ("decode", "preprocess", "inference", "postprocess", "tracking", "rules", "other")
MODES = ("gated", "ungated", "every")
BARE_PASSES = 2
EVERY_FRAME_FPS = 60.0  # the config's maximum detect fps: every frame of a <= 60 fps clip is due
# A zone and a rule for clips without a demo zone: the lower middle of the frame, no stopping for 5 s.
GENERIC_ZONE = [[0.2, 0.55], [0.8, 0.55], [0.95, 0.95], [0.05, 0.95]]

log = logging.getLogger("bench_edge")


def load_1min() -> float:
    return os.getloadavg()[0]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def finite(x: float) -> float:
    """JSON has no NaN/inf: undefined figures become 0 (the tables say n/a where it matters)."""
    return x if math.isfinite(x) else 0.0


# ---------------------------------------------------------------------------------------------------------
# Child side: one measurement in this process
# ---------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    """One detector call and the handling of its frames (all in the detector thread)."""

    t: float
    images: int
    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    detect: float = 0.0
    handle: float = 0.0
    tracking: float = 0.0
    rules: float = 0.0
    frames: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Acc:
    n: int = 0
    total: float = 0.0
    cpu: float = 0.0  # thread CPU time: FFmpeg decodes in the reader's own thread (decode_threads 1)


class _Probe:
    """Timers the instrumented objects write into. Detector-side fields are written by the detector thread
    only; each camera's decode accumulator by its reader thread only."""

    def __init__(self) -> None:
        self.batches: list[_Batch] = []
        self.current: _Batch | None = None
        self.decode: dict[str, _Acc] = {}
        self.first_wall: dict[str, datetime] = {}


class _TimedCapture:
    """An OpenCV capture whose ``read`` (demux + decode + colour conversion) is timed."""

    def __init__(self, inner: Any, acc: _Acc) -> None:
        self._inner = inner
        self._acc = acc

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return bool(self._inner.isOpened())

    def read(self) -> tuple[bool, Any]:
        t0, c0 = time.perf_counter(), time.thread_time()
        ok, image = self._inner.read()
        self._acc.total += time.perf_counter() - t0
        self._acc.cpu += time.thread_time() - c0
        self._acc.n += 1
        return bool(ok), image

    def grab(self) -> bool:
        """Demux + decode only (the reader converts only frames someone wants)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        ok = bool(self._inner.grab())
        self._acc.total += time.perf_counter() - t0
        self._acc.cpu += time.thread_time() - c0
        self._acc.n += 1
        return ok

    def retrieve(self) -> tuple[bool, Any]:
        """YUV -> BGR conversion and copy of a grabbed frame (timed into the same decode figure)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        ok, image = self._inner.retrieve()
        self._acc.total += time.perf_counter() - t0
        self._acc.cpu += time.thread_time() - c0
        return bool(ok), image

    def get(self, prop_id: int) -> float:
        return float(self._inner.get(prop_id))

    def set(self, prop_id: int, value: float) -> bool:
        return bool(self._inner.set(prop_id, value))

    def release(self) -> None:
        self._inner.release()


class _TimedTracker:
    """Delegates to the pipeline's ``ByteTracker`` and times ``update``."""

    def __init__(self, inner: Any, probe: _Probe) -> None:
        self._inner = inner
        self._probe = probe

    def update(self, dets: Any, now: float) -> Any:
        t0 = time.perf_counter()
        out = self._inner.update(dets, now)
        if self._probe.current is not None:
            self._probe.current.tracking += time.perf_counter() - t0
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _TimedRule:
    """Delegates to one rule of the pipeline and times ``evaluate``."""

    def __init__(self, inner: Any, probe: _Probe) -> None:
        self._inner = inner
        self._probe = probe
        self.rule_id: str = inner.rule_id
        self.zone_id: str = inner.zone_id

    def evaluate(self, tracks: Any, now: float) -> Any:
        t0 = time.perf_counter()
        out = self._inner.evaluate(tracks, now)
        if self._probe.current is not None:
            self._probe.current.rules += time.perf_counter() - t0
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Sink:
    """Counts the events the pipelines submit (and keeps the illegal-stopping STARTs) instead of spooling them."""

    def __init__(self) -> None:
        self.by_phase: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()
        self.starts: list[dict[str, Any]] = []

    def add(self, event: Any) -> None:
        self.by_phase[event.phase.value] += 1
        self.by_type[event.type.value] += 1
        if event.phase.value == "start" and event.type.value == "illegal_stopping":
            self.starts.append(
                {
                    "camera": event.camera_id,
                    "started_at": event.started_at.isoformat(),
                    "observed_at": event.observed_at.isoformat(),
                    "objects": [
                        {
                            "track_id": o.track_id,
                            "label": o.label,
                            "box": [o.box.x1, o.box.y1, o.box.x2, o.box.y2],
                        }
                        for o in event.objects
                    ],
                }
            )


def _sink_publisher(cfg: Any, model_ref: Any, sink: _Sink) -> Any:
    """A real ``Publisher`` (outbox, stats: everything the agent's health probe reads) that never connects:
    ``start`` does nothing and submitted events go to ``sink`` instead of the spool."""
    from edge_agent.delivery.publisher import Publisher

    class SinkPublisher(Publisher):
        def start(self) -> None:
            pass

        def submit_many(self, batch: Any) -> None:
            for event, _files in batch:
                sink.add(event)
                self.stats.queued += 1

        def close(self, drain_timeout_s: float | None = None) -> None:
            self.outbox.close()

    return SinkPublisher(cfg, model_ref)


def _camera_dict(i: int, clip: Path, mode: str, detect_fps: float) -> dict[str, Any]:
    """One camera of the benchmark config: the demo zone and rule on the Tokyo clip, a generic one elsewhere."""
    import yaml

    realtime = mode != "every"
    cam: dict[str, Any] = {
        "id": f"cam{i}",
        "name": clip.name,
        "source": str(clip),
        "realtime": realtime,
        "loop": True,
        "detect_fps": EVERY_FRAME_FPS if mode == "every" else detect_fps,
        "motion": {"enabled": mode == "gated"},
    }
    demo = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))["cameras"][0]
    if Path(demo["source"]).name == clip.name:
        cam["zones"], cam["rules"] = demo["zones"], demo["rules"]
    else:
        cam["zones"] = [{"id": "kerb", "name": "generic no-stopping zone", "polygon": GENERIC_ZONE}]
        cam["rules"] = [
            {
                "id": "no-stopping",
                "type": "illegal_stopping",
                "zone": "kerb",
                "min_dwell_s": 5,
                "end_grace_s": 3,
                "cooldown_s": 60,
            }
        ]
    return cam


def _build_config(spec: dict[str, Any], cameras: list[dict[str, Any]], tmp: Path) -> Any:
    from edge_agent.config import AgentConfig, parse_config

    data: dict[str, Any] = {
        "node_id": "bench",
        "model": {"path": spec["model"], "threads": spec["threads"], "backend": spec.get("backend", "auto")},
        "evidence_dir": str(tmp / "evidence"),
        "outbox": {"path": str(tmp / "outbox.sqlite3")},
        "mqtt": {"host": "127.0.0.1", "port": 9},  # never contacted: the publisher does not start
        "cameras": cameras,
    }
    if "metrics" in AgentConfig.model_fields:  # no HTTP endpoint: concurrent runs would fight over its port
        data["metrics"] = {"port": 0}
    return parse_config(data, "benchmark config")


class _Harness:
    """An ``Agent`` with timed readers, a timed detector call, timed trackers/rules and a counting sink."""

    def __init__(self, cfg: Any) -> None:
        from edge_agent.capture.reader import CameraReader, CaptureSet, FrameSignal
        from edge_agent.capture.sources import open_capture
        from edge_agent.node.agent import Agent
        from edge_agent.pipeline.detect_loop import DetectLoop

        self.probe = probe = _Probe()
        self.agent = agent = Agent(cfg)
        agent.publisher.outbox.close()  # never started; a publisher that only counts takes its place
        self.sink = _Sink()
        agent.publisher = _sink_publisher(cfg, agent.model_ref, self.sink)

        def opener_for(acc: _Acc, threads: int) -> Any:
            def opener(source: str, kind: Any, open_timeout_s: float, read_timeout_s: float) -> Any:
                return _TimedCapture(open_capture(source, kind, open_timeout_s, read_timeout_s, threads), acc)

            return opener

        # The same readers CaptureSet.from_config builds, with an opener whose reads are timed.
        signal = FrameSignal()
        readers = []
        for c in cfg.cameras:
            probe.decode[c.id] = _Acc()
            readers.append(
                CameraReader(
                    c.id,
                    c.source,
                    c.capture,
                    realtime=c.realtime,
                    loop=c.loop,
                    signal=signal,
                    opener=opener_for(probe.decode[c.id], getattr(c.capture, "decode_threads", 0)),
                )
            )
        agent.captures = CaptureSet(readers, signal=signal)
        agent.loop = DetectLoop(
            agent.captures, agent.scheduler, self._detect, self._handle, stop=agent.stop_event
        )
        if hasattr(agent, "rings"):  # readers feed the clip rings and convert only wanted frames
            from edge_agent.node.agent import feed_clip_rings

            agent.rings = feed_clip_rings(cfg, agent.captures, agent.scheduler)
        self.sources = {c.id: c.source for c in cfg.cameras}
        self.thread = threading.Thread(target=self._run, name="agent", daemon=True)
        self.exit_code: int | None = None

    def _run(self) -> None:
        self.exit_code = self.agent.run(report_every_s=1e9)

    def _detect(self, images: list[Any]) -> list[Any]:
        det = self.agent.detector
        b = _Batch(t=time.perf_counter(), images=len(images))
        out = det.detect(images)
        b.detect = time.perf_counter() - b.t
        timing = det.last_timing
        if timing is not None:
            b.preprocess = timing.preprocess_ms / 1e3
            b.inference = timing.inference_ms / 1e3
            b.postprocess = timing.postprocess_ms / 1e3
        self.probe.batches.append(b)
        self.probe.current = b
        return out

    def _handle(self, camera_id: str, frame: Any, dets: Any, detect_ms: float) -> None:
        t0 = time.perf_counter()
        new = camera_id not in self.agent.pipelines
        self.agent._handle(camera_id, frame, dets, detect_ms)
        if new:
            self.probe.first_wall[camera_id] = frame.wall
            pipeline = self.agent.pipelines[camera_id]
            pipeline.tracker = cast(Any, _TimedTracker(pipeline.tracker, self.probe))
            pipeline.rules = [cast(Any, _TimedRule(r, self.probe)) for r in pipeline.rules]
        b = self.probe.current
        if b is not None:
            b.handle += time.perf_counter() - t0
            b.frames.append((camera_id, int(frame.index)))

    def counters(self) -> dict[str, Any]:
        """Cumulative counters now (read from another thread: a frame's worth of skew at most)."""
        agent = self.agent
        cams: dict[str, Any] = {}
        for cam_id, reader in agent.captures.readers.items():
            c = agent.scheduler.counters(cam_id)
            acc = self.probe.decode[cam_id]
            cams[cam_id] = {
                "decoded": reader.stats.frames,
                "grab_only": getattr(reader.stats, "grab_only", 0),
                "unseen": reader.stats.unseen,
                "decode_errors": reader.stats.decode_errors,
                "offered": c.offered,
                "selected": c.selected,
                "not_due": c.skipped.get(_offer("NOT_DUE"), 0),
                "no_motion": c.skipped.get(_offer("NO_MOTION"), 0),
                "overload": c.dropped.get(_drop("OVERLOAD"), 0),
                "stale": c.dropped.get(_drop("STALE"), 0),
                "decode_n": acc.n,
                "decode_s": acc.total,
                "decode_cpu_s": acc.cpu,
            }
        ru_self = resource.getrusage(resource.RUSAGE_SELF)
        ru_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "t": time.perf_counter(),
            "cpu_s": ru_self.ru_utime + ru_self.ru_stime,
            "children_cpu_s": ru_children.ru_utime + ru_children.ru_stime,
            "events": sum(self.sink.by_phase.values()),
            "cameras": cams,
        }

    def stop(self, timeout_s: float = 120.0) -> None:
        self.agent.stop_event.set()
        self.thread.join(timeout_s)


def _offer(name: str) -> Any:
    from edge_agent.capture.scheduler import Offer

    return Offer[name]


def _drop(name: str) -> Any:
    from edge_agent.capture.scheduler import Drop

    return Drop[name]


def _window_result(h: _Harness, a: dict[str, Any], b: dict[str, Any], mode: str, k: int) -> dict[str, Any]:
    """Figures of the measurement window between counter snapshots ``a`` and ``b``."""
    wall = b["t"] - a["t"]
    batches = [x for x in h.probe.batches if a["t"] <= x.t < b["t"]]
    frames = sum(len(x.frames) for x in batches)
    images = sum(x.images for x in batches)
    per_cam = {}
    tot: Counter[str] = Counter()
    decode_s = 0.0
    decode_cpu_s = 0.0
    for cam_id, cb in b["cameras"].items():
        ca = a["cameras"][cam_id]
        d = {key: cb[key] - ca[key] for key in cb if key not in ("decode_s", "decode_cpu_s")}
        decode_s += cb["decode_s"] - ca["decode_s"]
        decode_cpu_s += cb.get("decode_cpu_s", 0.0) - ca.get("decode_cpu_s", 0.0)
        tot.update(d)
        per_cam[cam_id] = {
            "clip": Path(h.sources[cam_id]).name,
            "analysed_per_s": finite(sum(1 for x in batches for c, _ in x.frames if c == cam_id) / wall),
            "decoded": d["decoded"],
            "no_motion": d["no_motion"],
            "overload": d["overload"],
            "stale": d["stale"],
            "unseen": d["unseen"],
        }

    def per_frame_ms(values: float, n: int) -> float:
        return finite(values * 1e3 / n) if n else 0.0

    pre = sum(x.preprocess for x in batches)
    inf = sum(x.inference for x in batches)
    post = sum(x.postprocess for x in batches)
    trk = sum(x.tracking for x in batches)
    rul = sum(x.rules for x in batches)
    det = sum(x.detect for x in batches)
    hdl = sum(x.handle for x in batches)
    other = max(0.0, hdl - trk - rul) + max(0.0, det - pre - inf - post)
    busy = det + hdl
    events = b["events"] - a["events"]
    # Detect slots the scheduler wanted (detect fps x K x wall) but never filled: neither a detection nor a
    # no-motion skip. With K <= max_batch the one detector loop takes every waiting frame each round, so an
    # overloaded detector shows up here (and as unseen frames), not in the overload/stale counters.
    fps = h.agent.cfg.cameras[0].detect_fps
    slots_missed = 0.0 if mode == "every" else max(0.0, fps * k * wall - tot["selected"] - tot["no_motion"])
    return {
        "mode": mode,
        "k": k,
        "wall_s": wall,
        "analysed": frames,
        "analysed_per_s": finite(frames / wall),
        # every mode has no target rate: as fast as the box goes
        "wanted_per_s": 0.0 if mode == "every" else k * fps,
        "decoded": tot["decoded"],
        "decoded_per_s": finite(tot["decoded"] / wall),
        "converted_per_s": finite((tot["decoded"] - tot["grab_only"]) / wall),
        "skipped_no_motion": tot["no_motion"],
        "skipped_not_due": tot["not_due"],
        "dropped_overload": tot["overload"],
        "dropped_stale": tot["stale"],
        "dropped_unseen": tot["unseen"],
        "dropped_scheduler": tot["overload"] + tot["stale"],
        "dropped_total": tot["overload"] + tot["stale"] + tot["unseen"],
        "slots_missed": slots_missed,
        "slots_missed_per_s": finite(slots_missed / wall),
        "decode_errors": tot["decode_errors"],
        "batches": len(batches),
        "mean_batch": finite(images / len(batches)) if batches else 0.0,
        "stages_ms": {
            "decode": per_frame_ms(decode_s, tot["decode_n"]),
            "preprocess": per_frame_ms(pre, images),
            "inference": per_frame_ms(inf, images),
            "postprocess": per_frame_ms(post, images),
            "tracking": per_frame_ms(trk, frames),
            "rules": per_frame_ms(rul, frames),
            "other": per_frame_ms(other, frames),
        },
        "stage_share": {
            name: finite(v / wall)
            for name, v in (
                ("decode", decode_s),
                ("preprocess", pre),
                ("inference", inf),
                ("postprocess", post),
                ("tracking", trk),
                ("rules", rul),
                ("other", other),
            )
        },
        "loop_busy_share": finite(busy / wall),
        "loop_ms_per_frame": per_frame_ms(busy, frames),
        "wall_ms_per_frame": per_frame_ms(wall, frames),
        "cpu_percent": finite(100.0 * (b["cpu_s"] - a["cpu_s"]) / wall),
        # Load-independent(ish) costs: CPU time, not wall time, so other jobs on a shared box inflate them
        # far less. decode = the readers' thread CPU; the rest of the process CPU (detector with its runtime's
        # threads, tracking, rules, evidence, ring JPEGs) is charged to the analysed frames.
        "decode_cpu_ms_per_s": finite(decode_cpu_s * 1e3 / wall),
        "other_cpu_ms_per_analysed": finite(
            ((b["cpu_s"] - a["cpu_s"]) - decode_cpu_s) * 1e3 / frames if frames else 0.0
        ),
        # A quiet box with `cores` cores: what is left after decoding, over the CPU one analysed frame costs.
        "projected_analysed_per_s": finite(
            max(0.0, (os.cpu_count() or 1) * 1e3 - decode_cpu_s * 1e3 / wall)
            / (((b["cpu_s"] - a["cpu_s"]) - decode_cpu_s) * 1e3 / frames)
            if frames and (b["cpu_s"] - a["cpu_s"]) > decode_cpu_s
            else 0.0
        ),
        "children_cpu_percent": finite(100.0 * (b["children_cpu_s"] - a["children_cpu_s"]) / wall),
        "events": events,
        "per_camera": per_cam,
    }


def _bare_check(h: _Harness, batches: list[_Batch], max_frames: int) -> dict[str, Any]:
    """Bare ``session.run`` over the very frames (same batches) the pipeline analysed, after it stopped."""
    import cv2
    import numpy as np
    import onnxruntime as ort

    from edge_agent.perception.detector.preprocess import letterbox, letterbox_batch

    det = h.agent.detector
    wanted = math.ceil(max_frames / statistics.mean(x.images for x in batches))
    chosen = batches[:: max(1, len(batches) // wanted)][:wanted]  # spread evenly over the window
    needed: dict[str, set[int]] = {}
    for x in chosen:
        for cam, idx in x.frames:
            needed.setdefault(cam, set()).add(idx)
    images: dict[tuple[str, int], Any] = {}
    for cam, idxs in needed.items():
        src = h.sources[cam]
        cap = cv2.VideoCapture(src, cv2.CAP_FFMPEG)
        n = 0
        while cap.grab():
            n += 1
        cap.release()
        want = {i % n: [j for j in idxs if j % n == i % n] for i in idxs}
        cap = cv2.VideoCapture(src, cv2.CAP_FFMPEG)
        for i in range(n):
            ok, img = cap.read()
            if not ok:
                break
            for j in want.get(i, []):
                images[(cam, j)] = img
        cap.release()
    opts = ort.SessionOptions()
    if h.agent.cfg.model.threads > 0:
        opts.intra_op_num_threads = h.agent.cfg.model.threads
    session = ort.InferenceSession(
        str(h.agent.cfg.model.path), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    tensors: list[list[Any]] = []
    for x in chosen:
        imgs = [images[f] for f in x.frames if f in images]
        if len(imgs) != len(x.frames):
            continue
        if det.dynamic_batch:
            tensors.append([letterbox_batch(imgs, det.input_size)[0]])
        else:
            tensors.append([letterbox(img, det.input_size)[0][None] for img in imgs])
    for t in (tensors[0] if tensors else [])[:1] * 3:
        session.run(None, {name: t})
    passes: list[float] = []  # two passes over the frames: this VM's 2-thread session.run is bimodal
    for _ in range(BARE_PASSES):
        total = 0.0
        for group in tensors:
            for t in group:
                t0 = time.perf_counter()
                session.run(None, {name: np.ascontiguousarray(t)})
                total += time.perf_counter() - t0
        passes.append(total)
    bare = statistics.mean(passes)
    used = [x for x in chosen if all(f in images for f in x.frames)]
    n_frames = sum(len(x.frames) for x in used)
    loop = sum(x.detect + x.handle for x in used)
    inf = sum(x.inference for x in used)
    bare_ms = finite(bare * 1e3 / n_frames) if n_frames else 0.0
    loop_ms = finite(loop * 1e3 / n_frames) if n_frames else 0.0
    return {
        "frames": n_frames,
        "bare_ms_per_frame": bare_ms,
        "bare_pass_ms_per_frame": [finite(p * 1e3 / n_frames) if n_frames else 0.0 for p in passes],
        "pipeline_inference_ms_per_frame": finite(inf * 1e3 / n_frames) if n_frames else 0.0,
        "pipeline_loop_ms_per_frame": loop_ms,
        "ratio": finite(loop_ms / bare_ms) if bare_ms else 0.0,
        "within_15pct": bool(bare_ms and loop_ms <= 1.15 * bare_ms),
    }


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement: ``spec['mode']`` with ``spec['k']`` cameras, or the event check."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    from edge_agent.capture import reader as _reader

    if hasattr(_reader, "limit_malloc_arenas"):
        _reader.limit_malloc_arenas()  # as `streetwatch-agent run` does
    if spec["mode"] == "events":
        return _event_check(spec)
    mode, k = spec["mode"], int(spec["k"])
    clips = [Path(c) for c in spec["clips"]]
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        cams = [_camera_dict(i, clips[i % len(clips)], mode, spec["detect_fps"]) for i in range(k)]
        cfg = _build_config(spec, cams, Path(tmp))
        t_build = time.perf_counter()
        h = _Harness(cfg)
        build_s = time.perf_counter() - t_build
        h.thread.start()
        time.sleep(spec["warmup"])
        a = h.counters()
        time.sleep(spec["seconds"])
        b = h.counters()
        h.stop()
        result = _window_result(h, a, b, mode, k)
        result["startup_s"] = build_s
        result["backend"] = h.agent.model_ref.backend or "onnxruntime"
        result["backend_version"] = h.agent.model_ref.backend_version or ""
        result["model"] = h.agent.model_ref.name
        result["agent_exit_code"] = h.exit_code
        result["agent_errors"] = list(h.agent.errors)
        result["events_by_phase"] = dict(h.sink.by_phase)
        # Peak RSS of the agent run, before the bare check decodes and letterboxes frames of its own.
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        window = [x for x in h.probe.batches if a["t"] <= x.t < b["t"]]
        if mode == "ungated" and spec.get("bare_frames", 0) > 0 and window:
            result["bare"] = _bare_check(h, window, int(spec["bare_frames"]))
    return result


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _event_check(spec: dict[str, Any]) -> dict[str, Any]:
    """Tokyo clip, demo zone: every frame vs the scheduler at 5 fps with motion gating (both lossless)."""
    import yaml

    demo = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    cam = demo["cameras"][0]
    clip = (DEMO_CONFIG.parent / cam["source"]).resolve()
    runs: dict[str, Any] = {}
    for name, fps, motion in (
        ("every_frame", EVERY_FRAME_FPS, False),
        ("scheduler", float(cam["detect_fps"]), True),
    ):
        with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
            c = {
                **{k: v for k, v in cam.items() if k not in ("source", "loop", "realtime", "detect_fps")},
                "source": str(clip),
                "realtime": False,
                "loop": False,
                "detect_fps": fps,
                "motion": {"enabled": motion},
            }
            cfg = _build_config(spec, [c], Path(tmp))
            h = _Harness(cfg)
            t0 = time.perf_counter()
            h.thread.start()
            h.thread.join()
            wall = time.perf_counter() - t0
            first = h.probe.first_wall.get(c["id"])
            incidents = []
            for s in h.sink.starts:
                started = datetime.fromisoformat(s["started_at"])
                raised = datetime.fromisoformat(s["observed_at"])
                box = s["objects"][0]["box"] if s["objects"] else [0.0, 0.0, 0.0, 0.0]
                incidents.append(
                    {
                        "start_s": round((started - first).total_seconds(), 2) if first else 0.0,
                        "raised_s": round((raised - first).total_seconds(), 2) if first else 0.0,
                        "label": s["objects"][0]["label"] if s["objects"] else "",
                        "box": [round(v, 3) for v in box],
                    }
                )
            runs[name] = {
                "detect_fps": fps,
                "motion_gating": motion,
                "frames_analysed": sum(len(x.frames) for x in h.probe.batches),
                "frames_decoded": h.agent.captures.readers[c["id"]].stats.frames,
                "skipped_no_motion": h.agent.scheduler.counters(c["id"]).skipped.get(_offer("NO_MOTION"), 0),
                "wall_s": wall,
                "events_by_phase": dict(h.sink.by_phase),
                "incidents": incidents,
            }
    ref, got = runs["every_frame"]["incidents"], runs["scheduler"]["incidents"]
    matched: list[tuple[int, int]] = []
    free = set(range(len(got)))
    for i, r in enumerate(ref):
        best = max(free, key=lambda j: _box_iou(r["box"], got[j]["box"]), default=None)
        if best is not None and _box_iou(r["box"], got[best]["box"]) > 0.3:
            matched.append((i, best))
            free.discard(best)
    lost = [ref[i] for i in range(len(ref)) if i not in {m[0] for m in matched}]
    extra = [got[j] for j in sorted(free)]
    delays = [got[j]["start_s"] - ref[i]["start_s"] for i, j in matched]
    raise_delays = [got[j]["raised_s"] - ref[i]["raised_s"] for i, j in matched]
    return {
        "mode": "events",
        "clip": clip.name,
        "zone": cam["zones"][0]["id"],
        "runs": runs,
        "matched": len(matched),
        "lost": lost,
        "extra": extra,
        "start_delay_s": delays,
        "raise_delay_s": raise_delays,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


# ---------------------------------------------------------------------------------------------------------
# Parent side: runs, baseline, report
# ---------------------------------------------------------------------------------------------------------


def _run_json(cmd: list[str], timeout_s: float) -> dict[str, Any]:
    """Run a command whose last stdout line is a JSON object; its stderr passes through."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout_s, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{shlex.join(cmd[:3])} ... failed with exit code {proc.returncode}")
    return cast(dict[str, Any], json.loads(lines[-1]))


def run_measurement(spec: dict[str, Any]) -> dict[str, Any]:
    before = load_1min()
    t0 = time.monotonic()
    timeout = spec.get("warmup", 0) + spec.get("seconds", 0) + 600
    result = _run_json([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)], timeout)
    result["load_before"] = before
    result["load_after"] = load_1min()
    result["run_s"] = time.monotonic() - t0
    return result


def run_baseline(args: argparse.Namespace, clips: list[str], k: int) -> dict[str, Any]:
    before = load_1min()
    cmd = [
        str(args.baseline_python),
        str(BASELINE_SCRIPT),
        "track",
        "--model",
        str(args.model),
        "--seconds",
        str(args.seconds),
        "--mode",
        args.baseline_mode,
        "--clips",
        *clips,
    ]
    result = _run_json(cmd, args.seconds * (k if args.baseline_mode == "sequential" else 1) + 900)
    result["load_before"] = before
    result["load_after"] = load_1min()
    return result


def machine_info(model: Path) -> dict[str, Any]:
    import cv2
    import numpy as np
    import onnxruntime as ort

    try:
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
    except OSError:
        sha = ""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "model": model.name,
        "model_sha256": sha,
    }


def _f(v: float, nd: int = 1) -> str:
    return f"{v:.{nd}f}"


def _served(r: dict[str, Any]) -> str:
    """Fraction of the wanted detect slots served: analysed + no-motion skips (a slot spent on the motion
    check is served by design) over wanted."""
    wanted = r["wanted_per_s"] * r["wall_s"]
    if not wanted:
        return "n/a"
    return f"{100 * min(1.0, (r['analysed'] + r['skipped_no_motion']) / wanted):.0f} %"


def _how(baseline: dict[str, Any]) -> str:
    if baseline.get("mode") == "sequential":
        return "one process running the K clips one after another (seconds / K each)"
    return "K processes in parallel, one `track` call per clip"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    runs = report["runs"]
    fps = report["detect_fps"]
    modes_label = {
        "gated": f"agent ({fps:g} fps, motion gating)",
        "ungated": f"motion gating off ({fps:g} fps)",
        "every": "every frame, lossless",
    }
    lines = [
        BEGIN,
        "## Edge cluster throughput (`scripts/bench_edge.py`)",
        "",
        f"- date: {report['date']}; whole run {report['total_s']:.0f} s",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['system']}; Python {m['python']}, "
        + ", ".join(
            sorted(
                {f"{r.get('backend', 'onnxruntime')} {r.get('backend_version', '')}".strip() for r in runs}
            )
        )
        + f" (inference threads {report['threads'] or 'default'}), numpy {m['numpy']}, opencv {m['opencv']}",
        "- backends and models: "
        + ", ".join(f"{b['backend']}: `{b['model']}`" for b in report.get("backends", [])),
        f"- 1-min load average: {report['load_start']:.2f} at the start, {report['load_end']:.2f} at the end; "
        "per run in the tables. It counts this benchmark's own threads too (onnxruntime's 2, one reader per "
        "camera, ffmpeg; K Ultralytics processes of 2+ threads each), so during the runs most of it is "
        "the benchmark itself; the first `before` is the machine's own level. Other jobs would inflate every "
        "time here",
        f"- clips (camera i replays clip i mod {len(report['clips'])}, looping): "
        + ", ".join(f"`{c}`" for c in report["clips"]),
        "- each camera: the demo zone and illegal-stopping rule on the Tokyo clip (`configs/demo-tokyo.yaml`), "
        "a generic lower-middle no-stopping zone (5 s) elsewhere; evidence (snapshots, crops, clips via ffmpeg) "
        "written to a temporary folder; events counted by a sink instead of MQTT",
        f"- per run: {report['warmup']:g} s warm-up, then {report['seconds']:g} s measured; each run is a fresh "
        "process (peak RSS and CPU are that run's)",
        f"- command: `{report['command']}`",
        "",
        f"Analysed = camera-frames through detector + tracker + rules per second; wanted = {fps:g} fps x K. "
        "Dropped: "
        "`sched` = the scheduler's overload + stale drops (a due frame replaced or expired while waiting), "
        "`unseen` = frames the reader replaced before the loop took them (in real-time mode most are frames "
        "between detect slots that would have been skipped as not due anyway). Missed slots/s = wanted - "
        "analysed - no-motion skips: detect slots nobody filled because the detector was busy. With K <= "
        "max_batch (4) the single detector loop takes every waiting frame each round, so an overloaded detector "
        "shows up there and in `unseen`, never in `sched`. CPU % is process CPU time / wall (200 % = both "
        "cores); ffmpeg clip encoding (child processes) is listed apart.",
        "",
        "| backend | K | mode | analysed/s | wanted/s | served | missed slots/s | decoded/s | converted/s "
        "| skipped (no motion) | dropped sched | dropped unseen | mean batch | CPU % | ffmpeg CPU % | peak RSS MB "
        "| events | load before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.get('backend', 'onnxruntime')} | {r['k']} | {modes_label[r['mode']]} | "
            f"{_f(r['analysed_per_s'])} | "
            f"{_f(r['wanted_per_s'], 0) if r['wanted_per_s'] else 'n/a'} | "
            f"{_served(r)} | "
            f"{_f(r['slots_missed_per_s']) if r['wanted_per_s'] else 'n/a'} | "
            f"{_f(r['decoded_per_s'])} | {_f(r.get('converted_per_s', r['decoded_per_s']))} | "
            f"{r['skipped_no_motion']} | {r['dropped_scheduler']} | "
            f"{r['dropped_unseen']} | {_f(r['mean_batch'], 2)} | {_f(r['cpu_percent'], 0)} | "
            f"{_f(r['children_cpu_percent'], 0)} | {_f(r['peak_rss_mb'], 0)} | {r['events']} | "
            f"{r['load_before']:.2f} / {r['load_after']:.2f} |"
        )
    lines += [
        "",
        "CPU cost (CPU time, far less inflated by other jobs than wall time): decode = the reader threads' CPU "
        "per second of video; per analysed frame = the rest of the process's CPU (detector and its runtime's "
        "threads, tracking, rules, evidence, clip-ring JPEGs) over the frames analysed. Projected = what a quiet "
        "box with this many cores would analyse: (cores x 1000 - decode) / per-frame cost. A projection, not a "
        "measurement: contention still inflates CPU time somewhat (caches, frequency).",
        "",
        "| backend | K | mode | decode CPU ms/s | CPU ms per analysed frame | projected analysed/s (quiet box) "
        "| wanted/s | projected served |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if "projected_analysed_per_s" not in r or r["mode"] == "every":
            continue
        proj, want = r["projected_analysed_per_s"], r["wanted_per_s"]
        lines.append(
            f"| {r.get('backend', 'onnxruntime')} | {r['k']} | {r['mode']} | {_f(r['decode_cpu_ms_per_s'], 0)} | "
            f"{_f(r['other_cpu_ms_per_analysed'])} | {_f(proj)} | {_f(want, 0)} | "
            f"{f'{min(100.0, 100 * proj / want):.0f} %' if want else 'n/a'} |"
        )
    lines += [
        "",
        "Per-stage time, ms per frame (decode: per decoded frame, in the reader threads; the rest per analysed "
        "frame, in the detector thread; `other` = the pipeline's evidence ring, event building and evidence "
        "writing, plus detector-call overhead). Share = stage time / wall (the detector thread alone can "
        "reach 100 %).",
        "",
        "| backend | K | mode | "
        + " | ".join(STAGES)
        + " | detector-thread busy | decode share | inference share |",
        "|---|---|---|" + "---|" * (len(STAGES) + 3),
    ]
    for r in runs:
        s = r["stages_ms"]
        lines.append(
            f"| {r.get('backend', 'onnxruntime')} | {r['k']} | {r['mode']} | "
            + " | ".join(_f(s[name]) for name in STAGES)
            + f" | {100 * r['loop_busy_share']:.0f} % | {100 * r['stage_share']['decode']:.0f} % | "
            f"{100 * r['stage_share']['inference']:.0f} % |"
        )
    bare = [r for r in runs if "bare" in r]
    if bare:
        lines += [
            "",
            "### Pipeline vs bare `session.run` (motion gating off)",
            "",
            "After each motion-off run, a fresh onnxruntime session (same model and threads) runs the same "
            "letterboxed frames, in the same batches, twice, with nothing else of ours running. Pipeline = the "
            "detector thread's time per analysed frame (preprocess + inference + postprocess + tracking + "
            "rules + evidence), measured while the readers decoded K streams beside it. Target: within 15 %.",
            "",
            "| K | frames compared | bare session.run ms/frame (2 passes) | pipeline inference ms/frame | "
            "pipeline total ms/frame | pipeline / bare | within 15 % |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in bare:
            c = r["bare"]
            lines.append(
                f"| {r['k']} | {c['frames']} | {_f(c['bare_ms_per_frame'])} "
                f"({' / '.join(_f(p) for p in c.get('bare_pass_ms_per_frame', []))}) | "
                f"{_f(c['pipeline_inference_ms_per_frame'])} | {_f(c['pipeline_loop_ms_per_frame'])} | "
                f"{_f(c['ratio'], 2)} | {'yes' if c['within_15pct'] else 'no'} |"
            )
    base = report.get("baseline", [])
    if base:
        b0 = base[0]
        lines += [
            "",
            "### Peer baseline: Ultralytics `model.track`",
            "",
            f"Ultralytics {b0.get('ultralytics', '?')} (torch {b0.get('torch', '?')}, onnxruntime "
            f"{b0.get('onnxruntime', '?')}) `YOLO(model, task='detect').track(source=clip, "
            "tracker='bytetrack.yaml', stream=True)` with the same ONNX file, default settings: every frame of "
            f"the clip as fast as it goes. K streams = {_how(b0)}, each restarting its clip at the "
            "end, after a short warm-up, for the same measured seconds. Ratio = our camera-frames analysed/s "
            f"÷ baseline frames/s (all streams). The agent row is rate-limited by design ({fps:g} fps per camera, "
            "motion gating); the every-frame row is the like-for-like capacity.",
            "",
            "| K | baseline fps per stream (mean) | baseline fps, all streams | baseline CPU % | baseline peak RSS "
            "MB (sum) | ours: agent analysed/s | ratio | ours: every frame/s | ratio | load before/after |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for bl in base:
            k = bl["k"]
            ours = {r["mode"]: r for r in runs if r["k"] == k}
            total = bl["fps_total"]

            def ratio(mode: str, ours: dict[str, Any] = ours, total: float = total) -> tuple[str, str]:
                r = ours.get(mode)
                if r is None:
                    return "n/a", "n/a"
                return _f(r["analysed_per_s"]), (_f(r["analysed_per_s"] / total, 2) if total > 0 else "n/a")

            ga, gr = ratio("gated")
            ea, er = ratio("every")
            lines.append(
                f"| {k} | {_f(bl['fps_per_stream_mean'])} | {_f(total)} | {_f(bl['cpu_percent'], 0)} | "
                f"{_f(bl['peak_rss_mb_sum'], 0)} | {ga} | {gr} | {ea} | {er} | "
                f"{bl['load_before']:.2f} / {bl['load_after']:.2f} |"
            )
    for ev in report.get("events_by_backend") or ([report["events"]] if report.get("events") else []):
        lines += [
            "",
            f"### Event loss ({ev.get('backend', 'onnxruntime')}): scheduler at 5 fps with motion gating vs "
            "every frame",
            "",
            f"`{ev['clip']}`, zone `{ev['zone']}` of `configs/demo-tokyo.yaml`, one pass of the clip, lossless "
            "replay (no overload drops, so only rate and gating differ); illegal-stopping STARTs matched by the "
            "vehicle's box (IoU > 0.3). Load before/after: "
            f"{ev['load_before']:.2f} / {ev['load_after']:.2f}.",
            "",
            "| run | frames analysed / decoded | skipped (no motion) | incidents (START dated s / raised s, label) |",
            "|---|---|---|---|",
        ]
        for name in ("every_frame", "scheduler"):
            r = ev["runs"][name]
            inc = (
                ", ".join(f"{i['start_s']:.1f} / {i['raised_s']:.1f} {i['label']}" for i in r["incidents"])
                or "none"
            )
            lines.append(
                f"| {name.replace('_', ' ')} | {r['frames_analysed']} / {r['frames_decoded']} | "
                f"{r['skipped_no_motion']} | {inc} |"
            )
        lost = ", ".join(f"{i['label']} at {i['start_s']:.1f} s box {i['box']}" for i in ev["lost"]) or "none"
        extra = (
            ", ".join(f"{i['label']} at {i['start_s']:.1f} s box {i['box']}" for i in ev["extra"]) or "none"
        )
        delays = ", ".join(f"{d:+.1f}" for d in ev["start_delay_s"]) or "n/a"
        raised = ", ".join(f"{d:+.1f}" for d in ev["raise_delay_s"]) or "n/a"
        lines += [
            "",
            f"Matched {ev['matched']}; lost at 5 fps: {lost}; only at 5 fps: {extra}; START shift of the "
            f"matched ones (s): {delays}; shift of the moment they were raised (s): {raised}.",
        ]
    if report.get("plot"):
        lines += ["", f"![throughput and drops vs K]({report['plot']})"]
    lines += ["", END]
    return "\n".join(lines)


def _plot(report: dict[str, Any], out: Path) -> None:
    """Analysed frames/s and peak RSS vs K, one line per backend and mode, with the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in sorted({(r.get("backend", "onnxruntime"), r["mode"]) for r in runs}):
        rs = sorted(
            (r for r in runs if (r.get("backend", "onnxruntime"), r["mode"]) == key), key=lambda r: r["k"]
        )
        ks = [r["k"] for r in rs]
        label = f"{key[0]} ({key[1]})"
        line = ax1.plot(ks, [r["analysed_per_s"] for r in rs], "o-", label=f"{label}, measured")[0]
        if all("projected_analysed_per_s" in r for r in rs) and key[1] != "every":
            ax1.plot(
                ks,
                [r["projected_analysed_per_s"] for r in rs],
                "s--",
                color=line.get_color(),
                label=f"{label}, projected from CPU time (quiet box)",
            )
        ax2.plot(ks, [r["peak_rss_mb"] for r in rs], "o-", label=label)
    ks = sorted({r["k"] for r in runs})
    fps = report["detect_fps"]
    ax1.plot(ks, [fps * k for k in ks], ":", color="grey", label=f"wanted ({fps:g} fps x K)")
    ax1.plot(ks, [0.95 * fps * k for k in ks], "--", color="red", linewidth=1, label="target 95 %")
    ax2.axhline(400, color="red", linestyle="--", linewidth=1, label="target 400 MB")
    ax1.set(xlabel="cameras K", ylabel="camera-frames analysed / s", xticks=ks, title="throughput")
    ax2.set(xlabel="cameras K", ylabel="peak RSS MB", xticks=ks, title="memory")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"bench_edge {report['date']}, load {report['load_start']:.1f} -> {report['load_end']:.1f}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def write_section(path: Path, section: str) -> None:
    """Replace this script's section (appended the first time); the rest of the file is left alone."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# streetwatch benchmarks\n"
    pattern = re.compile(rf"{re.escape(BEGIN)}.*?{re.escape(END)}", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4, 8], help="K values (default 1 2 4 8)")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run (default 60)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (default 2)")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument(
        "--backends",
        nargs="+",
        default=None,
        metavar="BACKEND=MODEL",
        help="measure each inference backend with its model, e.g. onnxruntime=assets/models/"
        "yolo11n_coco_640_int8dyn.onnx openvino=assets/models/yolo11n_coco_640_int8ov.xml "
        "(default: onnxruntime with --model)",
    )
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: agent default)")
    ap.add_argument("--detect-fps", type=float, default=5.0)
    ap.add_argument(
        "--clips", nargs="+", default=list(DEFAULT_CLIPS), help="clip file names under assets/videos"
    )
    ap.add_argument(
        "--no-motion",
        action="store_true",
        help="also run every K with motion gating off and compare with bare session.run on the same frames",
    )
    ap.add_argument("--every-frame", action="store_true", help="also run every K lossless, every frame")
    ap.add_argument("--bare-frames", type=int, default=60, help="frames for the bare session.run comparison")
    ap.add_argument(
        "--event-check", action="store_true", help="Tokyo demo zone: 5 fps + gating vs every frame"
    )
    ap.add_argument(
        "--event-backends",
        nargs="+",
        default=None,
        help="backends the event check runs on (default: every one in --backends)",
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the Ultralytics model.track baseline")
    ap.add_argument("--baseline-python", type=Path, default=BASELINE_PYTHON)
    ap.add_argument("--baseline-mode", choices=("parallel", "sequential"), default="parallel")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument(
        "--write", type=Path, default=DOC, help="markdown file whose bench:edge section is replaced"
    )
    ap.add_argument("--plot", type=Path, default=PLOT, help="PNG written next to the section")
    ap.add_argument("--no-write", action="store_true", help="do not touch the docs (no section, no plot)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0

    started = time.monotonic()
    pairs = [b.split("=", 1) for b in (args.backends or [f"onnxruntime={args.model}"])]
    if any(len(p) != 2 for p in pairs):
        ap.error("--backends takes BACKEND=MODEL pairs")
    clips = [str(c if Path(c).is_absolute() else VIDEOS / c) for c in args.clips]
    for c in clips:
        if not Path(c).is_file():
            print(
                f"missing clip {c}; fetch the assets: python scripts/fetch_assets.py --all", file=sys.stderr
            )
            return 2
    modes = ["gated"] + (["ungated"] if args.no_motion else []) + (["every"] if args.every_frame else [])
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python scripts/bench_edge.py "
        + shlex.join(list(argv if argv is not None else sys.argv[1:])),
        "machine": machine_info(Path(pairs[0][1])),
        "backends": [{"backend": b, "model": Path(m).name} for b, m in pairs],
        "threads": args.threads,
        "detect_fps": args.detect_fps,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "clips": [Path(c).name for c in clips],
        "load_start": load_1min(),
        "runs": [],
        "baseline": [],
    }
    print(f"1-min load average at the start: {report['load_start']:.2f}", file=sys.stderr)
    base_spec = {
        "model": str(args.model.resolve()),
        "threads": args.threads,
        "detect_fps": args.detect_fps,
        "clips": clips,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "bare_frames": args.bare_frames,
    }
    for backend, model in pairs:
        spec_b = {**base_spec, "backend": backend, "model": str(Path(model).resolve())}
        for k in args.cameras:
            for mode in modes:
                r = run_measurement({**spec_b, "mode": mode, "k": k})
                report["runs"].append(r)
                print(
                    f"{backend} K={k} {mode:8s} analysed {r['analysed_per_s']:.1f}/s (wanted {r['wanted_per_s'] or 'n/a'}), "
                    f"missed slots {r['slots_missed_per_s']:.1f}/s, dropped sched {r['dropped_scheduler']} "
                    f"unseen {r['dropped_unseen']}, skipped no-motion "
                    f"{r['skipped_no_motion']}, CPU {r['cpu_percent']:.0f}%, RSS {r['peak_rss_mb']:.0f} MB, "
                    f"load {r['load_before']:.2f}->{r['load_after']:.2f}",
                    file=sys.stderr,
                )
                if "bare" in r:
                    c = r["bare"]
                    print(
                        f"      bare session.run {c['bare_ms_per_frame']:.1f} ms/frame vs pipeline "
                        f"{c['pipeline_loop_ms_per_frame']:.1f} ms/frame (x{c['ratio']:.2f})",
                        file=sys.stderr,
                    )
            if not args.no_baseline and backend == pairs[0][0]:
                bl = run_baseline(args, [clips[i % len(clips)] for i in range(k)], k)
                bl["k"] = k
                report["baseline"].append(bl)
                print(
                    f"K={k} baseline {bl['how']}: {bl['fps_total']:.1f} frames/s all streams, "
                    f"{bl['fps_per_stream_mean']:.1f} per stream, load {bl['load_before']:.2f}->{bl['load_after']:.2f}",
                    file=sys.stderr,
                )
        if args.event_check and (args.event_backends is None or backend in args.event_backends):
            ev = run_measurement({**spec_b, "mode": "events"})
            ev["backend"] = backend
            report.setdefault("events_by_backend", []).append(ev)
            report["events"] = ev
            print(
                f"event check: {ev['matched']} matched, {len(ev['lost'])} lost, {len(ev['extra'])} extra, "
                f"load {ev['load_before']:.2f}->{ev['load_after']:.2f}",
                file=sys.stderr,
            )
    report["load_end"] = load_1min()
    report["total_s"] = time.monotonic() - started
    print(f"1-min load average at the end: {report['load_end']:.2f}", file=sys.stderr)

    if not args.no_write and args.plot:
        report["plot"] = os.path.relpath(args.plot, args.write.parent)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if not args.no_write:
        if args.plot:
            try:
                _plot(report, args.plot)
            except ImportError as err:
                print(
                    f"no plot ({err}: pip install matplotlib); the section goes without it", file=sys.stderr
                )
                report.pop("plot", None)
        write_section(args.write, markdown(report))
        print(f"wrote the {BEGIN} section of {args.write}", file=sys.stderr)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

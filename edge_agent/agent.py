"""The running agent: one capture thread per camera feeding its pipeline, a shared detector, one publisher."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge_agent.capture import CaptureError, VideoSource
from edge_agent.config import AgentConfig
from edge_agent.contract import ModelRef
from edge_agent.detector.onnx_detector import OnnxDetector
from edge_agent.events import Context
from edge_agent.evidence import EvidenceStore
from edge_agent.heartbeat import CameraSample, LatencyWindow
from edge_agent.pipeline import CameraPipeline
from edge_agent.publisher import Publisher
from edge_agent.types import Detections, Image

log = logging.getLogger(__name__)


class Agent:
    """Owns the threads. Construction fails fast (missing model or video) before anything connects."""

    def __init__(self, cfg: AgentConfig, *, realtime: bool | None = None) -> None:
        self.cfg = cfg
        self.stop_event = threading.Event()
        self.detector = OnnxDetector(cfg.model)
        self.model_ref = ModelRef(name=self.detector.model_name, sha256=self.detector.model_sha256)
        self.sources = [
            VideoSource(
                c.id,
                c.source,
                realtime=c.realtime if realtime is None else realtime,
                loop=c.loop,
                stop=self.stop_event,
            )
            for c in cfg.cameras
        ]
        self.store = EvidenceStore(cfg.evidence_dir)
        self.latency = {c.id: LatencyWindow() for c in cfg.cameras}
        self.publisher = Publisher(cfg, self.model_ref, cameras=self._camera_samples)
        self.pipelines: dict[str, CameraPipeline] = {}
        self.errors: list[str] = []

    def _camera_loop(self, source: VideoSource) -> None:
        cam = next(c for c in self.cfg.cameras if c.id == source.camera_id)
        ctx = Context(self.cfg.node_id, cam.id, self.model_ref, self.cfg.config_version)
        pipeline = None
        try:
            for frame in source.frames():
                if pipeline is None:
                    pipeline = CameraPipeline(
                        cam,
                        (frame.width, frame.height),
                        self._timed(cam.id, self.detector.detect),
                        ctx,
                        self.store,
                        self.publisher.submit,
                    )
                    self.pipelines[cam.id] = pipeline
                pipeline.process(frame)
        except CaptureError as err:
            self.errors.append(str(err))
            log.error("%s", err)
        except Exception:
            self.errors.append(f"camera {cam.id} crashed")
            log.exception("camera %s crashed", cam.id)
        log.info("camera %s: source finished after %d frames", cam.id, source.stats.frames)

    def _timed(
        self, camera_id: str, detect: Callable[[list[Image]], list[Detections]]
    ) -> Callable[[list[Image]], list[Detections]]:
        """``detect`` that records its latency for this camera's heartbeat percentiles."""
        window = self.latency[camera_id]

        def timed(images: list[Image]) -> list[Detections]:
            t0 = time.perf_counter()
            try:
                return detect(images)
            finally:
                window.record((time.perf_counter() - t0) * 1000.0)

        return timed

    def _camera_samples(self) -> list[CameraSample]:
        """Cumulative per-camera counters for the heartbeat (rates are derived between heartbeats)."""
        samples = []
        for source in self.sources:
            s = source.stats
            pipeline = self.pipelines.get(source.camera_id)
            window = self.latency[source.camera_id]
            samples.append(
                CameraSample(
                    camera_id=source.camera_id,
                    frames=s.frames,
                    detected=pipeline.stats.frames_detected if pipeline else 0,
                    dropped=s.unseen + s.decode_errors,
                    decode_errors=s.decode_errors,
                    inference_ms_p50=window.percentile(50),
                    inference_ms_p95=window.percentile(95),
                )
            )
        return samples

    def run(self, report_every_s: float = 10.0) -> int:
        """Run until every source ends (files without loop) or ``stop_event`` is set. Returns an exit code."""
        self.publisher.start()
        threads = [
            threading.Thread(target=self._camera_loop, args=(s,), name=f"cam-{s.camera_id}", daemon=True)
            for s in self.sources
        ]
        for t in threads:
            t.start()
        log.info(
            "agent %s running %d camera(s) with %s (%s)",
            self.cfg.node_id,
            len(threads),
            self.model_ref.name,
            self.model_ref.sha256[:12],
        )
        last = time.monotonic()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
            if time.monotonic() - last >= report_every_s:
                last = time.monotonic()
                self._report()
        self._report()
        self.publisher.close()
        return 1 if self.errors else 0

    def _report(self) -> None:
        for cam_id, p in self.pipelines.items():
            s = p.stats
            ms = s.detect_ms_total / s.frames_detected if s.frames_detected else 0.0
            log.info(
                "camera %s: frames %d, detected %d (%.0f ms avg), findings %d, events %s",
                cam_id,
                s.frames_seen,
                s.frames_detected,
                ms,
                s.findings,
                s.events_by_phase,
            )
        d = self.publisher.stats
        log.info(
            "delivery: queued %d, published %d, uploads %d (refused %d), retries %d/%d, spooled %d, mqtt %s",
            d.queued,
            d.published,
            d.uploads,
            d.upload.refused,
            d.upload_retries,
            d.publish_retries,
            self.publisher.pending,
            "connected" if d.connected else "disconnected",
        )

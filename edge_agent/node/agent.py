"""The running agent: one capture thread per camera, one detector loop taking scheduler batches from all of
them and feeding each camera's pipeline, one publisher."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from edge_agent import __version__
from edge_agent.capture.reader import CameraReader, CaptureSet, ReaderMode
from edge_agent.capture.scheduler import DetectScheduler
from edge_agent.config import AgentConfig, CameraConfig
from edge_agent.contract import Event, utcnow
from edge_agent.delivery.heartbeat import CameraSample, LatencyWindow
from edge_agent.delivery.publisher import Publisher
from edge_agent.evidence.clips import ClipEncoder, ClipRing
from edge_agent.evidence.footage import CameraRecorder, FootageStore
from edge_agent.evidence.privacy import Anonymizer
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore
from edge_agent.evidence.stream_copy import StreamCopyRecorder
from edge_agent.node.commands import CommandListener, CommandRunner
from edge_agent.node.extract_cmd import ExtractCommand
from edge_agent.node.health import HealthServices
from edge_agent.node.model_update import ModelUpdate, active_model_path, models_dir
from edge_agent.node.probe import LiveSources, Probe
from edge_agent.node.signal_feed import SignalFeeds, feeds_of
from edge_agent.node.snapshot_cmd import SnapshotCommand, upload_evidence
from edge_agent.perception.detector.onnx_detector import OnnxDetector
from edge_agent.perception.detector.slot import Detector, DetectorSlot, ref_of
from edge_agent.pipeline.camera import CameraPipeline, PipelineStats
from edge_agent.pipeline.detect_loop import DetectLoop
from edge_agent.pipeline.events import Context
from edge_agent.types import Detections, Frame

log = logging.getLogger(__name__)


RING_MARGIN_S = 3.0
HEAD_READ_FPS = 10.0  # docs/rules.md: signal-head accuracy is measured at a 10 fps reading rate


def feed_clip_rings(
    cfg: AgentConfig, captures: CaptureSet, scheduler: DetectScheduler
) -> dict[str, ClipRing]:
    """One clip ring per camera, fed by its capture reader (or its evidence-stream reader), and each reader
    told which frames anyone wants: the detector's next slot, the ring's next clip frame. Nothing else is
    converted from YUV or copied."""
    ev = cfg.evidence
    rings: dict[str, ClipRing] = {}
    for cam_id, reader in captures.readers.items():
        # The ring runs ahead of the detector (queued and in-flight frames, detector latency): keep a margin so
        # a START handled late still finds its whole pre-roll.
        ring = ClipRing(ev.pre_roll_s + RING_MARGIN_S, ev.clip_fps, ev.clip_max_width) if ev.clip else None
        feeder = captures.evidence.get(cam_id, reader)
        if ring is not None:
            rings[cam_id] = ring
            feeder.taps.append(ring.push)
            if feeder is not reader:
                feeder.want = ring.due_at
        own_ring = ring if feeder is reader else None
        cam = cfg_camera(cfg, cam_id)
        # Colour signal heads are read on every frame the detector loop takes, detected or not (red-light
        # rules): such a camera converts frames at HEAD_READ_FPS at least.
        heads = any(getattr(sig, "source", None) == "colour" for sig in cam.signals)
        reader.want = _want(
            scheduler, reader, 1.0 / cam.detect_fps, own_ring, HEAD_READ_FPS if heads else None
        )
    return rings


def cfg_camera(cfg: AgentConfig, cam_id: str) -> CameraConfig:
    return next(c for c in cfg.cameras if c.id == cam_id)


def _want(
    scheduler: DetectScheduler,
    reader: CameraReader,
    hold_s: float,
    ring: ClipRing | None,
    heads_fps: float | None = None,
) -> Callable[[float], bool]:
    """A frame is converted when the clip ring needs it, or when it could be the detector's next frame and
    the reader is not already holding an untaken one from less than one detect interval earlier (a busy
    detector would otherwise have every frame converted only to be replaced by the next)."""

    last_head = [-float("inf")]  # only this reader's thread calls want

    def want(mono: float) -> bool:
        if ring is not None and ring.due_at(mono):
            return True
        if heads_fps is not None and mono - last_head[0] >= 1.0 / heads_fps - 1e-6:
            last_head[0] = mono
            return True
        if not scheduler.wants(reader.camera_id, mono):
            return False
        held = reader.untaken_mono()
        return held is None or mono - held >= hold_s - 1e-6

    return want


class Agent:
    """Owns the threads. Construction fails fast (missing model or video) before anything connects."""

    def __init__(self, cfg: AgentConfig, *, realtime: bool | None = None) -> None:
        self.cfg = cfg
        self.stop_event = threading.Event()
        installed = active_model_path(cfg)  # a model a remote update installed survives restarts
        self.detector: Detector = OnnxDetector(
            cfg.model
            if installed is None
            else cfg.model.model_copy(update={"path": installed, "input_size": None})
        )
        self.model_ref = ref_of(self.detector)
        # The loop and the pipelines call the slot, so a model update swaps the detector between two calls.
        self.slot = DetectorSlot(self.detector)
        # Faces are blurred before anything is stored for upload; no face model, no start (PrivacyError).
        self.anonymizer = Anonymizer.for_agent(cfg)
        self._next_anonymizer: Anonymizer | None = None
        # Readers are built (and files checked: CaptureError) here; their threads start in run().
        self.captures = CaptureSet.from_config(cfg.cameras, realtime=realtime)
        lossless = any(r.mode is ReaderMode.LOSSLESS for r in self.captures.readers.values())
        self.scheduler = DetectScheduler.from_config(cfg, lossless=lossless)
        self.loop = DetectLoop(
            self.captures,
            self.scheduler,
            self.slot.detect,
            self._handle,
            stop=self.stop_event,
            tick=self._tick,
            observe=self._observe,
        )
        self.rings = feed_clip_rings(cfg, self.captures, self.scheduler)
        self._cams = {c.id: c for c in cfg.cameras}
        self._last_frames: dict[str, Frame] = {}
        self.store = EvidenceStore(cfg.evidence_dir)
        self.latency = {c.id: LatencyWindow() for c in cfg.cameras}
        self.publisher = Publisher(cfg, self.model_ref, cameras=self._camera_samples)
        self.pipelines: dict[str, CameraPipeline] = {}
        self.encoder = ClipEncoder()  # one background H.264 encoder shared by the cameras
        self.errors: list[str] = []
        self.started = time.monotonic()
        self.probe: Probe | None = None  # made in run(); a model update updates what it reports
        self.worker: threading.Thread | None = None  # the detector loop's thread (/healthz, systemd watchdog)
        self.last_event_at: datetime | None = None  # latest event spooled (status file, metrics)
        self._config_lock = threading.Lock()
        self._next_cfg: AgentConfig | None = (
            None  # set by apply_config (paho's thread), swapped in by _handle
        )
        self.restart_requested = False
        # Commands from central (cmd topic): checked and answered by the runner, run off paho's thread.
        self.command_listener = CommandListener(self.publisher.topics, cfg.node_id)
        self.commands = CommandRunner(cfg.node_id, self.command_listener.send)
        self.commands.register(
            "snapshot",
            SnapshotCommand(
                lambda: self.captures.readers,
                self.store,
                lambda file: upload_evidence(self.publisher.http, file),
            ),
        )
        self.command_listener.attach(self.publisher.client, self.commands)
        self.commands.register(
            "model",
            ModelUpdate(
                self.slot,
                lambda: self.publisher.http,
                models_dir(cfg),
                lambda path: OnnxDetector(cfg.model.model_copy(update={"path": path, "input_size": None})),
                self._latest_frame,
                self._model_swapped,
            ),
        )
        # Rolling footage per camera (recording.enabled) and the extract command that cuts it.
        self.footage: FootageStore | None = None
        self.recorders: list[CameraRecorder | StreamCopyRecorder] = []
        if cfg.recording.enabled:
            self.footage = FootageStore(
                cfg.recording.dir or cfg.evidence_dir.parent / "recordings", cfg.recording.max_bytes
            )
            sources = {c.id: c.source for c in cfg.cameras}
            for cam_id, reader in self.captures.readers.items():
                source = str(sources[cam_id])
                if cfg.recording.stream_copy and source.lower().startswith(("rtsp://", "rtsps://")):
                    self.recorders.append(StreamCopyRecorder(cam_id, source, self.footage, cfg.recording))
                else:
                    self.recorders.append(CameraRecorder(cam_id, reader.latest, self.footage, cfg.recording))
        self.commands.register(
            "extract",
            ExtractCommand(
                self.footage,
                lambda: list(self.captures.readers),
                self.store,
                lambda file: upload_evidence(self.publisher.http, file),
            ),
        )
        # Controller messages for `source: external` signals (<prefix>/signals/<feed>), routed to the pipelines.
        self.signal_feeds = SignalFeeds(self.publisher.topics)
        self.signal_feeds.set_feeds(feeds_of(cfg))
        self.signal_feeds.attach(self.publisher.client)

    # Camera fields read once by the capture readers and the scheduler: a change needs a restart.
    _RESTART_FIELDS = ("source", "evidence_source", "realtime", "loop", "detect_fps", "capture", "motion")

    def apply_config(self, new: AgentConfig) -> None:
        """``RemoteConfig.on_change``: paho's thread, after validation, before the file is committed.

        Zones, lines, signals, ground plane, rules and evidence settings take effect at each camera's next
        detection (``_swap_config``, detector thread). Adding or removing a camera or changing how one is read
        needs new readers: the agent stops cleanly and exits with EXIT_RESTART so systemd starts it again on
        the saved config. Raising refuses the config (RemoteConfig keeps the old one and answers failed).
        """
        old = {c.id: c for c in self.cfg.cameras}
        restart = (
            list(old) != [c.id for c in new.cameras]
            or new.scheduler != self.cfg.scheduler
            or any(getattr(old[c.id], f) != getattr(c, f) for c in new.cameras for f in self._RESTART_FIELDS)
        )
        anonymizer = None
        if new.evidence.privacy != self.cfg.evidence.privacy:
            anonymizer = Anonymizer.for_agent(
                new
            )  # PrivacyError refuses the config; the old one keeps running
        with self._config_lock:
            self._next_cfg = new
            self._next_anonymizer = anonymizer
        self.publisher.heartbeats.config_version = new.config_version
        self.publisher.session.cfg = new  # the retained status reports the new version at the next connect
        self.signal_feeds.set_feeds(feeds_of(new))
        if restart:
            log.warning("config %d changes the cameras or how they are read: restarting", new.config_version)
            self.restart_requested = True
            self.stop_event.set()

    def _latest_frame(self) -> Frame | None:
        """The newest frame of any camera (a model update's trial run)."""
        frames = [f for f in (r.latest() for r in self.captures.readers.values()) if f is not None]
        return max(frames, key=lambda f: f.mono) if frames else None

    def _model_swapped(self, detector: Detector) -> None:
        """A model update swapped the detector (or rolled it back): status and heartbeats say so at once."""
        self.detector = detector
        self.model_ref = ref_of(detector)
        self.publisher.heartbeats.model = self.model_ref
        self.publisher.session.model = self.model_ref
        self.publisher.session.announce()
        if self.probe is not None:  # status.json and /metrics name the running model too
            self.probe.sources = dataclasses.replace(self.probe.sources, model=self.model_ref)

    def _swap_config(self) -> None:
        """Detector thread: rebuild the pipelines of cameras whose config changed; others get the new version."""
        with self._config_lock:
            new, self._next_cfg = self._next_cfg, None
            anonymizer, self._next_anonymizer = self._next_anonymizer, None
        if new is None:
            return
        if anonymizer is not None:
            self.anonymizer = anonymizer  # pipelines are rebuilt below: evidence settings changed
        old_cams, old_evidence = self._cams, self.cfg.evidence
        self.cfg = new
        self._cams = {c.id: c for c in new.cameras}
        for cam_id, pipeline in list(self.pipelines.items()):
            if self._cams.get(cam_id) != old_cams.get(cam_id) or new.evidence != old_evidence:
                pipeline.close(self._last_frames.get(cam_id))  # finished clips and held ENDs go out first
                del self.pipelines[cam_id]  # rebuilt at its next frame with the new config and version
            else:
                pipeline.builder.ctx = dataclasses.replace(
                    pipeline.builder.ctx, config_version=new.config_version
                )
        log.info("config %d in effect", new.config_version)

    def _handle(self, camera_id: str, frame: Frame, dets: Detections, detect_ms: float) -> None:
        """Detections of one frame from the batched detector -> that camera's pipeline (made on its first frame)."""
        if self._next_cfg is not None:
            self._swap_config()
        pipeline = self.pipelines.get(camera_id)
        if pipeline is None:
            cam = self._cams[camera_id]
            ctx = Context(self.cfg.node_id, cam.id, self.model_ref, self.cfg.config_version)
            pipeline = CameraPipeline(
                cam,
                (frame.width, frame.height),
                self.slot.detect,
                ctx,
                self.store,
                self._submit,
                evidence=self.cfg.evidence,
                encoder=self.encoder,
                ring=self.rings.get(camera_id),
                anonymizer=self.anonymizer,
            )
            self.pipelines[camera_id] = pipeline
            self.signal_feeds.bind(camera_id, pipeline.signals)
        if pipeline.builder.ctx.model != self.slot.last_ref:  # a model update: events name the model that ran
            pipeline.builder.ctx = dataclasses.replace(pipeline.builder.ctx, model=self.slot.last_ref)
        self.latency[camera_id].record(detect_ms)
        self._last_frames[camera_id] = frame
        pipeline.process_detections(frame, dets, detect_ms)

    def _observe(self, camera_id: str, frame: Frame) -> None:
        """Detector thread, every frame taken from a reader: signal heads read it, detected or not."""
        pipeline = self.pipelines.get(camera_id)
        if pipeline is not None:
            pipeline.read_heads(frame)

    def _tick(self) -> None:
        """Detector thread, every second: incidents of cameras whose frames stopped coming end on time."""
        if self._next_cfg is not None:
            self._swap_config()
        for pipeline in list(self.pipelines.values()):
            pipeline.tick()

    def _submit(self, event: Event, files: tuple[EvidenceFile, ...]) -> None:
        self.last_event_at = utcnow()
        self.publisher.submit(event, files)

    def _detect_loop(self) -> None:
        try:
            self.loop.run()
        except Exception:
            self.errors.append("detector loop crashed")
            log.exception("detector loop crashed")

    def _camera_samples(self) -> list[CameraSample]:
        """Cumulative per-camera counters for the heartbeat (rates are derived between heartbeats)."""
        samples = []
        for cam_id, reader in self.captures.readers.items():
            s = reader.stats
            pipeline = self.pipelines.get(cam_id)
            window = self.latency[cam_id]
            dropped = self.scheduler.counters(cam_id).dropped
            samples.append(
                CameraSample(
                    camera_id=cam_id,
                    frames=s.frames,
                    detected=pipeline.stats.frames_detected if pipeline else 0,
                    dropped=s.unseen + s.decode_errors + sum(dropped.values()),
                    decode_errors=s.decode_errors,
                    reconnects=s.reconnects,
                    inference_ms_p50=window.percentile(50),
                    inference_ms_p95=window.percentile(95),
                )
            )
        return samples

    def run(self, report_every_s: float = 10.0) -> int:
        """Run until every source ends (files without loop) or ``stop_event`` is set. Returns an exit code."""
        self.publisher.start()
        self.captures.start()
        for recorder in self.recorders:
            recorder.start()
        worker = threading.Thread(target=self._detect_loop, name="detector", daemon=True)
        worker.start()
        self.worker = worker
        # /metrics, /healthz, status.json, systemd READY/WATCHDOG: all read one Probe over this agent's live objects
        self.probe = Probe(self.live_sources(), camera_down_s=self.cfg.state.camera_down_s)
        health = HealthServices(self.probe, self.cfg)
        health.start()
        log.info(
            "agent %s running %d camera(s) with %s (%s) on %s %s, batches of up to %d",
            self.cfg.node_id,
            len(self.captures.readers),
            self.model_ref.name,
            self.model_ref.sha256[:12],
            self.model_ref.backend,
            self.model_ref.backend_version,
            self.scheduler.max_batch,
        )
        last = time.monotonic()
        while worker.is_alive():
            worker.join(timeout=0.2)
            if time.monotonic() - last >= report_every_s:
                last = time.monotonic()
                self._report()
        health.stop()
        for recorder in self.recorders:
            recorder.stop()
        self.captures.stop()
        for cam_id, pipeline in self.pipelines.items():  # pending clips and held ENDs go out before we stop
            pipeline.close(self._last_frames.get(cam_id))
        self.errors.extend(self.captures.errors())
        for cam_id, n in self.loop.stats.handler_errors.items():
            self.errors.append(f"camera {cam_id}: {n} frame(s) failed in the pipeline")
        self._report()
        self.commands.close()
        self.publisher.close()
        return 1 if self.errors else 0

    def _report(self) -> None:
        for h in self.captures.health():
            c = self.scheduler.counters(h.camera_id)
            log.info(
                "camera %s: capture %s, %d frames (%.1f fps, last %.1fs ago), read errors %d, open failures %d, "
                "reconnects %d, stalls %d, unseen %d; scheduler selected %d %s, skipped %s, dropped %s",
                h.camera_id,
                h.state,
                h.frames,
                h.fps,
                -1.0 if h.last_frame_age_s is None else h.last_frame_age_s,
                h.decode_errors,
                h.open_failures,
                h.reconnects,
                h.stalls,
                h.unseen,
                c.selected,
                {k.value: v for k, v in c.selected_by.items()},
                {k.value: v for k, v in c.skipped.items()},
                {k.value: v for k, v in c.dropped.items()},
            )
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

    def live_sources(self) -> LiveSources:
        """The live objects the health endpoints read; handed over as callables so health never imports the agent."""

        def pipeline(camera_id: str) -> PipelineStats | None:
            p = self.pipelines.get(camera_id)
            return None if p is None else p.stats

        def alive() -> bool:
            return self.worker is not None and self.worker.is_alive()

        return LiveSources(
            node_id=self.cfg.node_id,
            software=__version__,
            model=self.model_ref,
            config_version=self.cfg.config_version,
            started=self.started,
            started_wall=time.time() - (time.monotonic() - self.started),
            cameras=self.captures.health,
            scheduler=self.scheduler.counters,
            pipeline=pipeline,
            latency=self.latency.get,
            delivery=self.publisher.stats,
            outbox=self.publisher.outbox.stats,
            loop=self.loop.stats,
            loop_alive=alive,
            last_event_at=lambda: self.last_event_at,
        )

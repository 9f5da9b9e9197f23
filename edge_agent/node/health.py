"""What the running agent shows the outside: ``/metrics`` + ``/healthz``, ``status.json``, and systemd.

One ``Probe`` reads the agent's live objects for all three. A daemon thread rewrites the status file every
``state.status_interval_s`` (or more often when systemd's watchdog interval asks for it) and, in the same
round, sends systemd ``READY=1`` (once) and ``WATCHDOG=1`` -- only while the detector loop is alive and making
progress, so a dead or hung loop stops the pings and systemd restarts the agent (``WatchdogSec``). Cameras
being down does not stop the pings: a restart does not fix a camera, and the readers reconnect by themselves.

Failures are data: a port already in use turns the endpoint off with the reason in the status file and the
log; a status file that cannot be written is logged; neither stops the agent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from edge_agent.config import AgentConfig
from edge_agent.contract import utcnow
from edge_agent.node.metrics import MetricsServer
from edge_agent.node.probe import Probe
from edge_agent.node.sdnotify import Notifier
from edge_agent.node.status import (
    STATUS_FILE,
    AgentStatus,
    CameraStatus,
    DeliveryStatus,
    state_dir,
    write_status,
)

log = logging.getLogger(__name__)


class HealthServices:
    """Start after the agent's threads (``start``), stop before delivery shuts down (``stop``)."""

    def __init__(
        self,
        probe: Probe,
        cfg: AgentConfig,
        *,
        notifier: Notifier | None = None,
        wall: Callable[[], datetime] = utcnow,
        pid: int | None = None,
    ) -> None:
        self.probe = probe
        self.cfg = cfg
        self.path = state_dir(cfg) / STATUS_FILE
        self.notifier = notifier if notifier is not None else Notifier.from_env()
        self._wall = wall
        self._pid = os.getpid() if pid is None else pid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = False
        self._write_failed = False
        self._mqtt_down_since: float | None = probe.sources.started  # not connected yet at start
        self.server: MetricsServer | None = None
        self.metrics_error: str | None = None
        period = cfg.state.status_interval_s
        if self.notifier.watchdog_s is not None:  # ping at least twice per watchdog interval
            period = min(period, self.notifier.watchdog_s / 2)
        self.period_s = max(0.1, period)

    def start(self) -> None:
        m = self.cfg.metrics
        if m.port:
            server = MetricsServer(self.probe, m.host, m.port)
            try:
                server.start()
                self.server = server
            except OSError as err:
                self.metrics_error = f"cannot listen on {m.host}:{m.port}: {err.strerror or err}"
                log.error("metrics endpoint off: %s", self.metrics_error)
        self.tick()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.tick()
            except Exception:  # the thread must outlive any bug: it is what keeps systemd's watchdog fed
                log.exception("health round failed")

    def tick(self) -> AgentStatus:
        """One round: rewrite the status file; tell systemd we live if the detector loop does."""
        status = self.snapshot("running")
        self._write(status)
        if status.detector_alive:
            line = one_line(status)
            if not self._ready:
                self._ready = True
                self.notifier.ready(line)
            self.notifier.watchdog(line)
        return status

    def stop(self) -> None:
        """Say STOPPING to systemd, write the last status (``stopped``), close the endpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self.notifier.stopping()
        try:
            self._write(self.snapshot("stopped"))
        except Exception:
            log.exception("could not write the final status")
        if self.server is not None:
            self.server.stop()

    def _write(self, status: AgentStatus) -> None:
        try:
            write_status(self.path, status)
            self._write_failed = False
        except OSError as err:
            if not self._write_failed:  # once per failure streak, not every few seconds
                log.warning("cannot write status file %s: %s", self.path, err)
            self._write_failed = True

    def snapshot(self, state: Literal["running", "stopped"]) -> AgentStatus:
        s = self.probe.sources
        now = s.clock()
        cams = self.probe.cameras()
        problem = self.probe.detector_problem(cams)
        d = s.delivery
        if d.connected:
            self._mqtt_down_since = None
        elif self._mqtt_down_since is None:
            self._mqtt_down_since = now
        depth = uploads = used = cap = None
        oldest = error = None
        try:
            o = s.outbox()
            depth, uploads, used, cap = o.depth, o.uploads, max(0, o.bytes), o.max_bytes
            oldest = None if o.oldest_created_at is None else max(0.0, time.time() - o.oldest_created_at)
            drops = {f"{k}.{r}": n for (k, r), n in sorted(o.drops.items())}
        except Exception as err:  # closed or broken database: say so in the file
            error, drops = str(err) or type(err).__name__, {}
        return AgentStatus(
            state=state,
            written_at=self._wall(),
            interval_s=self.cfg.state.status_interval_s,
            camera_down_s=self.cfg.state.camera_down_s,
            mqtt_down_s=self.cfg.state.mqtt_down_s,
            pid=self._pid,
            node_id=s.node_id,
            software=s.software,
            model=s.model.name,
            model_sha256=s.model.sha256,
            backend=s.model.backend,
            backend_version=s.model.backend_version,
            config_version=s.config_version,
            started_at=datetime.fromtimestamp(s.started_wall, UTC),
            uptime_s=max(0.0, now - s.started),
            detector_alive=problem is None,
            detector_problem=problem,
            detector_batches=s.loop.batches,
            cameras=[
                CameraStatus(
                    camera_id=c.health.camera_id,
                    state=c.health.state,
                    fps=round(c.health.fps, 2),
                    last_frame_age_s=c.health.last_frame_age_s,
                    frames=c.health.frames,
                    detected=0 if c.pipeline is None else c.pipeline.frames_detected,
                    dropped=sum(c.dropped.values()),
                    decode_errors=c.health.decode_errors,
                    reconnects=c.health.reconnects,
                    open_failures=c.health.open_failures,
                    stalls=c.health.stalls,
                    inference_ms_p95=c.inference_ms_p95,
                    error=c.health.error,
                )
                for c in cams
            ],
            delivery=DeliveryStatus(
                mqtt_connected=d.connected,
                mqtt_down_s=None if self._mqtt_down_since is None else max(0.0, now - self._mqtt_down_since),
                outbox_depth=depth,
                outbox_uploads=uploads,
                outbox_bytes=used,
                outbox_max_bytes=cap,
                outbox_oldest_age_s=oldest,
                outbox_error=error,
                queued=d.queued,
                published=d.published,
                uploads=d.uploads,
                upload_refused=d.upload.refused,
                dropped=drops,
            ),
            last_event_at=s.last_event_at(),
            metrics_url=None if self.server is None else self.server.url,
            metrics_error=self.metrics_error,
        )


def one_line(status: AgentStatus) -> str:
    """systemd's STATUS= line, which ``systemctl status`` shows."""
    reading = sum(1 for c in status.cameras if c.state == "reading")
    d = status.delivery
    depth = "?" if d.outbox_depth is None else str(d.outbox_depth)
    mqtt = "connected" if d.mqtt_connected else "disconnected"
    return f"{reading}/{len(status.cameras)} camera(s) reading, outbox {depth}, mqtt {mqtt}"

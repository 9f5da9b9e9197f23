"""The agent's own HTTP endpoint: Prometheus ``/metrics`` (text format 0.0.4) and ``/healthz``.

Why on the node: central's ``streetwatch_node_*`` gauges come from heartbeats, every 30 s and only while MQTT
works; when the broker or the uplink is the problem, a technician on the node (or a Prometheus scraping a
ward's nodes over the management network) still needs the numbers. Why written by hand: the text format is a
few lines, and a client library is one more dependency on 200 boxes.

Every value is read at scrape time from the agent's live objects through ``probe.Probe`` (no second
bookkeeping). The server is stdlib ``http.server`` in a daemon thread, on loopback by default: it has no
authentication.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final, Literal
from urllib.parse import urlsplit

from edge_agent.node.probe import CameraReading, Probe, process_cpu_seconds, process_rss_bytes

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PREFIX: Final = "streetwatch_agent_"
# Reasons and states listed even at zero, so a dashboard's rate() has a series from the first scrape.
SKIP_REASONS: Final = ("not_due", "no_motion")
CAMERA_STATES: Final = ("idle", "opening", "reading", "backoff", "ended")

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Kind = Literal["counter", "gauge"]


def escape_label_value(value: str) -> str:
    r"""Escape a label value for the text format: backslash, double quote and newline.

    >>> escape_label_value('cam "A"\\1\nB')
    'cam \\"A\\"\\\\1\\nB'
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it (integers without a decimal point, NaN and +Inf spelled out).

    >>> [format_value(v) for v in (3, 2.5, True, float("nan"), float("inf"))]
    ['3', '2.5', '1', 'NaN', '+Inf']
    """
    if isinstance(value, bool | int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    """Metric families in declaration order; each family's samples are written together, as the format needs.

    >>> e = Exposition()
    >>> e.declare("x_total", "counter", "Things.")
    >>> e.add("x_total", 2, {"camera": 'a"b'})
    >>> print(e.render(), end="")
    # HELP x_total Things.
    # TYPE x_total counter
    x_total{camera="a\\"b"} 2
    """

    def __init__(self) -> None:
        self._families: dict[str, tuple[Kind, str, list[str]]] = {}

    def declare(self, name: str, kind: Kind, help_text: str) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        if name in self._families:
            raise ValueError(f"metric {name} declared twice")
        self._families[name] = (kind, help_text, [])

    def add(self, name: str, value: float | None, labels: Mapping[str, str] | None = None) -> None:
        """One sample; ``None`` (not known yet, e.g. no frame so far) writes nothing."""
        if value is None:
            return
        family = self._families.get(name)
        if family is None:
            raise KeyError(f"metric {name} was not declared")
        text = name
        if labels:
            for key in labels:
                if not _LABEL_NAME.match(key) or key.startswith("__"):
                    raise ValueError(f"invalid label name {key!r}")
            text += "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items()) + "}"
        family[2].append(f"{text} {format_value(value)}")

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text, samples) in self._families.items():
            if not samples:
                continue
            escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
            lines += [f"# HELP {name} {escaped}", f"# TYPE {name} {kind}", *samples]
        return "\n".join(lines) + "\n" if lines else ""


def render_metrics(probe: Probe) -> str:
    """Every metric, in the Prometheus text format."""
    e = Exposition()
    cams = probe.cameras()
    _node(e, probe, cams)
    _cameras(e, cams)
    _delivery(e, probe)
    return e.render()


def _node(e: Exposition, probe: Probe, cams: Sequence[CameraReading]) -> None:
    s = probe.sources
    p = PREFIX
    e.declare(f"{p}info", "gauge", "Constant 1, labelled with the node, software and model.")
    info = {
        "node": s.node_id,
        "version": s.software,
        "model": s.model.name,
        "model_sha256": s.model.sha256,
        "backend": s.model.backend or "",
        "backend_version": s.model.backend_version or "",
    }
    e.add(f"{p}info", 1, info)
    e.declare(f"{p}config_version", "gauge", "Version of the config the agent runs.")
    e.add(f"{p}config_version", s.config_version)
    e.declare(f"{p}uptime_seconds", "gauge", "Seconds since the agent started.")
    e.add(f"{p}uptime_seconds", round(max(0.0, s.clock() - s.started), 3))
    e.declare(f"{p}detector_up", "gauge", "1 while the detector loop runs and makes progress.")
    e.add(f"{p}detector_up", int(probe.detector_problem(cams) is None))
    e.declare(f"{p}detector_batches_total", "counter", "Batched detector calls.")
    e.add(f"{p}detector_batches_total", s.loop.batches)
    e.declare(f"{p}detector_frames_total", "counter", "Frames through the detector, all cameras.")
    e.add(f"{p}detector_frames_total", s.loop.frames)
    e.declare(f"{p}detector_seconds_total", "counter", "Time spent in detector calls.")
    e.add(f"{p}detector_seconds_total", round(s.loop.detect_ms_total / 1000.0, 6))
    last = s.last_event_at()
    e.declare(f"{p}last_event_timestamp_seconds", "gauge", "When the latest event was spooled (Unix time).")
    e.add(f"{p}last_event_timestamp_seconds", None if last is None else round(last.timestamp(), 3))
    # The standard process metrics of Prometheus client libraries, so stock dashboards work.
    e.declare("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
    e.add("process_resident_memory_bytes", process_rss_bytes())
    e.declare("process_cpu_seconds_total", "counter", "Total user and system CPU time in seconds.")
    e.add("process_cpu_seconds_total", round(process_cpu_seconds(), 3))
    e.declare("process_start_time_seconds", "gauge", "Start time of the agent since the Unix epoch.")
    e.add("process_start_time_seconds", round(s.started_wall, 3))


def _delivery(e: Exposition, probe: Probe) -> None:
    p = PREFIX
    d = probe.sources.delivery
    counters: tuple[tuple[str, str, int], ...] = (
        ("events_queued_total", "Event messages written to the outbox.", d.queued),
        ("events_published_total", "Event messages the broker acknowledged.", d.published),
        (
            "events_republished_total",
            "Acknowledged events published again after a disconnect.",
            d.republished,
        ),
        ("uploads_total", "Evidence uploads central accepted.", d.uploads),
        ("uploads_refused_total", "Evidence uploads central refused for good.", d.upload.refused),
        ("upload_bytes_total", "Evidence bytes sent to central.", d.upload.bytes_sent),
        ("refused_by_broker_total", "Messages the broker refused for good.", d.refused_by_broker),
        ("spool_failures_total", "Events that could not be written to the outbox (lost).", d.spool_failures),
        ("heartbeats_total", "Heartbeats spooled.", d.heartbeats),
        ("mqtt_connects_total", "Successful broker connections.", d.connects),
        ("mqtt_connect_failures_total", "Failed broker connection attempts.", d.connect_failures),
        ("mqtt_disconnects_total", "Broker connections lost.", d.disconnects),
    )
    for name, help_text, value in counters:
        e.declare(p + name, "counter", help_text)
        e.add(p + name, value)
    e.declare(f"{p}retries_total", "counter", "Retried deliveries, by what was retried.")
    e.add(f"{p}retries_total", d.upload_retries, {"kind": "upload"})
    e.add(f"{p}retries_total", d.publish_retries, {"kind": "publish"})
    e.declare(f"{p}mqtt_connected", "gauge", "1 while the broker connection is up.")
    e.add(f"{p}mqtt_connected", int(d.connected))
    e.declare(f"{p}outbox_readable", "gauge", "1 when the outbox could be read for this scrape.")
    try:
        o = probe.sources.outbox()
    except Exception as err:  # a closed or broken database must not break the scrape
        log.warning("metrics: outbox unreadable: %s", err)
        e.add(f"{p}outbox_readable", 0)
        return
    e.add(f"{p}outbox_readable", 1)
    e.declare(f"{p}outbox_depth", "gauge", "Messages waiting in the outbox, by class.")
    for klass, n in sorted(o.messages.items()):
        e.add(f"{p}outbox_depth", n, {"class": str(klass)})
    gauges: tuple[tuple[str, str, float | None], ...] = (
        ("outbox_uploads", "Evidence uploads waiting in the outbox.", o.uploads),
        ("outbox_bytes", "Bytes spooled (payloads and evidence not yet accepted).", max(0, o.bytes)),
        ("outbox_max_bytes", "The outbox's cap in bytes.", o.max_bytes),
        (
            "outbox_oldest_age_seconds",
            "Age of the oldest waiting message.",
            None if o.oldest_created_at is None else round(max(0.0, time.time() - o.oldest_created_at), 3),
        ),
    )
    for name, help_text, gauge in gauges:
        e.declare(p + name, "gauge", help_text)
        e.add(p + name, gauge)
    e.declare(f"{p}outbox_dropped_total", "counter", "Items the outbox dropped, by class and reason.")
    for (drop_class, reason), n in sorted(o.drops.items()):
        e.add(f"{p}outbox_dropped_total", n, {"class": drop_class, "reason": reason})


def _cameras(e: Exposition, cams: Sequence[CameraReading]) -> None:
    p = PREFIX + "camera_"
    families: tuple[tuple[str, Kind, str], ...] = (
        ("up", "gauge", "1 while the camera delivers frames (its reader is reading)."),
        ("state", "gauge", "The camera reader's state (1 for the current one)."),
        ("frames_total", "counter", "Frames decoded."),
        ("detected_total", "counter", "Frames that went through the detector."),
        (
            "frames_skipped_total",
            "counter",
            "Frames the scheduler skipped, by reason (no_motion: motion gate).",
        ),
        ("frames_dropped_total", "counter", "Frames lost before the detector, by reason."),
        ("decode_errors_total", "counter", "Reads of an open source that returned no image."),
        ("reconnects_total", "counter", "Successful re-opens after a loss or a stall."),
        ("open_failures_total", "counter", "Failed attempts to open the source."),
        ("stalls_total", "counter", "Times the watchdog restarted a silent reader."),
        ("last_frame_age_seconds", "gauge", "Seconds since the latest frame arrived."),
        ("fps", "gauge", "Measured frames per second over the last few seconds."),
        ("inference_ms", "gauge", "Detector latency in milliseconds (quantiles over recent runs)."),
        ("events_total", "counter", "Event messages emitted, by phase."),
    )
    for name, kind, help_text in families:
        e.declare(p + name, kind, help_text)
    for c in cams:
        h = c.health
        cam = {"camera": h.camera_id}
        e.add(p + "up", int(h.state == "reading"), cam)
        states = CAMERA_STATES if h.state in CAMERA_STATES else (*CAMERA_STATES, h.state)
        for state in states:
            e.add(p + "state", int(state == h.state), {**cam, "state": state})
        e.add(p + "frames_total", h.frames, cam)
        e.add(p + "detected_total", 0 if c.pipeline is None else c.pipeline.frames_detected, cam)
        skipped = {r: 0 for r in SKIP_REASONS} | {k.value: v for k, v in c.counters.skipped.items()}
        for reason, n in skipped.items():
            e.add(p + "frames_skipped_total", n, {**cam, "reason": reason})
        for reason, n in c.dropped.items():
            e.add(p + "frames_dropped_total", n, {**cam, "reason": reason})
        e.add(p + "decode_errors_total", h.decode_errors, cam)
        e.add(p + "reconnects_total", h.reconnects, cam)
        e.add(p + "open_failures_total", h.open_failures, cam)
        e.add(p + "stalls_total", h.stalls, cam)
        age = h.last_frame_age_s
        e.add(p + "last_frame_age_seconds", None if age is None else round(age, 3), cam)
        e.add(p + "fps", round(h.fps, 3), cam)
        for quantile, ms in (("0.5", c.inference_ms_p50), ("0.95", c.inference_ms_p95)):
            e.add(p + "inference_ms", None if ms is None else round(ms, 3), {**cam, "quantile": quantile})
        phases = {} if c.pipeline is None else c.pipeline.events_by_phase
        for phase, n in sorted(phases.items()):
            e.add(p + "events_total", n, {**cam, "phase": phase})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], probe: Probe) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.probe = probe
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "streetwatch-agent"

    def version_string(self) -> str:
        return self.server_version  # not the Python version: nothing for a scanner to look up

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path == "/metrics":
                self._send(200, CONTENT_TYPE, render_metrics(self.server.probe).encode())
            elif path == "/healthz":
                report = self.server.probe.health()
                self._send(200 if report.ok else 503, "application/json", report.to_json())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")
        except Exception as err:  # a bug in one scrape must not kill the server thread
            log.exception("metrics: %s failed", path)
            self._send(500, "text/plain; charset=utf-8", f"internal error: {err!r}\n".encode())

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics %s: " + format, self.address_string(), *args)


class MetricsServer:
    """Serves ``probe`` on ``host:port`` from a daemon thread. ``start`` raises ``OSError`` if it cannot bind."""

    def __init__(self, probe: Probe, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.probe = probe
        self.host = host
        self.requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = _Server((self.host, self.requested_port), self.probe)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics on %s (and /healthz)", self.url)

    @property
    def port(self) -> int:
        return self.requested_port if self._server is None else int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server = None

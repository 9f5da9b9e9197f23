"""The latest heartbeat of every node, in memory, for ``/metrics`` and ``/healthz`` (moved out of ingest.py)."""

from __future__ import annotations

import threading
from datetime import datetime

from central.messaging.results import IngestResult
from edge_agent.contract import Heartbeat


class NodeHealth:
    """The latest heartbeat of every node, in memory, for ``/metrics`` (thread-safe).

    Not in the database on purpose: a heartbeat's value is being the latest (one row per node every 30 s
    would be ~2,900 rows a day per node of superseded numbers), and history belongs to the metrics system
    that scrapes ``/metrics``. Every ingest worker subscribes to all heartbeats, so each one's view is complete.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[Heartbeat, datetime]] = {}

    def observe(self, beat: Heartbeat, received_at: datetime) -> IngestResult:
        """Keep ``beat`` if it is newer than the one held (a spooled heartbeat may arrive late)."""
        with self._lock:
            held = self._latest.get(beat.node_id)
            if held is not None and beat.at <= held[0].at:
                return IngestResult.DUPLICATE if beat.at == held[0].at else IngestResult.STALE
            self._latest[beat.node_id] = (beat, received_at)
        return IngestResult.INSERTED if held is None else IngestResult.UPDATED

    def latest(self) -> dict[str, tuple[Heartbeat, datetime]]:
        """node id -> (latest heartbeat, when central received it)."""
        with self._lock:
            return dict(self._latest)

    def unconfirmed_resent(self) -> dict[str, int]:
        """node id -> events it had to publish again because central never acknowledged them (the broker
        acknowledged and then lost them, or central was down): how broker drops become visible."""
        return {
            n: b.outbox.unconfirmed_resent
            for n, (b, _) in self.latest().items()
            if b.outbox.unconfirmed_resent
        }

    def prometheus_lines(self) -> list[str]:
        """Gauges of every node's latest heartbeat, in the Prometheus text format."""
        rows: dict[str, list[str]] = {name: [] for name, _ in _NODE_GAUGES}
        for node, (beat, _received) in sorted(self.latest().items()):
            n = f'node="{node}"'
            rows["heartbeat_timestamp_seconds"].append(f"{{{n}}} {beat.at.timestamp():.3f}")
            rows["uptime_seconds"].append(f"{{{n}}} {beat.uptime_s:.1f}")
            rows["outbox_depth"].append(f"{{{n}}} {beat.outbox.depth}")
            rows["outbox_uploads"].append(f"{{{n}}} {beat.outbox.uploads}")
            rows["outbox_bytes"].append(f"{{{n}}} {beat.outbox.bytes}")
            rows["outbox_awaiting_central"].append(f"{{{n}}} {beat.outbox.awaiting_central}")
            rows["outbox_unconfirmed_resent_total"].append(f"{{{n}}} {beat.outbox.unconfirmed_resent}")
            for key, count in sorted(beat.outbox.dropped.items()):
                klass, reason = key.split(".", 1)
                rows["outbox_dropped_total"].append(f'{{{n},class="{klass}",reason="{reason}"}} {count}')
            rows["mqtt_reconnects_total"].append(f"{{{n}}} {beat.mqtt_reconnects}")
            if beat.disk_free_bytes is not None:
                rows["disk_free_bytes"].append(f"{{{n}}} {beat.disk_free_bytes}")
            if beat.cpu_temp_c is not None:
                rows["cpu_temperature_celsius"].append(f"{{{n}}} {beat.cpu_temp_c:.1f}")
            for cam in beat.cameras:
                c = f'{n},camera="{cam.camera_id}"'
                rows["camera_fps"].append(f"{{{c}}} {cam.fps}")
                rows["camera_detect_fps"].append(f"{{{c}}} {cam.detect_fps}")
                rows["camera_frames_dropped_total"].append(f"{{{c}}} {cam.frames_dropped}")
                for q, value in (("0.5", cam.inference_ms_p50), ("0.95", cam.inference_ms_p95)):
                    if value is not None:
                        rows["camera_inference_ms"].append(f'{{{c},quantile="{q}"}} {value:.1f}')
        lines: list[str] = []
        for name, help_text in _NODE_GAUGES:
            if rows[name]:
                metric = f"streetwatch_node_{name}"
                lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
                lines += [f"{metric}{sample}" for sample in rows[name]]
        return lines


# Identifiers in labels match the contract's pattern (letters, digits, '_', '.', '-'): no escaping needed.
_NODE_GAUGES = (
    ("heartbeat_timestamp_seconds", "When the node measured its latest heartbeat (Unix time)."),
    ("uptime_seconds", "Seconds since the node's agent started."),
    ("outbox_depth", "Messages waiting in the node's outbox."),
    ("outbox_uploads", "Evidence uploads waiting in the node's outbox."),
    ("outbox_bytes", "Bytes spooled in the node's outbox."),
    ("outbox_awaiting_central", "Events the broker acknowledged that central has not acknowledged yet."),
    ("outbox_unconfirmed_resent_total", "Events republished because central never acknowledged them."),
    ("outbox_dropped_total", "Items the node's outbox dropped, by class and reason."),
    ("mqtt_reconnects_total", "Times the node lost its broker connection."),
    ("disk_free_bytes", "Free bytes on the node's outbox filesystem."),
    ("cpu_temperature_celsius", "The node's CPU/SoC temperature."),
    ("camera_fps", "Frames read per second, per camera."),
    ("camera_detect_fps", "Detector runs per second, per camera."),
    ("camera_frames_dropped_total", "Frames lost per camera (replaced before use or undecodable)."),
    ("camera_inference_ms", "Detector latency per camera (quantiles over recent runs)."),
)

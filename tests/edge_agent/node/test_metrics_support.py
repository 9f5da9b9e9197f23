"""Helpers for the metrics and status tests (no tests here): a strict parser of the Prometheus text format and
typed stand-ins for the agent's live objects, changed by the tests between looks as the agent's threads do."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edge_agent.capture.reader import CaptureHealth
from edge_agent.capture.scheduler import CameraCounters, Drop, Offer
from edge_agent.contract import ModelRef
from edge_agent.delivery.heartbeat import LatencyWindow
from edge_agent.delivery.items import DeliveryStats, MessageClass, OutboxStats, UploadStats
from edge_agent.node.probe import LiveSources
from edge_agent.pipeline.camera import PipelineStats
from edge_agent.pipeline.detect_loop import LoopStats

SHA = "ab" * 32

# -- a strict parser of the text format ---------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_META = re.compile(r"^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        assert m, f"bad label set at {text[pos:]!r}"
        assert m.group(1) not in out, f"label {m.group(1)} twice"
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
        if pos < len(text):
            assert text[pos] == ",", f"expected ',' in {text!r}"
            pos += 1
    return out


@dataclass
class Scrape:
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        hits = [v for n, lab, v in self.samples if n == name and lab == labels]
        assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples"
        return hits[0]

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


def parse(text: str) -> Scrape:
    """Every line is '# HELP', '# TYPE' or 'name{labels} value'; families are contiguous, HELP/TYPE first."""
    assert text.endswith("\n")
    s = Scrape()
    current = None
    seen: set[str] = set()
    for line in text.rstrip("\n").split("\n"):
        meta = _META.match(line)
        if meta:
            kind, name, rest = meta.groups()
            if name != current:
                assert name not in seen, f"family {name} is not contiguous"
                seen.add(name)
                current = name
            (s.types if kind == "TYPE" else s.helps)[name] = rest
            if kind == "TYPE":
                assert rest in ("counter", "gauge"), line
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, label_text, value = m.groups()
        assert name == current and name in s.types, f"sample {name} outside its family"
        s.samples.append((name, _labels(label_text or ""), float(value)))
    return s


# -- typed live objects ---------------------------------------------------------------------------------------


def cam_health(
    camera_id: str, state: str = "reading", age: float | None = 0.5, **over: object
) -> CaptureHealth:
    base: dict[str, object] = dict(
        camera_id=camera_id,
        state=state,
        frames=1000,
        decode_errors=3,
        reconnects=2,
        open_failures=1,
        stalls=1,
        unseen=40,
        last_frame_age_s=age,
        fps=14.5,
        error=None,
    )
    base.update(over)
    return CaptureHealth(**base)  # type: ignore[arg-type]


@dataclass
class Live:
    """Mutable stand-ins the test changes between scrapes, as the agent's threads do."""

    cams: list[CaptureHealth]
    alive: bool = True
    now: float = 1000.0
    loop: LoopStats = field(default_factory=LoopStats)
    delivery: DeliveryStats = field(default_factory=lambda: DeliveryStats(upload=UploadStats()))
    outbox_error: Exception | None = None
    counters: dict[str, CameraCounters] = field(default_factory=dict)
    pipelines: dict[str, PipelineStats] = field(default_factory=dict)
    latency: dict[str, LatencyWindow] = field(default_factory=dict)

    def outbox(self) -> OutboxStats:
        if self.outbox_error is not None:
            raise self.outbox_error
        return OutboxStats(
            messages={MessageClass.VIOLATION: 3, MessageClass.TELEMETRY: 1},
            uploads=2,
            bytes=4096,
            max_bytes=1 << 20,
            oldest_created_at=None,
            drops={("telemetry", "cap_evicted"): 4, ("violation", "cap_full"): 1},
        )

    def sources(self) -> LiveSources:
        return LiveSources(
            node_id="node-1",
            software="0.1.0",
            model=ModelRef(name="yolo.onnx", sha256=SHA, backend="openvino", backend_version="2026.4.1"),
            config_version=7,
            started=900.0,
            started_wall=1_700_000_000.0,
            cameras=lambda: self.cams,
            scheduler=lambda cid: self.counters.setdefault(cid, CameraCounters()),
            pipeline=self.pipelines.get,
            latency=self.latency.get,
            delivery=self.delivery,
            outbox=self.outbox,
            loop=self.loop,
            loop_alive=lambda: self.alive,
            last_event_at=lambda: datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            clock=lambda: self.now,
        )


def busy_live() -> Live:
    live = Live(cams=[cam_health("cam-a"), cam_health('odd "cam"\\n', state="backoff", age=None)])
    live.counters["cam-a"] = CameraCounters(
        offered=50,
        selected=30,
        skipped={Offer.NO_MOTION: 12, Offer.NOT_DUE: 5},
        dropped={Drop.OVERLOAD: 2, Drop.STALE: 1},
    )
    live.pipelines["cam-a"] = PipelineStats(frames_detected=30, events_by_phase={"start": 2, "end": 1})
    window = LatencyWindow()
    for ms in range(1, 101):
        window.record(float(ms))
    live.latency["cam-a"] = window
    live.loop.batches, live.loop.frames, live.loop.detect_ms_total = 25, 30, 1500.0
    d = live.delivery
    d.queued, d.published, d.publish_retries, d.connected = 5, 4, 6, True
    d.upload.accepted, d.upload.refused, d.upload.retries = 8, 1, 3
    return live


def get(url: str) -> tuple[int, str, str]:
    """GET ``url``: status, content type, body (HTTP errors are answers too)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()

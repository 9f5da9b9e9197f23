"""Liveness/readiness and counters, unauthenticated so load balancers and Prometheus can poll them.

``/healthz`` answers 503 when the database does not respond, when ingest is enabled but not connected to
the broker, or when ingest stalled (a received message waited longer than ``ingest_stall_s`` for its commit):
such an instance should not receive traffic, and an operator should look at it. It also names the broker
(external or embedded), the ingest lag and queue, and the nodes that had to republish events central never
acknowledged (broker drops, from the nodes' heartbeats).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from central.api.deps import CentralDep, FleetDep

router = APIRouter(tags=["health"])

# Counters of each MQTT connection (``central.messaging.client.ClientStats``), labelled by client (ingest, fleet).
CLIENT_COUNTERS = [
    ("connects", "Successful connections to the broker."),
    ("connection_losses", "Connections lost (paho reconnects with backoff)."),
    ("refusals", "Connections or subscriptions the broker refused."),
    ("messages", "Messages received."),
    ("handler_errors", "Received messages whose handler raised."),
    ("unrouted", "Received messages that matched no handler."),
    ("published", "Messages published and acknowledged by the broker."),
    ("publish_failures", "Publishes that did not reach the broker."),
]


@router.get("/healthz")
def healthz(central: CentralDep) -> JSONResponse:
    """``{"status": "ok"|"degraded", "db": {...}, "mqtt": {...}, "ingest": {...counters}}``."""
    db_ok = central.db.ping()
    subscriber = central.subscriber
    mqtt: dict[str, Any] = {
        "enabled": central.settings.mqtt_enabled,
        "connected": subscriber.connected if subscriber else False,
        "embedded_broker": central.broker.running if central.broker else False,
    }
    if subscriber is not None:
        mqtt.update(host=subscriber.host, port=subscriber.port, client_id=subscriber.client_id)
    if central.broker is not None:
        mqtt["broker"] = central.broker.describe()
    mqtt_ok = mqtt["connected"] or not central.settings.mqtt_enabled
    ingest: dict[str, Any] = dict(central.ingestor.counters.summary())
    stalled = False
    if subscriber is not None:
        lag = subscriber.workers.lag_s()
        stalled = lag > central.settings.ingest_stall_s
        ingest.update(
            lag_s=round(lag, 3),
            queued=subscriber.workers.queued,
            stalled=stalled,
            workers=subscriber.workers.workers,
            **subscriber.workers.stats.as_dict(),
        )
    ingest["broker_drops"] = central.ingestor.nodes.unconfirmed_resent()
    healthy = db_ok and mqtt_ok and not stalled
    body = {
        "status": "ok" if healthy else "degraded",
        "db": {"ok": db_ok},
        "mqtt": mqtt,
        "ingest": ingest,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(central: CentralDep, fleet: FleetDep) -> str:
    """Counters in the Prometheus text format."""
    lines = [
        "# HELP streetwatch_ingest_messages_total MQTT messages ingested, by kind and result.",
        "# TYPE streetwatch_ingest_messages_total counter",
    ]
    for (kind, result), count in sorted(central.ingestor.counters.by_kind().items()):
        lines.append(f'streetwatch_ingest_messages_total{{kind="{kind}",result="{result}"}} {count}')
    connected = int(bool(central.subscriber and central.subscriber.connected))
    lines += [
        "# HELP streetwatch_mqtt_connected 1 while the ingest subscriber is connected and subscribed.",
        "# TYPE streetwatch_mqtt_connected gauge",
        f"streetwatch_mqtt_connected {connected}",
    ]
    clients = [c for c in (central.subscriber.client if central.subscriber else None, fleet.link) if c]
    for name, help_text in CLIENT_COUNTERS:
        metric = f"streetwatch_mqtt_client_{name}_total"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines += [f'{metric}{{client="{c.name}"}} {c.stats.as_dict()[name]}' for c in clients]
    if central.subscriber is not None:
        w = central.subscriber.workers
        lines += [
            "# HELP streetwatch_ingest_lag_seconds Age of the oldest received message not yet committed.",
            "# TYPE streetwatch_ingest_lag_seconds gauge",
            f"streetwatch_ingest_lag_seconds {w.lag_s():.3f}",
            "# HELP streetwatch_ingest_batches_total Ingest transactions committed.",
            "# TYPE streetwatch_ingest_batches_total counter",
            f"streetwatch_ingest_batches_total {w.stats.batches}",
        ]
    lines += central.ingestor.nodes.prometheus_lines()  # the latest heartbeat of every node
    return "\n".join(lines) + "\n"

"""Liveness/readiness and counters, unauthenticated so load balancers and Prometheus can poll them.

``/healthz`` answers 503 when the database does not respond or when ingest is enabled but not connected to
the broker: such an instance should not receive traffic, and an operator should look at it.
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
    mqtt_ok = mqtt["connected"] or not central.settings.mqtt_enabled
    healthy = db_ok and mqtt_ok
    body = {
        "status": "ok" if healthy else "degraded",
        "db": {"ok": db_ok},
        "mqtt": mqtt,
        "ingest": central.ingestor.counters.summary(),
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
    lines += central.ingestor.nodes.prometheus_lines()  # the latest heartbeat of every node
    return "\n".join(lines) + "\n"

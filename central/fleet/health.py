"""Fleet health: every node central heard on the broker, what state it is in, and its heartbeat history.

A technician's first question is "which boxes are in trouble", so the overview joins three sources that each
know part of the answer:

* ``nodes`` (enrollment): the box was enrolled, revoked, or never enrolled at all. A node that talks to the
  broker without being enrolled (a demo box, an embedded broker without ACLs) is listed too, so it can be found
  and enrolled;
* ``node_status`` (the retained ``status`` and the Last Will): online or offline, software, model, config;
* ``node_health`` (the latest heartbeat): per-camera numbers, outbox, disk, temperature, and *when*.

The state shown is ``offline`` when the node (or its Last Will) said so, ``stale`` when it says online but no
heartbeat arrived for ``heartbeat_stale_s`` (a hung agent whose TCP connection still stands), ``online``
otherwise, and ``unknown`` when central has only ever seen heartbeats or only the enrollment.

Heartbeats are written by the ingest worker (``HeartbeatRecorder``) and pruned to a bounded retention, so the
node page can chart the last hours without a separate metrics system.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from central.db.models import NodeHealthRow, NodeHeartbeatRow, NodeRow, NodeStatusRow
from central.db.session import Database
from edge_agent.contract import Heartbeat, NodeState

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 300.0  # a DELETE per ingest worker every five minutes keeps the table bounded cheaply


class Enrollment(StrEnum):
    ENROLLED = "enrolled"
    UNENROLLED = "unenrolled"
    REVOKED = "revoked"


class Liveness(StrEnum):
    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class FleetNode:
    """One row of the fleet page: what central knows about a node, joined from its three tables."""

    node_id: str
    name: str
    enrollment: Enrollment
    liveness: Liveness
    status_at: datetime | None
    heartbeat_at: datetime | None
    heartbeat_age_s: float | None
    first_seen_at: datetime | None
    software: str
    model_name: str | None
    model_sha256: str | None
    config_version: int | None
    heartbeat: Heartbeat | None

    @property
    def attention(self) -> bool:
        """Shown highlighted: offline, stale, or a camera that delivers no frames."""
        if self.liveness in (Liveness.OFFLINE, Liveness.STALE):
            return True
        beat = self.heartbeat
        return beat is not None and self.liveness is Liveness.ONLINE and any(c.fps == 0 for c in beat.cameras)


def _parse(data: dict[str, object] | None) -> Heartbeat | None:
    if not data:
        return None
    try:
        return Heartbeat.model_validate(data)
    except ValidationError:  # stored by an older central with another contract: show what is left
        log.warning("stored heartbeat no longer validates; ignoring it")
        return None


def _liveness(
    status: NodeStatusRow | None, health: NodeHealthRow | None, now: datetime, stale_s: float
) -> Liveness:
    age = None if health is None else (now - health.received_at).total_seconds()
    if status is not None and status.state == NodeState.OFFLINE.value:
        # A heartbeat spooled during an outage may arrive after the Will: only a newer one revives the node.
        if health is None or health.received_at <= status.received_at or age is None or age > stale_s:
            return Liveness.OFFLINE
        return Liveness.ONLINE
    if status is not None and status.state == NodeState.ONLINE.value:
        if age is None:
            return (
                Liveness.ONLINE if (now - status.received_at).total_seconds() <= stale_s else Liveness.STALE
            )
        return Liveness.ONLINE if age <= stale_s else Liveness.STALE
    if age is not None:
        return Liveness.ONLINE if age <= stale_s else Liveness.UNKNOWN
    return Liveness.UNKNOWN


def fleet_overview(session: Session, now: datetime, stale_after_s: float) -> list[FleetNode]:
    """Every node enrolled or heard, attention-worthy ones first, then by name."""
    enrolled = {r.node_id: r for r in session.scalars(select(NodeRow))}
    statuses = {r.node_id: r for r in session.scalars(select(NodeStatusRow))}
    healths = {r.node_id: r for r in session.scalars(select(NodeHealthRow))}
    out = []
    for node_id in set(enrolled) | set(statuses) | set(healths):
        out.append(
            _fleet_node(
                node_id,
                enrolled.get(node_id),
                statuses.get(node_id),
                healths.get(node_id),
                now,
                stale_after_s,
            )
        )
    out.sort(key=lambda n: (not n.attention, n.name.lower(), n.node_id))
    return out


def fleet_node(session: Session, node_id: str, now: datetime, stale_after_s: float) -> FleetNode | None:
    node, status, health = (session.get(t, node_id) for t in (NodeRow, NodeStatusRow, NodeHealthRow))
    if node is None and status is None and health is None:
        return None
    return _fleet_node(node_id, node, status, health, now, stale_after_s)  # type: ignore[arg-type]


def _fleet_node(
    node_id: str,
    node: NodeRow | None,
    status: NodeStatusRow | None,
    health: NodeHealthRow | None,
    now: datetime,
    stale_s: float,
) -> FleetNode:
    if node is None:
        enrollment = Enrollment.UNENROLLED
    else:
        enrollment = Enrollment.REVOKED if node.revoked_at is not None else Enrollment.ENROLLED
    beat = _parse(health.heartbeat if health else None)
    model = beat.model if beat is not None else None
    return FleetNode(
        node_id=node_id,
        name=node.name if node is not None else node_id,
        enrollment=enrollment,
        liveness=_liveness(status, health, now, stale_s),
        status_at=status.at if status else None,
        heartbeat_at=health.heartbeat_at if health else None,
        heartbeat_age_s=None if health is None else max(0.0, (now - health.received_at).total_seconds()),
        first_seen_at=health.first_seen_at if health else (status.received_at if status else None),
        software=(
            beat.software if beat is not None and beat.software else (status.software if status else "")
        ),
        model_name=model.name if model else (status.model_name if status else None),
        model_sha256=model.sha256 if model else (status.model_sha256 if status else None),
        config_version=beat.config_version
        if beat is not None
        else (status.config_version if status else None),
        heartbeat=beat,
    )


def heartbeat_history(session: Session, node_id: str, since: datetime) -> list[Heartbeat]:
    """The node's stored heartbeats since ``since``, oldest first (what the charts draw)."""
    rows = session.scalars(
        select(NodeHeartbeatRow)
        .where(NodeHeartbeatRow.node_id == node_id, NodeHeartbeatRow.at >= since)
        .order_by(NodeHeartbeatRow.at)
    )
    return [beat for beat in (_parse(r.heartbeat) for r in rows) if beat is not None]


class HeartbeatRecorder:
    """Writes each new heartbeat (latest per node + history) and prunes the history to the retention.

    Called from the ingest worker's MQTT thread; failures are logged and counted, never raised: a database
    outage must not stop central from seeing (in memory, ``/metrics``) that nodes are alive.
    """

    def __init__(
        self,
        db: Database,
        *,
        retention_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self.retention = timedelta(seconds=retention_s)
        self._clock = clock
        self._next_prune = 0.0
        self._lock = threading.Lock()
        self.failures = 0
        self.pruned = 0

    def record(self, beat: Heartbeat, received_at: datetime) -> bool:
        data = beat.model_dump(mode="json", by_alias=True)
        try:
            with self._db.session() as session:
                row = session.get(NodeHealthRow, beat.node_id, with_for_update=True)
                if row is None:
                    session.add(
                        NodeHealthRow(
                            node_id=beat.node_id,
                            first_seen_at=received_at,
                            heartbeat_at=beat.at,
                            received_at=received_at,
                            heartbeat=data,
                        )
                    )
                elif beat.at >= row.heartbeat_at:
                    row.heartbeat_at, row.received_at, row.heartbeat = beat.at, received_at, data
                session.add(
                    NodeHeartbeatRow(
                        node_id=beat.node_id, at=beat.at, received_at=received_at, heartbeat=data
                    )
                )
            self._maybe_prune(received_at)
        except Exception:
            with self._lock:
                self.failures += 1
            log.exception("could not store the heartbeat of node %s", beat.node_id)
            return False
        return True

    def _maybe_prune(self, now: datetime) -> None:
        with self._lock:
            if self._clock() < self._next_prune:
                return
            self._next_prune = self._clock() + PRUNE_EVERY_S
        self.prune(now)

    def prune(self, now: datetime) -> int:
        """Delete history older than the retention; returns how many rows went."""
        with self._db.session() as session:
            result = session.execute(
                delete(NodeHeartbeatRow).where(NodeHeartbeatRow.at < now - self.retention)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
        with self._lock:
            self.pruned += count
        if count:
            log.info("pruned %d heartbeat(s) older than %s", count, self.retention)
        return count

"""Fleet health for technicians: every node heard or enrolled, its state and numbers, and a page per node.

``/fleet`` lists the nodes with the ones that need attention (offline, stale, a camera without frames) first;
the table refreshes itself every few seconds (``/static/fleet.js`` re-fetches ``/fleet?partial=1``) so a
technician on site sees a camera come back. ``/fleet/{node}`` shows the latest heartbeat per camera and SVG
charts of the stored history. The same data is JSON under ``/api/v1/fleet``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from central.api.deps import ApiUser, AuthUser, CentralDep, DbSession, PageUser
from central.api.routes_models import model_updates
from central.api.routes_web import render
from central.db.models import Role
from central.fleet.charts import node_charts
from central.fleet.health import FleetNode, fleet_node, fleet_overview, heartbeat_history
from edge_agent.contract import Heartbeat

router = APIRouter(tags=["fleet health"])

FLEET_ROLES = frozenset({Role.ADMIN.value, Role.TECHNICIAN.value, Role.OPERATOR.value})
MAX_HISTORY_H = 48


class FleetNodeOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    node_id: str
    name: str
    enrollment: str = Field(description="enrolled, unenrolled (heard on the broker only) or revoked.")
    liveness: str = Field(description="online, stale (no heartbeat for heartbeat_stale_s), offline, unknown.")
    attention: bool = Field(description="Offline, stale, or a camera without frames.")
    status_at: datetime | None
    heartbeat_at: datetime | None
    heartbeat_age_s: float | None = Field(description="Seconds since central received the last heartbeat.")
    software: str
    model_name: str | None
    model_sha256: str | None
    config_version: int | None
    heartbeat: Heartbeat | None = Field(description="The latest heartbeat, as the node sent it.")

    @classmethod
    def of(cls, node: FleetNode) -> FleetNodeOut:
        return cls(
            node_id=node.node_id,
            name=node.name,
            enrollment=node.enrollment.value,
            liveness=node.liveness.value,
            attention=node.attention,
            status_at=node.status_at,
            heartbeat_at=node.heartbeat_at,
            heartbeat_age_s=node.heartbeat_age_s,
            software=node.software,
            model_name=node.model_name,
            model_sha256=node.model_sha256,
            config_version=node.config_version,
            heartbeat=node.heartbeat,
        )


def _allowed(user: AuthUser) -> bool:
    return user.role in FLEET_ROLES


def _require(user: AuthUser) -> None:
    if not _allowed(user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"needs one of the roles {', '.join(sorted(FLEET_ROLES))}"
        )


@router.get("/api/v1/fleet", response_model=list[FleetNodeOut])
def api_fleet(user: ApiUser, db: DbSession, central: CentralDep) -> list[FleetNodeOut]:
    """Every node enrolled or heard on the broker, the ones needing attention first."""
    _require(user)
    nodes = fleet_overview(db, central.clock(), central.settings.heartbeat_stale_s)
    return [FleetNodeOut.of(n) for n in nodes]


@router.get("/api/v1/fleet/{node_id}/heartbeats", response_model=list[Heartbeat])
def api_heartbeats(
    node_id: str,
    user: ApiUser,
    db: DbSession,
    central: CentralDep,
    hours: Annotated[float, Query(gt=0, le=MAX_HISTORY_H, description="How far back.")] = 6,
) -> list[Heartbeat]:
    """The node's stored heartbeats of the last ``hours``, oldest first."""
    _require(user)
    return heartbeat_history(db, node_id, central.clock() - timedelta(hours=hours))


@router.get("/fleet", response_class=HTMLResponse, include_in_schema=False)
def fleet_page(
    request: Request, user: PageUser, db: DbSession, central: CentralDep, partial: bool = False
) -> HTMLResponse:
    if not _allowed(user):
        return render(
            request, "error.html", {"message_key": "error_forbidden_fleet"}, user=user, status_code=403
        )
    nodes = fleet_overview(db, central.clock(), central.settings.heartbeat_stale_s)
    context = {"nodes": nodes, "stale_s": central.settings.heartbeat_stale_s}
    return render(request, "fleet_table.html" if partial else "fleet.html", context, user=user)


@router.get("/fleet/{node_id}", response_class=HTMLResponse, include_in_schema=False)
def fleet_node_page(
    node_id: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    hours: Annotated[float, Query(gt=0, le=MAX_HISTORY_H)] = 6,
) -> HTMLResponse:
    if not _allowed(user):
        return render(
            request, "error.html", {"message_key": "error_forbidden_fleet"}, user=user, status_code=403
        )
    now = central.clock()
    node = fleet_node(db, node_id, now, central.settings.heartbeat_stale_s)
    if node is None:
        return render(request, "error.html", {"message_key": "not_found"}, user=user, status_code=404)
    beats = heartbeat_history(db, node_id, now - timedelta(hours=hours))
    context = {
        "node": node,
        "charts": node_charts(beats),
        "hours": hours,
        "samples": len(beats),
        "updates": model_updates(db, node_id, limit=10),
    }
    return render(request, "fleet_node.html", context, user=user)

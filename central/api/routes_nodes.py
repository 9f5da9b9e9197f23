"""Fleet routes: enrollment tokens, node enrollment and revocation, remote config; a small technician page.

JSON under ``/api/v1`` (same login cookie as the rest of the API, except ``POST /api/v1/enroll``, which the node
calls with its one-time token), and ``/nodes`` for technicians. Secrets in responses are marked ``no-store``
so no proxy or browser cache keeps them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit
from central.api.deps import ApiUser, AuthUser, CentralDep, DbSession, FleetDep, PageUser
from central.api.routes_web import render
from central.db.models import NodeRow, Role
from central.fleet.configs import latest_config, submit_config
from central.fleet.enrollment import FleetError, create_enrollment_token, enroll_node, revoke_node
from central.fleet.schemas import (
    BrokerOut,
    ConfigAcceptedOut,
    ConfigOut,
    EnrollIn,
    EnrollmentTokenIn,
    EnrollmentTokenOut,
    EnrollOut,
    NodeOut,
    RevokeOut,
)
from central.security import csrf_valid

router = APIRouter(tags=["fleet"])

ENROLL_ROLES = frozenset({Role.ADMIN.value, Role.TECHNICIAN.value})  # tokens, revocation
CONFIG_ROLES = frozenset({Role.ADMIN.value, Role.OPERATOR.value, Role.TECHNICIAN.value})  # configs, listing
NO_STORE = {"Cache-Control": "no-store"}


def _require(user: AuthUser, roles: frozenset[str]) -> None:
    if user.role not in roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs one of the roles {', '.join(sorted(roles))}")


def _node_or_404(db: Session, node_id: str) -> NodeRow:
    row = db.get(NodeRow, node_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no node {node_id}")
    return row


def _ttl(central: CentralDep, asked: int | None) -> int:
    limit = central.settings.enrollment_token_ttl_s
    return limit if asked is None else min(asked, limit)


@router.post("/api/v1/enrollment-tokens", status_code=status.HTTP_201_CREATED)
def api_create_enrollment_token(
    user: ApiUser, db: DbSession, central: CentralDep, body: EnrollmentTokenIn | None = None
) -> JSONResponse:
    """A one-time token for one node (admins and technicians); shown only in this response."""
    _require(user, ENROLL_ROLES)
    issued = create_enrollment_token(
        db, username=user.username, now=central.clock(), ttl_s=_ttl(central, body.ttl_s if body else None)
    )
    db.commit()
    out = EnrollmentTokenOut(id=issued.id, token=issued.token, expires_at=issued.expires_at)
    return JSONResponse(out.model_dump(mode="json"), status_code=status.HTTP_201_CREATED, headers=NO_STORE)


@router.post(
    "/api/v1/enroll",
    status_code=status.HTTP_201_CREATED,
    response_model=EnrollOut,
    responses={401: {"description": "Unknown, expired or used token."}},
)
def api_enroll(body: EnrollIn, db: DbSession, central: CentralDep, fleet: FleetDep) -> JSONResponse:
    """Trade a one-time token for a node id and its credentials (called by ``streetwatch-agent enroll``)."""
    now = central.clock()
    try:
        issued = enroll_node(db, token=body.token, node_name=body.node_name, now=now)
    except FleetError as err:
        db.rollback()
        audit.record(
            db,
            at=now,
            actor=None,
            action="node.enroll.failed",
            target=f"node_name:{body.node_name[:64]}",
            details={"reason": err.message},
        )
        db.commit()
        raise HTTPException(err.status_code, err.message) from None
    db.commit()
    out = EnrollOut(
        node_id=issued.node_id,
        node_name=issued.node_name,
        mqtt_username=issued.mqtt_username,
        mqtt_password=issued.mqtt_password,
        http_token=issued.http_token,
        topic_prefix=central.topics.prefix,
        broker=BrokerOut.of(fleet.sync_broker()),
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=status.HTTP_201_CREATED, headers=NO_STORE)


@router.get("/api/v1/nodes", response_model=list[NodeOut])
def api_list_nodes(user: ApiUser, db: DbSession) -> list[NodeOut]:
    """Every enrolled node (revoked ones too), with where its remote config stands."""
    _require(user, CONFIG_ROLES)
    return [NodeOut.of(row) for row in db.scalars(select(NodeRow).order_by(NodeRow.name, NodeRow.node_id))]


@router.get("/api/v1/nodes/{node_id}", response_model=NodeOut)
def api_get_node(node_id: str, user: ApiUser, db: DbSession) -> NodeOut:
    _require(user, CONFIG_ROLES)
    return NodeOut.of(_node_or_404(db, node_id))


@router.post("/api/v1/nodes/{node_id}/revoke", response_model=RevokeOut)
def api_revoke_node(
    node_id: str, user: ApiUser, db: DbSession, central: CentralDep, fleet: FleetDep
) -> RevokeOut:
    """Remove a node's broker account, ACL and HTTP token (admins and technicians); idempotent."""
    _require(user, ENROLL_ROLES)
    try:
        row = revoke_node(db, node_id, username=user.username, now=central.clock())
    except FleetError as err:
        raise HTTPException(err.status_code, err.message) from None
    db.commit()
    broker = BrokerOut.of(fleet.sync_broker())
    fleet.wake()  # clears the node's retained config
    return RevokeOut(node=NodeOut.of(row), broker=broker)


@router.put("/api/v1/nodes/{node_id}/config", status_code=status.HTTP_201_CREATED)
def api_put_config(
    node_id: str,
    user: ApiUser,
    db: DbSession,
    central: CentralDep,
    fleet: FleetDep,
    body: Annotated[dict[str, Any], Body(description="The node's AgentConfig as JSON.")],
) -> ConfigAcceptedOut:
    """Validate a config with the node's rules, store it as the next version and publish it (retained).

    422 names the offending field (e.g. ``cameras.0.zones.0.polygon: polygon is self-intersecting``).
    """
    _require(user, CONFIG_ROLES)
    try:
        row = submit_config(db, node_id, body, username=user.username, now=central.clock())
    except FleetError as err:
        raise HTTPException(err.status_code, err.message) from None
    db.commit()
    published = fleet.publish_pending() > 0
    return ConfigAcceptedOut(node_id=node_id, version=row.version, published=published)


@router.get("/api/v1/nodes/{node_id}/config", response_model=ConfigOut)
def api_get_config(node_id: str, user: ApiUser, db: DbSession) -> ConfigOut:
    """The newest config central accepted for the node, and whether the node runs it."""
    _require(user, CONFIG_ROLES)
    node = _node_or_404(db, node_id)
    row = latest_config(db, node_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no config for node {node_id} yet")
    return ConfigOut(
        node=NodeOut.of(node),
        version=row.version,
        created_at=row.created_at,
        created_by=row.created_by,
        config=row.config,
    )


# -- technician page ----------------------------------------------------------------------------------------


def _nodes_page(
    request: Request, db: Session, user: AuthUser, *, token: EnrollmentTokenOut | None = None, error: str = ""
) -> HTMLResponse:
    nodes = [NodeOut.of(row) for row in db.scalars(select(NodeRow).order_by(NodeRow.name, NodeRow.node_id))]
    context = {"nodes": nodes, "token": token, "error": error, "can_enroll": user.role in ENROLL_ROLES}
    response = render(request, "nodes.html", context, user=user, status_code=403 if error else 200)
    response.headers.update(NO_STORE)
    return response


@router.get("/nodes", response_class=HTMLResponse, include_in_schema=False)
def nodes_page(request: Request, user: PageUser, db: DbSession) -> HTMLResponse:
    if user.role not in CONFIG_ROLES:
        return _nodes_page(request, db, user, error="error_forbidden_fleet")
    return _nodes_page(request, db, user)


@router.post("/nodes/enrollment-token", response_class=HTMLResponse, include_in_schema=False)
def nodes_create_token(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    if not csrf_valid(request.session, csrf_token):
        return _nodes_page(request, db, user, error="error_csrf")
    if user.role not in ENROLL_ROLES:
        return _nodes_page(request, db, user, error="error_forbidden_fleet")
    issued = create_enrollment_token(
        db, username=user.username, now=central.clock(), ttl_s=_ttl(central, None)
    )
    db.commit()
    token = EnrollmentTokenOut(id=issued.id, token=issued.token, expires_at=issued.expires_at)
    return _nodes_page(request, db, user, token=token)


@router.post("/nodes/{node_id}/revoke", include_in_schema=False)
def nodes_revoke(
    node_id: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    fleet: FleetDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not csrf_valid(request.session, csrf_token):
        return _nodes_page(request, db, user, error="error_csrf")
    if user.role not in ENROLL_ROLES:
        return _nodes_page(request, db, user, error="error_forbidden_fleet")
    try:
        revoke_node(db, node_id, username=user.username, now=central.clock())
    except FleetError:
        return render(request, "error.html", {"message_key": "not_found"}, user=user, status_code=404)
    db.commit()
    fleet.sync_broker()
    fleet.wake()
    return RedirectResponse("/nodes", status_code=status.HTTP_303_SEE_OTHER)

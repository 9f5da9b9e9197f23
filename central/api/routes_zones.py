"""The operator's zone editor and the config history pages, with their JSON.

* ``/nodes/{node}/zones?camera=<id>``: the camera's live frame (a ``snapshot`` command), shapes drawn with
  ``/static/zone_editor.js``, a rules panel built from the rule schemas (``/api/v1/rule-schemas``: the same
  pydantic models the node runs, so descriptions and bounds cannot drift), pushed with
  ``PUT /api/v1/nodes/{node}/config`` (validated by ``central.fleet.configs``) and followed live by polling
  ``GET /api/v1/nodes/{node}``;
* ``/nodes/{node}/history``: every version with author, time and a readable diff; one-click rollback
  (``central.fleet.history.rollback``), also as ``POST /api/v1/nodes/{node}/configs/{version}/rollback``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any, get_args

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from central import i18n_zones
from central.api.deps import ApiUser, AuthUser, CentralDep, DbSession, FleetDep, PageUser
from central.api.routes_web import render
from central.context import Central
from central.db.models import NodeCommandRow, NodeRow, Role
from central.fleet.configs import config_state, latest_config
from central.fleet.enrollment import FleetError
from central.fleet.history import history, rollback
from central.fleet.preview import MAX_SECONDS, PreviewError, PreviewUnavailable, run_preview
from central.fleet.service import Fleet
from central.i18n import choose_language, translate
from central.security import csrf_token, csrf_valid
from edge_agent.rules.ruleconfig import RuleConfig
from edge_agent.rules.sceneconfig import LineConfig, ZoneConfig

router = APIRouter(tags=["zones"])

ZONE_ROLES = frozenset({Role.ADMIN.value, Role.OPERATOR.value, Role.TECHNICIAN.value})
NO_STORE = {"Cache-Control": "no-store"}
MAX_CLIP_BYTES = 200 * 1024 * 1024
RECENT_TIMEOUT_S = 120.0
SNAPSHOT_LOOKBACK = 200  # snapshot commands of a node whose frames stay viewable


def rule_schemas() -> dict[str, Any]:
    """JSON schema of every rule type, keyed by its ``type`` (the union's members, in their order)."""
    union = get_args(RuleConfig)[0]
    out: dict[str, Any] = {}
    for model in get_args(union):
        schema = model.model_json_schema()
        out[schema["properties"]["type"]["const"]] = schema
    return out


def _require(user: AuthUser) -> None:
    if user.role not in ZONE_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "needs one of the roles admin, operator, technician")


class HistoryChangeOut(BaseModel):
    path: str
    kind: str
    old: str | None
    new: str | None


class HistoryEntryOut(BaseModel):
    version: int
    created_at: datetime
    created_by: str
    note: str | None
    rollback_of: int | None
    changes: list[HistoryChangeOut]


class RollbackOut(BaseModel):
    node_id: str
    restored: int
    version: int
    published: bool


@router.get("/api/v1/rule-schemas")
def api_rule_schemas(user: ApiUser) -> dict[str, Any]:
    """Rule, zone and line schemas (pydantic JSON schema: descriptions, bounds) for the editor's forms."""
    return {
        "rules": rule_schemas(),
        "zone": ZoneConfig.model_json_schema(),
        "line": LineConfig.model_json_schema(),
    }


@router.get("/api/v1/nodes/{node_id}/configs")
def api_history(node_id: str, user: ApiUser, db: DbSession) -> list[HistoryEntryOut]:
    """Every config version of the node, newest first, with author, time and the changes to the one before."""
    _require(user)
    if db.get(NodeRow, node_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no node {node_id}")
    return [HistoryEntryOut.model_validate(asdict(e)) for e in history(db, node_id)]


@router.post("/api/v1/nodes/{node_id}/configs/{version}/rollback", status_code=status.HTTP_201_CREATED)
def api_rollback(
    node_id: str, version: int, user: ApiUser, db: DbSession, central: CentralDep, fleet: FleetDep
) -> RollbackOut:
    """Publish an old version's content again, as the next version (audited)."""
    _require(user)
    try:
        row = rollback(db, node_id, version, username=user.username, now=central.clock())
    except FleetError as err:
        raise HTTPException(err.status_code, err.message) from None
    db.commit()
    published = fleet.publish_pending() > 0
    return RollbackOut(node_id=node_id, restored=version, version=row.version, published=published)


# -- pages --------------------------------------------------------------------------------------------------


def _node_page(request: Request, user: AuthUser, db: DbSession, node_id: str) -> NodeRow | HTMLResponse:
    if user.role not in ZONE_ROLES:
        return render(
            request, "error.html", {"message_key": "error_forbidden_zones"}, user=user, status_code=403
        )
    node = db.get(NodeRow, node_id)
    if node is None:
        return render(request, "error.html", {"message_key": "not_found"}, user=user, status_code=404)
    return node


@router.get("/nodes/{node_id}/zones", response_class=HTMLResponse, include_in_schema=False)
def zones_page(
    node_id: str, request: Request, user: PageUser, db: DbSession, camera: str | None = None
) -> HTMLResponse:
    node = _node_page(request, user, db, node_id)
    if isinstance(node, HTMLResponse):
        return node
    row = latest_config(db, node_id)
    cameras = [c["id"] for c in row.config.get("cameras", [])] if row is not None else []
    chosen = camera if camera in cameras else (cameras[0] if cameras else None)
    lang = choose_language(request.session, request.query_params.get("lang"))
    strings = i18n_zones.ZONE_MESSAGES.get(lang, {})
    context = {
        "node": node,
        "state": config_state(node).value,
        "cameras": cameras,
        "camera": chosen,
        "version": row.version if row is not None else None,
        "boot": json.dumps(
            {
                "node": node_id,
                "camera": chosen,
                "config": row.config if row is not None else None,
                "version": row.version if row is not None else None,
                "schemas": {"rules": rule_schemas()},
                "csrf": csrf_token(request.session),
                "strings": {**i18n_zones.ZONE_MESSAGES["en"], **strings},
                "field_help": i18n_zones.FIELD_HELP_VI if lang == "vi" else {},
                "rule_names": {t: translate(lang, t) for t in rule_schemas()},
            }
        ),
    }
    response = render(request, "zones.html", context, user=user)
    response.headers.update(NO_STORE)
    return response


@router.get("/nodes/{node_id}/history", response_class=HTMLResponse, include_in_schema=False)
def history_page(node_id: str, request: Request, user: PageUser, db: DbSession) -> HTMLResponse:
    node = _node_page(request, user, db, node_id)
    if isinstance(node, HTMLResponse):
        return node
    flash = request.session.pop("zones_flash", None)
    context = {
        "node": node,
        "state": config_state(node).value,
        "entries": history(db, node_id),
        "flash": flash,
    }
    response = render(request, "history.html", context, user=user)
    response.headers.update(NO_STORE)
    return response


@router.post("/nodes/{node_id}/history/{version}/rollback", include_in_schema=False)
def history_rollback(
    node_id: str,
    version: int,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    fleet: FleetDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    node = _node_page(request, user, db, node_id)
    if isinstance(node, HTMLResponse):
        return node
    if not csrf_valid(request.session, csrf_token):
        return render(request, "error.html", {"message_key": "error_csrf"}, user=user, status_code=403)
    try:
        row = rollback(db, node_id, version, username=user.username, now=central.clock())
    except FleetError as err:
        db.rollback()
        request.session["zones_flash"] = {"error": err.message}
    else:
        db.commit()
        fleet.publish_pending()
        request.session["zones_flash"] = {"old": version, "new": row.version}
    return RedirectResponse(f"/nodes/{node_id}/history", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/api/v1/nodes/{node_id}/preview")
async def api_preview(
    node_id: str,
    user: ApiUser,
    db: DbSession,
    clip: Annotated[UploadFile, File(description="A short video of the camera (mp4).")],
    camera: Annotated[str, Form(description="The camera config as drawn in the editor (JSON).")],
    max_seconds: Annotated[float, Form(gt=0, le=MAX_SECONDS, description="Replay at most this much.")] = 60.0,
) -> dict[str, Any]:
    """Replay ``clip`` through the real pipeline with ``camera``'s zones and rules; tracks and events back."""
    _require(user)
    row = latest_config(db, node_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no config for node {node_id} yet")
    try:
        camera_cfg = json.loads(camera)
    except ValueError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"camera: not JSON: {err}") from None
    data = await clip.read(MAX_CLIP_BYTES + 1)
    if len(data) > MAX_CLIP_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "clip larger than 200 MB")
    try:
        result = await run_in_threadpool(
            lambda: run_preview(dict(row.config), camera_cfg, data, max_seconds=max_seconds)
        )
    except PreviewUnavailable as err:
        raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, str(err)) from None
    except PreviewError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from None
    return asdict(result)


@router.get("/zones", response_class=HTMLResponse, include_in_schema=False)
def cameras_page(request: Request, user: PageUser, db: DbSession) -> HTMLResponse:
    """Where an operator's day starts: every active node's cameras, each linking to its editor and history."""
    if user.role not in ZONE_ROLES:
        return render(
            request, "error.html", {"message_key": "error_forbidden_zones"}, user=user, status_code=403
        )
    rows = db.scalars(select(NodeRow).where(NodeRow.revoked_at.is_(None)).order_by(NodeRow.name)).all()
    nodes = []
    for node in rows:
        config = latest_config(db, node.node_id)
        cameras = [
            {
                "id": c["id"],
                "name": c.get("name", ""),
                "zones": len(c.get("zones", [])),
                "rules": len(c.get("rules", [])),
            }
            for c in (config.config.get("cameras", []) if config is not None else [])
        ]
        nodes.append({"node": node, "state": config_state(node).value, "cameras": cameras})
    response = render(request, "zones_index.html", {"nodes": nodes}, user=user)
    response.headers.update(NO_STORE)
    return response


@router.get("/nodes/{node_id}/snapshots/{sha256}", response_class=FileResponse, include_in_schema=False)
def snapshot_image(
    node_id: str, sha256: str, user: ApiUser, db: DbSession, central: CentralDep
) -> FileResponse:
    """A frame a ``snapshot`` command of this node brought back, for the roles that draw zones.

    Served here rather than through ``/evidence``: a snapshot belongs to no event, and event evidence is
    scoped by the events a user may see; this one is scoped by the node's commands.
    """
    _require(user)
    rows = db.scalars(
        select(NodeCommandRow.result)
        .where(
            NodeCommandRow.node_id == node_id, NodeCommandRow.name == "snapshot", NodeCommandRow.state == "ok"
        )
        .order_by(NodeCommandRow.created_at.desc())
        .limit(SNAPSHOT_LOOKBACK)
    ).all()
    known = {s.get("sha256") for result in rows if result for s in result.get("snapshots", [])}
    path = central.evidence.path_of(sha256) if sha256 in known else None
    if path is None or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such snapshot")
    return FileResponse(
        path,
        media_type="image/jpeg",
        headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


class RecentPreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera: dict[str, Any] = Field(description="The camera config as drawn in the editor.")
    seconds: float = Field(default=60.0, ge=5.0, le=MAX_SECONDS, description="How much of the recent past.")


def _recent_clip(
    fleet: Fleet, central: Central, node_id: str, camera_id: str, seconds: float, username: str
) -> bytes:
    """The node's last ``seconds`` of ``camera_id``, cut from its rolling recording by an ``extract`` command.

    The command is audited like every command (who pulled which camera's footage, for which range); it is not an
    officer's extraction, so no extraction row is created.
    """
    now = central.clock()
    args = {
        "camera_id": camera_id,
        "start": (now - timedelta(seconds=seconds)).isoformat(),
        "end": now.isoformat(),
    }
    try:
        view = fleet.commands.send(node_id, "extract", args, username=username, timeout_s=RECENT_TIMEOUT_S)
    except FleetError as err:
        raise HTTPException(err.status_code, err.message) from None
    done = fleet.commands.wait(view.request_id, RECENT_TIMEOUT_S + 5) or view
    if done.state != "ok" or not done.result:
        reason = done.reason or done.state
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"the node has no recent recording to preview: {reason}"
        )
    path = central.evidence.path_of(str(done.result["sha256"]))
    if not path.is_file():
        raise HTTPException(status.HTTP_409_CONFLICT, "the node's clip did not arrive at central")
    return path.read_bytes()


@router.post("/api/v1/nodes/{node_id}/preview/recent")
async def api_preview_recent(
    node_id: str, body: RecentPreviewIn, user: ApiUser, db: DbSession, central: CentralDep, fleet: FleetDep
) -> dict[str, Any]:
    """Preview on what the node recorded in the last ``seconds`` (its rolling recording, via ``extract``)."""
    _require(user)
    row = latest_config(db, node_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no config for node {node_id} yet")
    camera_id = str(body.camera.get("id", ""))
    clip = await run_in_threadpool(
        _recent_clip, fleet, central, node_id, camera_id, body.seconds, user.username
    )
    try:
        result = await run_in_threadpool(
            lambda: run_preview(dict(row.config), body.camera, clip, max_seconds=body.seconds)
        )
    except PreviewUnavailable as err:
        raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, str(err)) from None
    except PreviewError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from None
    return asdict(result)

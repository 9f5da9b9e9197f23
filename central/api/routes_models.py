"""Remote model updates: upload a detector, see what it is, assign it to nodes, let nodes download it.

``/models`` is the page (admins and technicians); JSON under ``/api/v1/models``. The file itself is served to
nodes with their own token (``GET /api/v1/models/{sha256}/file``). Each assignment is one ``model`` command per
node, whose progress and outcome show on the models page and on the node's fleet page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from central import audit
from central.api.deps import ApiUser, AuthUser, CentralDep, DbSession, FleetDep, NodeAuth, PageUser
from central.api.routes_web import render
from central.db.models import DetectorModelRow, NodeCommandRow, NodeRow, Role
from central.fleet.commands import CommandView
from central.fleet.enrollment import FleetError
from central.fleet.models import list_models, model_args, store_model
from central.fleet.service import Fleet
from central.security import csrf_valid
from edge_agent.contract import Identifier

router = APIRouter(tags=["models"])

MODEL_ROLES = frozenset({Role.ADMIN.value, Role.TECHNICIAN.value})
COMMAND_TIMEOUT_S = 900.0  # download + load + trial + watch on a slow box


class ModelOut(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    sha256: str
    name: str
    size: int
    input_width: int
    input_height: int
    classes: list[str]
    uploaded_at: datetime
    uploaded_by: str


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: list[Identifier] = Field(min_length=1, max_length=500, description="Node ids to update.")
    stall_s: float = Field(
        default=30.0, gt=0, le=600, description="A detector call longer than this rolls back."
    )
    watch_s: float = Field(
        default=60.0, ge=0, le=3600, description="How long each node watches the new model."
    )


class AssignOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    node_id: str
    request_id: str | None = Field(description="The model command sent, None when it could not be.")
    state: str
    error: str | None = None


def _require(user: AuthUser) -> None:
    if user.role not in MODEL_ROLES:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"needs one of the roles {', '.join(sorted(MODEL_ROLES))}"
        )


def _model_or_404(db: DbSession, sha256: str) -> DetectorModelRow:
    row = db.get(DetectorModelRow, sha256)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {sha256}")
    return row


def _upload(
    db: DbSession, central: CentralDep, user: AuthUser, file: UploadFile, name: str | None
) -> tuple[DetectorModelRow, bool]:
    filename = (name or file.filename or "").strip()
    if not filename.endswith(".onnx") or "/" in filename or len(filename) > 128:
        raise FleetError(422, "name: a file name ending in .onnx (letters, digits, '_', '.', '-')")
    data = file.file.read()
    row, created = store_model(
        db, central.settings.data_dir / "models", filename, data, username=user.username, now=central.clock()
    )
    db.commit()
    return row, created


def assign(
    db: DbSession, fleet: Fleet, row: DetectorModelRow, body: AssignIn, *, username: str, now: datetime
) -> list[AssignOut]:
    out: list[AssignOut] = []
    args = model_args(row, stall_s=body.stall_s, watch_s=body.watch_s)
    for node_id in body.nodes:
        try:
            view = fleet.commands.send(node_id, "model", args, username=username, timeout_s=COMMAND_TIMEOUT_S)
        except FleetError as err:
            out.append(AssignOut(node_id=node_id, request_id=None, state="refused", error=err.message))
            continue
        out.append(
            AssignOut(node_id=node_id, request_id=view.request_id, state=view.state, error=view.reason)
        )
    audit.record(
        db,
        at=now,
        actor=username,
        action="model.assign",
        target=f"model:{row.sha256}",
        details={"name": row.name, "nodes": [o.model_dump() for o in out]},
    )
    db.commit()
    return out


@router.post("/api/v1/models", status_code=status.HTTP_201_CREATED, response_model=ModelOut)
def api_upload_model(
    user: ApiUser,
    db: DbSession,
    central: CentralDep,
    file: Annotated[UploadFile, File(description="The ONNX file.")],
    name: Annotated[str | None, Form(description="File name; default: the upload's.")] = None,
) -> JSONResponse:
    """Check that the model loads and runs, store it by SHA-256 (201; 200 when it was already there)."""
    _require(user)
    try:
        row, created = _upload(db, central, user, file, name)
    except FleetError as err:
        raise HTTPException(err.status_code, err.message) from None
    body = ModelOut.model_validate(row).model_dump(mode="json")
    return JSONResponse(body, status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.get("/api/v1/models", response_model=list[ModelOut])
def api_list_models(user: ApiUser, db: DbSession) -> list[ModelOut]:
    _require(user)
    return [ModelOut.model_validate(r) for r in list_models(db)]


@router.post("/api/v1/models/{sha256}/assign", response_model=list[AssignOut])
def api_assign_model(
    sha256: str, body: AssignIn, user: ApiUser, db: DbSession, central: CentralDep, fleet: FleetDep
) -> list[AssignOut]:
    """Send the ``model`` command to each node; follow it with ``GET /api/v1/commands/{request_id}``."""
    _require(user)
    row = _model_or_404(db, sha256)
    return assign(db, fleet, row, body, username=user.username, now=central.clock())


@router.get("/api/v1/models/{sha256}/file", include_in_schema=False)
def api_model_file(sha256: str, node: NodeAuth, db: DbSession, central: CentralDep) -> Response:
    """The model bytes, for nodes (their own token); the node checks size and hash after downloading."""
    row = _model_or_404(db, sha256)
    path = central.settings.data_dir / "models" / row.path
    if not path.is_file():
        raise HTTPException(status.HTTP_410_GONE, f"model {sha256} is recorded but its file is missing")
    return FileResponse(path, media_type="application/octet-stream", filename=row.name)


# -- page -------------------------------------------------------------------------------------------------------


def model_updates(db: DbSession, node_id: str | None = None, limit: int = 30) -> list[CommandView]:
    query = select(NodeCommandRow).where(NodeCommandRow.name == "model")
    if node_id is not None:
        query = query.where(NodeCommandRow.node_id == node_id)
    rows = db.scalars(query.order_by(NodeCommandRow.created_at.desc()).limit(limit))
    return [CommandView.of(r) for r in rows]


def _page(
    request: Request,
    db: DbSession,
    user: AuthUser,
    *,
    error: str = "",
    assigned: list[AssignOut] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    nodes = list(db.scalars(select(NodeRow).where(NodeRow.revoked_at.is_(None)).order_by(NodeRow.name)))
    context: dict[str, Any] = {
        "models": list_models(db),
        "nodes": nodes,
        "updates": model_updates(db),
        "error": error,
        "assigned": assigned or [],
    }
    return render(request, "models.html", context, user=user, status_code=status_code)


@router.get("/models", response_class=HTMLResponse, include_in_schema=False)
def models_page(request: Request, user: PageUser, db: DbSession) -> HTMLResponse:
    if user.role not in MODEL_ROLES:
        return render(
            request, "error.html", {"message_key": "error_forbidden_fleet"}, user=user, status_code=403
        )
    return _page(request, db, user)


@router.post("/models/upload", response_class=HTMLResponse, include_in_schema=False)
def models_upload(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    file: Annotated[UploadFile, File()],
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not csrf_valid(request.session, csrf_token):
        return _page(request, db, user, error="error_csrf", status_code=403)
    if user.role not in MODEL_ROLES:
        return render(
            request, "error.html", {"message_key": "error_forbidden_fleet"}, user=user, status_code=403
        )
    try:
        _upload(db, central, user, file, None)
    except FleetError as err:
        db.rollback()
        return _page(request, db, user, error=err.message, status_code=err.status_code)
    return RedirectResponse("/models", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/models/{sha256}/assign", response_class=HTMLResponse, include_in_schema=False)
async def models_assign(
    sha256: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    fleet: FleetDep,
) -> Response:
    form = await request.form()
    if not csrf_valid(request.session, str(form.get("csrf_token") or "")):
        return _page(request, db, user, error="error_csrf", status_code=403)
    if user.role not in MODEL_ROLES:
        return render(
            request, "error.html", {"message_key": "error_forbidden_fleet"}, user=user, status_code=403
        )
    row = db.get(DetectorModelRow, sha256)
    nodes = [str(n) for n in form.getlist("nodes")]
    if row is None or not nodes:
        return _page(request, db, user, error="model_pick_nodes", status_code=422)
    try:
        body = AssignIn(nodes=nodes)
    except ValueError as err:
        return _page(request, db, user, error=str(err), status_code=422)
    from starlette.concurrency import run_in_threadpool

    done = await run_in_threadpool(assign, db, fleet, row, body, username=user.username, now=central.clock())
    return _page(request, db, user, assigned=done)

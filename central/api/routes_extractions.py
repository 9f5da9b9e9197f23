"""Footage requests: officers ask for a camera's recording over a local time range, with a reason.

``/extractions`` is the page (form + the requests with their state, refreshing while any is under way);
JSON under ``/api/v1/extractions``. Times typed by people are in the deployment's zone
(``STREETWATCH_TIMEZONE``, default Asia/Ho_Chi_Minh); the API also takes aware ISO times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from central import audit
from central.api.deps import ApiUser, AuthUser, CentralDep, DbSession, FleetDep, PageUser
from central.api.routes_web import render
from central.db.models import ExtractionRow, Role
from central.fleet.enrollment import FleetError
from central.fleet.extractions import (
    FINAL_STATES,
    camera_nodes,
    extraction_out,
    list_extractions,
    request_extraction,
)
from central.security import csrf_valid

router = APIRouter(tags=["footage"])

EXTRACT_ROLES = frozenset({Role.OFFICER.value, Role.ADMIN.value})


class ExtractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    camera_id: str = Field(min_length=1, max_length=64, description="Camera id.")
    start: datetime = Field(description="Start; without an offset it is local time (STREETWATCH_TIMEZONE).")
    end: datetime = Field(description="End; without an offset it is local time.")
    reason: str = Field(min_length=3, max_length=2000, description="Why the footage is needed (audited).")


class ExtractionOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    node_id: str
    camera_id: str
    start: datetime
    end: datetime
    reason: str
    requested_by: str
    requested_at: datetime
    state: str = Field(description="requested, recording-found, uploading, ready, not-available or failed.")
    message: str | None
    request_id: str | None
    sha256: str | None = Field(description="The clip, when ready: GET /evidence/{sha256}.")
    size: int | None
    recorded_start: datetime | None
    recorded_end: datetime | None
    updated_at: datetime


def _require(user: AuthUser) -> None:
    if user.role not in EXTRACT_ROLES:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"needs one of the roles {', '.join(sorted(EXTRACT_ROLES))}"
        )


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _create(
    db: DbSession, central: CentralDep, fleet: FleetDep, user: AuthUser, body: ExtractionIn
) -> ExtractionRow:
    zone = ZoneInfo(central.settings.timezone)
    return request_extraction(
        db,
        fleet.commands,
        camera_id=body.camera_id,
        start=_aware(body.start, zone),
        end=_aware(body.end, zone),
        reason=body.reason,
        username=user.username,
        now=central.clock(),
    )


@router.post("/api/v1/extractions", status_code=status.HTTP_201_CREATED, response_model=ExtractionOut)
async def api_request_extraction(
    body: ExtractionIn, user: ApiUser, db: DbSession, central: CentralDep, fleet: FleetDep
) -> ExtractionOut:
    """Ask the camera's node for the footage; follow ``state`` with ``GET /api/v1/extractions/{id}``."""
    _require(user)
    try:
        row = await run_in_threadpool(_create, db, central, fleet, user, body)
    except FleetError as err:
        raise HTTPException(err.status_code, err.message) from None
    return ExtractionOut(**extraction_out(row))


@router.get("/api/v1/extractions", response_model=list[ExtractionOut])
def api_list_extractions(user: ApiUser, db: DbSession) -> list[ExtractionOut]:
    _require(user)
    return [ExtractionOut(**extraction_out(r)) for r in list_extractions(db)]


@router.get("/api/v1/extractions/{extraction_id}", response_model=ExtractionOut)
def api_get_extraction(extraction_id: str, user: ApiUser, db: DbSession) -> ExtractionOut:
    _require(user)
    row = db.get(ExtractionRow, extraction_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no extraction {extraction_id}")
    return ExtractionOut(**extraction_out(row))


@router.get("/extractions/{extraction_id}/clip", include_in_schema=False)
def extraction_clip(
    extraction_id: str, request: Request, user: ApiUser, db: DbSession, central: CentralDep
) -> FileResponse:
    """The extracted clip, for the roles that may request footage; each view is audited (a player's follow-up
    Range requests for later bytes are not separate views)."""
    _require(user)
    row = db.get(ExtractionRow, extraction_id)
    if row is None or row.sha256 is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no clip for extraction {extraction_id}")
    path = central.evidence.path_of(row.sha256)
    if not path.is_file():
        raise HTTPException(status.HTTP_410_GONE, "the clip is recorded but its file is missing")
    wanted = request.headers.get("range", "")
    if not wanted or wanted.replace(" ", "").startswith("bytes=0-"):
        audit.record(
            db,
            at=central.clock(),
            actor=user.username,
            action="extraction.view",
            target=f"extraction:{row.id}",
            details={"sha256": row.sha256},
        )
        db.commit()
    return FileResponse(
        path,
        media_type="video/mp4",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


def _page(request: Request, db: DbSession, central: CentralDep, user: AuthUser, **extra: Any) -> HTMLResponse:
    rows = list_extractions(db)
    zone = ZoneInfo(central.settings.timezone)
    context = {
        "extractions": rows,
        "cameras": list(camera_nodes(db)),
        "zone": central.settings.timezone,
        "local": lambda at: "" if at is None else at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
        "busy": any(r.state not in FINAL_STATES for r in rows),
        "error": "",
        "form": {},
        **extra,
    }
    return render(
        request, "extractions.html", context, user=user, status_code=422 if extra.get("error") else 200
    )


@router.get("/extractions", response_class=HTMLResponse, include_in_schema=False)
def extractions_page(request: Request, user: PageUser, db: DbSession, central: CentralDep) -> HTMLResponse:
    if user.role not in EXTRACT_ROLES:
        return render(
            request, "error.html", {"message_key": "error_forbidden_footage"}, user=user, status_code=403
        )
    return _page(request, db, central, user)


@router.post("/extractions", include_in_schema=False)
async def extractions_submit(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    fleet: FleetDep,
    camera_id: Annotated[str, Form()],
    day: Annotated[str, Form()],
    start_time: Annotated[str, Form()],
    end_time: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    form = {
        "camera_id": camera_id,
        "day": day,
        "start_time": start_time,
        "end_time": end_time,
        "reason": reason,
    }
    if not csrf_valid(request.session, csrf_token):
        return _page(request, db, central, user, error="error_csrf", form=form)
    if user.role not in EXTRACT_ROLES:
        return render(
            request, "error.html", {"message_key": "error_forbidden_footage"}, user=user, status_code=403
        )
    try:
        body = ExtractionIn(
            camera_id=camera_id,
            start=datetime.fromisoformat(f"{day}T{start_time}"),
            end=datetime.fromisoformat(f"{day}T{end_time}"),
            reason=reason,
        )
        await run_in_threadpool(_create, db, central, fleet, user, body)
    except FleetError as err:
        return _page(request, db, central, user, error=err.message, form=form)
    except ValueError as err:
        return _page(request, db, central, user, error=str(err).splitlines()[0][:300], form=form)
    return RedirectResponse("/extractions", status_code=status.HTTP_303_SEE_OTHER)

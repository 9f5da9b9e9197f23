"""The ward and camera registry page (admins edit; supervisors, operators and technicians read their wards)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from central import cameras
from central.api.deps import AuthUser, CentralDep, DbSession, PageUser
from central.api.routes_web import render
from central.db.models import Role
from central.review import ReviewError
from central.scope import scope_of
from central.security import csrf_valid

router = APIRouter(include_in_schema=False)


def _page(
    request: Request, db: DbSession, user: AuthUser, *, error: str | None = None, code: int = 200
) -> HTMLResponse:
    scope = scope_of(db, user.username, user.role)
    context = {
        "wards": [w for w in cameras.list_wards(db) if scope.allows(w.ward_id)],
        "all_wards": cameras.list_wards(db),
        "cameras": [c for c in cameras.list_cameras(db) if scope.allows(c.ward_id)],
        "can_edit": user.role == Role.ADMIN.value,
        "error": error,
    }
    return render(request, "cameras.html", context, user=user, status_code=code)


@router.get("/cameras", response_class=HTMLResponse)
def cameras_page(request: Request, user: PageUser, db: DbSession) -> HTMLResponse:
    return _page(request, db, user)


def _admin_refusal(request: Request, db: DbSession, user: AuthUser, token: str | None) -> HTMLResponse | None:
    if user.role != Role.ADMIN.value:
        return _page(request, db, user, error="error_forbidden_admin", code=403)
    if not csrf_valid(request.session, token):
        return _page(request, db, user, error="error_csrf", code=403)
    return None


@router.post("/wards", response_class=HTMLResponse)
def ward_create(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    ward_id: Annotated[str, Form(max_length=64)] = "",
    name: Annotated[str, Form(max_length=128)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    refused = _admin_refusal(request, db, user, csrf_token)
    if refused is not None:
        return refused
    try:
        cameras.add_ward(db, ward_id.strip(), name, actor=user.username, now=central.clock())
    except ReviewError as exc:
        db.rollback()
        return _page(request, db, user, error=exc.key, code=exc.status)
    db.commit()
    return RedirectResponse("/cameras", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/cameras/{node_id}/{camera_id}", response_class=HTMLResponse)
def camera_update(
    node_id: str,
    camera_id: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    name: Annotated[str, Form(max_length=128)] = "",
    ward_id: Annotated[str, Form(max_length=64)] = "",
    location: Annotated[str, Form(max_length=255)] = "",
    notes: Annotated[str, Form(max_length=4000)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    refused = _admin_refusal(request, db, user, csrf_token)
    if refused is not None:
        return refused
    try:
        cameras.update_camera(
            db,
            node_id,
            camera_id,
            name=name,
            ward_id=ward_id or None,
            location=location,
            notes=notes,
            actor=user.username,
            now=central.clock(),
        )
    except ReviewError as exc:
        db.rollback()
        return _page(request, db, user, error=exc.key, code=exc.status)
    db.commit()
    return RedirectResponse("/cameras", status_code=status.HTTP_303_SEE_OTHER)

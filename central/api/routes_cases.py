"""Cases: list/create, add/remove events, the signed export (audited) and central's public signing key.

Scoped like everything else: a case of another ward answers 404, and only events of the case's ward go in.
"""

from __future__ import annotations

from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from central import audit, cases, export, signing
from central.api.deps import ApiUser, AuthUser, CentralDep, DbSession, PageUser
from central.api.routes_review import not_found
from central.api.routes_web import render
from central.context import Central
from central.db.models import WardRow
from central.review import ReviewError
from central.scope import case_in_scope, event_in_scope, scope_of
from central.security import csrf_valid

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api/v1", tags=["cases"])


def signing_key(central: Central) -> Ed25519PrivateKey:
    settings = central.settings
    return signing.load_or_create(signing.key_path(settings.data_dir, settings.signing_key_file))


def _list_page(
    request: Request, db: DbSession, user: AuthUser, *, error: str | None = None, code: int = 200
) -> HTMLResponse:
    scope = scope_of(db, user.username, user.role)
    wards = [w for w in db.scalars(select(WardRow).order_by(WardRow.ward_id)) if scope.allows(w.ward_id)]
    context = {
        "cases": cases.list_cases(db, scope),
        "wards": wards,
        "error": error,
        "can_create": user.role in cases.CASE_ROLES,
    }
    return render(request, "cases.html", context, user=user, status_code=code)


@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request, user: PageUser, db: DbSession) -> HTMLResponse:
    return _list_page(request, db, user)


@router.post("/cases", response_class=HTMLResponse)
def case_create(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    title: Annotated[str, Form(max_length=400)] = "",
    description: Annotated[str, Form(max_length=cases.MAX_DESCRIPTION)] = "",
    ward_id: Annotated[str, Form(max_length=64)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not csrf_valid(request.session, csrf_token):
        return _list_page(request, db, user, error="error_csrf", code=403)
    scope = scope_of(db, user.username, user.role)
    try:
        case = cases.create_case(
            db,
            scope,
            title=title,
            description=description,
            ward_id=ward_id,
            username=user.username,
            role=user.role,
            now=central.clock(),
        )
    except ReviewError as exc:
        db.rollback()
        return _list_page(request, db, user, error=exc.key, code=exc.status)
    db.commit()
    return RedirectResponse(f"/cases/{case.id}", status_code=status.HTTP_303_SEE_OTHER)


def _case_page(
    request: Request,
    db: DbSession,
    user: AuthUser,
    case_id: int,
    *,
    error: str | None = None,
    code: int = 200,
) -> HTMLResponse:
    scope = scope_of(db, user.username, user.role)
    case = case_in_scope(db, scope, case_id)
    if case is None:
        return not_found(request, user)
    context = {"case": case, "events": cases.case_events(db, case), "error": error}
    return render(request, "case.html", context, user=user, status_code=code)


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(case_id: int, request: Request, user: PageUser, db: DbSession) -> HTMLResponse:
    return _case_page(request, db, user, case_id)


@router.post("/cases/add-event", response_class=HTMLResponse)
def case_add_event(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    case_id: Annotated[int, Form()],
    event_id: Annotated[str, Form(max_length=64)],
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    scope = scope_of(db, user.username, user.role)
    case = case_in_scope(db, scope, case_id)
    event = event_in_scope(db, scope, event_id)
    if case is None or event is None:
        return not_found(request, user)
    if not csrf_valid(request.session, csrf_token):
        return _case_page(request, db, user, case_id, error="error_csrf", code=403)
    try:
        cases.add_event(db, case, event, username=user.username, role=user.role, now=central.clock())
    except ReviewError as exc:
        db.rollback()
        return _case_page(request, db, user, case_id, error=exc.key, code=exc.status)
    db.commit()
    return RedirectResponse(f"/cases/{case.id}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/cases/{case_id}/remove-event", response_class=HTMLResponse)
def case_remove_event(
    case_id: int,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    event_id: Annotated[str, Form(max_length=64)],
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    case = case_in_scope(db, scope_of(db, user.username, user.role), case_id)
    if case is None:
        return not_found(request, user)
    if not csrf_valid(request.session, csrf_token):
        return _case_page(request, db, user, case_id, error="error_csrf", code=403)
    try:
        cases.remove_event(db, case, event_id, username=user.username, role=user.role, now=central.clock())
    except ReviewError as exc:
        db.rollback()
        return _case_page(request, db, user, case_id, error=exc.key, code=exc.status)
    db.commit()
    return RedirectResponse(f"/cases/{case.id}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/cases/{case_id}/export.zip")
async def case_export(
    case_id: int, request: Request, user: PageUser, db: DbSession, central: CentralDep
) -> Response:
    """The signed zip; every export writes an audit row (who, which case, the manifest's hash)."""
    scope = scope_of(db, user.username, user.role)
    case = case_in_scope(db, scope, case_id)
    if case is None:
        return not_found(request, user)
    now = central.clock()
    key = await run_in_threadpool(signing_key, central)
    data = await run_in_threadpool(
        export.build_case_export,
        db,
        central.evidence,
        case,
        key,
        username=user.username,
        now=now,
        timezone=central.settings.timezone,
    )
    audit.record(
        db,
        user.username,
        "case.export",
        f"case:{case.id}",
        {"bytes": len(data), "sha256": export._sha(data), "key": signing.fingerprint(key.public_key())},
        at=now,
    )
    db.commit()
    name = f"case-{case.id}-{now.strftime('%Y%m%dT%H%M%SZ')}.zip"
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@api_router.get("/signing-key", response_class=PlainTextResponse)
def api_signing_key(user: ApiUser, central: CentralDep) -> PlainTextResponse:
    """Central's Ed25519 public key (PEM) that verifies case exports: ``verify-case --public-key``."""
    key = signing_key(central).public_key()
    return PlainTextResponse(signing.public_pem(key), headers={"X-Key-Fingerprint": signing.fingerprint(key)})

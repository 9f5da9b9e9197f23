"""Account administration (admins): list, create, give wards, change role, disable/enable, reset password.

The page ``/admin/users`` and the JSON ``/api/v1/users`` call the same functions in ``central.users``; every
change is audited there, and disabling or resetting ends the account's sessions at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from central import users
from central.api import web_accounts  # noqa: F401  (registers the template helpers)
from central.api.deps import ApiUser, AuthUser, CentralDep, DbSession, PageUser
from central.api.routes_auth import get_throttle
from central.api.routes_web import render
from central.api.schemas_accounts import AccountIn, AccountOut, AccountPatch, ErrorOut, PasswordResetIn
from central.db.models import Role, WardRow
from central.i18n import choose_language, translate
from central.security import csrf_valid

Responses = dict[int | str, dict[str, Any]]
router = APIRouter(tags=["accounts"])

E401: Responses = {401: {"model": ErrorOut, "description": "Not logged in."}}
E403: Responses = {403: {"model": ErrorOut, "description": "Not an admin, or missing/wrong X-CSRF-Token."}}
E404: Responses = {404: {"model": ErrorOut, "description": "No such user."}}
E409: Responses = {409: {"model": ErrorOut, "description": "The username is taken."}}
E422: Responses = {
    422: {"model": ErrorOut, "description": "Refused: weak password, unknown ward, bad username..."}
}
FLASH_KEY = "admin_flash"


def _require_admin(user: AuthUser) -> None:
    if user.role != Role.ADMIN.value:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "account administration is for admins")


def _account(db: DbSession, username: str) -> AccountOut:
    for info in users.list_users(db):
        if info.username == username:
            return AccountOut.of(info)
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {username}")


def _http_error(exc: users.UserError) -> HTTPException:
    if exc.key == "error_no_user":
        return HTTPException(status.HTTP_404_NOT_FOUND, exc.message)
    if exc.key == "error_user_exists":
        return HTTPException(status.HTTP_409_CONFLICT, exc.message)
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message)


# ---------------------------------------------------------------- JSON


@router.get("/api/v1/users", response_model=list[AccountOut], responses={**E401, **E403})
def api_list_users(user: ApiUser, db: DbSession) -> list[AccountOut]:
    """Every account with its role, wards and state (admins)."""
    _require_admin(user)
    return [AccountOut.of(info) for info in users.list_users(db)]


@router.post(
    "/api/v1/users",
    response_model=AccountOut,
    status_code=status.HTTP_201_CREATED,
    responses={**E401, **E403, **E409, **E422},
)
def api_create_user(body: AccountIn, user: ApiUser, db: DbSession, central: CentralDep) -> AccountOut:
    """Create an account; the password is temporary (the user must change it at first login)."""
    _require_admin(user)
    try:
        users.create_user(
            db,
            username=body.username,
            role=body.role.value,
            password=body.password,
            wards=body.wards,
            actor=user.username,
            now=central.clock(),
        )
    except users.UserError as exc:
        db.rollback()
        raise _http_error(exc) from None
    db.commit()
    return _account(db, body.username)


@router.patch(
    "/api/v1/users/{username}",
    response_model=AccountOut,
    responses={**E401, **E403, **E404, **E422},
)
def api_update_user(
    username: str, body: AccountPatch, user: ApiUser, db: DbSession, central: CentralDep
) -> AccountOut:
    """Change role and/or wards, disable (ends the sessions) or enable an account."""
    _require_admin(user)
    now = central.clock()
    try:
        if body.role is not None:
            users.set_role(db, username, body.role.value, actor=user.username, now=now)
        if body.wards is not None:
            users.set_wards(db, username, body.wards, actor=user.username, now=now)
        if body.disabled is True:
            users.disable_user(db, username, actor=user.username, now=now)
        elif body.disabled is False:
            users.enable_user(db, username, actor=user.username, now=now)
    except users.UserError as exc:
        db.rollback()
        raise _http_error(exc) from None
    db.commit()
    return _account(db, username)


@router.post(
    "/api/v1/users/{username}/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**E401, **E403, **E404, **E422},
)
def api_reset_password(
    username: str, body: PasswordResetIn, request: Request, user: ApiUser, db: DbSession, central: CentralDep
) -> Response:
    """Set a temporary password (changed at next login); the account's sessions end."""
    _require_admin(user)
    try:
        users.reset_password(db, username, body.password, actor=user.username, now=central.clock())
    except users.UserError as exc:
        db.rollback()
        raise _http_error(exc) from None
    db.commit()
    get_throttle(request).succeeded(username)  # a reset also lifts a login lock-out
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------- pages


def _page(
    request: Request,
    db: DbSession,
    user: AuthUser,
    *,
    error: str | None = None,
    form: Mapping[str, object] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    wards = list(db.scalars(select(WardRow).order_by(WardRow.ward_id)))
    flash = request.session.pop(FLASH_KEY, None)
    context = {
        "accounts": users.list_users(db),
        "wards": wards,
        "roles": [role.value for role in Role],
        "error": error,
        "form": form or {},
        "flash": flash if isinstance(flash, str) else None,
    }
    return render(request, "admin_users.html", context, user=user, status_code=status_code)


@router.get("/admin/users", response_class=HTMLResponse, include_in_schema=False)
def users_page(request: Request, user: PageUser, db: DbSession) -> HTMLResponse:
    if user.role != Role.ADMIN.value:
        return render(request, "error.html", {"message_key": "error_admin_only"}, user=user, status_code=403)
    return _page(request, db, user)


@router.post("/admin/users", response_class=HTMLResponse, include_in_schema=False)
def users_action(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    action: Annotated[str, Form(max_length=16)] = "",
    username: Annotated[str, Form(max_length=64)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    wards: Annotated[list[str] | None, Form()] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """One form endpoint for the page's actions: create, wards, role, disable, enable, reset."""
    if user.role != Role.ADMIN.value:
        return render(request, "error.html", {"message_key": "error_admin_only"}, user=user, status_code=403)
    lang = choose_language(request.session, request.query_params.get("lang"))
    form = {"username": username, "role": role, "wards": wards or [], "action": action}
    if not csrf_valid(request.session, csrf_token):
        return _page(request, db, user, error=translate(lang, "error_csrf"), form=form, status_code=403)
    now = central.clock()
    username = username.strip()
    try:
        if action == "create":
            users.create_user(
                db,
                username=username,
                role=role,
                password=password,
                wards=wards or [],
                actor=user.username,
                now=now,
            )
        elif action == "wards":
            users.set_wards(db, username, wards or [], actor=user.username, now=now)
        elif action == "role":
            users.set_role(db, username, role, actor=user.username, now=now)
        elif action == "disable":
            users.disable_user(db, username, actor=user.username, now=now)
        elif action == "enable":
            users.enable_user(db, username, actor=user.username, now=now)
        elif action == "reset":
            users.reset_password(db, username, password, actor=user.username, now=now)
        else:
            return _page(
                request, db, user, error=translate(lang, "error_bad_action"), form=form, status_code=422
            )
    except users.UserError as exc:
        db.rollback()
        code = 404 if exc.key == "error_no_user" else 409 if exc.key == "error_user_exists" else 422
        return _page(request, db, user, error=exc.text(lang), form=form, status_code=code)
    db.commit()
    if action == "reset":
        get_throttle(request).succeeded(username)  # a reset also lifts a login lock-out
    request.session[FLASH_KEY] = translate(lang, f"done_{action}").format(username=username)
    return RedirectResponse("/admin/users", status_code=status.HTTP_303_SEE_OTHER)

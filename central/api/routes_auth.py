"""Login, logout, the CSRF token, and a user's own account: password change and sessions.

Pages (``/login``, ``/logout``, ``/account/...``) and JSON (``/api/v1/...``) share the same steps: the login
throttle is asked first (a throttled attempt never reaches the password check), every failure and every
refusal is audited with the client address, and a successful login starts a server-side session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy.orm import Session

from central import audit, sessions
from central.api import web_accounts  # noqa: F401  (registers the template helpers)
from central.api.deps import (
    ApiUser,
    AuthUser,
    CentralDep,
    DbSession,
    OptionalUser,
    PageUser,
    client_address,
    end_current_session,
    login_session,
)
from central.api.routes_web import render
from central.api.schemas import LoginIn
from central.api.schemas_accounts import ErrorOut, LoginSessionOut, PasswordChangeIn, SessionInfoOut
from central.context import Central
from central.db.models import LoginSessionRow, Role, UserRow
from central.i18n import choose_language, translate
from central.security import csrf_token, csrf_valid
from central.throttle import LoginThrottle, Refusal
from central.users import UserError, change_password, check_login, user_wards

Responses = dict[int | str, dict[str, Any]]
router = APIRouter(tags=["account"])

E401: Responses = {401: {"model": ErrorOut, "description": "Not logged in, or the session ended."}}
E403_CSRF: Responses = {
    403: {"model": ErrorOut, "description": "Missing/wrong X-CSRF-Token, or a password change is due."}
}
E404: Responses = {404: {"model": ErrorOut, "description": "No such session of yours."}}
E422: Responses = {
    422: {"description": "The body does not match the schema, or the new password is refused."}
}


def get_throttle(request: Request) -> LoginThrottle:
    return cast(LoginThrottle, request.app.state.throttle)


@dataclass(frozen=True)
class LoginOutcome:
    user: UserRow | None
    refusal: Refusal | None
    disabled: bool = False


def attempt_login(
    request: Request, db: Session, central: Central, username: str, password: str
) -> LoginOutcome:
    """Throttle, check the password, audit; the caller starts the session on success."""
    throttle = get_throttle(request)
    address = client_address(request)
    target = f"user:{username[:64]}"
    now = central.clock()
    refusal = throttle.check(username, address)
    if refusal is not None:
        details = {"address": address, "scope": refusal.scope, "retry_after_s": refusal.retry_after_s}
        audit.record(db, None, "login.throttled", target, details, at=now)
        db.commit()
        return LoginOutcome(None, refusal)
    user, disabled = check_login(db, username, password)
    if user is None:
        throttle.failed(username, address)
        audit.record(db, None, "login.failed", target, {"address": address}, at=now)
        db.commit()
        return LoginOutcome(None, None)
    if disabled:
        audit.record(db, None, "login.disabled", target, {"address": address}, at=now)
        db.commit()
        return LoginOutcome(None, None, disabled=True)
    throttle.succeeded(username)
    audit.record(db, user.username, "login", target, {"address": address}, at=now)
    return LoginOutcome(user, None)


# ---------------------------------------------------------------- pages


def _safe_next(next_path: str | None) -> str:
    """Only local paths after login (no open redirect to another site)."""
    if next_path and next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path:
        return next_path
    return "/review"


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, user: OptionalUser, next: str | None = None) -> Response:
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=status.HTTP_302_FOUND)
    return render(request, "login.html", {"next": _safe_next(next), "error": None}, user=None)


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
def login_submit(
    request: Request,
    db: DbSession,
    central: CentralDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form()] = "/review",
) -> Response:
    outcome = attempt_login(request, db, central, username, password)
    safe_next = _safe_next(next)
    if outcome.user is None:
        lang = choose_language(request.session, request.query_params.get("lang"))
        refused = outcome.refusal is not None
        if outcome.refusal is not None:
            message = outcome.refusal.message(lang)
        else:
            message = translate(lang, "login_disabled" if outcome.disabled else "login_failed")
        context = {
            "next": safe_next,
            "error": message,
            "username": username,
            "self_path": f"/login?next={quote(safe_next, safe='/')}",
        }
        code = status.HTTP_429_TOO_MANY_REQUESTS if refused else status.HTTP_401_UNAUTHORIZED
        page = render(request, "login.html", context, user=None, status_code=code)
        if outcome.refusal is not None:
            page.headers["Retry-After"] = str(outcome.refusal.retry_after_s)
        return page
    target = "/account/password" if outcome.user.must_change_password else safe_next
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    login_session(request, response, db, outcome.user)
    db.commit()
    return response


@router.post("/logout", include_in_schema=False)
def logout(
    request: Request, db: DbSession, user: OptionalUser, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    if csrf_valid(request.session, csrf_token):
        end_current_session(request, response, db, user)
        db.commit()
    return response


@router.get("/account/password", response_class=HTMLResponse, include_in_schema=False)
def password_page(request: Request, user: PageUser) -> HTMLResponse:
    return render(request, "account_password.html", {"error": None, "done": False}, user=user)


@router.post("/account/password", response_class=HTMLResponse, include_in_schema=False)
def password_submit(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    repeat_password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    lang = choose_language(request.session, request.query_params.get("lang"))
    if not csrf_valid(request.session, csrf_token):
        context = {"error": translate(lang, "error_csrf"), "done": False}
        return render(request, "account_password.html", context, user=user, status_code=403)
    if new_password != repeat_password:
        context = {"error": translate(lang, "error_password_repeat"), "done": False}
        return render(request, "account_password.html", context, user=user, status_code=422)
    row = db.get(UserRow, user.username)
    assert row is not None  # page_user just read it
    try:
        ended = change_password(
            db,
            row,
            current=current_password,
            new=new_password,
            now=central.clock(),
            keep_session=user.session_id,
        )
    except UserError as exc:
        db.rollback()
        context = {"error": exc.text(lang), "done": False}
        return render(request, "account_password.html", context, user=user, status_code=422)
    db.commit()
    request.state.auth_user = None
    fresh = AuthUser(user.username, user.role, user.session_id, user.wards, must_change_password=False)
    return render(request, "account_password.html", {"error": None, "done": True, "ended": ended}, user=fresh)


@router.get("/account/sessions", response_class=HTMLResponse, include_in_schema=False)
def sessions_page(request: Request, user: PageUser, db: DbSession, central: CentralDep) -> HTMLResponse:
    rows = sessions.live_sessions(db, user.username, now=central.clock())
    return render(request, "account_sessions.html", {"rows": rows, "current_id": user.session_id}, user=user)


@router.post("/account/sessions/{session_id}/end", include_in_schema=False)
def sessions_end_submit(
    session_id: int,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    if not csrf_valid(request.session, csrf_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "form expired; reload the page")
    _end_own_session(db, central, user, session_id)
    db.commit()
    if session_id == user.session_id:
        response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
        end_current_session(request, response, db, user)
        return response
    return RedirectResponse("/account/sessions", status_code=status.HTTP_303_SEE_OTHER)


def _end_own_session(db: Session, central: Central, user: AuthUser, session_id: int) -> None:
    row = db.get(LoginSessionRow, session_id)
    if row is None or row.username != user.username or row.ended_at is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live session {session_id} of yours")
    sessions.end(db, row, now=central.clock(), reason=sessions.EndReason.ENDED_BY_USER, actor=user.username)


# ---------------------------------------------------------------- JSON


def _session_info(request: Request, user: AuthUser) -> SessionInfoOut:
    return SessionInfoOut(
        username=user.username,
        role=Role(user.role),
        wards=sorted(user.wards),
        must_change_password=user.must_change_password,
        csrf_token=csrf_token(request.session),
    )


@router.post(
    "/api/v1/login",
    response_model=SessionInfoOut,
    responses={
        401: {"model": ErrorOut, "description": "Wrong username or password (or the account is disabled)."},
        429: {
            "model": ErrorOut,
            "description": "Too many failed logins for the account or from the address.",
        },
        **E422,
    },
)
def api_login(
    body: LoginIn, request: Request, response: Response, db: DbSession, central: CentralDep
) -> SessionInfoOut | JSONResponse:
    """Check a username/password; sets the session cookie and returns the CSRF token."""
    outcome = attempt_login(request, db, central, body.username, body.password)
    if outcome.refusal is not None:
        return JSONResponse(
            {"detail": outcome.refusal.message("en")},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(outcome.refusal.retry_after_s)},
        )
    if outcome.user is None:
        detail = (
            "this account is disabled; ask an administrator"
            if outcome.disabled
            else "wrong username or password"
        )
        return JSONResponse({"detail": detail}, status_code=status.HTTP_401_UNAUTHORIZED)
    new = login_session(request, response, db, outcome.user)
    db.commit()
    user = AuthUser(
        outcome.user.username,
        outcome.user.role,
        new.row.id,
        frozenset(user_wards(db, outcome.user.username)),
        outcome.user.must_change_password,
    )
    return _session_info(request, user)


@router.post("/api/v1/logout", status_code=status.HTTP_204_NO_CONTENT, responses={**E401, **E403_CSRF})
def api_logout(request: Request, user: ApiUser, db: DbSession) -> Response:
    """End this session server-side; the cookie stops working at once."""
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    end_current_session(request, response, db, user)
    db.commit()
    return response


@router.get("/api/v1/session", response_model=SessionInfoOut, responses=E401)
def api_session(request: Request, user: ApiUser) -> SessionInfoOut:
    """Who is logged in, and the CSRF token for state-changing requests."""
    return _session_info(request, user)


@router.get("/api/v1/account/sessions", response_model=list[LoginSessionOut], responses=E401)
def api_sessions(user: ApiUser, db: DbSession, central: CentralDep) -> list[LoginSessionOut]:
    """The caller's live sessions, newest first."""
    rows = sessions.live_sessions(db, user.username, now=central.clock())
    return [LoginSessionOut.of(row, user.session_id) for row in rows]


@router.delete(
    "/api/v1/account/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**E401, **E403_CSRF, **E404},
)
def api_end_session(session_id: int, user: ApiUser, db: DbSession, central: CentralDep) -> Response:
    """End one of the caller's own sessions (e.g. a phone left logged in)."""
    _end_own_session(db, central, user, session_id)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/v1/account/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**E401, **E403_CSRF, **E422},
)
def api_change_password(
    body: PasswordChangeIn, user: ApiUser, db: DbSession, central: CentralDep
) -> Response:
    """Change the caller's password; every other session of theirs ends."""
    row = db.get(UserRow, user.username)
    assert row is not None
    try:
        change_password(
            db,
            row,
            current=body.current_password,
            new=body.new_password,
            now=central.clock(),
            keep_session=user.session_id,
        )
    except UserError as exc:
        db.rollback()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message) from None
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)

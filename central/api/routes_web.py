"""Server-rendered pages: login, the review queue, an event's detail and the decision form.

Forms post back with a per-session CSRF token (on top of the ``SameSite=Lax`` cookie), because a decision on a
violation must come from the officer who is looking at the page, not from another site in the same browser.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import URL

from central import audit, originals, review
from central.api.deps import AuthUser, CentralDep, DbSession, OptionalUser, PageUser, login_session
from central.api.routes_evidence import original_response
from central.db.models import DecisionKind, EventRow, ReviewStatus
from central.i18n import choose_language, translate, translator
from central.security import CSRF_FORM_FIELD, csrf_token, csrf_valid
from central.users import authenticate

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

router = APIRouter(include_in_schema=False)
FLASH_KEY = "flash"


def format_dt(value: datetime | None) -> str:
    """Timestamps as stored: UTC, to the second, labelled (no guessing of the viewer's zone)."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float | None) -> str:
    """``75.2`` -> ``1 m 15 s``; empty when unknown."""
    if seconds is None:
        return ""
    total = round(seconds)
    if total < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.filters["dt"] = format_dt
templates.env.filters["duration"] = format_duration
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    user: AuthUser | None,
    status_code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    """Render a page with the language, translator, user and CSRF token every template needs."""
    lang = choose_language(request.session, request.query_params.get("lang"))
    page_context = {
        "t": translator(lang),
        "lang": lang,
        "self_path": _self_path(request),
        "user": user,
        "csrf_field": CSRF_FORM_FIELD,
        "csrf_token": csrf_token(request.session),
        **context,
    }
    return templates.TemplateResponse(request, name, page_context, status_code=status_code)


def _self_path(request: Request) -> str:
    """This page's local path and query, for links back to it (the language switch).

    Relative, so it stays right behind a reverse proxy; after a form post (an error shown on the page) it is
    the page the form belongs to, since following a link to a POST-only path would answer 405.
    """
    if request.method in ("GET", "HEAD"):
        query = request.url.query
        return request.url.path + (f"?{query}" if query else "")
    return request.url.path.removesuffix("/decision")


def _with_lang(path: str, lang: str) -> str:
    """``path`` with its ``lang`` query parameter set to ``lang`` (other parameters kept)."""
    url = URL(path).include_query_params(lang=lang)
    return url.path + (f"?{url.query}" if url.query else "")


templates.env.globals["with_lang"] = _with_lang


def _safe_next(next_path: str | None) -> str:
    """Only local paths after login (no open redirect to another site)."""
    if next_path and next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path:
        return next_path
    return "/review"


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/review", status_code=status.HTTP_302_FOUND)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: OptionalUser, next: str | None = None) -> Response:
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=status.HTTP_302_FOUND)
    return render(request, "login.html", {"next": _safe_next(next), "error": None}, user=None)


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    db: DbSession,
    central: CentralDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form()] = "/review",
) -> Response:
    user = authenticate(db, username, password)
    if user is None:
        audit.record(db, at=central.clock(), username=None, action="login.failed", target=f"user:{username}")
        db.commit()
        lang = choose_language(request.session, None)
        safe_next = _safe_next(next)
        context = {
            "next": safe_next,
            "error": translate(lang, "login_failed"),
            "username": username,
            "self_path": f"/login?next={quote(safe_next, safe='/')}",
        }
        return render(request, "login.html", context, user=None, status_code=status.HTTP_401_UNAUTHORIZED)
    audit.record(db, at=central.clock(), username=user.username, action="login", target=f"user:{username}")
    db.commit()
    login_session(request, user)
    return RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str | None, Form()] = None) -> Response:
    if csrf_valid(request.session, csrf_token):
        request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    user: PageUser,
    db: DbSession,
    status_: Annotated[str | None, Query(alias="status")] = None,
    type_: Annotated[str | None, Query(alias="type")] = None,
) -> HTMLResponse:
    error = None
    try:
        status_filter, type_filter, limit = review.parse_filters(status_, type_, None)
    except review.ReviewError as exc:
        error = exc.key
        status_filter, type_filter, limit = ReviewStatus.PENDING.value, None, review.DEFAULT_LIMIT
    rows = review.list_events(db, status_filter, type_filter, limit)
    stored = review.stored_evidence(db, rows)
    items = [
        {"event": row, "snapshot": _stored_snapshot(row, stored), "escalated": _escalated(row)}
        for row in rows
    ]
    flash = request.session.pop(FLASH_KEY, None)
    context = {
        "items": items,
        "flash": flash if isinstance(flash, dict) else None,
        "status_filter": status_filter,
        "type_filter": type_filter or "",
        "statuses": review.STATUS_FILTERS,
        "event_types": review.EVENT_TYPES,
        "error": error,
    }
    code = status.HTTP_422_UNPROCESSABLE_CONTENT if error else status.HTTP_200_OK
    return render(request, "review.html", context, user=user, status_code=code)


def _escalated(row: EventRow) -> bool:
    """Pending again because someone escalated it (the queue marks those for a senior officer)."""
    return bool(row.decisions) and row.decisions[-1].decision == DecisionKind.ESCALATE.value


def _stored_snapshot(row: EventRow, stored: set[str]) -> str | None:
    ref = review.snapshot_ref(row)
    return ref["sha256"] if ref is not None and ref["sha256"] in stored else None


def _event_page(
    request: Request,
    db: DbSession,
    user: AuthUser,
    row: EventRow,
    *,
    error: str | None,
    status_code: int,
    reason: str = "",
) -> HTMLResponse:
    stored = review.stored_evidence(db, [row])
    context = {
        "event": row,
        "snapshot": _stored_snapshot(row, stored),
        "stored": stored,
        "error": error,
        "reason": reason,  # what the officer typed, kept when the form comes back with an error
        "latest": row.decisions[-1] if row.decisions else None,
        "can_decide": user.role in review.DECIDER_ROLES,
        "evidence_refs": originals.visible_refs(row.evidence, user.role),
        "originals": [
            ref
            for ref in originals.visible_refs(row.evidence, user.role)
            if originals.is_restricted_kind(ref.get("kind"))
        ],
    }
    return render(request, "event.html", context, user=user, status_code=status_code)


def _not_found(request: Request, user: AuthUser) -> HTMLResponse:
    return render(request, "error.html", {"message_key": "not_found"}, user=user, status_code=404)


@router.get("/events/{event_id}", response_class=HTMLResponse)
def event_page(event_id: str, request: Request, user: PageUser, db: DbSession) -> HTMLResponse:
    row = db.get(EventRow, event_id)
    if row is None:
        return _not_found(request, user)
    return _event_page(request, db, user, row, error=None, status_code=status.HTTP_200_OK)


@router.post("/events/{event_id}/decision", response_class=HTMLResponse)
def decision_submit(
    event_id: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    decision: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=review.MAX_REASON_LENGTH * 2)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    row = db.get(EventRow, event_id)
    if row is None:
        return _not_found(request, user)
    if not csrf_valid(request.session, csrf_token):
        code = status.HTTP_403_FORBIDDEN
        return _event_page(request, db, user, row, error="error_csrf", status_code=code, reason=reason)
    try:
        review.decide(
            db,
            row,
            decision=decision,
            reason=reason,
            username=user.username,
            role=user.role,
            now=central.clock(),
        )
    except review.ReviewError as exc:
        db.rollback()
        code = (
            status.HTTP_403_FORBIDDEN
            if exc.key == "error_forbidden"
            else status.HTTP_422_UNPROCESSABLE_CONTENT
        )
        return _event_page(request, db, user, row, error=exc.key, status_code=code, reason=reason)
    db.commit()
    # Shown once on the queue, so the officer sees that the decision was stored and on which event.
    request.session[FLASH_KEY] = {
        "decision": decision,
        "event_id": row.event_id,
        "type": row.type,
        "camera": row.camera_id,
        "zone": row.zone_id,
    }
    return RedirectResponse("/review", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/events/{event_id}/originals/{sha256}", response_model=None)
def original_submit(
    event_id: str,
    sha256: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    reason: Annotated[str, Form(max_length=originals.MAX_REASON_LENGTH * 2)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """The unblurred original, for a privileged user who gave a reason; the view is an audit row."""
    row = db.get(EventRow, event_id)
    if row is None:
        return _not_found(request, user)
    if not csrf_valid(request.session, csrf_token):
        return _event_page(request, db, user, row, error="error_csrf", status_code=status.HTTP_403_FORBIDDEN)
    try:
        found = originals.open_original(
            db, row, sha256, username=user.username, role=user.role, reason=reason, now=central.clock()
        )
    except originals.OriginalError as exc:
        db.rollback()
        if exc.status_code == status.HTTP_404_NOT_FOUND:
            return _not_found(request, user)
        return _event_page(request, db, user, row, error=exc.key, status_code=exc.status_code)
    if not central.evidence.path_of(sha256).is_file():
        db.rollback()
        return _not_found(request, user)
    db.commit()
    return original_response(central, found)

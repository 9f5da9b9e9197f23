"""Server-rendered pages: login, the review queue, an event's detail and the decision form.

Forms post back with a per-session CSRF token (on top of the ``SameSite=Lax`` cookie), because a decision on a
violation must come from the officer who is looking at the page, not from another site in the same browser.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup
from starlette.datastructures import URL

from central.api.deps import AuthUser
from central.i18n import choose_language, translator
from central.security import CSRF_FORM_FIELD, csrf_token
from central.timefmt import PageFormat

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

router = APIRouter(include_in_schema=False)
FLASH_KEY = "flash"


@pass_context
def format_dt(context: Any, value: datetime | None) -> Markup | str:
    """Timestamps in the deployment's zone, with the UTC value on hover (``fmt`` comes from ``render``)."""
    fmt = context.get("fmt")
    if isinstance(fmt, PageFormat):
        return fmt.dt(value)
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
    t = translator(lang)
    tz = request.app.state.central.settings.timezone
    page_context = {
        "t": t,
        "fmt": PageFormat(tz, lang, t),  # local time (UTC on hover), Babel numbers, human names of raw ids
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


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/review", status_code=status.HTTP_302_FOUND)


# The queue, the event page, claims and decisions: central/api/routes_review.py.

"""Template helpers of the account and audit pages: local times and query links.

Registered on the shared Jinja environment of ``central.api.routes_web`` at import. Times are shown in the
deployment's zone (``STREETWATCH_TIMEZONE``, Asia/Ho_Chi_Minh by default) with UTC in the ``title``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import pass_context
from jinja2.runtime import Context
from starlette.datastructures import URL

from central.api.routes_web import templates

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"


def deployment_zone(context: Context) -> ZoneInfo:
    request = context.get("request")
    name = DEFAULT_ZONE
    if request is not None:
        name = getattr(request.app.state.central.settings, "timezone", DEFAULT_ZONE)
    return ZoneInfo(name)


@pass_context
def zoned(context: Context, value: datetime | None) -> str:
    """``2026-12-06 22:15:03`` in the deployment's zone (empty for None)."""
    if value is None:
        return ""
    return value.astimezone(deployment_zone(context)).strftime("%Y-%m-%d %H:%M:%S")


def utc(value: datetime | None) -> str:
    """The stored UTC value, labelled (for ``title`` hovers)."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def with_query(path: str, **params: Any) -> str:
    """``path`` with the given query parameters set (others kept)."""
    url = URL(path).include_query_params(**params)
    return url.path + (f"?{url.query}" if url.query else "")


templates.env.filters["zoned"] = zoned
templates.env.filters["utc"] = utc
templates.env.globals["with_query"] = with_query

"""Statistics page: per ward, camera, rule type and day, with server-rendered SVG charts (vi/en)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from central import stats
from central.api.deps import CentralDep, DbSession, PageUser
from central.api.routes_web import render
from central.scope import scope_of

router = APIRouter(include_in_schema=False)


@router.get("/stats", response_class=HTMLResponse)
def stats_page(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    days: Annotated[int, Query(ge=1, le=stats.MAX_DAYS)] = 14,
) -> HTMLResponse:
    now = central.clock()
    since = now - timedelta(days=days)
    result = stats.compute(
        db, scope_of(db, user.username, user.role), since=since, until=now, tz=central.settings.timezone
    )
    bars, top = stats.day_bars(result.by_day)
    context = {"stats": result, "bars": bars, "top": top, "days": days, "since": since, "until": now}
    return render(request, "stats.html", context, user=user)

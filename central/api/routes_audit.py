"""The audit log for admins and supervisors: a filtered page with local times, JSON, and chain verification."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from central import audit, audit_query
from central.api import web_accounts  # noqa: F401  (registers the template helpers)
from central.api.deps import ApiUser, AuthUser, CentralDep, DbSession, PageUser
from central.api.routes_web import render
from central.api.schemas_accounts import AuditOut, AuditPageOut, AuditVerifyOut, ErrorOut
from central.db.models import Role

Responses = dict[int | str, dict[str, Any]]
router = APIRouter(tags=["audit"])

AUDIT_ROLES = frozenset({Role.ADMIN.value, Role.SUPERVISOR.value})
RESPONSES: Responses = {
    401: {"model": ErrorOut, "description": "Not logged in."},
    403: {"model": ErrorOut, "description": "Only admins and supervisors read the audit log."},
    422: {"description": "A filter is malformed (e.g. a date that is not YYYY-MM-DD)."},
}
ACTION_PATTERN = r"^[a-z0-9_.]{1,64}$"


def _zone(central: CentralDep) -> ZoneInfo:
    return ZoneInfo(getattr(central.settings, "timezone", "Asia/Ho_Chi_Minh"))


def _require(user: AuthUser) -> None:
    if user.role not in AUDIT_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the audit log is for admins and supervisors")


def _wards(user: AuthUser) -> frozenset[str] | None:
    """Admins read every row; supervisors the rows of their wards."""
    return None if user.role == Role.ADMIN.value else user.wards


@router.get("/api/v1/audit", response_model=AuditPageOut, responses=RESPONSES)
def api_audit(
    user: ApiUser,
    db: DbSession,
    central: CentralDep,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[
        str | None, Query(pattern=ACTION_PATTERN, description="Exact action, or a prefix ending in '.'.")
    ] = None,
    target: Annotated[str | None, Query(max_length=255, description="Substring of the target.")] = None,
    day_from: Annotated[date | None, Query(alias="from", description="First local day (YYYY-MM-DD).")] = None,
    day_to: Annotated[date | None, Query(alias="to", description="Last local day (YYYY-MM-DD).")] = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=audit_query.MAX_PAGE_SIZE)] = audit_query.PAGE_SIZE,
) -> AuditPageOut:
    """Audit rows newest first, filtered; page with ``before_id``. Supervisors read their wards' rows."""
    _require(user)
    flt = audit_query.AuditFilter(actor or None, action or None, target or None, day_from, day_to)
    rows, next_id = audit_query.page(
        db, flt, zone=_zone(central), wards=_wards(user), before_id=before_id, limit=limit
    )
    return AuditPageOut(rows=[AuditOut.of(row) for row in rows], next_before_id=next_id)


@router.get("/api/v1/audit/verify", response_model=AuditVerifyOut, responses=RESPONSES)
def api_audit_verify(user: ApiUser, db: DbSession) -> AuditVerifyOut:
    """Walk the hash chain; names the first row that does not match (admins)."""
    if user.role != Role.ADMIN.value:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "verifying the chain is for admins")
    result = audit.verify(db)
    broken = result.first_break
    return AuditVerifyOut(
        ok=result.ok,
        rows=result.rows,
        first_broken_id=broken.row_id if broken else None,
        reason=broken.reason if broken else None,
    )


def _parse_day(value: str | None) -> tuple[date | None, bool]:
    if not value:
        return None, True
    try:
        return date.fromisoformat(value), True
    except ValueError:
        return None, False


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    actor: Annotated[str, Query(max_length=64)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    target: Annotated[str, Query(max_length=255)] = "",
    day_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    day_to: Annotated[str, Query(alias="to", max_length=10)] = "",
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    if user.role not in AUDIT_ROLES:
        return render(request, "error.html", {"message_key": "error_audit_roles"}, user=user, status_code=403)
    start, ok_from = _parse_day(day_from)
    end, ok_to = _parse_day(day_to)
    zone = _zone(central)
    flt = audit_query.AuditFilter(
        actor.strip() or None, action.strip() or None, target.strip() or None, start, end
    )
    rows, next_id = audit_query.page(db, flt, zone=zone, wards=_wards(user), before_id=before_id)
    context = {
        "rows": rows,
        "next_id": next_id,
        "zone": zone,
        "filters": {"actor": actor, "action": action, "target": target, "from": day_from, "to": day_to},
        "actions": audit_query.actions(db),
        "error": None if ok_from and ok_to else "error_bad_date",
    }
    code = status.HTTP_200_OK if ok_from and ok_to else status.HTTP_422_UNPROCESSABLE_CONTENT
    return render(request, "audit.html", context, user=user, status_code=code)

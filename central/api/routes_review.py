"""Pages of the review: the queue/search with keyset pages and live updates, the event page with its claim,
versioned decision form, supervisor reopen and post-decision changes.

Everything is scoped to the user's wards (``central.scope``); another ward's event answers the same 404 page as
an unknown id. A refused decision re-renders the event page with the reason and the right status code
(409 stale/claimed/decided, 403 role, 422 input), so the officer sees what happened and what to do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select

from central import originals, queue, review
from central.api.deps import AuthUser, CentralDep, DbSession, PageUser
from central.api.routes_evidence import has_bytes, original_response
from central.api.routes_web import FLASH_KEY, render
from central.db.models import EventRow, WardRow
from central.db.wards import CaseEventRow, CaseRow, EventHistoryRow
from central.scope import Scope, event_in_scope, scope_of
from central.security import csrf_valid
from central.timefmt import local_input, parse_local

router = APIRouter(include_in_schema=False)

_CODES = {403: status.HTTP_403_FORBIDDEN, 409: status.HTTP_409_CONFLICT}


def _scope(db: DbSession, user: AuthUser) -> Scope:
    return scope_of(db, user.username, user.role)


def _wards(db: DbSession, scope: Scope) -> list[WardRow]:
    query = select(WardRow).order_by(WardRow.ward_id)
    if not scope.everything:
        query = query.where(WardRow.ward_id.in_(sorted(scope.wards)))
    return list(db.scalars(query))


def _read_filters(user: AuthUser, tz: str, params: dict[str, str | None]) -> tuple[queue.Filters, str | None]:
    """Filters from the query string; on a bad value: the default filters and the error key."""
    try:
        since = parse_local(params.get("since"), tz)
        until = parse_local(params.get("until"), tz)
    except ValueError:
        return queue.parse_filters(role=user.role), "error_bad_time"
    try:
        return (
            queue.parse_filters(
                role=user.role,
                status=params.get("status"),
                ward=params.get("ward"),
                camera=params.get("camera"),
                zone=params.get("zone"),
                type_=params.get("type"),
                label=params.get("label"),
                claimed_by=params.get("claimed_by"),
                since=since,
                until=until,
                order=params.get("order"),
            ),
            None,
        )
    except review.ReviewError as exc:
        return queue.parse_filters(role=user.role), exc.key


def _query_of(f: queue.Filters, tz: str, **extra: str) -> str:
    params = f.query_params()
    if f.since is not None:
        params["since"] = local_input(f.since, tz)
    if f.until is not None:
        params["until"] = local_input(f.until, tz)
    params.update(extra)
    return urlencode(params)


@router.get("/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    tz = central.settings.timezone
    raw = {k: request.query_params.get(k) for k in queue.QUERY_KEYS}
    filters, error = _read_filters(user, tz, raw)
    scope = _scope(db, user)
    try:
        page = queue.list_page(db, scope, filters, cursor=cursor)
    except review.ReviewError as exc:
        error = exc.key
        page = queue.list_page(db, scope, filters)
    stored = review.stored_evidence(db, page.rows)
    now = central.clock()
    groups = [
        {
            "event": g.head,
            "count": g.count,
            "snapshot": _stored_snapshot(g.head, stored),
            "claim": review.active_claim(g.head, now),
            "all_link": "/review?" + _query_of(queue.incident_filters(g, filters), tz)
            if g.count > 1
            else None,
        }
        for g in page.groups
    ]
    flash = request.session.pop(FLASH_KEY, None)
    context = {
        "groups": groups,
        "rows": len(page.rows),
        "filters": filters,
        "since_local": local_input(filters.since, tz),
        "until_local": local_input(filters.until, tz),
        "next_link": "/review?" + _query_of(filters, tz, cursor=page.next_cursor)
        if page.next_cursor
        else None,
        "first_link": "/review?" + _query_of(filters, tz) if cursor else None,
        "updates_link": "/review/updates?" + _query_of(filters, tz, after=now.isoformat()),
        "flash": flash if isinstance(flash, dict) else None,
        "statuses": review.STATUS_FILTERS,
        "event_types": review.EVENT_TYPES,
        "wards": _wards(db, scope),
        "labels": ("person", "bicycle", "car", "motorcycle", "bus", "truck"),
        "timezone": tz,
        "error": error,
    }
    code = status.HTTP_422_UNPROCESSABLE_CONTENT if error else status.HTTP_200_OK
    return render(request, "review.html", context, user=user, status_code=code)


@router.get("/review/updates")
def review_updates(
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    after: Annotated[datetime, Query()],
) -> JSONResponse:
    """How many events matching the queue's filters arrived after ``after`` (the live "new events" badge)."""
    tz = central.settings.timezone
    raw = {k: request.query_params.get(k) for k in queue.QUERY_KEYS}
    filters, error = _read_filters(user, tz, raw)
    if error or after.tzinfo is None:
        return JSONResponse({"detail": error or "after needs a UTC offset"}, status_code=422)
    count = queue.count_newer(db, _scope(db, user), filters, after)
    return JSONResponse({"new": count}, headers={"Cache-Control": "no-store"})


def _stored_snapshot(row: EventRow, stored: set[str]) -> str | None:
    ref = review.snapshot_ref(row)
    return ref["sha256"] if ref is not None and ref["sha256"] in stored else None


def _changes(db: DbSession, row: EventRow) -> list[dict[str, Any]]:
    """Differences between the decided facts and the latest message kept after the decision."""
    if not row.changed_after_decision:
        return []
    latest = db.scalars(
        select(EventHistoryRow)
        .where(EventHistoryRow.event_id == row.event_id)
        .order_by(EventHistoryRow.id.desc())
        .limit(1)
    ).first()
    if latest is None:
        return []
    out: list[dict[str, Any]] = []
    if latest.phase != row.phase:
        out.append({"field": "phase", "before": row.phase, "after": latest.phase, "kind": "phase"})
    if latest.ended_at != row.ended_at:
        out.append({"field": "ended", "before": row.ended_at, "after": latest.ended_at, "kind": "time"})
    before_labels = ", ".join(o.get("label", "") for o in row.objects)
    after_labels = ", ".join(o.get("label", "") for o in latest.objects)
    if before_labels != after_labels:
        out.append({"field": "objects", "before": row.objects, "after": latest.objects, "kind": "objects"})
    for name in sorted(set(row.measurements) | set(latest.measurements)):
        before, after = row.measurements.get(name), latest.measurements.get(name)
        if before != after:
            out.append({"field": name, "before": before, "after": after, "kind": "measure"})
    return out


def _event_page(
    request: Request,
    db: DbSession,
    central: CentralDep,
    user: AuthUser,
    row: EventRow,
    *,
    error: str | None = None,
    status_code: int = status.HTTP_200_OK,
    reason: str = "",
) -> HTMLResponse:
    stored = review.stored_evidence(db, [row])
    now = central.clock()
    holder = review.active_claim(row, now)
    scope = _scope(db, user)
    cases = list(
        db.scalars(
            select(CaseRow).where(scope.cases(), CaseRow.ward_id == row.ward_id).order_by(CaseRow.id.desc())
        )
    )
    in_cases = set(db.scalars(select(CaseEventRow.case_id).where(CaseEventRow.event_id == row.event_id)))
    context = {
        "event": row,
        "snapshot": _stored_snapshot(row, stored),
        "stored": stored,
        "error": error,
        "reason": reason,
        "latest": row.decisions[-1] if row.decisions else None,
        "can_decide": user.role in review.DECIDER_ROLES and row.review_status not in review.DECIDED,
        "can_reopen": user.role in review.REOPEN_ROLES and row.review_status in review.DECIDED,
        "holder": holder,
        "mine": holder == user.username,
        "changes": _changes(db, row),
        "cases": [c for c in cases if c.id not in in_cases],
        "in_cases": [c for c in cases if c.id in in_cases],
        "evidence_refs": originals.visible_refs(row.evidence, user.role),
        "originals": [
            ref
            for ref in originals.visible_refs(row.evidence, user.role)
            if originals.is_restricted_kind(ref.get("kind"))
        ],
    }
    return render(request, "event.html", context, user=user, status_code=status_code)


def not_found(request: Request, user: AuthUser) -> HTMLResponse:
    return render(request, "error.html", {"message_key": "not_found"}, user=user, status_code=404)


@router.get("/events/{event_id}", response_class=HTMLResponse)
def event_page(
    event_id: str, request: Request, user: PageUser, db: DbSession, central: CentralDep
) -> HTMLResponse:
    row = event_in_scope(db, _scope(db, user), event_id)
    if row is None:
        return not_found(request, user)
    return _event_page(request, db, central, user, row)


def _refused(
    request: Request,
    db: DbSession,
    central: CentralDep,
    user: AuthUser,
    row: EventRow,
    exc: review.ReviewError,
    reason: str = "",
) -> HTMLResponse:
    db.rollback()
    db.refresh(row)
    code = _CODES.get(exc.status, status.HTTP_422_UNPROCESSABLE_CONTENT)
    return _event_page(request, db, central, user, row, error=exc.key, status_code=code, reason=reason)


def _csrf_refused(
    request: Request, db: DbSession, central: CentralDep, user: AuthUser, row: EventRow, token: str | None
) -> HTMLResponse | None:
    if csrf_valid(request.session, token):
        return None
    return _event_page(request, db, central, user, row, error="error_csrf", status_code=403)


@router.post("/events/{event_id}/claim", response_class=HTMLResponse)
def claim_submit(
    event_id: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    row = event_in_scope(db, _scope(db, user), event_id)
    if row is None:
        return not_found(request, user)
    refused = _csrf_refused(request, db, central, user, row, csrf_token)
    if refused is not None:
        return refused
    try:
        review.claim(
            db,
            row,
            username=user.username,
            role=user.role,
            now=central.clock(),
            lease_s=central.settings.claim_lease_s,
        )
    except review.ReviewError as exc:
        return _refused(request, db, central, user, row, exc)
    db.commit()
    return RedirectResponse(f"/events/{row.event_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/events/{event_id}/release", response_class=HTMLResponse)
def release_submit(
    event_id: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    row = event_in_scope(db, _scope(db, user), event_id)
    if row is None:
        return not_found(request, user)
    refused = _csrf_refused(request, db, central, user, row, csrf_token)
    if refused is not None:
        return refused
    review.release(db, row, username=user.username, now=central.clock())
    db.commit()
    return RedirectResponse(f"/events/{row.event_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/events/{event_id}/decision", response_class=HTMLResponse)
def decision_submit(
    event_id: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    decision: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=review.MAX_REASON_LENGTH * 2)] = "",
    version: Annotated[int | None, Form()] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    row = event_in_scope(db, _scope(db, user), event_id)
    if row is None:
        return not_found(request, user)
    refused = _csrf_refused(request, db, central, user, row, csrf_token)
    if refused is not None:
        return refused
    try:
        review.decide(
            db,
            row,
            decision=decision,
            reason=reason,
            username=user.username,
            role=user.role,
            version=version,
            now=central.clock(),
        )
    except review.ReviewError as exc:
        return _refused(request, db, central, user, row, exc, reason)
    db.commit()
    request.session[FLASH_KEY] = {
        "decision": decision,
        "event_id": row.event_id,
        "type": row.type,
        "camera": row.camera_id,
        "zone": row.zone_id,
    }
    return RedirectResponse("/review", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/events/{event_id}/reopen", response_class=HTMLResponse)
def reopen_submit(
    event_id: str,
    request: Request,
    user: PageUser,
    db: DbSession,
    central: CentralDep,
    reason: Annotated[str, Form(max_length=review.MAX_REASON_LENGTH * 2)] = "",
    version: Annotated[int | None, Form()] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    row = event_in_scope(db, _scope(db, user), event_id)
    if row is None:
        return not_found(request, user)
    refused = _csrf_refused(request, db, central, user, row, csrf_token)
    if refused is not None:
        return refused
    try:
        review.reopen(
            db,
            row,
            reason=reason,
            username=user.username,
            role=user.role,
            version=version,
            now=central.clock(),
        )
    except review.ReviewError as exc:
        return _refused(request, db, central, user, row, exc, reason)
    db.commit()
    return RedirectResponse(f"/events/{row.event_id}", status_code=status.HTTP_303_SEE_OTHER)


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
    """The unblurred original, for a privileged user who gave a reason, in that user's wards; the view is audited."""
    row = event_in_scope(db, _scope(db, user), event_id)
    if row is None:
        return not_found(request, user)
    if not csrf_valid(request.session, csrf_token):
        return _event_page(request, db, central, user, row, error="error_csrf", status_code=403)
    try:
        found = originals.open_original(
            db, row, sha256, username=user.username, role=user.role, reason=reason, now=central.clock()
        )
    except originals.OriginalError as exc:
        db.rollback()
        if exc.status_code == status.HTTP_404_NOT_FOUND:
            return not_found(request, user)
        return _event_page(request, db, central, user, row, error=exc.key, status_code=exc.status_code)
    if not has_bytes(central, sha256):
        db.rollback()
        return not_found(request, user)
    db.commit()
    return original_response(central, found)

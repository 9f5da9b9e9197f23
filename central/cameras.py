"""The ward and camera registry: wards, and which camera (node, camera id) stands in which ward.

Cameras enter the registry from an enrolled node's accepted config (name from the config) and from the first
event a camera sends; an admin places them in a ward and adds a location and notes (e.g. the household that
hosts the camera). Placing a camera moves its events to that ward, since a camera in the wrong ward means its
events went to the wrong officers. Every change is audited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central import audit
from central.db.models import EventRow, WardRow
from central.db.wards import CameraRow
from central.review import ReviewError

_WARD_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def add_ward(session: Session, ward_id: str, name: str, *, actor: str | None, now: datetime) -> WardRow:
    if not _WARD_ID.match(ward_id):
        raise ReviewError("error_bad_ward", "ward id: 1-64 lower-case letters, digits, '.', '_' or '-'")
    if session.get(WardRow, ward_id) is not None:
        raise ReviewError("error_ward_exists", f"ward {ward_id!r} already exists", 409)
    ward = WardRow(ward_id=ward_id, name=name.strip()[:128] or ward_id, created_at=now)
    session.add(ward)
    audit.record(session, actor, "ward.create", f"ward:{ward_id}", {"name": ward.name}, at=now)
    return ward


def sync_from_config(
    session: Session, node_id: str, cameras: Iterable[tuple[str, str]], *, now: datetime
) -> None:
    """Register a node's configured cameras (id, name); names fill in, admin placements stay."""
    for camera_id, name in cameras:
        row = session.get(CameraRow, (node_id, camera_id))
        if row is None:
            session.add(
                CameraRow(
                    node_id=node_id,
                    camera_id=camera_id,
                    name=name[:128],
                    ward_id=None,
                    location="",
                    notes="",
                    updated_at=now,
                    updated_by=None,
                )
            )
        elif name and not row.name:
            row.name = name[:128]
            row.updated_at = now


def update_camera(
    session: Session,
    node_id: str,
    camera_id: str,
    *,
    name: str,
    ward_id: str | None,
    location: str,
    notes: str,
    actor: str,
    now: datetime,
) -> int:
    """Edit a camera's registry entry; returns how many events moved to the new ward."""
    row = session.get(CameraRow, (node_id, camera_id))
    if row is None:
        raise ReviewError("not_found", f"no camera {node_id}/{camera_id}", 404)
    ward_id = ward_id or None
    if ward_id is not None and session.get(WardRow, ward_id) is None:
        raise ReviewError("error_unknown_ward", f"unknown ward {ward_id!r}")
    before = {"name": row.name, "ward": row.ward_id, "location": row.location, "notes": row.notes}
    row.name, row.location, row.notes = name.strip()[:128], location.strip()[:255], notes.strip()[:4000]
    moved = 0
    if ward_id != row.ward_id:
        row.ward_id = ward_id
        result = session.execute(
            update(EventRow)
            .where(EventRow.node_id == node_id, EventRow.camera_id == camera_id)
            .values(ward_id=ward_id)
            .execution_options(synchronize_session=False)
        )
        moved = int(result.rowcount or 0)  # type: ignore[attr-defined]
    row.updated_at, row.updated_by = now, actor
    after = {"name": row.name, "ward": row.ward_id, "location": row.location, "notes": row.notes}
    audit.record(
        session,
        actor,
        "camera.update",
        f"camera:{node_id}/{camera_id}",
        {"before": before, "after": after, "events_moved": moved},
        at=now,
    )
    return moved


def list_cameras(session: Session) -> list[CameraRow]:
    return list(session.scalars(select(CameraRow).order_by(CameraRow.node_id, CameraRow.camera_id)))


def list_wards(session: Session) -> list[WardRow]:
    return list(session.scalars(select(WardRow).order_by(WardRow.ward_id)))

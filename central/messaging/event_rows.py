"""Event rows as ingest writes them: new rows, later phases, history after a decision, evidence links, wards.

Pure functions over a session, kept apart from ``ingest`` (which decides what a message means and batches
commits) so each stays readable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from central.db.models import EventRow, NodeStatusRow
from central.db.wards import CameraRow, EventEvidenceRow, EventHistoryRow
from central.messaging.results import IngestResult as IngestResult  # re-exported: callers import it from here
from edge_agent.contract import Event, EvidenceRef, NodeState, NodeStatus


def camera_ward(session: Session, node_id: str, camera_id: str, now: datetime) -> str | None:
    """The ward of a camera; an unknown camera is registered (no ward yet: only admins see its events)."""
    camera = session.get(CameraRow, (node_id, camera_id))
    if camera is None:
        session.add(
            CameraRow(
                node_id=node_id,
                camera_id=camera_id,
                name="",
                ward_id=None,
                location="",
                notes="",
                updated_at=now,
                updated_by=None,
            )
        )
        session.flush()
        return None
    return camera.ward_id


def _link_evidence(session: Session, event_id: str, known: set[str], refs: list[EvidenceRef]) -> None:
    for sha in sorted({ref.sha256 for ref in refs} - known):
        if session.get(EventEvidenceRow, (event_id, sha)) is None:
            session.add(EventEvidenceRow(event_id=event_id, sha256=sha))


def _facts(event: Event) -> tuple[Any, ...]:
    return (
        event.ended_at,
        [obj.model_dump(mode="json") for obj in event.objects],
        dict(event.measurements),
    )


def _differs(row: EventRow, event: Event) -> str | None:
    """Why ``event`` is not the message already applied to ``row`` (None: a true redelivery)."""
    ended, objects, measurements = _facts(event)
    if ended != row.ended_at:
        return "ended_at"
    if objects != row.objects:
        return "objects"
    if measurements != row.measurements:
        return "measurements"
    if not {ref.sha256 for ref in event.evidence} <= {str(ref.get("sha256")) for ref in row.evidence}:
        return "evidence"
    return None


def _latest_history(session: Session, event_id: str) -> EventHistoryRow | None:
    return session.scalars(
        select(EventHistoryRow)
        .where(EventHistoryRow.event_id == event_id)
        .order_by(EventHistoryRow.id.desc())
        .limit(1)
    ).first()


def _differs_from_history(session: Session, row: EventRow, event: Event) -> str | None:
    """For a decided event: compare with the kept message of the same key (history, else the row)."""
    key = (event.phase.value, event.observed_at)
    for kept in session.scalars(select(EventHistoryRow).where(EventHistoryRow.event_id == row.event_id)):
        if (kept.phase, kept.observed_at) == key:
            ended, objects, measurements = _facts(event)
            if (ended, objects, measurements) != (kept.ended_at, kept.objects, kept.measurements):
                return "content differs from the message kept after the decision"
            return None
    return _differs(row, event)


def _keep_as_history(session: Session, row: EventRow, event: Event, now: datetime) -> None:
    session.add(
        EventHistoryRow(
            event_id=row.event_id,
            received_at=now,
            phase=event.phase.value,
            observed_at=event.observed_at,
            ended_at=event.ended_at,
            objects=[obj.model_dump(mode="json") for obj in event.objects],
            measurements=dict(event.measurements),
            evidence=[ref.model_dump(mode="json") for ref in event.evidence],
        )
    )
    row.changed_after_decision = True


def labels_of(objects: list[dict[str, Any]]) -> str:
    """``",car,truck,"`` for the queue's class filter (``LIKE '%,car,%'``)."""
    names = sorted({str(obj["label"]) for obj in objects if obj.get("label")})
    return ("," + ",".join(names) + ",")[:255] if names else ""


def _is_last_will(status: NodeStatus, row: NodeStatusRow) -> bool:
    """An ``offline`` after an ``online``, however old its time: the Last Will.

    A node registers its Will when it connects, so the Will's time is *before* the ``online`` status it publishes
    right after; the broker delivers the Will later (QoS 1, in order per topic, and retained statuses are only
    ever the latest), so arriving after the ``online`` means it is newer. Its time is not used for ordering (the
    row keeps the newer one), so a later ``online`` still applies.
    """
    return status.state is NodeState.OFFLINE and row.state == NodeState.ONLINE.value


def _insert_if_new(session: Session, row: EventRow) -> bool:
    """``INSERT ... ON CONFLICT (event_id) DO NOTHING``: True when this transaction created the row.

    The database arbitrates: a concurrent insert of the same id either waits for ours (PostgreSQL) or is
    serialised (SQLite), and exactly one of them sees a row count of 1.
    """
    values = {
        c.name: getattr(row, c.key)
        for c in EventRow.__table__.columns
        if getattr(row, c.key, None) is not None
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(EventRow).values(**values).on_conflict_do_nothing(index_elements=["event_id"])
    return session.execute(statement.returning(EventRow.event_id)).scalar() is not None


def _row_values(row: EventRow) -> dict[str, Any]:
    """Every column of a new row for a Core insert (scalar column defaults applied, so all rows share keys)."""
    values: dict[str, Any] = {}
    for column in EventRow.__table__.columns:
        value = getattr(row, column.key, None)
        default = column.default
        if value is None and default is not None and getattr(default, "is_scalar", False):
            value = getattr(default, "arg", None)
        if value is not None or column.nullable:
            values[column.name] = value
    return values


def _new_event_row(event: Event, now: datetime) -> EventRow:
    row = EventRow(
        event_id=str(event.event_id),
        node_id=event.node_id,
        camera_id=event.camera_id,
        zone_id=event.zone_id,
        rule_id=event.rule_id,
        type=event.type.value,
        started_at=event.started_at,
        received_at=now,
        evidence=[],
        version=1,
        escalated=False,
        changed_after_decision=False,
    )
    _apply_newer(row, event, now)
    return row


def _apply_newer(row: EventRow, event: Event, now: datetime) -> None:
    """Copy the fields a later phase may change; evidence accumulates (a clip often arrives with ``end``)."""
    row.phase = event.phase.value
    row.observed_at = event.observed_at
    row.ended_at = event.ended_at
    row.objects = [obj.model_dump(mode="json") for obj in event.objects]
    row.measurements = dict(event.measurements)
    row.evidence = merge_evidence(row.evidence or [], event.evidence)
    row.labels = labels_of(row.objects)
    row.model_name = event.model.name
    row.model_sha256 = event.model.sha256
    row.config_version = event.config_version
    row.updated_at = now


def merge_evidence(stored: list[dict[str, Any]], incoming: list[EvidenceRef]) -> list[dict[str, Any]]:
    """Stored references first, then new hashes in arrival order (so the last snapshot is the newest)."""
    merged = list(stored)
    seen = {ref.get("sha256") for ref in stored}
    for ref in incoming:
        if ref.sha256 not in seen:
            merged.append(ref.model_dump(mode="json"))
            seen.add(ref.sha256)
    return merged

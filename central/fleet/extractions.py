"""Footage extraction on request: an officer asks for camera X from 14:05 to 14:20, the node cuts and uploads it.

An extraction is a row that follows the node's ``extract`` command (``central.fleet.commands``):

    requested -> recording-found -> uploading -> ready
              \\-> not-available (outside the retention, recording off, camera or node offline)
              \\-> failed (the node could not cut or upload; the reason says why)

Each transition is written in the transaction that records the node's answer (progress and final hooks) and
audited (``extraction.<state>``); the request itself is audited with its reason. The node answers
``refused: not-available: <why>`` when it has nothing for the range, which becomes ``not-available`` with
``<why>`` as the message.

Which node has a camera is learnt from what central heard (the cameras in each enrolled node's latest
heartbeat, then its latest config).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit
from central.db.models import (
    ExtractionRow,
    ExtractionState,
    NodeCommandRow,
    NodeConfigRow,
    NodeHealthRow,
    NodeRow,
)
from central.fleet.commands import CommandCenter
from central.fleet.enrollment import FleetError
from edge_agent.contract import MAX_EXTRACT_S, CommandResult, CommandState, ExtractResult

log = logging.getLogger(__name__)

NOT_AVAILABLE: Final = "not-available:"
COMMAND_TIMEOUT_S: Final = 900.0
MAX_FUTURE_S: Final = 60.0
STEPS: Final = {
    "recording-found": ExtractionState.RECORDING_FOUND,
    "uploading": ExtractionState.UPLOADING,
}
FINAL_STATES: Final = frozenset(
    {ExtractionState.READY.value, ExtractionState.NOT_AVAILABLE.value, ExtractionState.FAILED.value}
)


def camera_nodes(session: Session) -> dict[str, str]:
    """camera id -> node id, for enrolled (not revoked) nodes: latest heartbeat first, then latest config."""
    enrolled = {n.node_id for n in session.scalars(select(NodeRow).where(NodeRow.revoked_at.is_(None)))}
    out: dict[str, str] = {}
    for row in session.scalars(select(NodeConfigRow).order_by(NodeConfigRow.version)):
        if row.node_id in enrolled:
            for cam in row.config.get("cameras", []) if isinstance(row.config, dict) else []:
                if isinstance(cam, dict) and isinstance(cam.get("id"), str):
                    out[cam["id"]] = row.node_id
    for health in session.scalars(select(NodeHealthRow)):
        if health.node_id in enrolled:
            for cam in health.heartbeat.get("cameras", []):
                if isinstance(cam, dict) and isinstance(cam.get("camera_id"), str):
                    out[cam["camera_id"]] = health.node_id
    return dict(sorted(out.items()))


def request_extraction(
    session: Session,
    commands: CommandCenter,
    *,
    camera_id: str,
    start: datetime,
    end: datetime,
    reason: str,
    username: str,
    now: datetime,
) -> ExtractionRow:
    """Record and audit the request, then send the ``extract`` command; ``FleetError`` 404/422 when it cannot."""
    reason = reason.strip()
    if len(reason) < 3:
        raise FleetError(422, "reason: say why the footage is needed (at least 3 characters)")
    if end <= start:
        raise FleetError(422, "end: must be after the start")
    if (end - start).total_seconds() > MAX_EXTRACT_S:
        raise FleetError(422, f"end: at most {MAX_EXTRACT_S // 60} minutes per request")
    if start > now + timedelta(seconds=MAX_FUTURE_S):
        raise FleetError(422, "start: is in the future")
    node_id = camera_nodes(session).get(camera_id)
    if node_id is None:
        raise FleetError(404, f"camera_id: no enrolled node has a camera {camera_id}")
    row = ExtractionRow(
        id=str(uuid.uuid4()),
        node_id=node_id,
        camera_id=camera_id,
        start_at=start,
        end_at=end,
        reason=reason[:2000],
        requested_by=username,
        requested_at=now,
        state=ExtractionState.REQUESTED.value,
        message=None,
        updated_at=now,
    )
    session.add(row)
    audit.record(
        session,
        at=now,
        actor=username,
        action="extraction.request",
        target=f"extraction:{row.id}",
        details={
            "camera_id": camera_id,
            "node_id": node_id,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "reason": row.reason,
        },
    )
    session.commit()
    args = {"camera_id": camera_id, "start": start.isoformat(), "end": end.isoformat()}
    view = commands.send(node_id, "extract", args, username=username, timeout_s=COMMAND_TIMEOUT_S)
    row.request_id = view.request_id
    session.commit()
    # A fast node may have answered before request_id was stored: catch up from the command row.
    command = session.get(NodeCommandRow, view.request_id)
    if command is not None:
        session.refresh(command)
        follow_command(session, command, None, now=now)
        session.commit()
    return row


def follow_command(
    session: Session, command: NodeCommandRow, answer: CommandResult | None, *, now: datetime
) -> ExtractionRow | None:
    """Move the extraction of ``command`` to the state its command reached (idempotent; audited)."""
    row = session.scalars(select(ExtractionRow).where(ExtractionRow.request_id == command.request_id)).first()
    if row is None or row.state in FINAL_STATES:
        return row
    state, message = _state_of(command)
    if state is None or (state.value == row.state and message == row.message):
        return row
    previous = row.state
    row.state, row.message, row.updated_at = state.value, message, now
    if state is ExtractionState.READY and command.result:
        result = ExtractResult.model_validate(command.result)
        row.sha256, row.size = result.sha256, result.size
        row.recorded_start, row.recorded_end = result.recorded_start, result.recorded_end
        seconds = (result.recorded_end - result.recorded_start).total_seconds()
        row.message = message = (
            f"{seconds:.0f} s clip, {result.size} bytes, from {result.segments} segment(s)"
        )
    if state.value != previous:
        audit.record(
            session,
            at=now,
            actor=None,
            action=f"extraction.{state.value}",
            target=f"extraction:{row.id}",
            details={"request_id": command.request_id, "message": message, "sha256": row.sha256},
        )
        log.info("extraction %s of %s: %s (%s)", row.id, row.camera_id, state.value, message)
    return row


def _state_of(command: NodeCommandRow) -> tuple[ExtractionState | None, str | None]:
    message = command.message or None
    if command.state == "progress":
        step = (message or "").split(":", 1)[0].split(" ", 1)[0]
        return STEPS.get(step), message
    if command.state == CommandState.OK.value:
        return ExtractionState.READY, message
    reason = command.reason or ""
    if command.state == CommandState.REFUSED.value and reason.startswith(NOT_AVAILABLE):
        return ExtractionState.NOT_AVAILABLE, reason[len(NOT_AVAILABLE) :].strip()
    if command.state == "timeout":
        return ExtractionState.NOT_AVAILABLE, f"the node did not answer (offline?): {reason}"
    if command.state == "unsent":
        return ExtractionState.NOT_AVAILABLE, f"the node could not be reached: {reason}"
    if command.state in (CommandState.REFUSED.value, CommandState.FAILED.value):
        return ExtractionState.FAILED, reason
    return None, message


def register_hooks(commands: CommandCenter) -> None:
    """Follow every ``extract`` command's progress and end in the transaction that records it."""

    def hook(session: Session, command: NodeCommandRow, answer: CommandResult | None) -> None:
        follow_command(session, command, answer, now=command.updated_at)

    commands.on_progress("extract", hook)
    commands.on_final("extract", hook)


def list_extractions(session: Session, limit: int = 100) -> list[ExtractionRow]:
    return list(
        session.scalars(select(ExtractionRow).order_by(ExtractionRow.requested_at.desc()).limit(limit))
    )


def extraction_out(row: ExtractionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "node_id": row.node_id,
        "camera_id": row.camera_id,
        "start": row.start_at,
        "end": row.end_at,
        "reason": row.reason,
        "requested_by": row.requested_by,
        "requested_at": row.requested_at,
        "state": row.state,
        "message": row.message,
        "request_id": row.request_id,
        "sha256": row.sha256,
        "size": row.size,
        "recorded_start": row.recorded_start,
        "recorded_end": row.recorded_end,
        "updated_at": row.updated_at,
    }

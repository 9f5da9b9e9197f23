"""Commands to nodes over the JSON API: send one, read (or long-poll) where it stands, list a node's recent ones.

Who may send what is per command (``COMMAND_ROLES``): a snapshot is harmless and operators need it to draw
zones; a model update is an admin's call. A command the table does not list is admin-only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from central.api.deps import ApiUser, AuthUser, FleetDep
from central.db.models import Role
from central.fleet.commands import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S, CommandView
from central.fleet.enrollment import FleetError

router = APIRouter(tags=["commands"])

_FLEET = frozenset({Role.ADMIN.value, Role.OPERATOR.value, Role.TECHNICIAN.value})
COMMAND_ROLES: Final[dict[str, frozenset[str]]] = {"snapshot": _FLEET}
ADMIN_ONLY: Final = frozenset({Role.ADMIN.value})
MAX_WAIT_S: Final = 60.0


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=32, description="Command name, e.g. 'snapshot'.")
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments, checked per command.")
    timeout_s: float = Field(
        default=DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S, description="The node must answer within this."
    )
    wait_s: float = Field(
        default=0.0, ge=0, le=MAX_WAIT_S, description="Hold the response until the command ends (bounded)."
    )


class CommandOut(BaseModel):
    request_id: str
    node_id: str
    name: str
    args: dict[str, Any]
    state: str = Field(description="sent, progress, ok, refused, failed, timeout or unsent.")
    final: bool
    progress: float | None
    message: str | None
    reason: str | None
    result: dict[str, Any] | None
    created_at: datetime
    created_by: str
    expires_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, v: CommandView) -> CommandOut:
        return cls(
            request_id=v.request_id,
            node_id=v.node_id,
            name=v.name,
            args=v.args,
            state=v.state,
            final=v.final,
            progress=v.progress,
            message=v.message,
            reason=v.reason,
            result=v.result,
            created_at=v.created_at,
            created_by=v.created_by,
            expires_at=v.expires_at,
            finished_at=v.finished_at,
        )


def may_send(user: AuthUser, name: str) -> bool:
    return user.role in COMMAND_ROLES.get(name, ADMIN_ONLY)


@router.post("/api/v1/nodes/{node_id}/commands", status_code=status.HTTP_201_CREATED)
async def api_send_command(node_id: str, body: CommandIn, user: ApiUser, fleet: FleetDep) -> CommandOut:
    """Send a command (QoS 1 on the node's ``cmd`` topic); with ``wait_s``, answer once it ended or waited."""
    if not may_send(user, body.name):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"your role may not send {body.name!r} commands")
    commands = fleet.commands
    try:
        view = await run_in_threadpool(
            commands.send, node_id, body.name, body.args, username=user.username, timeout_s=body.timeout_s
        )
    except FleetError as err:
        raise HTTPException(err.status_code, err.message) from None
    if body.wait_s > 0 and not view.final:
        waited: CommandView | None = await run_in_threadpool(commands.wait, view.request_id, body.wait_s)
        view = waited or view
    return CommandOut.of(view)


@router.get("/api/v1/commands/{request_id}")
async def api_get_command(
    request_id: str,
    user: ApiUser,
    fleet: FleetDep,
    wait_s: float = Query(default=0.0, ge=0, le=MAX_WAIT_S, description="Long-poll until it ends."),
) -> CommandOut:
    view = await run_in_threadpool(fleet.commands.wait, request_id, wait_s)
    if view is None or not (may_send(user, view.name) or user.username == view.created_by):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no command {request_id}")
    return CommandOut.of(view)


@router.get("/api/v1/nodes/{node_id}/commands")
def api_list_commands(node_id: str, user: ApiUser, fleet: FleetDep) -> list[CommandOut]:
    """The node's 20 most recent commands, newest first (those the user's role may send)."""
    return [CommandOut.of(v) for v in fleet.commands.recent(node_id) if may_send(user, v.name)]

"""Commands to nodes from central: send, track in ``node_commands``, wait, time out, audit.

One ``CommandCenter`` per central process, owned by the ``Fleet`` (``fleet.commands``), whose MQTT link
carries the commands (``{prefix}/nodes/{node}/cmd``, QoS 1, not retained) and their answers
(``{prefix}/nodes/+/cmd/result``). The life of a command, as the table's ``state`` column says:

    sent -> progress* -> ok | refused | failed        (the node's answers, CommandResult)
    sent | progress -> timeout                         (no final answer before ``expires_at``)
    unsent                                             (the broker did not take it; nothing reached the node)

* ``send`` checks the args with the same pydantic model the node uses (``COMMAND_ARGS[name]``), so a typo is
  a 422 here, not a refusal a minute later; it stores the row, audits ``node.cmd`` and publishes;
* ``handle_result`` (the link's thread) records each answer; late answers to a timed-out command are kept
  (the row shows what finally happened) but a final state is never overwritten by a progress message; an
  answer that is invalid, from the wrong node or for an unknown request becomes a dead letter;
* ``wait`` blocks (bounded) until a command is final: woken at once in this process, and polling the
  database so a command answered through another central process is seen too;
* ``expire_overdue`` (the fleet sync loop) turns commands past their deadline into ``timeout``;
* ``on_final(name, hook)``: code that owns a command (e.g. footage extraction) reacts to its final answer in
  the same transaction that records it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit
from central.context import Central
from central.db.models import NodeCommandRow, NodeRow
from central.fleet.enrollment import FleetError
from central.messaging.client import MqttClient
from edge_agent.contract import (
    COMMAND_ARGS,
    COMMAND_RESULTS,
    FINAL_STATES,
    Command,
    CommandResult,
    CommandState,
)

log = logging.getLogger(__name__)

QOS: Final = 1
DEFAULT_TIMEOUT_S: Final = 30.0
MAX_TIMEOUT_S: Final = 24 * 3600.0
TIMEOUT: Final = "timeout"
SENT: Final = "sent"
UNSENT: Final = "unsent"
FINAL: Final = frozenset({s.value for s in FINAL_STATES} | {TIMEOUT, UNSENT})
POLL_S: Final = 0.25

FinalHook = Callable[[Session, NodeCommandRow, CommandResult | None], None]


@dataclass(frozen=True)
class CommandView:
    """A command as the API and pages show it (detached from the database session)."""

    request_id: str
    node_id: str
    name: str
    args: dict[str, Any]
    state: str
    progress: float | None
    message: str | None
    reason: str | None
    result: dict[str, Any] | None
    created_at: datetime
    created_by: str
    expires_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @classmethod
    def of(cls, row: NodeCommandRow) -> CommandView:
        return cls(
            request_id=row.request_id,
            node_id=row.node_id,
            name=row.name,
            args=dict(row.args),
            state=row.state,
            progress=row.progress,
            message=row.message,
            reason=row.reason,
            result=None if row.result is None else dict(row.result),
            created_at=row.created_at,
            created_by=row.created_by,
            expires_at=row.expires_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
        )


@dataclass
class CommandStats:
    sent: int = 0
    unsent: int = 0
    answers: int = 0
    answers_invalid: int = 0
    answers_unknown: int = 0
    timeouts: int = 0


class CommandCenter:
    """Sends commands over the fleet link and keeps ``node_commands`` up to date (see module doc)."""

    def __init__(self, central: Central, link: Callable[[], MqttClient | None]) -> None:
        self.central = central
        self._link = link
        self._changed = threading.Condition()
        self._hooks: dict[str, list[FinalHook]] = {}
        self._progress_hooks: dict[str, list[FinalHook]] = {}
        self.stats = CommandStats()

    def on_final(self, name: str, hook: FinalHook) -> None:
        """Call ``hook(session, row, answer)`` when a ``name`` command ends (answer None: timeout/unsent)."""
        self._hooks.setdefault(name, []).append(hook)

    def on_progress(self, name: str, hook: FinalHook) -> None:
        """Call ``hook(session, row, answer)`` for each ``progress`` answer of a ``name`` command (same tx)."""
        self._progress_hooks.setdefault(name, []).append(hook)

    # -- sending --------------------------------------------------------------------------------------------

    def send(
        self,
        node_id: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        username: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> CommandView:
        """Validate, store, audit and publish one command; ``FleetError`` (404/409/422) when it cannot go."""
        model = COMMAND_ARGS.get(name)
        if model is None:
            raise FleetError(
                422, f"name: unknown command {name!r} (known: {', '.join(sorted(COMMAND_ARGS))})"
            )
        if not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise FleetError(422, f"timeout_s: must be in (0, {MAX_TIMEOUT_S:g}]")
        try:
            checked = model.model_validate(args or {}).model_dump(mode="json")
        except ValidationError as err:
            raise FleetError(422, _field_errors(err)) from None
        now = self.central.clock()
        cmd = Command(
            request_id=uuid.uuid4(),
            node_id=node_id,
            name=name,
            args=checked,
            issued_at=now,
            expires_at=now + timedelta(seconds=timeout_s),
            issued_by=username,
        )
        request_id = str(cmd.request_id)
        with self.central.db.session() as session:
            node = session.get(NodeRow, node_id)
            if node is None:
                raise FleetError(404, f"no node {node_id}")
            if node.revoked_at is not None:
                raise FleetError(409, f"node {node_id} is revoked")
            session.add(
                NodeCommandRow(
                    request_id=request_id,
                    node_id=node_id,
                    name=name,
                    args=checked,
                    state=SENT,
                    created_at=now,
                    created_by=username,
                    expires_at=cmd.expires_at,
                    updated_at=now,
                )
            )
            audit.record(
                session,
                at=now,
                actor=username,
                action="node.cmd",
                target=f"node:{node_id}",
                details={"request_id": request_id, "name": name, "args": checked},
            )
        link = self._link()
        delivered = link is not None and link.publish(
            self.central.topics.cmd(node_id), cmd.to_json(), qos=QOS, retain=False
        )
        if delivered:
            self.stats.sent += 1
            log.info("command %s %s sent to %s by %s", name, request_id, node_id, username)
        else:
            self.stats.unsent += 1
            reason = "the broker is unreachable" if link is None or not link.connected else "publish failed"
            self._finish(request_id, UNSENT, reason=f"not sent: {reason}", answer=None)
            log.warning("command %s %s to %s not sent: %s", name, request_id, node_id, reason)
        view = self.get(request_id)
        assert view is not None
        return view

    # -- answers --------------------------------------------------------------------------------------------

    def handle_result(self, topic: str, payload: bytes) -> None:
        """Record one ``CommandResult`` (the link's thread); anything unusable becomes a dead letter."""
        topics, ingestor = self.central.topics, self.central.ingestor
        node = topics.node_of(topic)
        if node is None or topic != topics.cmd_result(node):
            self.stats.answers_invalid += 1
            ingestor.dead_letter(topic, payload, "not a cmd/result topic of this prefix")
            return
        try:
            answer = CommandResult.from_json(payload)
            if answer.node_id != node:
                raise ValueError(f"node_id {answer.node_id!r} does not match the topic's {node!r}")
            if answer.state is CommandState.OK and answer.name in COMMAND_RESULTS:
                COMMAND_RESULTS[answer.name].model_validate(answer.result)
        except (ValidationError, ValueError) as err:
            self.stats.answers_invalid += 1
            ingestor.dead_letter(topic, payload, f"invalid CommandResult: {err}")
            return
        request_id = str(answer.request_id)
        with self.central.db.session() as session:
            row = session.get(NodeCommandRow, request_id, with_for_update=True)
            if row is None or row.node_id != node:
                self.stats.answers_unknown += 1
                ingestor.dead_letter(topic, payload, f"no command {request_id} was sent to {node}")
                return
            self.stats.answers += 1
            now = self.central.clock()
            if answer.state is CommandState.PROGRESS:
                if row.state in FINAL:
                    return  # a progress message overtaken by the final answer (or a timeout)
                row.state, row.progress, row.message, row.updated_at = (
                    "progress",
                    answer.progress,
                    answer.message,
                    now,
                )
                for hook in self._progress_hooks.get(row.name, []):
                    hook(session, row, answer)
            else:
                late = row.state == TIMEOUT
                row.state = answer.state.value
                row.reason = answer.reason
                row.message = answer.message or row.message
                row.result = dict(answer.result) or None
                row.progress = 1.0 if answer.state is CommandState.OK else row.progress
                row.updated_at = row.finished_at = now
                audit.record(
                    session,
                    at=now,
                    actor=None,
                    action=f"node.cmd.{answer.state.value}",
                    target=f"node:{node}",
                    details={
                        "request_id": request_id,
                        "name": row.name,
                        "reason": answer.reason,
                        "late": late,
                    },
                )
                for hook in self._hooks.get(row.name, []):
                    hook(session, row, answer)
        log.info(
            "command %s %s on %s: %s%s",
            answer.name,
            request_id,
            node,
            answer.state.value,
            f": {answer.reason}" if answer.reason else "",
        )
        self._notify()

    def expire_overdue(self) -> int:
        """Mark commands past their deadline without a final answer as ``timeout``; returns how many."""
        now = self.central.clock()
        with self.central.db.session() as session:
            overdue = session.scalars(
                select(NodeCommandRow.request_id).where(
                    NodeCommandRow.state.in_([SENT, "progress"]), NodeCommandRow.expires_at <= now
                )
            ).all()
        for request_id in overdue:
            self._finish(
                request_id, TIMEOUT, reason="no answer from the node before the deadline", answer=None
            )
        self.stats.timeouts += len(overdue)
        return len(overdue)

    def _finish(self, request_id: str, state: str, *, reason: str, answer: CommandResult | None) -> None:
        now = self.central.clock()
        with self.central.db.session() as session:
            row = session.get(NodeCommandRow, request_id, with_for_update=True)
            if row is None or row.state in FINAL:
                return
            row.state, row.reason, row.updated_at, row.finished_at = state, reason, now, now
            audit.record(
                session,
                at=now,
                actor=None,
                action=f"node.cmd.{state}",
                target=f"node:{row.node_id}",
                details={"request_id": request_id, "name": row.name, "reason": reason},
            )
            for hook in self._hooks.get(row.name, []):
                hook(session, row, answer)
        self._notify()

    # -- reading --------------------------------------------------------------------------------------------

    def get(self, request_id: str) -> CommandView | None:
        with self.central.db.session() as session:
            row = session.get(NodeCommandRow, request_id)
            return None if row is None else CommandView.of(row)

    def recent(self, node_id: str, limit: int = 20) -> list[CommandView]:
        with self.central.db.session() as session:
            rows = session.scalars(
                select(NodeCommandRow)
                .where(NodeCommandRow.node_id == node_id)
                .order_by(NodeCommandRow.created_at.desc())
                .limit(limit)
            ).all()
            return [CommandView.of(r) for r in rows]

    def wait(self, request_id: str, timeout_s: float) -> CommandView | None:
        """The command once final, or as it stands when ``timeout_s`` passed (None: no such command).

        A command past its own deadline is marked ``timeout`` here too, so a caller never waits on a command
        the sync loop has not expired yet.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.get(request_id)
            if view is None or view.final:
                return view
            if view.expires_at <= self.central.clock():
                self._finish(
                    request_id, TIMEOUT, reason="no answer from the node before the deadline", answer=None
                )
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return view
            with self._changed:
                self._changed.wait(min(POLL_S, left))

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()


def _field_errors(err: ValidationError) -> str:
    return "; ".join(
        f"args.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else f"args: {e['msg']}"
        for e in err.errors()
    )

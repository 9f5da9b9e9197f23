"""Commands on the node: read ``{prefix}/nodes/{node}/cmd``, check each command, run it off paho's thread, answer.

The framework every command shares, so a new command is one handler function plus its two contract models
(``edge_agent.contract.COMMAND_ARGS`` / ``COMMAND_RESULTS``):

* ``CommandRunner.handle(payload)`` validates the envelope (``Command``), that it is for this node, not
  expired, of a registered name, with args valid for that name's model. Anything else is answered
  ``refused: <reason>`` at once; nothing unchecked ever runs;
* a valid command runs in the runner's worker pool (paho's network thread must never block: a long footage
  upload would stop config messages and keepalives). Only one command of a name runs at a time: a second
  ``model`` update while one installs is refused ``busy`` rather than queued behind it;
* the handler gets its typed args and a ``Progress`` to report steps (``progress`` answers); it returns its
  result model (answered ``ok``), raises ``CommandRefused`` (answered ``refused``) or anything else
  (answered ``failed`` with the exception's text);
* the broker redelivers a QoS 1 command after a reconnect; a request id seen recently is not run again, its
  last answer is sent again instead.

Answers go straight to paho at QoS 1 (not through the outbox): a lost answer shows up at central as a timeout,
which is what the operator must see anyway, and the command can simply be asked again.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ValidationError

from edge_agent.contract import (
    COMMAND_ARGS,
    Command,
    CommandResult,
    CommandState,
    Topics,
    utcnow,
)

log = logging.getLogger(__name__)

REMEMBERED_REQUESTS: Final = 256
WORKERS: Final = 2


class CommandRefused(Exception):  # noqa: N818 - it is an outcome, named as the answer says it
    """Raised by a handler that will not run the command (the message becomes the ``refused`` reason)."""


class Progress:
    """Handed to a handler: ``report(fraction, message)`` publishes a ``progress`` answer."""

    def __init__(self, send: Callable[[float | None, str], None]) -> None:
        self._send = send

    def report(self, fraction: float | None = None, message: str = "") -> None:
        self._send(None if fraction is None else min(max(fraction, 0.0), 1.0), message[:500])


Handler = Callable[[Any, Progress], BaseModel]


@dataclass
class CommandStats:
    """What happened to commands since start (failures are data)."""

    received: int = 0
    refused: int = 0
    failed: int = 0
    ok: int = 0
    duplicates: int = 0
    by_name: dict[str, int] = field(default_factory=dict)


class CommandRunner:
    """Checks commands, runs registered handlers in a worker pool and publishes every answer via ``send``."""

    def __init__(
        self,
        node_id: str,
        send: Callable[[CommandResult], None],
        *,
        clock: Callable[[], datetime] = utcnow,
        workers: int = WORKERS,
        inline: bool = False,
    ) -> None:
        """``send`` publishes an answer; ``inline=True`` runs handlers on the caller's thread (unit tests)."""
        self.node_id = node_id
        self._send = send
        self._clock = clock
        self._handlers: dict[str, Handler] = {}
        self._running: set[str] = set()
        self._seen: OrderedDict[uuid.UUID, CommandResult | None] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = None if inline else ThreadPoolExecutor(workers, thread_name_prefix="command")
        self.stats = CommandStats()

    def register(self, name: str, handler: Handler) -> None:
        """Run ``handler(args, progress)`` for commands called ``name`` (args: ``COMMAND_ARGS[name]``)."""
        if name not in COMMAND_ARGS:
            raise ValueError(f"command {name!r} has no argument model in edge_agent.contract.COMMAND_ARGS")
        self._handlers[name] = handler

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one message ------------------------------------------------------------------------------------------

    def handle(self, payload: bytes) -> None:
        """Check one ``cmd`` message and answer or schedule it; never raises (paho's thread calls it)."""
        self.stats.received += 1
        try:
            cmd = Command.from_json(payload)
        except ValidationError as err:
            self._refuse_unreadable(payload, err)
            return
        with self._lock:
            if cmd.request_id in self._seen:
                self.stats.duplicates += 1
                last = self._seen[cmd.request_id]
                log.info("command %s %s delivered again; answering its last state", cmd.name, cmd.request_id)
                if last is not None:
                    self._publish(last)
                return
            self._seen[cmd.request_id] = None
            while len(self._seen) > REMEMBERED_REQUESTS:
                self._seen.popitem(last=False)
        reason = self._check(cmd)
        if reason is not None:
            self._answer(cmd, CommandState.REFUSED, reason=reason)
            return
        args = COMMAND_ARGS[cmd.name].model_validate(cmd.args)
        with self._lock:
            self._running.add(cmd.name)
        log.info("command %s %s from %s accepted", cmd.name, cmd.request_id, cmd.issued_by or "central")
        if self._pool is None:
            self._run(cmd, args)
        else:
            self._pool.submit(self._run, cmd, args)

    def _check(self, cmd: Command) -> str | None:
        if cmd.node_id != self.node_id:
            return f"node_id: command is for {cmd.node_id!r}, this is {self.node_id!r}"
        now = self._clock()
        if cmd.expires_at <= now:
            # The node's clock is named too: a box without a real-time clock that is far ahead refuses every
            # command as expired, and this is where a technician sees why.
            return f"expired at {cmd.expires_at.isoformat()} (node clock {now.isoformat()})"
        handler = self._handlers.get(cmd.name)
        if handler is None:
            known = ", ".join(self.names) or "none"
            return f"unknown command {cmd.name!r} (this node runs: {known})"
        try:
            COMMAND_ARGS[cmd.name].model_validate(cmd.args)
        except ValidationError as err:
            return "args: " + "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(args)'}: {e['msg']}" for e in err.errors()
            )
        with self._lock:
            if cmd.name in self._running:
                return f"busy: another {cmd.name} command is running"
        return None

    def _run(self, cmd: Command, args: BaseModel) -> None:
        handler = self._handlers[cmd.name]
        progress = Progress(
            lambda fraction, message: self._answer(
                cmd, CommandState.PROGRESS, progress=fraction, message=message
            )
        )
        try:
            result = handler(args, progress)
        except CommandRefused as err:
            self._answer(cmd, CommandState.REFUSED, reason=str(err) or "refused")
        except Exception as err:
            log.exception("command %s %s failed", cmd.name, cmd.request_id)
            self._answer(cmd, CommandState.FAILED, reason=f"{type(err).__name__}: {err}")
        else:
            self._answer(cmd, CommandState.OK, result=result.model_dump(mode="json"))
        finally:
            with self._lock:
                self._running.discard(cmd.name)

    # -- answers ----------------------------------------------------------------------------------------------

    def _answer(
        self,
        cmd: Command,
        state: CommandState,
        *,
        reason: str | None = None,
        progress: float | None = None,
        message: str = "",
        result: dict[str, object] | None = None,
    ) -> None:
        answer = CommandResult(
            request_id=cmd.request_id,
            node_id=self.node_id,
            name=cmd.name,
            state=state,
            reason=None if reason is None else reason[:4000],
            progress=progress,
            message=message,
            result=result or {},
            at=self._clock(),
        )
        if state is CommandState.OK:
            self.stats.ok += 1
            self.stats.by_name[cmd.name] = self.stats.by_name.get(cmd.name, 0) + 1
        elif state is CommandState.REFUSED:
            self.stats.refused += 1
            log.warning("command %s %s refused: %s", cmd.name, cmd.request_id, reason)
        elif state is CommandState.FAILED:
            self.stats.failed += 1
        with self._lock:
            if cmd.request_id in self._seen:
                self._seen[cmd.request_id] = answer
        self._publish(answer)

    def _refuse_unreadable(self, payload: bytes, err: ValidationError) -> None:
        """Answer a command whose envelope is invalid, when at least its request id and name can be read."""
        self.stats.refused += 1
        try:
            data = json.loads(payload)
            request_id = uuid.UUID(str(data["request_id"]))
            name = str(data.get("name", "unknown"))
        except (ValueError, KeyError, TypeError):
            log.error("unreadable command dropped (no request id to answer): %s", err)
            return
        log.error("command %s refused: invalid envelope: %s", request_id, err)
        try:
            answer = CommandResult(
                request_id=request_id,
                node_id=self.node_id,
                name=name if _valid_name(name) else "unknown",
                state=CommandState.REFUSED,
                reason=f"invalid command: {err}"[:4000],
                at=self._clock(),
            )
        except ValidationError:
            return
        self._publish(answer)

    def _publish(self, answer: CommandResult) -> None:
        try:
            self._send(answer)
        except Exception:
            log.exception("answer to command %s could not be published", answer.request_id)


def _valid_name(name: str) -> bool:
    return re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name) is not None


class CommandListener:
    """Binds a ``CommandRunner`` to the node's paho client (subscribe at every connect, answer on cmd/result)."""

    def __init__(self, topics: Topics, node_id: str) -> None:
        self.topic = topics.cmd(node_id)
        self.result_topic = topics.cmd_result(node_id)
        self.client: mqtt.Client | None = None

    def send(self, answer: CommandResult) -> None:
        """``CommandRunner``'s ``send``: QoS 1 on ``cmd/result``."""
        if self.client is None:
            raise RuntimeError("command listener not attached to a client")
        self.client.publish(self.result_topic, answer.to_json(), qos=1)

    def attach(self, client: mqtt.Client, runner: CommandRunner) -> None:
        self.client = client
        previous = cast(Callable[..., None] | None, client.on_connect)

        def on_connect(
            client: mqtt.Client,
            userdata: Any,
            flags: mqtt.ConnectFlags,
            reason_code: ReasonCode,
            properties: Properties | None,
        ) -> None:
            if previous is not None:
                previous(client, userdata, flags, reason_code, properties)
            if not reason_code.is_failure:
                client.subscribe(self.topic, qos=1)

        def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
            runner.handle(bytes(message.payload))

        client.on_connect = on_connect
        client.message_callback_add(self.topic, on_message)

"""The node's command runner: every command is checked before it runs, and every outcome is answered."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from edge_agent.contract import (
    CameraSnapshot,
    Command,
    CommandResult,
    CommandState,
    SnapshotArgs,
    SnapshotResult,
)
from edge_agent.node.commands import CommandRefused, CommandRunner, Progress

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SHA = "a" * 64


def command(name: str = "snapshot", args: dict[str, Any] | None = None, **over: Any) -> bytes:
    fields: dict[str, Any] = {
        "request_id": uuid.uuid4(),
        "node_id": "node-1",
        "name": name,
        "args": args or {},
        "issued_at": NOW - timedelta(seconds=1),
        "expires_at": NOW + timedelta(seconds=30),
    }
    fields.update(over)
    return Command(**fields).to_json()


def ok_snapshot(args: SnapshotArgs, progress: Progress) -> BaseModel:
    progress.report(0.5, "uploading cam-1")
    return SnapshotResult(
        snapshots=[CameraSnapshot(camera_id="cam-1", sha256=SHA, width=960, height=540, captured_at=NOW)]
    )


def runner(handler: Any = ok_snapshot) -> tuple[CommandRunner, list[CommandResult]]:
    answers: list[CommandResult] = []
    r = CommandRunner("node-1", answers.append, clock=lambda: NOW, inline=True)
    r.register("snapshot", handler)
    return r, answers


def test_a_valid_command_reports_progress_then_ok_with_the_typed_result() -> None:
    r, answers = runner()
    r.handle(command(args={"cameras": ["cam-1"]}))
    assert [a.state for a in answers] == [CommandState.PROGRESS, CommandState.OK]
    assert answers[0].progress == 0.5 and answers[0].message == "uploading cam-1"
    result = SnapshotResult.model_validate(answers[1].result)
    assert result.snapshots[0].sha256 == SHA
    assert answers[1].reason is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (lambda: command(name="reboot"), "unknown command 'reboot' (this node runs: snapshot)"),
        (lambda: command(node_id="node-2"), "node_id: command is for 'node-2', this is 'node-1'"),
        (
            lambda: command(issued_at=NOW - timedelta(hours=2), expires_at=NOW - timedelta(hours=1)),
            "expired at 2026-12-06T11:00:00+00:00 (node clock 2026-12-06T12:00:00+00:00)",
        ),
        (lambda: command(args={"quality": 5}), "args: quality: Input should be greater than or equal to 30"),
        (lambda: command(args={"colour": True}), "args: colour: Extra inputs are not permitted"),
    ],
)
def test_bad_commands_are_refused_with_the_reason_and_never_run(payload: Any, reason: str) -> None:
    ran: list[object] = []
    r, answers = runner(lambda args, progress: ran.append(args))
    r.handle(payload())
    assert ran == []
    assert len(answers) == 1 and answers[0].state is CommandState.REFUSED
    assert answers[0].reason is not None and reason in answers[0].reason


def test_an_unreadable_envelope_is_refused_when_its_request_id_can_be_read() -> None:
    r, answers = runner()
    rid = uuid.uuid4()
    r.handle(f'{{"request_id": "{rid}", "name": "snapshot", "node_id": "node-1"}}'.encode())
    assert answers[0].state is CommandState.REFUSED and answers[0].request_id == rid
    assert answers[0].reason is not None and answers[0].reason.startswith("invalid command")
    r.handle(b"not json")
    assert len(answers) == 1  # nothing to answer to; logged and dropped


def test_handler_refusal_and_failure_are_told_apart() -> None:
    def refuse(args: SnapshotArgs, progress: Progress) -> BaseModel:
        raise CommandRefused("cameras: unknown camera(s) cam-9")

    def crash(args: SnapshotArgs, progress: Progress) -> BaseModel:
        raise RuntimeError("central did not accept the snapshot: HTTP 401")

    for handler, state, reason in (
        (refuse, CommandState.REFUSED, "cameras: unknown camera(s) cam-9"),
        (crash, CommandState.FAILED, "RuntimeError: central did not accept the snapshot: HTTP 401"),
    ):
        r, answers = runner(handler)
        r.handle(command())
        assert (answers[-1].state, answers[-1].reason) == (state, reason)


def test_a_redelivered_command_is_not_run_again_but_answered_again() -> None:
    calls: list[SnapshotArgs] = []

    def count(args: SnapshotArgs, progress: Progress) -> BaseModel:
        calls.append(args)
        return SnapshotResult(snapshots=[])

    r, answers = runner(count)
    payload = command()
    r.handle(payload)
    r.handle(payload)
    assert len(calls) == 1
    assert [a.state for a in answers] == [CommandState.OK, CommandState.OK]
    assert r.stats.duplicates == 1


def test_one_command_per_name_at_a_time_in_the_worker_pool() -> None:
    release = threading.Event()
    started = threading.Event()
    answers: list[CommandResult] = []
    done = threading.Event()

    def slow(args: SnapshotArgs, progress: Progress) -> BaseModel:
        started.set()
        release.wait(5)
        return SnapshotResult(snapshots=[])

    def send(a: CommandResult) -> None:
        answers.append(a)
        if a.state is CommandState.OK:
            done.set()

    r = CommandRunner("node-1", send, clock=lambda: NOW)
    r.register("snapshot", slow)
    try:
        r.handle(command())
        assert started.wait(5)
        r.handle(command())  # paho's thread is not blocked by the first one
        assert answers[0].state is CommandState.REFUSED
        assert answers[0].reason == "busy: another snapshot command is running"
        release.set()
        assert done.wait(5)
    finally:
        release.set()
        r.close()


def test_register_needs_a_contract_model() -> None:
    r, _ = runner()
    with pytest.raises(ValueError, match="COMMAND_ARGS"):
        r.register("reboot", ok_snapshot)


def test_result_reason_iff_refused_or_failed() -> None:
    with pytest.raises(ValueError, match="reason must be set"):
        CommandResult(
            request_id=uuid.uuid4(), node_id="n", name="snapshot", state=CommandState.FAILED, at=NOW
        )
    with pytest.raises(ValueError, match="reason must be set"):
        CommandResult(
            request_id=uuid.uuid4(), node_id="n", name="snapshot", state=CommandState.OK, reason="x", at=NOW
        )

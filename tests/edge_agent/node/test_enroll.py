"""The node's side of enrollment: the credentials file, how the agent uses it, and failures that say why.

The successful exchange with a real central is tested in ``tests/central/test_nodes_enroll.py`` (app in
process) and ``tests/e2e/test_acl.py`` (the CLI against a central process and an authenticated Mosquitto).
"""

from __future__ import annotations

import io
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.config import parse_config
from edge_agent.node import cli
from edge_agent.node.enroll import (
    MQTT_PASSWORD_ENV,
    NODE_TOKEN_ENV,
    EnrollError,
    NodeCredentials,
    apply_credentials,
    credentials_path,
    enroll,
    load_credentials,
    save_credentials,
)
from tests.conftest import free_port

CREDS = NodeCredentials(
    node_id="box-1-0a0b0c0d",
    node_name="Box 1",
    central_url="https://central.example",
    mqtt_username="box-1-0a0b0c0d",
    mqtt_password="m" * 43,
    http_token="h" * 43,
    enrolled_at=datetime(2025, 3, 1, tzinfo=UTC),
)


def test_credentials_round_trip_with_owner_only_modes(tmp_path: Path) -> None:
    path = save_credentials(tmp_path / "state", CREDS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_credentials(tmp_path / "state") == CREDS
    assert "m" * 43 in path.read_text()  # the secret itself, not pydantic's '**********'
    assert load_credentials(tmp_path / "never-enrolled") is None


@pytest.mark.parametrize(
    ("mode", "content", "words"),
    [
        (0o644, None, "accessible by other users (mode 0644); run: chmod 600"),
        (0o640, None, "(mode 0640)"),
        (0o600, b"{}", "not a valid credentials file"),
        (0o600, b"not json", "not a valid credentials file"),
    ],
)
def test_unusable_credentials_are_refused_with_the_fix(
    tmp_path: Path, mode: int, content: bytes | None, words: str
) -> None:
    path = save_credentials(tmp_path, CREDS)
    if content is not None:
        path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(EnrollError, match=re.escape(words)):
        load_credentials(tmp_path)


def test_the_enrolled_identity_wins_over_the_config_file() -> None:
    cfg = parse_config(
        {
            "node_id": "from-file",
            "mqtt": {"username": "old"},
            "model": {"path": "m.onnx"},
            "cameras": [{"id": "c", "source": "x.mp4"}],
        }
    )
    env: dict[str, str] = {MQTT_PASSWORD_ENV: "stale", "OTHER": "kept"}
    applied = apply_credentials(cfg, CREDS, env)
    assert (applied.node_id, applied.mqtt.username) == ("box-1-0a0b0c0d", "box-1-0a0b0c0d")
    assert env == {MQTT_PASSWORD_ENV: "m" * 43, NODE_TOKEN_ENV: "h" * 43, "OTHER": "kept"}
    assert applied.cameras == cfg.cameras


def test_the_env_names_are_the_ones_the_session_and_uploader_read() -> None:
    from edge_agent.delivery import publisher, session

    assert (MQTT_PASSWORD_ENV, NODE_TOKEN_ENV) == (session.MQTT_PASSWORD_ENV, publisher.NODE_TOKEN_ENV)


def test_cli_enroll_writes_where_the_env_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREETWATCH_STATE_DIR", str(tmp_path / "from-env"))
    monkeypatch.setattr("sys.stdin", io.StringIO("t" * 43 + "\n"))
    args = ["enroll", "--central", f"http://127.0.0.1:{free_port()}", "--token", "-", "--node-name", "box"]
    assert cli.main(args) == 1
    assert (tmp_path / "from-env").is_dir()  # checked writable there before central was asked
    assert "cannot reach central" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("central", "state", "words"),
    [
        ("http://127.0.0.1:{port}", "ok", "cannot reach central at http://127.0.0.1:"),
        ("ftp://central", "ok", "--central must be an http(s) URL"),
        ("http://127.0.0.1:{port}", "a-file", "cannot write to the state folder"),
    ],
    ids=["unreachable", "bad-url", "unwritable-state"],
)
def test_enrollment_failures_say_why_and_write_nothing(
    tmp_path: Path, central: str, state: str, words: str
) -> None:
    folder = tmp_path / state
    if state == "a-file":
        folder.write_text("in the way")
    with pytest.raises(EnrollError, match=re.escape(words)):
        enroll(central.format(port=free_port()), "t" * 43, "box", folder)
    assert not (folder.is_dir() and credentials_path(folder).exists())


def test_cli_enroll_reads_the_token_from_stdin_and_exits_1_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("t" * 43 + "\n"))
    args = ["enroll", "--central", f"http://127.0.0.1:{free_port()}", "--token", "-", "--node-name", "box"]
    code = cli.main([*args, "--state-dir", str(tmp_path / "s")])
    assert code == 1
    assert "streetwatch-agent: enroll: cannot reach central" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "s" / "credentials.json")

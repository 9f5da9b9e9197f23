"""Mosquitto password/ACL files: the ``$7$`` format of mosquitto_passwd, the rendered files, writes and reload."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from central.app import create_app
from central.messaging.broker_auth import (
    BrokerFiles,
    NodeAccount,
    check_username,
    mosquitto_hash,
    render_acl_file,
    render_password_file,
    stable_hash,
    verify_mosquitto_hash,
)
from central.settings import Settings
from edge_agent.contract import Topics
from tests.central.conftest import FakeClock, login
from tests.central.test_nodes import enroll, new_token
from tests.conftest import wait_until

CENTRAL_PASSWORD = "central-broker-password-0123"


def test_our_hash_has_mosquitto_passwd_format_and_verifies() -> None:
    encoded = mosquitto_hash("s3cret-pass", salt=b"\x01" * 12)
    kind, iterations, salt, key = encoded.split("$")[1:]
    assert (kind, iterations, salt, len(key)) == ("7", "101", "AQEBAQEBAQEBAQEB", 88)
    assert verify_mosquitto_hash(encoded, "s3cret-pass")
    assert not verify_mosquitto_hash(encoded, "s3cret-pasS")
    assert mosquitto_hash("x") != mosquitto_hash("x")  # fresh salt each time
    assert stable_hash("central", "x") == stable_hash("central", "x") != stable_hash("central", "y")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
def test_we_verify_hashes_made_by_mosquitto_passwd(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "alice", "wonder-land-42"], check=True)
    user, encoded = path.read_text().strip().split(":", 1)
    assert user == "alice" and encoded.startswith("$7$")
    assert verify_mosquitto_hash(encoded, "wonder-land-42")


@pytest.mark.parametrize("name", ["with space", "a:b", "a#", "a+b", "a/b", "", "x" * 65])
def test_usernames_that_would_break_the_files_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot go into"):
        check_username(name)


def test_rendered_files_grant_each_node_only_its_own_topics() -> None:
    nodes = [NodeAccount("node-b", "$7$h2", "node-b"), NodeAccount("node-a", "$7$h1", "node-a")]
    assert render_password_file("central", "$7$c", nodes) == "central:$7$c\nnode-a:$7$h1\nnode-b:$7$h2\n"
    acl = render_acl_file(Topics("city/v1"), "central", nodes)
    blocks = [b.splitlines() for b in acl.split("\n\n")]
    assert blocks[1] == [
        "user central",
        "topic read city/v1/#",
        "topic write city/v1/nodes/+/config",
        "topic write city/v1/nodes/+/cmd",
        "topic write city/v1/signals/+",
        "topic write city/v1/nodes/+/acks",
    ]
    assert blocks[2] == [
        "user node-a",
        "topic write city/v1/nodes/node-a/events",
        "topic write city/v1/nodes/node-a/status",
        "topic write city/v1/nodes/node-a/heartbeat",
        "topic write city/v1/nodes/node-a/config/applied",
        "topic write city/v1/nodes/node-a/cmd/result",
        "topic read city/v1/nodes/node-a/config",
        "topic read city/v1/nodes/node-a/cmd",
        "topic read city/v1/signals/+",
        "topic read city/v1/nodes/node-a/acks",
    ]
    assert blocks[3][0] == "user node-b" and len(blocks) == 4


@pytest.fixture
def hup_listener(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A real process that counts the SIGHUPs it gets (stands in for Mosquitto); (pid file, count file)."""
    count = tmp_path / "hups"
    code = (
        "import signal, sys, time, pathlib\n"
        f"p = pathlib.Path({str(count)!r}); p.write_text('0')\n"
        "signal.signal(signal.SIGHUP, lambda *a: p.write_text(str(int(p.read_text()) + 1)))\n"
        "while True: time.sleep(0.05)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    wait_until(count.exists, timeout_s=10, message="SIGHUP listener ready")
    pid_file = tmp_path / "broker.pid"
    pid_file.write_text(f"{proc.pid}\n")
    try:
        yield pid_file, count
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_files_are_rewritten_and_the_broker_reloaded_only_on_change(
    tmp_path: Path, hup_listener: tuple[Path, Path]
) -> None:
    pid_file, count = hup_listener
    files = BrokerFiles(tmp_path / "b" / "passwd", tmp_path / "b" / "acl", pid_file)
    first = files.sync("central:$7$c\n", "user central\n")
    assert (first.changed, first.reloaded, first.error) == (True, True, None)
    assert stat.S_IMODE(files.password_file.stat().st_mode) == 0o640
    wait_until(lambda: count.read_text() == "1", timeout_s=5, message="first SIGHUP")
    assert files.sync("central:$7$c\n", "user central\n").changed is False
    assert files.sync("central:$7$c\nn:$7$n\n", "user central\n").reloaded is True
    wait_until(lambda: count.read_text() == "2", timeout_s=5, message="second SIGHUP")
    assert files.password_file.read_text() == "central:$7$c\nn:$7$n\n"
    assert (files.stats.writes, files.stats.reloads, files.stats.failures) == (2, 2, 0)


@pytest.mark.parametrize(
    ("pid_text", "error"),
    [
        (None, "no broker pid file configured"),
        ("not-a-pid", "cannot reload"),
        ("999999999", "cannot reload"),
        ("0", "implausible pid 0"),
        ("-1", "implausible pid -1"),
    ],
)
def test_a_reload_that_cannot_happen_is_reported(tmp_path: Path, pid_text: str | None, error: str) -> None:
    pid_file = None
    if pid_text is not None:
        pid_file = tmp_path / "pid"
        pid_file.write_text(pid_text)
    files = BrokerFiles(tmp_path / "passwd", tmp_path / "acl", pid_file)
    result = files.sync("central:$7$c\n", "user central\n")
    assert result.changed and not result.reloaded and result.error is not None and error in result.error
    assert files.password_file.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"broker_password_file": "p"}, "go together"),
        ({"broker_acl_file": "a"}, "go together"),
        ({"broker_password_file": "p", "broker_acl_file": "a"}, "STREETWATCH_MQTT_USERNAME"),
    ],
)
def test_settings_refuse_half_a_broker_setup(
    make_settings: Callable[..., Settings], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        make_settings(**overrides)


def test_enrolling_and_revoking_rewrite_the_broker_files(
    make_settings: Callable[..., Settings], clock: FakeClock, tmp_path: Path, hup_listener: tuple[Path, Path]
) -> None:
    pid_file, count = hup_listener
    settings = make_settings(
        broker_password_file=tmp_path / "mosq" / "passwd",
        broker_acl_file=tmp_path / "mosq" / "acl",
        broker_pid_file=pid_file,
        mqtt_username="central",
        mqtt_password=CENTRAL_PASSWORD,
    )
    with TestClient(create_app(settings, clock=clock)) as client:
        passwd = tmp_path / "mosq" / "passwd"
        assert passwd.read_text().startswith("central:$7$")  # written at start
        login(client)
        response = enroll(client, new_token(client), "box")
        body = response.json()
        assert body["broker"] == {"managed": True, "reloaded": True, "error": None}
        line = next(x for x in passwd.read_text().splitlines() if x.startswith(f"{body['mqtt_username']}:"))
        assert verify_mosquitto_hash(line.split(":", 1)[1], body["mqtt_password"])
        assert f"user {body['mqtt_username']}" in (tmp_path / "mosq" / "acl").read_text()
        revoked = client.post(f"/api/v1/nodes/{body['node_id']}/revoke").json()
        assert revoked["broker"] == {"managed": True, "reloaded": True, "error": None}
        assert body["mqtt_username"] not in passwd.read_text()
        assert body["mqtt_username"] not in (tmp_path / "mosq" / "acl").read_text()
        wait_until(
            lambda: count.read_text() == "3", timeout_s=5, message="three SIGHUPs (start, enroll, revoke)"
        )

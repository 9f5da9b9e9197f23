"""Per-node broker accounts and ACLs with a real Mosquitto on the files a real central process writes.

Nodes enroll through ``streetwatch-agent enroll``; each may publish only under its own ``nodes/<id>/``
(events, status, heartbeat, config/applied, cmd/result) and receive only its own ``config`` and ``cmd``. Negative checks
need no sleeps: the forbidden message is published first and an allowed marker after it on the same
connection, so once the marker arrived the forbidden one would have too.

Mosquitto 2's ``acl_file`` does not check SUBSCRIBE (only plugins do): a subscription to ``#`` is granted
and filtered at delivery. The tests assert what matters, that nothing forbidden is delivered, and accept a
failing SUBACK too (brokers or plugins that check at subscribe time).
"""

from __future__ import annotations

import hashlib
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from edge_agent.node.enroll import NodeCredentials, credentials_path
from tests.conftest import wait_until
from tests.e2e.test_acl_support import (
    CENTRAL_PASSWORD,
    CENTRAL_USER,
    TOPICS,
    AuthBroker,
    CentralProcess,
    Probe,
    auth_broker,
    central_process,
    cli_enroll,
    probe,
)

pytestmark = pytest.mark.e2e


@dataclass
class Fleet:
    broker: AuthBroker
    central: CentralProcess
    admin: httpx.Client
    a: NodeCredentials
    b: NodeCredentials
    tmp: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet-acl")
    with auth_broker(tmp / "mosquitto") as broker, central_process(tmp, broker) as central:
        admin = central.admin()
        a = cli_enroll(central, admin, "Node A", tmp / "node-a")
        b = cli_enroll(central, admin, "Node B", tmp / "node-b")
        try:
            yield Fleet(broker, central, admin, a, b, tmp)
        finally:
            admin.close()


def secret(creds: NodeCredentials) -> str:
    return creds.mqtt_password.get_secret_value()


def node_probe(fleet: Fleet, creds: NodeCredentials, v5: bool = False) -> AbstractContextManager[Probe]:
    return probe(creds.mqtt_username, secret(creds), fleet.broker.port, v5=v5)


def test_enrollment_wrote_0600_credentials_and_the_broker_files(fleet: Fleet) -> None:
    for name in ("node-a", "node-b"):
        assert stat.S_IMODE(credentials_path(fleet.tmp / name).stat().st_mode) == 0o600
    passwd = fleet.broker.password_file.read_text()
    assert [line.split(":")[0] for line in passwd.splitlines()] == sorted(
        [CENTRAL_USER, fleet.a.mqtt_username, fleet.b.mqtt_username], key=lambda u: (u != CENTRAL_USER, u)
    )
    assert CENTRAL_PASSWORD not in passwd and secret(fleet.a) not in passwd


PUBLISH_CASES: list[tuple[str, Callable[[str, str], str], bool]] = [
    ("own events", lambda a, b: TOPICS.events(a), True),
    ("own status", lambda a, b: TOPICS.status(a), True),
    ("own heartbeat", lambda a, b: TOPICS.heartbeat(a), True),
    ("own config/applied", lambda a, b: TOPICS.config_applied(a), True),
    ("own cmd/result", lambda a, b: TOPICS.cmd_result(a), True),
    ("other node's events", lambda a, b: TOPICS.events(b), False),
    ("other node's config/applied", lambda a, b: TOPICS.config_applied(b), False),
    ("own config (central's)", lambda a, b: TOPICS.config(a), False),
    ("own cmd (central's)", lambda a, b: TOPICS.cmd(a), False),
    ("other node's cmd (a command to node B)", lambda a, b: TOPICS.cmd(b), False),
    ("other node's cmd/result", lambda a, b: TOPICS.cmd_result(b), False),
    ("outside the prefix", lambda a, b: "elsewhere/topic", False),
    ("a controller's signal feed (a faked red light)", lambda a, b: TOPICS.signal("crossing-1"), False),
]


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize(("case", "topic_of", "allowed"), PUBLISH_CASES, ids=[c[0] for c in PUBLISH_CASES])
def test_a_node_publishes_only_under_its_own_id(
    fleet: Fleet, v5: bool, case: str, topic_of: Callable[[str, str], str], allowed: bool
) -> None:
    topic = topic_of(fleet.a.node_id, fleet.b.node_id)
    payload, marker = f"case-{uuid.uuid4()}".encode(), f"marker-{uuid.uuid4()}".encode()
    with probe(CENTRAL_USER, CENTRAL_PASSWORD, fleet.broker.port) as central:
        central.subscribe("#")
        with node_probe(fleet, fleet.a, v5=v5) as node:
            puback = node.publish(topic, payload)
            node.publish(TOPICS.events(fleet.a.node_id), marker)
            if v5:  # MQTT 5 says so in the PUBACK; 3.1.1 has no way to, the broker drops silently
                assert puback is not None and puback.is_failure is not allowed, f"{case}: {puback}"
        wait_until(lambda: central.received(TOPICS.events(fleet.a.node_id), marker), message="the marker")
        assert central.received(topic, payload) is allowed, case


SUBSCRIBE_CASES = ["#", "sw/v1/#", "sw/v1/nodes/+/config", "{b}/config", "{b}/cmd", "{b}/#"]


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("pattern", SUBSCRIBE_CASES)
def test_a_node_receives_only_its_own_config_and_cmd(fleet: Fleet, v5: bool, pattern: str) -> None:
    a, b = fleet.a.node_id, fleet.b.node_id
    wanted = pattern.replace("{b}", f"sw/v1/nodes/{b}")
    marker = f"marker-{uuid.uuid4()}".encode()
    with node_probe(fleet, fleet.a, v5=v5) as node:
        suback = node.subscribe(wanted)[0]
        assert not node.subscribe(TOPICS.config(a))[0].is_failure  # its own config: allowed
        with probe(CENTRAL_USER, CENTRAL_PASSWORD, fleet.broker.port) as central:
            for topic in (TOPICS.config(b), TOPICS.cmd(b), TOPICS.events(b)):
                central.publish(topic, b"for-b-only")
            central.publish(TOPICS.config(a), marker)
        wait_until(lambda: node.received(TOPICS.config(a), marker), message="node A's own config")
        leaked = [t for t, p in node.messages if p == b"for-b-only"]
        assert leaked == [], f"SUBACK {suback} for {wanted}, yet node A got {leaked}"


@pytest.mark.parametrize(
    ("user", "password", "v5"),
    [
        ("{a}", "wrong-password-0123456789", False),
        ("{a}", "wrong-password-0123456789", True),
        ("{a}", "{b-password}", False),
        ("nobody", "whatever-0123456789", False),
        (CENTRAL_USER, "not-the-central-password", True),
    ],
    ids=["wrong-password", "wrong-password-v5", "other-nodes-password", "unknown-user", "central-wrong"],
)
def test_wrong_credentials_are_refused(fleet: Fleet, user: str, password: str, v5: bool) -> None:
    user = user.replace("{a}", fleet.a.mqtt_username)
    password = password.replace("{b-password}", secret(fleet.b))
    p = Probe(user, password, fleet.broker.port, v5=v5)
    try:
        code = p.connect()
    finally:
        p.close()
    assert code.is_failure and "authori" in str(code).lower(), code


def test_a_revoked_node_is_cut_off_and_refused(fleet: Fleet) -> None:
    c = cli_enroll(fleet.central, fleet.admin, "Node C", fleet.tmp / "node-c")
    live = Probe(c.mqtt_username, secret(c), fleet.broker.port)
    assert not live.connect().is_failure
    token = {"Authorization": f"Bearer {c.http_token.get_secret_value()}", "Content-Type": "image/jpeg"}
    jpeg = b"\xff\xd8\xff\xe0node-c\xff\xd9"
    sha = hashlib.sha256(jpeg).hexdigest()
    assert (
        httpx.put(f"{fleet.central.url}/api/v1/evidence/{sha}", content=jpeg, headers=token).status_code
        == 201
    )
    try:
        revoked = fleet.admin.post(f"/api/v1/nodes/{c.node_id}/revoke")
        assert revoked.status_code == 200
        assert revoked.json()["broker"] == {"managed": True, "reloaded": True, "error": None}
        # Mosquitto re-checks connected clients on reload: the live session ends too.
        assert live.disconnected.wait(10), fleet.broker.log()[-2000:]
    finally:
        live.close()
    again = Probe(c.mqtt_username, secret(c), fleet.broker.port)
    try:
        assert again.connect().is_failure
    finally:
        again.close()
    assert (
        httpx.put(f"{fleet.central.url}/api/v1/evidence/{sha}", content=jpeg, headers=token).status_code
        == 401
    )
    with node_probe(fleet, fleet.b) as node:  # the others are untouched
        assert node.connack is not None and not node.connack.is_failure

"""The embedded broker of single-box installs, through real processes: central (``central.cli`` without an
external broker) runs Mosquitto as its child with the per-node credentials and ACL it writes; anonymous and
wrong-password clients are refused, a node cannot publish as another, and a central SIGKILLed with a backlog
(its Mosquitto child left running, stopped by the restarted central) loses nothing (the node's outbox keeps every event until central acknowledged it end to end)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.node.enroll import NodeCredentials
from tests.central.factories import make_event
from tests.conftest import find_mosquitto, free_port, wait_until
from tests.e2e.test_acl_support import Probe, cli_enroll
from tests.e2e.test_delivery_chaos_support import CentralProcess
from tests.e2e.test_delivery_support import loadgen, node_config

pytestmark = pytest.mark.e2e


@pytest.fixture
def embedded(tmp_path: Path):  # type: ignore[no-untyped-def]
    if find_mosquitto() is None:
        pytest.skip("mosquitto binary not found")
    central = CentralProcess(tmp_path, free_port(), embedded=True, STREETWATCH_EMBEDDED_BROKER="mosquitto")
    central.start()
    try:
        yield central
    finally:
        central.stop()


def enroll(central: CentralProcess, tmp: Path, name: str) -> NodeCredentials:
    admin = central.admin()
    try:
        return cli_enroll(central, admin, name, tmp / f"{name}-state")  # type: ignore[arg-type]
    finally:
        admin.close()


def mqtt_port(central: CentralProcess) -> int:
    return int(central.env["STREETWATCH_EMBEDDED_MQTT_PORT"])


def test_embedded_mosquitto_requires_credentials_and_applies_the_node_acl(
    embedded: CentralProcess, tmp_path: Path
) -> None:
    health = embedded.health()
    assert health["mqtt"]["broker"].startswith("mosquitto (embedded, pid ")
    port = mqtt_port(embedded)
    for user, password in (("", ""), ("admin", "wrong-password")):
        p = Probe(user, password, port)
        try:
            assert p.connect().is_failure, f"{user or 'anonymous'} was let in"
        finally:
            p.close()
    a, b = enroll(embedded, tmp_path, "node-a"), enroll(embedded, tmp_path, "node-b")
    wrong = Probe(a.mqtt_username, "not-" + a.mqtt_password.get_secret_value(), port)
    try:
        assert wrong.connect().is_failure
    finally:
        wrong.close()
    # The broker reloads the files on enrollment: a may connect, publish as itself, not as b.
    probe = Probe(a.mqtt_username, a.mqtt_password.get_secret_value(), port, v5=True)
    wait_until(lambda: not probe.connect().is_failure, 30, 0.5, "node a admitted after the reload")
    try:
        own = make_event(node_id=a.node_id)
        forged = make_event(node_id=b.node_id)
        assert not probe.publish(f"sw/v1/nodes/{a.node_id}/events", own.to_json()).is_failure  # type: ignore[union-attr]
        refused = probe.publish(f"sw/v1/nodes/{b.node_id}/events", forged.to_json())
        assert refused is not None and refused.is_failure, "node a published as node b"
    finally:
        probe.close()
    wait_until(lambda: embedded.count() == 1, 30, 0.2, "node a's own event stored")
    assert embedded.dead_letters() == []


@pytest.mark.slow
def test_embedded_mosquitto_central_sigkill_with_a_backlog_loses_nothing(
    embedded: CentralProcess, tmp_path: Path
) -> None:
    total = 2_000
    creds = enroll(embedded, tmp_path, "backlog-node")
    config = node_config(
        tmp_path,
        creds.node_id,
        mqtt_port(embedded),
        central_url=embedded.url,
        mqtt={"username": creds.mqtt_username},
        outbox={"ack_gap_s": 5.0, "ack_timeout_s": 15.0},
    )
    env = {
        "STREETWATCH_MQTT_PASSWORD": creds.mqtt_password.get_secret_value(),
        "STREETWATCH_NODE_TOKEN": creds.http_token.get_secret_value(),
    }
    with loadgen(
        config, "--count", str(total), "--batch", "200", "--exit-when-drained", "--timeout", "300", env=env
    ) as gen:
        gen.wait_json("spooled", 60)
        wait_until(lambda: embedded.count() >= total * 0.25, 120, 0.2, "a quarter at central")
        embedded.kill()  # SIGKILL: central dies with a backlog in flight, its Mosquitto child is orphaned
        at_stop = embedded.count()
        embedded.start()
        assert gen.wait(320) == 0, gen.stderr()
        end = gen.wait_json("drained", 5)
    wait_until(lambda: embedded.count() == total, 60, 0.2, f"{total} events at central")
    assert at_stop < total
    assert embedded.seqs() == list(range(total))
    print(f"stopped at {at_stop}; node {json.dumps(end)}")

"""Remote config through real parts: central process -> authenticated Mosquitto -> an enrolled node and back.

The node side is ``RemoteConfig`` + ``RemoteConfigListener`` on a paho client logged in with the node's own
enrolled credentials, exactly the pieces the agent wires in; ``on_change`` records what the agent would get.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import AgentConfig, parse_config
from edge_agent.node.enroll import NodeCredentials, apply_credentials
from edge_agent.node.remote_config import CONFIG_FILE, RemoteConfig, RemoteConfigListener
from tests.conftest import wait_until
from tests.e2e.test_acl_support import (
    CENTRAL_PASSWORD,
    CENTRAL_USER,
    TOPICS,
    auth_broker,
    central_process,
    cli_enroll,
    probe,
)

pytestmark = pytest.mark.e2e

KERB = [[0.10, 0.96], [0.25, 0.96], [0.385, 0.62], [0.33, 0.62]]
CROSSED = [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]


def body(
    dwell: float = 20, polygon: list[list[float]] = KERB, rule_type: str = "illegal_stopping"
) -> dict[str, Any]:
    return {
        "model": {"path": "models/yolo11n.onnx"},
        "cameras": [
            {
                "id": "cam-1",
                "source": "rtsp://10.0.0.5/s1",
                "zones": [{"id": "kerb", "polygon": polygon}],
                "rules": [{"id": "no-stop", "type": rule_type, "zone": "kerb", "min_dwell_s": dwell}],
            }
        ],
    }


@dataclass
class Node:
    """The node's half: RemoteConfig on disk, the listener on a paho client with its own credentials."""

    creds: NodeCredentials
    state: Path
    port: int
    changes: list[AgentConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        file_cfg = parse_config(
            {"node_id": "from-file", "model": {"path": "m.onnx"}, "cameras": [{"id": "c", "source": "x"}]}
        )
        self.cfg = apply_credentials(file_cfg, self.creds, environ={})
        self.remote = RemoteConfig(self.cfg, self.state, on_change=self.changes.append)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"node-{self.cfg.node_id}", clean_session=False
        )
        self.client.username_pw_set(self.creds.mqtt_username, self.creds.mqtt_password.get_secret_value())
        self.connected = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()  # stands in for the session's own on_connect
        RemoteConfigListener(self.remote, TOPICS, self.cfg.node_id).attach(self.client)

    def start(self) -> None:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.connected.wait(10)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[httpx.Client, Node]]:
    with auth_broker(tmp_path / "mosquitto") as broker, central_process(tmp_path, broker) as central:
        admin = central.admin()
        creds = cli_enroll(central, admin, "Node R", tmp_path / "node-r")
        node = Node(creds, tmp_path / "node-r", broker.port)
        node.start()
        try:
            yield admin, node
        finally:
            node.stop()
            admin.close()


def wait_state(admin: httpx.Client, node_id: str, **expected: Any) -> dict[str, Any]:
    """Poll the node's record at central until the given fields have the given values (bounded)."""

    def done() -> dict[str, Any] | None:
        s = dict(admin.get(f"/api/v1/nodes/{node_id}").json())
        return s if all(s[k] == v for k, v in expected.items()) else None

    return dict(wait_until(done, timeout_s=15, message=f"node record {expected}"))


def test_configs_are_applied_refused_and_ignored_as_they_should(setup: tuple[httpx.Client, Node]) -> None:
    admin, node = setup
    node_id = node.cfg.node_id
    config_url = f"/api/v1/nodes/{node_id}/config"

    # 1. A valid push is applied without a restart and acknowledged. The node has reported nothing yet, so
    #    central's first number (1) is the one its file config already runs: the node refuses it for the
    #    number only, central sends the same content again as 2, and the node applies that.
    accepted = admin.put(config_url, json=body(dwell=12))
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["version"] == 1
    applied = wait_state(admin, node_id, config_state="applied", applied_version=2, answer_version=2)
    assert (applied["desired_version"], applied["answer_ok"], applied["answer_error"]) == (2, True, None)
    assert [c.config_version for c in node.changes] == [2]
    assert node.changes[0].cameras[0].rules[0].min_dwell_s == 12
    saved = (node.state / CONFIG_FILE).read_bytes()

    # 2. Invalid configs are refused at central, with the field named; nothing reaches the node.
    for bad, words in [
        (body(polygon=CROSSED), "self-intersecting"),
        (body(rule_type="teleport"), "teleport"),
    ]:
        refused = admin.put(config_url, json=bad)
        assert refused.status_code == 422 and words in refused.json()["detail"]
    assert admin.get(config_url).json()["version"] == 2

    # 3. A config central let through but the node cannot run (a rule type this node's software does not know
    #    yet, say): the node refuses it with the reason, keeps running the old one, its disk file unchanged.
    newer = {**body(rule_type="teleport"), "node_id": node_id, "config_version": 3}
    with probe(CENTRAL_USER, CENTRAL_PASSWORD, node.port) as central:
        central.publish(TOPICS.config(node_id), json.dumps(newer).encode(), retain=True)
    failed = wait_state(admin, node_id, answer_version=3, answer_ok=False)
    assert "cameras.0.rules.0: Input tag 'teleport'" in failed["answer_error"]
    assert (failed["config_state"], failed["applied_version"]) == ("applied", 2)  # still runs central's 2
    assert len(node.changes) == 1 and (node.state / CONFIG_FILE).read_bytes() == saved

    # 4. A stale version is ignored.
    stale = {**body(dwell=99), "node_id": node_id, "config_version": 1}
    with probe(CENTRAL_USER, CENTRAL_PASSWORD, node.port) as central:
        central.publish(TOPICS.config(node_id), json.dumps(stale).encode())
    ignored = wait_state(admin, node_id, answer_version=1, applied_version=2)
    assert (
        ignored["answer_ok"] is False
        and ignored["answer_error"] == "config_version: 1 is older than the running 2"
    )
    assert len(node.changes) == 1 and (node.state / CONFIG_FILE).read_bytes() == saved

    # 5. The next push is numbered above what the node runs, and applied live.
    again = admin.put(config_url, json=body(dwell=30))
    version = again.json()["version"]
    assert version > 2
    wait_state(admin, node_id, config_state="applied", applied_version=version)
    assert node.remote.current.cameras[0].rules[0].min_dwell_s == 30 and len(node.changes) == 2

    # 6. A restart runs the last good config from disk.
    node.stop()
    restarted = RemoteConfig(node.cfg, node.state)
    assert restarted.current.config_version == version
    assert restarted.current.cameras[0].rules[0].min_dwell_s == 30

"""Remote config on a running agent, through a real Mosquitto and a real agent process.

A valid push is applied without a restart and acknowledged; an invalid one is refused with the reason naming
the field, and the good config keeps running (and stays the one saved on disk).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.contract import ConfigApplied, Topics
from tests.conftest import wait_until
from tests.paths import MODEL_640, ROOT, TOKYO

pytestmark = pytest.mark.e2e

NODE = "live-node"
KERB = [[0.10, 0.96], [0.25, 0.96], [0.385, 0.62], [0.33, 0.62]]


def agent_config(
    tmp: Path, port: int, version: int, polygon: list[list[float]], dwell: float
) -> dict[str, Any]:
    return {
        "node_id": NODE,
        "config_version": version,
        "central_url": "http://127.0.0.1:9",  # no central: this test is about config, no events are due
        "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 10},
        "model": {"path": str(MODEL_640)},
        "evidence_dir": str(tmp / "evidence"),
        "metrics": {"port": 0},
        "state": {"dir": str(tmp / "state")},
        "cameras": [
            {
                "id": "omotesando-01",
                "source": str(TOKYO),
                "realtime": True,
                "loop": True,
                "detect_fps": 2,
                "zones": [{"id": "left-kerb", "polygon": polygon}],
                "rules": [
                    {
                        "id": "no-stopping",
                        "type": "illegal_stopping",
                        "zone": "left-kerb",
                        "min_dwell_s": dwell,
                    }
                ],
            }
        ],
    }


def test_push_is_applied_live_and_a_bad_push_keeps_the_good_config(mosquitto: Any, tmp_path: Path) -> None:
    topics = Topics()
    cfg_path = tmp_path / "agent.yaml"
    cfg_path.write_text(yaml.safe_dump(agent_config(tmp_path, mosquitto.port, 1, KERB, 600)))
    answers: list[ConfigApplied] = []
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            answers.append(ConfigApplied.from_json(msg.payload))

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-operator")
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe(topics.config_applied(NODE), qos=1)
    watcher.loop_start()
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.node.cli", "run", "--config", str(cfg_path)],
        cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def answer_for(version: int) -> ConfigApplied | None:
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-3000:]
            with lock:
                return next((a for a in answers if a.version == version), None)

        def push(version: int, polygon: list[list[float]], dwell: float) -> ConfigApplied:
            body = json.dumps(agent_config(tmp_path, mosquitto.port, version, polygon, dwell)).encode()
            watcher.publish(topics.config(NODE), body, qos=1, retain=True).wait_for_publish(10)
            wait_until(
                lambda: answer_for(version) is not None, timeout_s=60, message=f"answer to config {version}"
            )
            found = answer_for(version)
            assert found is not None
            return found

        # a valid push: new dwell and zone, applied without a restart
        ok = push(2, [[0.10, 0.96], [0.26, 0.96], [0.39, 0.62], [0.33, 0.62]], 42)
        assert ok.ok and ok.error is None and ok.running_version == 2
        wait_until(
            lambda: b"config 2 in effect" in (tmp_path / "agent.log").read_bytes(),
            timeout_s=30,
            message="the running pipeline switched to config 2",
        )
        saved = list((tmp_path / "state").rglob("*.json"))
        assert any(json.loads(p.read_text()).get("config_version") == 2 for p in saved), saved

        # an invalid push: refused with the field named, config 2 keeps running and stays on disk
        bad = push(3, [[0, 0], [1, 1], [1, 0], [0, 1]], 42)
        assert not bad.ok and bad.running_version == 2
        assert bad.error is not None and "polygon" in bad.error and "self-intersecting" in bad.error
        assert not any(json.loads(p.read_text()).get("config_version") == 3 for p in saved)
        assert agent.poll() is None, "the agent must keep running on its good config"
    finally:
        agent.terminate()
        code = agent.wait(timeout=60)
        watcher.loop_stop()
        watcher.disconnect()
        log.close()
    assert code == 0, (tmp_path / "agent.log").read_text()[-3000:]

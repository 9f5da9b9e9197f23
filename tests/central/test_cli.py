"""``streetwatch-central`` as a real process: serves, then stops cleanly on SIGTERM / Ctrl-C with status 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.central.conftest import ADMIN_PASSWORD, NODE_TOKEN
from tests.conftest import free_port, wait_for_port, wait_until


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_serves_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    http_port, mqtt_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_")},
        "STREETWATCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "STREETWATCH_NODE_TOKEN": NODE_TOKEN,
        "STREETWATCH_EMBEDDED_MQTT_PORT": str(mqtt_port),
        "STREETWATCH_MQTT_CLIENT_ID": "central-cli-test",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "--port", str(http_port), "--log-level", "warning"],
        cwd=tmp_path,  # default database and data dir are relative: var/central/...
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", http_port, 30.0, process)

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as response:
                return bool(json.load(response)["mqtt"]["connected"])

        wait_until(healthy, 15.0, message="central healthy and subscribed")
        process.send_signal(sig)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "Traceback" not in text
    assert (tmp_path / "var" / "central" / "streetwatch.db").is_file()
    assert (tmp_path / "var" / "central" / "evidence").is_dir()

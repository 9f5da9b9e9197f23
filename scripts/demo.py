#!/usr/bin/env python3
"""Run the whole system on one machine: central (embedded MQTT broker, SQLite, evidence on disk) and one agent
replaying a real street clip with a no-stopping zone. Ctrl-C stops both.

Environment (all optional): STREETWATCH_ADMIN_PASSWORD (else a random one is generated and printed),
STREETWATCH_DEMO_PORT (8000), STREETWATCH_DEMO_CONFIG (configs/demo-tokyo.yaml).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _stop(proc: subprocess.Popen[bytes] | None, name: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        print(f"demo: {name} did not stop in 20 s, killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def _enroll(url: str, admin_password: str, config: Path, env: dict[str, str]) -> bool:
    """Enroll the demo agent as a technician would (a one-time token, ``streetwatch-agent enroll``): the embedded
    broker admits only enrolled nodes, with their own credentials, and central counts only their events."""
    import httpx

    from edge_agent.config import load_config
    from edge_agent.node.enroll import load_credentials
    from edge_agent.node.status import state_dir

    cfg = load_config(config)
    folder = state_dir(cfg)
    if load_credentials(folder) is not None:
        return True
    with httpx.Client(base_url=url, timeout=30) as admin:
        r = admin.post("/api/v1/login", json={"username": "admin", "password": admin_password})
        r.raise_for_status()
        admin.headers["X-CSRF-Token"] = r.json()["csrf_token"]  # every JSON write carries it
        answer = admin.post("/api/v1/enrollment-tokens")
        if answer.status_code >= 300:
            print(
                f"demo: central refused an enrollment token: {answer.status_code} {answer.text}",
                file=sys.stderr,
            )
            return False
        token = answer.json()["token"]
    args = ["--central", url, "--token", "-", "--node-name", cfg.node_id, "--state-dir", str(folder)]
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.node.cli", "enroll", *args],
        cwd=ROOT,
        env=env,
        input=token + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        print(f"demo: enrolling the agent failed:\n{done.stderr}", file=sys.stderr)
        return False
    print(f"demo: {done.stdout.strip()}", flush=True)
    return True


def main() -> int:
    port = int(os.environ.get("STREETWATCH_DEMO_PORT", "8000"))
    config = Path(os.environ.get("STREETWATCH_DEMO_CONFIG", ROOT / "configs" / "demo-tokyo.yaml"))
    password = os.environ.get("STREETWATCH_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    data = ROOT / "var" / "demo"
    data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("STREETWATCH_DATABASE_URL", f"sqlite:///{data / 'central.db'}")
    env.setdefault("STREETWATCH_DATA_DIR", str(data / "central"))
    env["STREETWATCH_ADMIN_PASSWORD"] = password
    env.setdefault("STREETWATCH_NODE_TOKEN", secrets.token_urlsafe(24))
    central = agent = None
    try:
        print(
            "demo: starting central (embedded MQTT broker on 127.0.0.1:1883: Mosquitto when installed) ...",
            flush=True,
        )
        central = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            preexec_fn=os.setpgrp,
        )
        if not _wait_healthy(f"http://127.0.0.1:{port}/healthz", central):
            print(
                "demo: central did not come up (see its log above); is port 8000 or 1883 in use?",
                file=sys.stderr,
            )
            return 1
        if not _enroll(f"http://127.0.0.1:{port}", password, config, env):
            return 1
        print(f"demo: starting the agent on {config.name} ...", flush=True)
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.node.cli", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            preexec_fn=os.setpgrp,
        )
        print(
            "\n"
            f"  streetwatch is running:  http://127.0.0.1:{port}/review\n"
            f"  log in as:               admin / {password}\n"
            "  the first illegal-stopping event shows up about 10 s after the agent starts.\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        # The children run in their own process groups, so Ctrl-C reaches only this script, which then stops
        # the agent first (it drains its queue) and central second. Blocked only now: a mask is inherited.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        while central.poll() is None and agent.poll() is None:
            if signal.sigtimedwait([signal.SIGINT, signal.SIGTERM], 1.0) is not None:
                break
        if agent.poll() is not None and agent.returncode:
            print(f"demo: the agent exited with code {agent.returncode}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        print("demo: stopping ...", flush=True)
        _stop(agent, "agent")
        _stop(central, "central")
        print("demo: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())

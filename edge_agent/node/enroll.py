"""Enrollment on the node: trade a one-time token for this node's identity and secrets, keep them 0600.

``streetwatch-agent enroll --central URL --token T --node-name NAME [--state-dir DIR]`` posts the token to
central's ``/api/v1/enroll``; central answers once with the node id, the MQTT username and password and the
HTTP token (it keeps only hashes). They go to ``<state_dir>/credentials.json``, written atomically with mode
0600 in a 0700 folder. ``load_credentials`` refuses a file that others can read, like ssh does with keys.

At ``run``, ``apply_credentials`` makes the enrolled identity win: the node id and MQTT username replace the
config file's (the broker's ACL only lets this node publish under its own id anyway), and the secrets are put
where the session and the uploader read them (``STREETWATCH_MQTT_PASSWORD``, ``STREETWATCH_NODE_TOKEN``).
Without a credentials file those environment variables are used as before.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from collections.abc import MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, ValidationError

from edge_agent.config import AgentConfig, ConfigError
from edge_agent.contract import Identifier, utcnow
from edge_agent.node.statefile import write_atomic

log = logging.getLogger(__name__)

CREDENTIALS_FILE: Final = "credentials.json"
MQTT_PASSWORD_ENV: Final = "STREETWATCH_MQTT_PASSWORD"  # read by edge_agent/delivery/session.py
NODE_TOKEN_ENV: Final = "STREETWATCH_NODE_TOKEN"  # read by edge_agent/delivery/publisher.py
ENROLL_PATH: Final = "/api/v1/enroll"
HTTP_TIMEOUT_S: Final = 15.0


class EnrollError(RuntimeError):
    """Enrollment failed or the credentials are unusable; the message says why and what to do."""


class EnrollAnswer(BaseModel):
    """Central's answer. Unknown fields are ignored: a newer central must not break older nodes' enrollment."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    node_id: Identifier = Field(description="Node id central issued.")
    node_name: str = Field(max_length=128, description="The name sent.")
    mqtt_username: str = Field(min_length=1, max_length=64, description="Broker username.")
    mqtt_password: SecretStr = Field(min_length=16, max_length=256, description="Broker password.")
    http_token: SecretStr = Field(min_length=16, max_length=256, description="Evidence upload token.")


class NodeCredentials(BaseModel):
    """What ``credentials.json`` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["streetwatch.credentials/1"] = Field(
        default="streetwatch.credentials/1", alias="schema", description="File format version."
    )
    node_id: Identifier = Field(description="Node id central issued.")
    node_name: str = Field(max_length=128, description="Human name given at enrollment.")
    central_url: str = Field(pattern=r"^https?://", max_length=2048, description="Central it enrolled with.")
    mqtt_username: str = Field(min_length=1, max_length=64, description="Broker username.")
    mqtt_password: SecretStr = Field(min_length=16, max_length=256, description="Broker password.")
    http_token: SecretStr = Field(min_length=16, max_length=256, description="Evidence upload token.")
    enrolled_at: AwareDatetime = Field(description="When (UTC).")

    def to_file_bytes(self) -> bytes:
        data = self.model_dump(mode="json", by_alias=True)
        data["mqtt_password"] = self.mqtt_password.get_secret_value()
        data["http_token"] = self.http_token.get_secret_value()
        return (json.dumps(data, indent=2) + "\n").encode()


def credentials_path(state_dir: Path) -> Path:
    return state_dir / CREDENTIALS_FILE


def save_credentials(state_dir: Path, creds: NodeCredentials) -> Path:
    """Write the credentials file (0600) in ``state_dir`` (created 0700); returns its path."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = credentials_path(state_dir)
    write_atomic(path, creds.to_file_bytes(), 0o600)
    return path


def load_credentials(state_dir: Path) -> NodeCredentials | None:
    """The enrolled credentials, None when the node never enrolled; ``EnrollError`` when unusable."""
    path = credentials_path(state_dir)
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise EnrollError(f"cannot read {path}: {err}") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise EnrollError(
            f"{path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    try:
        return NodeCredentials.model_validate_json(raw)
    except ValidationError as err:
        raise EnrollError(f"{path} is not a valid credentials file: {err}") from err


def apply_credentials(
    cfg: AgentConfig, creds: NodeCredentials, environ: MutableMapping[str, str] = os.environ
) -> AgentConfig:
    """``cfg`` with the enrolled node id and MQTT username; the secrets go into ``environ`` for the session."""
    if cfg.node_id != creds.node_id:
        log.warning("config node_id %r replaced by the enrolled node id %r", cfg.node_id, creds.node_id)
    environ[MQTT_PASSWORD_ENV] = creds.mqtt_password.get_secret_value()
    environ[NODE_TOKEN_ENV] = creds.http_token.get_secret_value()
    mqtt = cfg.mqtt.model_copy(update={"username": creds.mqtt_username})
    return cfg.model_copy(update={"node_id": creds.node_id, "mqtt": mqtt})


def enroll(
    central_url: str,
    token: str,
    node_name: str,
    state_dir: Path,
    *,
    force: bool = False,
    http: httpx.Client | None = None,
    now: datetime | None = None,
) -> NodeCredentials:
    """Enroll with central and save the credentials; ``EnrollError`` with the reason when that fails.

    Checks that the state folder is writable *before* spending the one-time token: central shows the secrets
    only once, and a node that cannot store them would need a new token and leave an orphan node behind.
    """
    path = credentials_path(state_dir)
    if path.exists() and not force:
        raise EnrollError(f"{path} exists: this node is already enrolled (use --force to enroll it anew)")
    base = central_url.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EnrollError(f"--central must be an http(s) URL, got {central_url!r}")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        log.warning("enrolling over plain http: the credentials cross the network unencrypted")
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(state_dir / ".write-test", b"")
        (state_dir / ".write-test").unlink()
    except OSError as err:
        raise EnrollError(f"cannot write to the state folder {state_dir}: {err}") from err
    client = http or httpx.Client(timeout=HTTP_TIMEOUT_S)
    try:
        response = client.post(f"{base}{ENROLL_PATH}", json={"token": token, "node_name": node_name})
    except httpx.HTTPError as err:
        raise EnrollError(f"cannot reach central at {base}: {err}") from err
    finally:
        if http is None:
            client.close()
    if response.status_code != 201:
        raise EnrollError(f"central refused the enrollment ({response.status_code}): {_detail(response)}")
    try:
        answer = EnrollAnswer.model_validate_json(response.content)
    except ValidationError as err:
        raise EnrollError(f"central's answer is not an enrollment: {err}") from err
    creds = NodeCredentials(
        node_id=answer.node_id,
        node_name=answer.node_name,
        central_url=base,
        mqtt_username=answer.mqtt_username,
        mqtt_password=answer.mqtt_password,
        http_token=answer.http_token,
        enrolled_at=now or utcnow(),
    )
    save_credentials(state_dir, creds)
    broker = response.json().get("broker") or {}
    if broker.get("managed") and not broker.get("reloaded"):
        log.warning("central could not reload the broker yet (%s); MQTT may refuse until it does", broker)
    return creds


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:200]


def run_enroll(central: str, token: str, node_name: str, state_dir: Path | None, force: bool) -> int:
    """The ``enroll`` subcommand: 0 enrolled, 1 refused or failed (the reason on stderr)."""
    from edge_agent.node.status import resolve_state_dir  # the agent's one notion of its state folder

    if token == "-":
        token = sys.stdin.readline().strip()  # keeps the token out of the shell history and `ps`
    try:
        # --state-dir, else $STREETWATCH_STATE_DIR, else the installed config's state folder, else var/agent:
        # the folder `run` and `status` use too, so the agent finds its credentials there.
        folder = resolve_state_dir(None, state_dir)
        creds = enroll(central, token, node_name, folder, force=force)
    except (EnrollError, ConfigError) as err:
        print(f"streetwatch-agent: enroll: {err}", file=sys.stderr)
        return 1
    print(f"enrolled as node {creds.node_id}; credentials in {credentials_path(folder)} (mode 0600)")
    return 0

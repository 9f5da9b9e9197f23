"""Remote config on the node: apply what central publishes on ``{prefix}/nodes/{node}/config``, keep the last good.

Central validates a config before it publishes it, but the node validates again with the same rules
(``edge_agent.config.parse_config``): a node running older software may not know a rule type central knows,
and a node must never run something it cannot check. The answer to every config message is a
``ConfigApplied`` (published on ``config/applied``), so a refusal reaches the operator with its reason.

Rules of ``RemoteConfig.apply``:

* the payload is an ``AgentConfig`` as JSON; its ``config_version`` must be newer than the running one. The
  same version with the same content is acknowledged as running (the retained message comes again at every
  reconnect), with other content it is refused; an older one is refused as stale and changes nothing;
* the node keeps its own connection and hardware settings (``LOCAL_FIELDS``: identity, broker, central URL,
  model, spool and evidence folders) from its file config whatever the payload says: a remote typo in the
  broker address would otherwise cut the node off for good, and model updates are a separate, hashed process.
  Cameras, zones, lines, signals, rules, the scheduler and evidence settings come from central;
* a valid newer config is written atomically to ``<state_dir>/remote-config.json`` (temp file, fsync,
  rename), then handed to ``on_change``; a bad config, a stale one or an ``on_change`` that raises leaves the
  running config and the file on disk untouched. A bad config never replaces a good one.

At start, ``RemoteConfig`` loads the saved config when it is newer than the file config, so a node that
reboots while central is unreachable runs what it was last told.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import AgentConfig, ConfigError, parse_config
from edge_agent.contract import ConfigApplied, Topics, utcnow
from edge_agent.node.statefile import commit, write_temp

log = logging.getLogger(__name__)

CONFIG_FILE: Final = "remote-config.json"
MAX_VERSION: Final = 2**31 - 1
# Every AgentConfig field is one or the other (tests/edge_agent/test_remote_config.py checks that a new field
# gets classified). Local: identity, connections, files and ports of this box. Remote: what operators tune.
# ``recording`` is local: its disk budget is a property of this box's disk.
LOCAL_FIELDS: Final = frozenset(
    {
        "node_id",
        "topic_prefix",
        "central_url",
        "mqtt",
        "model",
        "evidence_dir",
        "outbox",
        "metrics",
        "state",
        "recording",
    }
)
REMOTE_FIELDS: Final = frozenset({"config_version", "cameras", "scheduler", "evidence"})


@dataclass
class RemoteConfigStats:
    """What happened to config messages since start (for the log and, later, the heartbeat)."""

    applied: int = 0
    already_running: int = 0
    stale: int = 0
    refused: int = 0
    load_errors: int = 0


class RemoteConfig:
    """The node's running config and its one verb, ``apply``; thread-safe (paho calls it from its thread)."""

    def __init__(
        self,
        file_cfg: AgentConfig,
        state_dir: Path,
        *,
        on_change: Callable[[AgentConfig], None] | None = None,
        base_dir: Path | None = None,
        clock: Callable[[], Any] = utcnow,
    ) -> None:
        """``file_cfg``: the config loaded from the node's YAML (its ``LOCAL_FIELDS`` always win).

        ``base_dir`` resolves relative camera file sources of a remote config, like ``load_config`` does for
        the file (default: the current directory). ``on_change`` may be set later (the agent that handles it is
        usually built from ``current``).
        """
        self.local = file_cfg
        self.path = state_dir / CONFIG_FILE
        self.on_change = on_change
        self._base_dir = base_dir
        self._clock = clock
        self._lock = threading.Lock()
        self.stats = RemoteConfigStats()
        saved = self._load_saved()
        self._current = saved if saved is not None else file_cfg

    @property
    def current(self) -> AgentConfig:
        """The config the node runs: the last good remote one if newer than the file, else the file."""
        return self._current

    def apply(self, payload: bytes) -> ConfigApplied:
        """Validate ``payload`` and, when it is a valid newer config, save it and call ``on_change``."""
        with self._lock:
            running = self._current.config_version
            try:
                data = json.loads(payload)
            except ValueError as err:
                return self._refused(None, f"payload is not JSON: {err}")
            if not isinstance(data, dict):
                return self._refused(None, "payload is not a JSON object")
            version = data.get("config_version")
            if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
                return self._refused(None, "config_version: missing, or not an integer 0..2^31-1")
            if version < running:
                self.stats.stale += 1
                log.warning("remote config %d ignored: older than the running version %d", version, running)
                return self._answer(version, f"config_version: {version} is older than the running {running}")
            if data.get("node_id") != self.local.node_id:
                return self._refused(
                    version, f"node_id: config is for {data.get('node_id')!r}, this is {self.local.node_id!r}"
                )
            try:
                cfg = self._validate(data, f"remote config {version}")
            except ConfigError as err:
                return self._refused(version, str(err))
            if version == running:
                # The retained config again (every reconnect), or one that reuses a version: never run
                # two different configs under one version number.
                if cfg != self._current:
                    return self._refused(
                        version, f"config_version: {version} already runs, with other content"
                    )
                self.stats.already_running += 1
                return self._answer(version, None)
            return self._install(cfg)

    def _install(self, cfg: AgentConfig) -> ConfigApplied:
        version = cfg.config_version
        body = json.dumps(cfg.model_dump(mode="json", by_alias=True), indent=1).encode()
        try:
            tmp = write_temp(self.path, body)
        except OSError as err:
            return self._refused(version, f"could not save the config: {err}")
        try:
            if self.on_change is not None:
                self.on_change(cfg)
            commit(tmp, self.path)
        except Exception as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.exception("remote config %d could not be applied", version)
            return self._refused(version, f"could not apply: {type(err).__name__}: {err}")
        self._current = cfg
        self.stats.applied += 1
        log.info("remote config %d applied (%d camera(s))", version, len(cfg.cameras))
        return self._answer(version, None)

    def _validate(self, data: dict[str, Any], origin: str) -> AgentConfig:
        merged = dict(data)
        local = self.local.model_dump(mode="json", by_alias=True)
        for name in LOCAL_FIELDS & local.keys():
            merged[name] = local[name]
        cfg = parse_config(merged, origin)
        base = self._base_dir if self._base_dir is not None else Path.cwd()
        cameras = [
            c.model_copy(update={"source": str((base / c.source).resolve())})
            if _relative_file(c.source)
            else c
            for c in cfg.cameras
        ]
        return cfg.model_copy(update={"cameras": cameras})

    def _load_saved(self) -> AgentConfig | None:
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_bytes())
            if not isinstance(data, dict):
                raise ConfigError(f"{self.path} is not a JSON object")
            cfg = self._validate(data, str(self.path))
        except (OSError, ValueError) as err:  # ConfigError is a ValueError
            self.stats.load_errors += 1
            log.error("saved remote config not used: %s", err)
            return None
        if cfg.config_version <= self.local.config_version:
            log.info(
                "saved remote config %d not newer than the file's %d; using the file",
                cfg.config_version,
                self.local.config_version,
            )
            return None
        log.info(
            "using the saved remote config %d (file has %d)", cfg.config_version, self.local.config_version
        )
        return cfg

    def _refused(self, version: int | None, error: str) -> ConfigApplied:
        self.stats.refused += 1
        log.error("remote config %s refused: %s", version if version is not None else "?", error)
        return self._answer(version, error)

    def _answer(self, version: int | None, error: str | None) -> ConfigApplied:
        return ConfigApplied(
            node_id=self.local.node_id,
            version=version,
            ok=error is None,
            error=error[:4000] if error is not None else None,
            running_version=min(self._current.config_version, MAX_VERSION),
            at=self._clock(),
        )


def _relative_file(source: str) -> bool:
    return "://" not in source and not source.isdigit() and not Path(source).is_absolute()


class RemoteConfigListener:
    """Binds a ``RemoteConfig`` to the node's paho client: subscribe at every connect, answer every message.

    ``attach`` chains onto the client's existing ``on_connect`` (the session's status announcement keeps
    working) and routes the config topic to its own callback, so nothing else in the session changes. The
    answer goes straight to paho at QoS 1, not through the outbox: if it is lost, the retained config comes
    again at the next connect and is answered again.
    """

    def __init__(self, remote: RemoteConfig, topics: Topics, node_id: str) -> None:
        self.remote = remote
        self.topic = topics.config(node_id)
        self.applied_topic = topics.config_applied(node_id)

    def attach(self, client: mqtt.Client) -> None:
        previous = cast(Callable[..., None] | None, client.on_connect)

        def on_connect(
            client: mqtt.Client,
            userdata: Any,
            flags: mqtt.ConnectFlags,
            reason_code: ReasonCode,
            properties: Properties | None,
        ) -> None:
            if previous is not None:
                previous(client, userdata, flags, reason_code, properties)
            if not reason_code.is_failure:
                client.subscribe(self.topic, qos=1)

        client.on_connect = on_connect
        client.message_callback_add(self.topic, self.on_message)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not message.payload:
            return  # central cleared the retained config (the node was revoked)
        try:
            answer = self.remote.apply(bytes(message.payload))
        except Exception:  # an exception escaping a paho callback kills its network thread
            log.exception("remote config message could not be handled")
            return
        client.publish(self.applied_topic, answer.to_json(), qos=1)

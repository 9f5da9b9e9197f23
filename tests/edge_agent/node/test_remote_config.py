"""The node's remote config: only a valid, newer config replaces the running one, on disk and in the agent."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.config import AgentConfig, load_config
from edge_agent.contract import ConfigApplied
from edge_agent.node.remote_config import CONFIG_FILE, LOCAL_FIELDS, REMOTE_FIELDS, RemoteConfig

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
KERB = [[0.10, 0.96], [0.25, 0.96], [0.385, 0.62], [0.33, 0.62]]
CROSSED = [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]


def file_config(tmp_path: Path, version: int = 1) -> AgentConfig:
    data = {
        "node_id": "node-a",
        "config_version": version,
        "mqtt": {"host": "10.1.1.1", "port": 8883, "username": "node-a"},
        "model": {"path": "model.onnx"},
        "evidence_dir": "evidence",
        "cameras": [{"id": "cam-1", "source": "clips/a.mp4", "zones": [{"id": "kerb", "polygon": KERB}]}],
    }
    path = tmp_path / "etc" / "agent.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def remote(version: int, **overrides: Any) -> bytes:
    """What central publishes: a whole AgentConfig as JSON (its own idea of the local fields included)."""
    data: dict[str, Any] = {
        "node_id": "node-a",
        "config_version": version,
        "mqtt": {"host": "central-typo.invalid"},
        "model": {"path": "/elsewhere/other.onnx"},
        "cameras": [
            {
                "id": "cam-1",
                "source": "rtsp://10.0.0.5/s1",
                "zones": [{"id": "kerb", "polygon": KERB}],
                "rules": [{"id": "no-stop", "type": "illegal_stopping", "zone": "kerb", "min_dwell_s": 12}],
            }
        ],
    }
    data.update(overrides)
    return json.dumps(data).encode()


class Node:
    """A RemoteConfig with a recording ``on_change``, like the agent wires it."""

    def __init__(self, tmp_path: Path, file_version: int = 1, fail: bool = False) -> None:
        self.file_cfg = file_config(tmp_path, file_version)
        self.state = tmp_path / "state"
        self.changes: list[AgentConfig] = []
        self.fail = fail
        self.rc = RemoteConfig(
            self.file_cfg, self.state, on_change=self.on_change, base_dir=tmp_path / "etc", clock=lambda: T0
        )

    def on_change(self, cfg: AgentConfig) -> None:
        if self.fail:
            raise RuntimeError("camera cam-1 cannot be opened")
        self.changes.append(cfg)

    def disk(self) -> bytes | None:
        path = self.state / CONFIG_FILE
        return path.read_bytes() if path.exists() else None


def test_a_valid_newer_config_is_applied_saved_and_acknowledged(tmp_path: Path) -> None:
    node = Node(tmp_path)
    answer = node.rc.apply(remote(2))
    assert answer == ConfigApplied(node_id="node-a", version=2, ok=True, running_version=2, at=T0)
    assert [c.config_version for c in node.changes] == [2] and node.rc.current is node.changes[0]
    cfg = node.changes[0]
    assert cfg.cameras[0].rules[0].min_dwell_s == 12  # remote fields
    assert (cfg.mqtt, cfg.model, cfg.evidence_dir) == (
        node.file_cfg.mqtt,
        node.file_cfg.model,
        node.file_cfg.evidence_dir,
    )
    assert json.loads(node.disk() or b"")["config_version"] == 2
    assert oct((node.state / CONFIG_FILE).stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("payload", "version", "words"),
    [
        (
            remote(2, cameras=[{"id": "c", "source": "x", "zones": [{"id": "z", "polygon": CROSSED}]}]),
            2,
            "cameras.0.zones.0.polygon: Value error, polygon is self-intersecting",
        ),
        (
            remote(
                2,
                cameras=[{"id": "c", "source": "x", "rules": [{"id": "r", "type": "teleport", "zone": "z"}]}],
            ),
            2,
            "cameras.0.rules.0: Input tag 'teleport'",
        ),
        (remote(2, cameraz=[]), 2, "cameraz: Extra inputs are not permitted"),
        (remote(2, node_id="node-b"), 2, "node_id: config is for 'node-b'"),
        (remote(1, cameras=[]), 1, "cameras: List should have at least 1 item"),
        (b"{not json", None, "payload is not JSON"),
        (b"[1, 2]", None, "not a JSON object"),
        (json.dumps({"config_version": "2"}).encode(), None, "config_version: missing"),
        (json.dumps({"config_version": 2**31}).encode(), None, "config_version: missing"),
    ],
    ids=[
        "self-intersecting",
        "unknown-rule",
        "unknown-key",
        "other-node",
        "invalid-same-version",
        "not-json",
        "not-object",
        "version-string",
        "version-too-big",
    ],
)
def test_a_bad_config_never_replaces_a_good_one(
    tmp_path: Path, payload: bytes, version: int | None, words: str
) -> None:
    node = Node(tmp_path)
    good = node.rc.current
    answer = node.rc.apply(payload)
    assert (answer.ok, answer.version, answer.running_version) == (False, version, 1)
    assert answer.error is not None and words in answer.error, answer.error
    assert node.changes == [] and node.rc.current is good and node.disk() is None
    assert node.rc.stats.refused == 1


def test_a_refused_config_leaves_the_saved_one_byte_for_byte(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.rc.apply(remote(2))
    saved, mtime = node.disk(), (node.state / CONFIG_FILE).stat().st_mtime_ns
    bad = remote(3, cameras=[{"id": "c", "source": "x", "zones": [{"id": "z", "polygon": CROSSED}]}])
    assert node.rc.apply(bad).ok is False
    assert node.disk() == saved and (node.state / CONFIG_FILE).stat().st_mtime_ns == mtime
    assert node.rc.current.config_version == 2 and len(node.changes) == 1
    assert sorted(os.listdir(node.state)) == [CONFIG_FILE]  # no temp file left behind


@pytest.mark.parametrize(
    ("second", "ok", "error", "changes"),
    [
        (remote(3), True, None, 2),
        (remote(2), True, None, 1),  # the retained message again (reconnect)
        (remote(1), False, "config_version: 1 is older than the running 2", 1),
        (remote(2, evidence={"clip": False}), False, "config_version: 2 already runs, with other content", 1),
    ],
    ids=["newer", "same", "stale", "same-version-other-content"],
)
def test_versions_must_move_forward(
    tmp_path: Path, second: bytes, ok: bool, error: str | None, changes: int
) -> None:
    node = Node(tmp_path)
    node.rc.apply(remote(2))
    answer = node.rc.apply(second)
    assert (answer.ok, answer.error, len(node.changes)) == (ok, error, changes)
    assert answer.running_version == node.rc.current.config_version


def test_an_on_change_that_fails_keeps_the_old_config(tmp_path: Path) -> None:
    node = Node(tmp_path, fail=True)
    answer = node.rc.apply(remote(2))
    assert not answer.ok and answer.error == "could not apply: RuntimeError: camera cam-1 cannot be opened"
    assert node.rc.current.config_version == 1 and node.disk() is None
    assert os.listdir(node.state) == []


@pytest.mark.parametrize(
    ("file_version", "applied", "on_disk", "expected", "load_errors"),
    [
        (1, remote(2), None, 2, 0),
        (5, remote(2), None, 5, 0),  # a technician bumped the file since: the file wins
        (1, None, b"{broken", 1, 1),
        (1, None, json.dumps({"config_version": 9}).encode(), 1, 1),  # saved by hand, not valid
    ],
    ids=["saved-newer", "file-newer", "corrupt", "invalid"],
)
def test_restart_runs_the_last_good_config_when_newer_than_the_file(
    tmp_path: Path,
    file_version: int,
    applied: bytes | None,
    on_disk: bytes | None,
    expected: int,
    load_errors: int,
) -> None:
    node = Node(tmp_path)
    if applied is not None:
        assert node.rc.apply(applied).ok
    if on_disk is not None:
        node.state.mkdir(parents=True, exist_ok=True)
        (node.state / CONFIG_FILE).write_bytes(on_disk)
    restarted = Node(tmp_path, file_version=file_version)
    assert restarted.rc.current.config_version == expected
    assert restarted.rc.current.mqtt.host == "10.1.1.1"  # local fields come from the file, always
    assert restarted.rc.stats.load_errors == load_errors


def test_relative_file_sources_resolve_against_the_config_folder(tmp_path: Path) -> None:
    node = Node(tmp_path)
    assert node.file_cfg.cameras[0].source == str(tmp_path / "etc" / "clips" / "a.mp4")
    node.rc.apply(remote(2, cameras=[{"id": "cam-1", "source": "clips/b.mp4"}]))
    assert node.rc.current.cameras[0].source == str(tmp_path / "etc" / "clips" / "b.mp4")
    assert Node(tmp_path).rc.current.cameras[0].source == str(tmp_path / "etc" / "clips" / "b.mp4")


def test_every_config_field_is_either_local_or_remote() -> None:
    """A new AgentConfig field must be classified: may central change it, or is it this box's own?"""
    assert LOCAL_FIELDS.isdisjoint(REMOTE_FIELDS)
    assert set(AgentConfig.model_fields) == LOCAL_FIELDS | REMOTE_FIELDS

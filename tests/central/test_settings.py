"""Settings: required secrets, refusal of weak ones, env prefix; the CLI's one-paragraph config error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from central import cli
from central.settings import Settings, unknown_env_vars
from tests.central.conftest import ADMIN_PASSWORD, NODE_TOKEN


def test_defaults_with_only_the_required_secrets() -> None:
    settings = Settings(admin_password=ADMIN_PASSWORD, node_token=NODE_TOKEN)
    assert settings.database_url == "sqlite:///var/central/streetwatch.db"
    assert settings.data_dir == Path("var/central")
    assert settings.evidence_dir == Path("var/central/evidence")
    assert settings.mqtt_host is None and settings.mqtt_port == 1883
    assert (settings.embedded_mqtt_host, settings.embedded_mqtt_port) == ("127.0.0.1", 1883)
    assert settings.topic_prefix == "sw/v1"
    assert settings.admin_user == "admin"
    assert settings.secret_key is None
    assert settings.max_evidence_bytes == 50 * 1024 * 1024
    assert settings.effective_mqtt_client_id.startswith("central-")
    assert ADMIN_PASSWORD not in repr(settings)  # secrets never show up in logs/reprs


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREETWATCH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("STREETWATCH_NODE_TOKEN", NODE_TOKEN)
    monkeypatch.setenv("STREETWATCH_MQTT_HOST", "broker.example")
    monkeypatch.setenv("STREETWATCH_MQTT_PORT", "8883")
    settings = Settings()
    assert settings.admin_password.get_secret_value() == ADMIN_PASSWORD
    assert (settings.mqtt_host, settings.mqtt_port) == ("broker.example", 8883)


def test_admin_password_is_required() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(node_token=NODE_TOKEN)
    assert [e["loc"] for e in info.value.errors()] == [("admin_password",)]


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short", "at least 8 characters"),
        ("", "at least 8 characters"),
        ("password", "obvious default"),
        ("Password", "obvious default"),
        ("changeme", "obvious default"),
        ("admin123", "obvious default"),
        ("12345678", "obvious default"),
    ],
)
def test_weak_admin_passwords_are_refused(password: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Settings(admin_password=password, node_token=NODE_TOKEN)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"node_token": "short"}, "node_token"),
        ({"secret_key": "too-short"}, "secret_key"),
        ({"topic_prefix": "sw/#"}, "topic_prefix"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_other_invalid_settings(overrides: dict[str, Any], fragment: str) -> None:
    values: dict[str, Any] = {"admin_password": ADMIN_PASSWORD, "node_token": NODE_TOKEN, **overrides}
    with pytest.raises(ValidationError, match=fragment):
        Settings(**values)


def test_cli_names_missing_variables_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == cli.EXIT_CONFIG
    message = capsys.readouterr().err
    assert "STREETWATCH_ADMIN_PASSWORD is required but not set" in message
    assert "STREETWATCH_NODE_TOKEN is required but not set" in message
    assert "\n" not in message.strip()  # one paragraph


def test_cli_explains_a_weak_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREETWATCH_ADMIN_PASSWORD", "changeme")
    monkeypatch.setenv("STREETWATCH_NODE_TOKEN", NODE_TOKEN)
    assert cli.main(["--port", "1"]) == cli.EXIT_CONFIG
    assert "STREETWATCH_ADMIN_PASSWORD is invalid: is an obvious default password" in capsys.readouterr().err


def test_unknown_prefixed_variables_are_reported() -> None:
    environ = {"STREETWATCH_ADMN_USER": "x", "STREETWATCH_MQTT_HOST": "h", "PATH": "/bin"}
    assert unknown_env_vars(environ) == ["STREETWATCH_ADMN_USER"]

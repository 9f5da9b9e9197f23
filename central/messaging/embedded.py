"""Choosing and preparing the embedded broker (see ``broker.py``): Mosquitto when installed, else amqtt.

``embedded_settings`` runs before anything else reads the settings: for an embedded Mosquitto it fills in
what an operator would configure for an external one -- central's own broker user (generated once and kept in
``<data_dir>/broker/central.secret``, 0600, unless ``STREETWATCH_MQTT_USERNAME``/``_PASSWORD`` are set) and the
password, ACL and pid files under ``<data_dir>/broker`` -- so the fleet service manages node credentials and
ACLs exactly as it does for a production Mosquitto. ``start_embedded`` writes a first pair of files (central
only; the fleet service adds the enrolled nodes and reloads the broker) and starts the broker.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from pydantic import SecretStr

from central.messaging.broker import EmbeddedBroker, EmbeddedMosquitto, find_mosquitto
from central.messaging.broker_auth import render_acl_file, render_password_file, stable_hash
from central.settings import Settings
from edge_agent.contract import Topics
from edge_agent.node.statefile import write_atomic

log = logging.getLogger(__name__)

CENTRAL_USER = "central"


def broker_dir(settings: Settings) -> Path:
    return settings.data_dir / "broker"


def uses_mosquitto(settings: Settings) -> bool:
    """True when central embeds Mosquitto (no external broker, and Mosquitto chosen or found)."""
    if not settings.mqtt_enabled or settings.mqtt_host is not None or settings.embedded_broker == "amqtt":
        return False
    if settings.embedded_broker == "mosquitto":
        return True
    return find_mosquitto() is not None


def embedded_settings(settings: Settings) -> Settings:
    """``settings`` completed for an embedded Mosquitto (credentials and broker files); unchanged otherwise."""
    if not uses_mosquitto(settings):
        return settings
    directory = broker_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    update: dict[str, object] = {}
    if settings.mqtt_username is None or settings.mqtt_password is None:
        secret = directory / "central.secret"
        if not secret.exists():
            write_atomic(secret, secrets.token_urlsafe(32).encode(), 0o600)
        update["mqtt_username"] = CENTRAL_USER
        update["mqtt_password"] = SecretStr(secret.read_text().strip())
    if settings.broker_password_file is None:
        update["broker_password_file"] = directory / "passwd"
        update["broker_acl_file"] = directory / "acl"
    if settings.broker_pid_file is None:
        update["broker_pid_file"] = directory / "mosquitto.pid"
    return settings.model_copy(update=update)


def start_embedded(settings: Settings, topics: Topics) -> EmbeddedBroker | EmbeddedMosquitto:
    """Start the embedded broker chosen for ``settings`` (already completed by ``embedded_settings``)."""
    host, port = settings.embedded_mqtt_host, settings.embedded_mqtt_port
    if not uses_mosquitto(settings):
        log.warning(
            "embedded broker: amqtt (Mosquitto is not installed): anonymous, no per-node ACL; install mosquitto "
            "for an authenticated embedded broker"
        )
        amqtt = EmbeddedBroker(host, port)
        amqtt.start()
        return amqtt
    binary = find_mosquitto()
    if binary is None:
        raise RuntimeError("STREETWATCH_EMBEDDED_BROKER=mosquitto but the mosquitto binary is not installed")
    assert settings.mqtt_username and settings.mqtt_password  # embedded_settings filled them
    assert settings.broker_password_file and settings.broker_acl_file
    user, password = settings.mqtt_username, settings.mqtt_password.get_secret_value()
    for path, text in (
        (settings.broker_acl_file, render_acl_file(topics, user, [])),
        (settings.broker_password_file, render_password_file(user, stable_hash(user, password), [])),
    ):
        if not path.exists():  # the fleet service keeps them current (nodes, revocations) from here on
            write_atomic(path, text.encode(), 0o640)
    broker = EmbeddedMosquitto(
        binary,
        broker_dir(settings),
        host,
        port,
        password_file=settings.broker_password_file,
        acl_file=settings.broker_acl_file,
    )
    if settings.broker_pid_file is not None:
        broker.pid_file = settings.broker_pid_file
    broker.start()
    return broker

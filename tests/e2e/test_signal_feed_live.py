"""External signal feed through real parts: a controller posts to central, central relays it over an
authenticated Mosquitto, and an enrolled node's ``SignalFeeds`` (on a paho client with the node's own
credentials, exactly as the agent wires it) sets its ``ExternalSignalFeed``; a stale state reads UNKNOWN.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.contract import SignalMessage
from edge_agent.node.enroll import NodeCredentials
from edge_agent.node.signal_feed import SignalFeeds
from edge_agent.rules.sceneconfig import ExternalSignalConfig
from edge_agent.rules.signal import ExternalSignalFeed, SignalState
from tests.conftest import wait_until
from tests.e2e.test_acl_support import (
    CENTRAL_PASSWORD,
    CENTRAL_USER,
    TOPICS,
    AuthBroker,
    CentralProcess,
    auth_broker,
    central_process,
    cli_enroll,
    probe,
)

pytestmark = pytest.mark.e2e

FEED = "hoan-kiem-trang-tien"
SIGNAL_TOKEN = "controller-token-0123456789abcdef"


def utc_of(mono: float) -> datetime:
    """The agent's monotonic -> UTC mapping (``now`` passed to ``state`` is monotonic)."""
    return datetime.now(UTC) + timedelta(seconds=mono - time.monotonic())


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[AuthBroker, CentralProcess, NodeCredentials]]:
    extra = {"STREETWATCH_SIGNAL_TOKEN": SIGNAL_TOKEN}
    with auth_broker(tmp_path / "mosquitto") as broker, central_process(tmp_path, broker, extra) as central:
        admin = central.admin()
        creds = cli_enroll(central, admin, "Node S", tmp_path / "node-s")
        admin.close()
        yield broker, central, creds


def test_controller_states_reach_the_node_and_expire(
    fleet: tuple[AuthBroker, CentralProcess, NodeCredentials],
) -> None:
    broker, central, creds = fleet
    feed = ExternalSignalFeed(
        ExternalSignalConfig(source="external", id="light", feed=FEED, max_age_s=3), utc_of
    )
    feeds = SignalFeeds(TOPICS)
    feeds.set_feeds({FEED})
    feeds.bind("cam-1", {"light": feed})
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"node-{creds.node_id}", clean_session=False)
    client.username_pw_set(creds.mqtt_username, creds.mqtt_password.get_secret_value())
    feeds.attach(client)  # subscribes at connect, with the node's own credentials (ACL: signals/+ readable)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    controller = httpx.Client(base_url=central.url, timeout=10)
    try:
        # the controller posts red with its token; central relays it; the node's feed reads red
        r = controller.post(
            f"/api/v1/signals/{FEED}",
            json={"state": "red"},
            headers={"Authorization": f"Bearer {SIGNAL_TOKEN}"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["topic"] == f"sw/v1/signals/{FEED}"
        wait_until(
            lambda: feed.state(time.monotonic()) is SignalState.RED, timeout_s=10, message="red at the node"
        )
        assert feeds.stats.applied >= 1

        # a controller that goes quiet: the state expires to UNKNOWN after max_age_s (3 s), as documented
        wait_until(
            lambda: feed.state(time.monotonic()) is SignalState.UNKNOWN,
            timeout_s=6,
            message="stale -> unknown",
        )

        # green now; then an older message (a late retransmission) is ignored
        now = datetime.now(UTC)
        ok = controller.post(
            f"/api/v1/signals/{FEED}",
            json={"state": "green", "at": now.isoformat()},
            headers={"Authorization": f"Bearer {SIGNAL_TOKEN}"},
        )
        assert ok.status_code == 200
        wait_until(lambda: feed.state(time.monotonic()) is SignalState.GREEN, timeout_s=10, message="green")
        older = SignalMessage(feed=FEED, state="red", at=now - timedelta(seconds=1))
        with probe(CENTRAL_USER, CENTRAL_PASSWORD, broker.port) as relay:
            relay.publish(TOPICS.signal(FEED), older.to_json(), retain=True)
        wait_until(lambda: feeds.stats.older >= 1, timeout_s=10, message="the older message counted")
        assert feed.state(time.monotonic()) is SignalState.GREEN

        # refused: no token, a wrong token, an invalid state or feed id
        assert controller.post(f"/api/v1/signals/{FEED}", json={"state": "red"}).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token-0123456789"}
        assert (
            controller.post(f"/api/v1/signals/{FEED}", json={"state": "red"}, headers=wrong).status_code
            == 401
        )
        good = {"Authorization": f"Bearer {SIGNAL_TOKEN}"}
        assert (
            controller.post(f"/api/v1/signals/{FEED}", json={"state": "blue"}, headers=good).status_code
            == 422
        )
        assert (
            controller.post("/api/v1/signals/bad%20feed", json={"state": "red"}, headers=good).status_code
            == 422
        )

        # the node itself may not publish a signal state (a compromised box cannot fake a red light)
        with probe(creds.mqtt_username, creds.mqtt_password.get_secret_value(), broker.port, v5=True) as node:
            puback = node.publish(TOPICS.signal(FEED), older.to_json())
            assert puback is not None and puback.is_failure, puback
    finally:
        client.loop_stop()
        client.disconnect()
        controller.close()

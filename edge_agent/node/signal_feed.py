"""External traffic-signal feeds: controller messages from MQTT into the red-light rule's ``ExternalSignalFeed``.

A signal controller (or central on its behalf, ``POST /api/v1/signals/{feed}``) publishes ``SignalMessage`` on
``<prefix>/signals/<feed>``, retained, so a node that (re)connects gets the latest state at once. The node
subscribes to exactly the feeds its config names (``source: external`` signals; ``feed`` defaults to the
signal id), re-subscribing when a remote config changes them, and hands each message to every external signal
with that feed on every camera. Expiry is the feed's own business: a message older than ``max_age_s`` reads
UNKNOWN, so a silent controller (or a broker outage) switches the red-light rule off instead of freezing a red.

Invalid messages are counted and logged, never raised into paho's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from edge_agent.config import AgentConfig
from edge_agent.contract import SignalMessage, Topics
from edge_agent.rules.sceneconfig import ExternalSignalConfig
from edge_agent.rules.signal import ExternalSignalFeed, SignalSource

log = logging.getLogger(__name__)

QOS = 1


def feeds_of(cfg: AgentConfig) -> set[str]:
    """The controller feeds a config listens to (every camera's ``source: external`` signals)."""
    return {
        sc.feed or sc.id for cam in cfg.cameras for sc in cam.signals if isinstance(sc, ExternalSignalConfig)
    }


@dataclass
class SignalFeedStats:
    received: int = 0
    applied: int = 0  # handed to at least one signal
    older: int = 0  # older than a message already held for the feed
    invalid: int = 0
    unrouted: int = 0  # no running camera has a signal on that feed (yet)


class SignalFeeds:
    """Subscriptions to the configured feeds and routing of their messages to the running pipelines' signals."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.stats = SignalFeedStats()
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._subscribed: set[str] = set()
        self._latest: dict[str, SignalMessage] = {}
        self._bound: dict[str, list[ExternalSignalFeed]] = {}  # camera id -> its external signals
        self._client: mqtt.Client | None = None
        self._connected = False

    # -- wiring ---------------------------------------------------------------------------------------------

    def attach(self, client: mqtt.Client) -> None:
        """Chain onto the session's ``on_connect`` (subscribe) and route ``signals/+`` messages here."""
        self._client = client
        previous = cast(Callable[..., None] | None, client.on_connect)
        previous_disconnect = cast(Callable[..., None] | None, client.on_disconnect)

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
                with self._lock:
                    self._connected = True
                    self._subscribed = set()
                self._sync_subscriptions()

        def on_disconnect(client: mqtt.Client, *args: Any) -> None:
            with self._lock:
                self._connected = False
            if previous_disconnect is not None:
                previous_disconnect(client, *args)

        def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
            self.handle(message.topic, bytes(message.payload))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.message_callback_add(self.topics.all_signals(), on_message)

    def set_feeds(self, feeds: Iterable[str]) -> None:
        """The feeds the (new) config names; subscriptions follow at once when connected, else at connect."""
        with self._lock:
            self._wanted = set(feeds)
        self._sync_subscriptions()

    def bind(self, camera_id: str, signals: Mapping[str, SignalSource]) -> None:
        """A camera's pipeline was (re)built: route its external signals, with the latest state known."""
        feeds = [s for s in signals.values() if isinstance(s, ExternalSignalFeed)]
        with self._lock:
            self._bound[camera_id] = feeds
            latest = [self._latest.get(f.feed) for f in feeds]
        for feed, message in zip(feeds, latest, strict=True):
            if message is not None:
                feed.push(message.state, message.at)

    # -- messages (paho's thread) ---------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> bool:
        """Apply one message; False (counted, logged) when it is invalid, older, or nobody listens."""
        self.stats.received += 1
        head = self.topics.all_signals()[:-1]
        try:
            message = SignalMessage.from_json(payload)
            if not topic.startswith(head) or message.feed != topic[len(head) :]:
                raise ValueError(f"feed {message.feed!r} does not match the topic {topic!r}")
        except (ValidationError, ValueError) as exc:
            self.stats.invalid += 1
            log.warning("signal message on %s refused: %s", topic, str(exc).splitlines()[0])
            return False
        with self._lock:
            held = self._latest.get(message.feed)
            if held is not None and message.at < held.at:
                self.stats.older += 1
                return False
            self._latest[message.feed] = message
            targets = [f for feeds in self._bound.values() for f in feeds if f.feed == message.feed]
        for feed in targets:
            feed.push(message.state, message.at)
        if targets:
            self.stats.applied += 1
        else:
            self.stats.unrouted += 1
        return bool(targets)

    def _sync_subscriptions(self) -> None:
        client = self._client
        with self._lock:
            if client is None or not self._connected:
                return
            add = self._wanted - self._subscribed
            drop = self._subscribed - self._wanted
            self._subscribed = set(self._wanted)
        for feed in sorted(add):
            client.subscribe(self.topics.signal(feed), qos=QOS)
        for feed in sorted(drop):
            client.unsubscribe(self.topics.signal(feed))
        if add or drop:
            log.info("signal feeds: subscribed %s, unsubscribed %s", sorted(add), sorted(drop))

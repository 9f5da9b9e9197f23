"""SignalFeeds: which feeds a config names, routing to the bound signals, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.config import parse_config
from edge_agent.contract import SignalMessage, Topics
from edge_agent.node.signal_feed import SignalFeeds, feeds_of
from edge_agent.rules.sceneconfig import ExternalSignalConfig
from edge_agent.rules.signal import ExternalSignalFeed, SignalState

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
TOPICS = Topics()


def clock(mono: float) -> datetime:
    return T0 + timedelta(seconds=mono)


def feed(feed_id: str | None, signal_id: str = "light", max_age_s: float = 2.0) -> ExternalSignalFeed:
    return ExternalSignalFeed(
        ExternalSignalConfig(source="external", id=signal_id, feed=feed_id, max_age_s=max_age_s), clock
    )


def message(feed_id: str, state: str, after_s: float) -> bytes:
    return SignalMessage(feed=feed_id, state=state, at=T0 + timedelta(seconds=after_s)).to_json()  # type: ignore[arg-type]


def test_feeds_of_a_config_default_to_the_signal_id() -> None:
    cfg = parse_config(
        {
            "node_id": "n1",
            "model": {"path": "m.onnx"},
            "cameras": [
                {
                    "id": "c1",
                    "source": "x",
                    "signals": [
                        {"id": "head-a", "source": "external"},
                        {"id": "head-b", "source": "external", "feed": "ctl-7"},
                        {"id": "lamp", "source": "colour", "roi": [[0.1, 0.1], [0.2, 0.2]]},
                    ],
                }
            ],
        }
    )
    assert feeds_of(cfg) == {"head-a", "ctl-7"}


def test_messages_reach_every_bound_signal_of_the_feed_and_expire() -> None:
    feeds = SignalFeeds(TOPICS)
    a, b, other = feed("ctl-7", "a"), feed("ctl-7", "b"), feed("ctl-9", "c")
    feeds.bind("cam-1", {"a": a, "c": other})
    feeds.bind("cam-2", {"b": b})
    assert feeds.handle(TOPICS.signal("ctl-7"), message("ctl-7", "red", 0.0))
    assert a.state(1.0) is b.state(1.0) is SignalState.RED
    assert other.state(1.0) is SignalState.UNKNOWN
    assert a.state(2.5) is SignalState.UNKNOWN  # older than max_age_s: the documented expiry
    assert not feeds.handle(TOPICS.signal("ctl-7"), message("ctl-7", "green", -5.0))  # older than held
    assert feeds.stats.older == 1


def test_a_rebuilt_pipeline_gets_the_latest_state_at_once() -> None:
    feeds = SignalFeeds(TOPICS)
    assert not feeds.handle(TOPICS.signal("ctl-7"), message("ctl-7", "amber", 0.0))  # nobody bound yet
    assert feeds.stats.unrouted == 1
    fresh = feed("ctl-7")
    feeds.bind("cam-1", {"light": fresh})
    assert fresh.state(0.5) is SignalState.AMBER


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (TOPICS.signal("ctl-7"), b"not json"),
        (
            TOPICS.signal("ctl-7"),
            b'{"schema":"streetwatch.signal/1","feed":"ctl-7","state":"blue","at":"2026-12-06T08:00:00Z"}',
        ),
        (
            TOPICS.signal("ctl-7"),
            b'{"schema":"streetwatch.signal/1","feed":"ctl-7","state":"red","at":"2026-12-06T08:00:00"}',
        ),
        (TOPICS.signal("ctl-8"), message("ctl-7", "red", 0.0)),  # a feed speaking for another
    ],
    ids=["garbage", "unknown state", "naive time", "feed mismatch"],
)
def test_invalid_messages_are_counted_and_change_nothing(topic: str, payload: bytes) -> None:
    feeds = SignalFeeds(TOPICS)
    target = feed("ctl-7")
    feeds.bind("cam-1", {"light": target})
    assert not feeds.handle(topic, payload)
    assert feeds.stats.invalid == 1 and target.state(0.1) is SignalState.UNKNOWN


class FakeClient:
    """Records what SignalFeeds asks of paho: subscriptions and callbacks."""

    def __init__(self) -> None:
        self.on_connect = None
        self.on_disconnect = None
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []
        self.callbacks: dict[str, object] = {}

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self.subscribed.append(topic)

    def unsubscribe(self, topic: str) -> None:
        self.unsubscribed.append(topic)

    def message_callback_add(self, topic: str, callback: object) -> None:
        self.callbacks[topic] = callback


class Ok:
    is_failure = False


def test_subscriptions_follow_the_config_and_are_renewed_at_each_connect() -> None:
    client = FakeClient()
    feeds = SignalFeeds(TOPICS)
    feeds.set_feeds({"ctl-7"})
    feeds.attach(client)  # type: ignore[arg-type]
    assert client.subscribed == [] and TOPICS.all_signals() in client.callbacks  # nothing before the connect
    client.on_connect(client, None, None, Ok(), None)  # type: ignore[misc]
    assert client.subscribed == [TOPICS.signal("ctl-7")]
    feeds.set_feeds({"ctl-8"})  # a remote config changed the feeds
    assert client.subscribed[-1] == TOPICS.signal("ctl-8") and client.unsubscribed == [TOPICS.signal("ctl-7")]
    client.on_disconnect(client, None, None, Ok(), None)  # type: ignore[misc]
    client.on_connect(client, None, None, Ok(), None)  # type: ignore[misc]
    assert client.subscribed[-1] == TOPICS.signal("ctl-8") and len(client.subscribed) == 3

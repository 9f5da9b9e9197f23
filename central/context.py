"""The objects one central process shares between its HTTP handlers and its background threads.

``create_app`` builds one ``Central`` and stores it on ``app.state.central``; request handlers reach it
through ``central.api.deps`` rather than through module globals, so tests can run several apps side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from central.db.session import Database
from central.evidence import EvidenceStore
from central.messaging.broker import EmbeddedBroker, EmbeddedMosquitto
from central.messaging.ingest import Ingestor
from central.messaging.subscriber import MqttSubscriber
from central.settings import Settings
from edge_agent.contract import Topics, utcnow


@dataclass
class Central:
    """Settings, database, stores and the (optional) MQTT machinery of one process."""

    settings: Settings
    db: Database
    topics: Topics
    ingestor: Ingestor
    evidence: EvidenceStore
    clock: Callable[[], datetime] = utcnow
    subscriber: MqttSubscriber | None = field(default=None)
    broker: EmbeddedBroker | EmbeddedMosquitto | None = field(default=None)

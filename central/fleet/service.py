"""The fleet service of one central process: broker files, config publishing, answers, and a sync thread.

``create_app`` builds one ``Fleet`` beside ``Central`` (``app.state.fleet``); its ``start`` runs after the
migrations, its ``stop`` before the database closes. Everything it does is idempotent and driven by the
database, so several central processes can each run one:

* ``sync_broker`` renders the Mosquitto files from the node table and rewrites/reloads only on a change;
* ``publish_pending`` publishes every active node's newest config retained (QoS 1) until the broker
  acknowledged it, and clears the retained config of revoked nodes;
* ``handle_applied`` records each node's ``ConfigApplied``; invalid ones become dead letters.

Its MQTT connection (``link``, a ``central.messaging.client.MqttClient``) is separate from the ingest subscriber on
purpose: ingest may run as N shared-subscription workers, but configs and their answers are small, idempotent
and per node, so every central process holds one without coordinating. Persistent session, so answers sent
while central restarts are delivered afterwards.

The request that changes something calls these at once (the technician sees the result); the sync thread
repeats them every ``fleet_sync_s`` as a safety net (broker down, another process changed the database).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import or_, select

from central.context import Central
from central.db.models import NodeConfigRow, NodeRow
from central.fleet.commands import CommandCenter
from central.fleet.configs import Recorded, record_applied
from central.messaging.broker_auth import (
    BrokerFiles,
    NodeAccount,
    SyncResult,
    render_acl_file,
    render_password_file,
)
from central.messaging.broker_auth import stable_hash as central_broker_hash
from central.messaging.client import BrokerAddress, MqttClient
from edge_agent.contract import ConfigApplied

log = logging.getLogger(__name__)

QOS = 1
PUBLISH_TIMEOUT_S = 5.0


@dataclass
class FleetStats:
    """Counters of the fleet service (failures are data)."""

    configs_published: int = 0
    configs_cleared: int = 0
    publish_failures: int = 0
    answers: int = 0
    answers_invalid: int = 0
    answers_unknown_node: int = 0
    restamps: int = 0


class Fleet:
    """Broker files, the fleet MQTT link and the sync thread of one central process."""

    def __init__(self, central: Central) -> None:
        self.central = central
        s = central.settings
        self.broker_files: BrokerFiles | None = None
        if s.broker_password_file is not None and s.broker_acl_file is not None:
            self.broker_files = BrokerFiles(s.broker_password_file, s.broker_acl_file, s.broker_pid_file)
        self.link: MqttClient | None = None
        self.commands = CommandCenter(central, lambda: self.link)
        self.stats = FleetStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._republish_all = threading.Event()
        self._publish_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bring the broker files in line, connect the link (when MQTT is on) and start the sync thread."""
        s = self.central.settings
        if self.broker_files is not None:
            self.sync_broker()
        if s.mqtt_enabled:
            self.link = MqttClient(
                "fleet", BrokerAddress.of(s, client_suffix="-fleet"), on_connected=self._on_link_connected
            )
            self.link.subscribe(
                self.central.topics.config_applied("+"),
                QOS,
                lambda message: self.handle_applied(message.topic, bytes(message.payload)),
            )
            self.link.subscribe(
                self.central.topics.all_cmd_results(),
                QOS,
                lambda message: self.commands.handle_result(message.topic, bytes(message.payload)),
            )
            self.link.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="fleet-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.link is not None:
            self.link.stop()
            self.link = None

    def wake(self) -> None:
        """Publish pending configs now (called after a config was accepted or a node revoked)."""
        self._wake.set()

    def _on_link_connected(self) -> None:
        # A broker that lost its retained store (no persistence, or a new broker) gets every config again.
        self._republish_all.set()
        self._wake.set()

    def _loop(self) -> None:
        interval = self.central.settings.fleet_sync_s
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self.broker_files is not None:
                    self.sync_broker()
                self.publish_pending()
                self.commands.expire_overdue()
            except Exception:  # the database may be down; try again next round
                log.exception("fleet sync failed")

    # -- broker files ---------------------------------------------------------------------------------------

    def sync_broker(self) -> SyncResult | None:
        """Render the password and ACL files from the node table; rewrite and reload on a change."""
        if self.broker_files is None:
            return None
        s = self.central.settings
        assert s.mqtt_username is not None and s.mqtt_password is not None  # settings refuse otherwise
        with self.central.db.session() as session:
            rows = session.execute(
                select(NodeRow.mqtt_username, NodeRow.mqtt_password_hash, NodeRow.node_id).where(
                    NodeRow.revoked_at.is_(None), NodeRow.mqtt_password_hash.is_not(None)
                )
            ).all()
        accounts = [NodeAccount(user, pw or "", node) for user, pw, node in rows]
        central_hash = central_broker_hash(s.mqtt_username, s.mqtt_password.get_secret_value())
        return self.broker_files.sync(
            render_password_file(s.mqtt_username, central_hash, accounts),
            render_acl_file(self.central.topics, s.mqtt_username, accounts),
        )

    # -- configs --------------------------------------------------------------------------------------------

    def publish_pending(self) -> int:
        """Publish what the broker does not hold yet; returns how many messages the broker acknowledged."""
        link = self.link
        if link is None or not link.connected:
            return 0
        with self._publish_lock:
            everything = self._republish_all.is_set()
            self._republish_all.clear()
            done = 0
            for node_id, version, revoked in self._pending(everything):
                done += self._publish_one(link, node_id, version, revoked)
            return done

    def _pending(self, everything: bool) -> list[tuple[str, int | None, bool]]:
        active_unpublished = or_(
            NodeRow.published_version.is_(None), NodeRow.published_version != NodeRow.desired_version
        )
        with self.central.db.session() as session:
            active = select(NodeRow.node_id, NodeRow.desired_version).where(
                NodeRow.revoked_at.is_(None), NodeRow.desired_version.is_not(None)
            )
            if not everything:
                active = active.where(active_unpublished)
            revoked = select(NodeRow.node_id).where(
                NodeRow.revoked_at.is_not(None), NodeRow.published_version.is_not(None)
            )
            out: list[tuple[str, int | None, bool]] = [
                (n, v, False) for n, v in session.execute(active).all()
            ]
            out += [(n, None, True) for n in session.scalars(revoked)]
        return out

    def _publish_one(self, link: MqttClient, node_id: str, version: int | None, revoked: bool) -> int:
        topic = self.central.topics.config(node_id)
        payload = b""
        if not revoked:
            with self.central.db.session() as session:
                row = session.get(NodeConfigRow, (node_id, version))
                if row is None:
                    return 0
                payload = json.dumps(row.config, separators=(",", ":")).encode()
        if not link.publish(topic, payload, qos=QOS, retain=True, timeout_s=PUBLISH_TIMEOUT_S):
            self.stats.publish_failures += 1
            log.warning("fleet: config for %s not delivered to the broker; will retry", node_id)
            return 0
        with self.central.db.session() as session:
            node = session.get(NodeRow, node_id)
            if node is not None:
                node.published_version = None if revoked else version
        if revoked:
            self.stats.configs_cleared += 1
        else:
            self.stats.configs_published += 1
            log.info("fleet: config %s of %s retained on the broker", version, node_id)
        return 1

    # -- answers --------------------------------------------------------------------------------------------

    def handle_applied(self, topic: str, payload: bytes) -> None:
        """Record a node's ``ConfigApplied``; a malformed or mismatched one becomes a dead letter."""
        ingestor = self.central.ingestor
        node = self.central.topics.node_of(topic)
        if node is None or topic != self.central.topics.config_applied(node):
            self.stats.answers_invalid += 1
            ingestor.dead_letter(topic, payload, "not a config/applied topic of this prefix")
            return
        try:
            answer = ConfigApplied.from_json(payload)
        except ValidationError as err:
            self.stats.answers_invalid += 1
            ingestor.dead_letter(topic, payload, f"invalid ConfigApplied: {err}")
            return
        if answer.node_id != node:
            self.stats.answers_invalid += 1
            ingestor.dead_letter(
                topic, payload, f"node_id {answer.node_id!r} does not match the topic's {node!r}"
            )
            return
        with self.central.db.session() as session:
            recorded = record_applied(session, node, answer, self.central.clock())
        if recorded is Recorded.UNKNOWN_NODE:
            self.stats.answers_unknown_node += 1
            log.warning("fleet: config answer from unknown or revoked node %s ignored", node)
            return
        self.stats.answers += 1
        log.info(
            "fleet: %s %s config %s (running %d)%s",
            node,
            "applied" if answer.ok else "refused",
            answer.version,
            answer.running_version,
            f": {answer.error}" if answer.error else "",
        )
        if recorded is Recorded.RESTAMPED:
            self.stats.restamps += 1
            log.info(
                "fleet: %s runs a config %d of its own; the desired one goes out renumbered",
                node,
                answer.running_version,
            )
            self.wake()

"""Desired node configs: validated before they are accepted, versioned, and tracked until the node applies them.

A config is the node's ``AgentConfig`` as JSON. Central checks it with the node's own rules
(``edge_agent.config.parse_config``) before storing it, so an operator hears about a self-intersecting zone or
an unknown rule type at once, with the field named, instead of from a node minutes later. Central assigns the
version: one more than anything the node has run or been sent (a node refuses versions not newer than its
own), and forces ``node_id`` to the node's.

The node answers every config message with a ``ConfigApplied``; ``record_applied`` keeps the latest answer per
node, and ``config_state`` turns desired/applied/answer into what a technician needs to know.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import audit, cameras
from central.db.models import NodeConfigRow, NodeRow, NodeStatusRow
from central.fleet.enrollment import FleetError
from edge_agent.config import ConfigError, parse_config
from edge_agent.contract import ConfigApplied

MAX_VERSION = 2**31 - 1


class ConfigState(StrEnum):
    """Where a node's remote config stands."""

    NONE = "none"  # central never sent one
    PENDING = "pending"  # sent (or about to be), no answer for this version yet
    APPLIED = "applied"  # the node runs the desired version (or a newer one)
    FAILED = "failed"  # the node refused the desired version; see the error


def config_state(node: NodeRow) -> ConfigState:
    if node.desired_version is None:
        return ConfigState.NONE
    if node.ack_version == node.desired_version and node.ack_ok is False:
        return ConfigState.FAILED
    if node.applied_version == node.desired_version:
        return ConfigState.APPLIED
    return ConfigState.PENDING


def next_version(session: Session, node: NodeRow) -> int:
    """One more than the newest version central sent or the node reported (status message or answer)."""
    status_version = session.scalar(
        select(NodeStatusRow.config_version).where(NodeStatusRow.node_id == node.node_id)
    )
    known = [node.desired_version, node.applied_version, node.ack_version, status_version]
    return max([v for v in known if v is not None], default=0) + 1


def submit_config(
    session: Session, node_id: str, body: dict[str, Any], *, username: str, now: datetime
) -> NodeConfigRow:
    """Validate and store a new desired config for ``node_id``; ``FleetError`` (422 names the field) if not.

    A ``config_version`` in ``body`` is ignored (central assigns it); a ``node_id`` other than the node's is
    refused, since it most likely means the operator is sending the wrong node's config.
    """
    node = session.get(NodeRow, node_id, with_for_update=True)
    if node is None:
        raise FleetError(404, f"no node {node_id}")
    if node.revoked_at is not None:
        raise FleetError(409, f"node {node_id} is revoked")
    given = body.get("node_id")
    if given is not None and given != node_id:
        raise FleetError(422, f"node_id: this config is for {given!r}, not {node_id!r}")
    version = next_version(session, node)
    if version > MAX_VERSION:
        raise FleetError(409, "config_version: no versions left for this node")
    try:
        cfg = parse_config({**body, "node_id": node_id, "config_version": version}, f"config for {node_id}")
    except ConfigError as err:
        raise FleetError(422, str(err)) from None
    row = NodeConfigRow(
        node_id=node_id,
        version=version,
        config=cfg.model_dump(mode="json", by_alias=True),
        created_at=now,
        created_by=username,
    )
    session.add(row)
    node.desired_version = version
    # The camera registry learns the node's cameras (names) from the config central accepted.
    cameras.sync_from_config(session, node_id, [(c.id, c.name) for c in cfg.cameras], now=now)
    audit.record(
        session,
        at=now,
        actor=username,
        action="node.config",
        target=f"node:{node_id}",
        details={"version": version, "cameras": [c.id for c in cfg.cameras]},
    )
    return row


def latest_config(session: Session, node_id: str) -> NodeConfigRow | None:
    return session.scalar(
        select(NodeConfigRow).where(NodeConfigRow.node_id == node_id).order_by(NodeConfigRow.version.desc())
    )


class Recorded(StrEnum):
    """What ``record_applied`` did with an answer."""

    UNKNOWN_NODE = "unknown_node"  # unknown or revoked: ignored (counted and logged by the caller)
    RECORDED = "recorded"
    RESTAMPED = "restamped"  # the desired config got a newer version number: publish it again


def record_applied(session: Session, node_id: str, answer: ConfigApplied, now: datetime) -> Recorded:
    """Keep a node's answer; re-stamp the desired config when the node refused it only for its version.

    A node refuses a version not newer than the one it runs. Central cannot always know that version before
    the first answer (a node enrolled a minute ago has reported nothing yet, and its file config has its own
    numbers), so when the node refuses the desired version while running that version or a newer one, the
    same content goes out again as the next version. It converges: afterwards the desired version is above
    what the node runs, so a second refusal can only be about the content, and stays a refusal.
    """
    node = session.get(NodeRow, node_id, with_for_update=True)
    if node is None or node.revoked_at is not None:
        return Recorded.UNKNOWN_NODE
    node.ack_version = answer.version
    node.ack_ok = answer.ok
    node.ack_error = answer.error
    node.ack_at = now
    node.applied_version = answer.running_version
    desired = node.desired_version
    if desired is None or answer.ok or answer.version != desired or answer.running_version < desired:
        return Recorded.RECORDED
    latest = session.get(NodeConfigRow, (node_id, desired))
    if latest is None:
        return Recorded.RECORDED
    version = next_version(session, node)
    session.add(
        NodeConfigRow(
            node_id=node_id,
            version=version,
            config={**latest.config, "config_version": version},
            created_at=now,
            created_by=latest.created_by,
        )
    )
    node.desired_version = version
    audit.record(
        session,
        at=now,
        actor=None,
        action="node.config.restamp",
        target=f"node:{node_id}",
        details={"from": desired, "to": version, "node_runs": answer.running_version, "reason": answer.error},
    )
    return Recorded.RESTAMPED

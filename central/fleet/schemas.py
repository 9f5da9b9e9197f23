"""Request and response bodies of the fleet API (enrollment, nodes, remote config)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from central.db.models import NodeRow
from central.fleet.configs import ConfigState, config_state
from central.messaging.broker_auth import SyncResult

NODE_NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class EnrollmentTokenIn(_In):
    ttl_s: int | None = Field(
        default=None,
        ge=60,
        le=86_400,
        description="Lifetime in seconds; at most STREETWATCH_ENROLLMENT_TOKEN_TTL_S (also the default).",
    )


class EnrollmentTokenOut(_Out):
    id: int = Field(description="Token id (for the audit log).")
    token: str = Field(description="The one-time token; shown only in this response.")
    expires_at: datetime = Field(description="After this it is refused (UTC).")


class EnrollIn(_In):
    token: str = Field(min_length=16, max_length=256, description="One-time enrollment token.")
    node_name: str = Field(
        pattern=NODE_NAME_PATTERN, description="Human name of the box, e.g. 'Hoàn Kiếm, Tràng Tiền 3'."
    )


class BrokerOut(_Out):
    managed: bool = Field(description="Central writes the broker's password and ACL files.")
    reloaded: bool = Field(description="The broker was told to re-read them just now.")
    error: str | None = Field(default=None, description="Why the files could not be written or reloaded.")

    @classmethod
    def of(cls, result: SyncResult | None) -> BrokerOut:
        if result is None:
            return cls(managed=False, reloaded=False)
        return cls(managed=True, reloaded=result.reloaded, error=result.error)


class EnrollOut(_Out):
    """Returned once: central keeps only hashes of the secrets."""

    node_id: str = Field(description="The node's id; its topics are <prefix>/nodes/<node_id>/...")
    node_name: str = Field(description="As given.")
    mqtt_username: str = Field(description="Broker username.")
    mqtt_password: str = Field(description="Broker password (random, 256 bits).")
    http_token: str = Field(description="Bearer token for evidence uploads (random, 256 bits).")
    topic_prefix: str = Field(description="MQTT topic prefix.")
    broker: BrokerOut = Field(description="Whether the broker already knows the new account.")


class NodeOut(_Out):
    node_id: str
    name: str
    enrolled_at: datetime
    enrolled_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    desired_version: int | None = Field(description="Newest config central accepted for the node.")
    published_version: int | None = Field(description="Version retained on the broker.")
    applied_version: int | None = Field(description="Version the node last said it runs.")
    config_state: ConfigState = Field(description="none, pending, applied or failed.")
    answer_version: int | None = Field(description="Version the node's last answer was about.")
    answer_ok: bool | None = Field(description="Whether that version was applied.")
    answer_error: str | None = Field(description="Why it was refused (names the field).")
    answer_at: datetime | None = Field(description="When central received the answer.")

    @classmethod
    def of(cls, row: NodeRow) -> NodeOut:
        return cls(
            node_id=row.node_id,
            name=row.name,
            enrolled_at=row.enrolled_at,
            enrolled_by=row.enrolled_by,
            revoked_at=row.revoked_at,
            revoked_by=row.revoked_by,
            desired_version=row.desired_version,
            published_version=row.published_version,
            applied_version=row.applied_version,
            config_state=config_state(row),
            answer_version=row.ack_version,
            answer_ok=row.ack_ok,
            answer_error=row.ack_error,
            answer_at=row.ack_at,
        )


class RevokeOut(_Out):
    node: NodeOut
    broker: BrokerOut


class ConfigAcceptedOut(_Out):
    node_id: str
    version: int = Field(description="Version central assigned.")
    published: bool = Field(description="Already retained on the broker (else the sync thread retries).")


class ConfigOut(_Out):
    node: NodeOut
    version: int
    created_at: datetime
    created_by: str
    config: dict[str, Any] = Field(description="The AgentConfig as sent to the node.")

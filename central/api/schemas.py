"""Request and response bodies of the JSON API (``/api/v1``).

Responses are built from ORM rows here, in one place, so the pages and the API show the same facts (e.g.
whether a piece of evidence has actually been uploaded yet).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from central import originals
from central.db.models import DeadLetterRow, DecisionRow, EventRow, Role


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(_Out):
    username: str
    role: Role


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(description="confirm, dismiss or escalate.")
    reason: str | None = Field(default=None, description="Why; required to dismiss.")


class DecisionOut(_Out):
    id: int
    decision: str
    reason: str | None
    username: str
    decided_at: datetime

    @classmethod
    def of(cls, row: DecisionRow) -> DecisionOut:
        return cls(
            id=row.id,
            decision=row.decision,
            reason=row.reason,
            username=row.username,
            decided_at=row.decided_at,
        )


class EvidenceOut(_Out):
    kind: str
    sha256: str
    content_type: str
    size: int
    stored: bool = Field(description="True once central has received and verified the bytes.")
    url: str | None = Field(description="Where a logged-in user can fetch the bytes, once stored.")


class ModelOut(_Out):
    name: str
    sha256: str


class EventOut(_Out):
    event_id: str
    node_id: str
    camera_id: str
    zone_id: str
    rule_id: str
    type: str
    phase: str
    started_at: datetime
    observed_at: datetime
    ended_at: datetime | None
    objects: list[dict[str, Any]]
    measurements: dict[str, float]
    evidence: list[EvidenceOut]
    model: ModelOut
    config_version: int
    received_at: datetime
    updated_at: datetime
    review_status: str

    @classmethod
    def fields_of(cls, row: EventRow, stored: set[str], role: str = "") -> dict[str, Any]:
        """``role`` decides whether unblurred originals are listed (never with a plain URL: see originals)."""
        return {
            "event_id": row.event_id,
            "node_id": row.node_id,
            "camera_id": row.camera_id,
            "zone_id": row.zone_id,
            "rule_id": row.rule_id,
            "type": row.type,
            "phase": row.phase,
            "started_at": row.started_at,
            "observed_at": row.observed_at,
            "ended_at": row.ended_at,
            "objects": row.objects,
            "measurements": row.measurements,
            "evidence": [
                EvidenceOut(
                    kind=ref["kind"],
                    sha256=ref["sha256"],
                    content_type=ref["content_type"],
                    size=ref["size"],
                    stored=ref["sha256"] in stored,
                    url=(
                        f"/evidence/{ref['sha256']}"
                        if ref["sha256"] in stored and not originals.is_restricted_kind(ref["kind"])
                        else None
                    ),
                )
                for ref in originals.visible_refs(row.evidence, role)
            ],
            "model": ModelOut(name=row.model_name, sha256=row.model_sha256),
            "config_version": row.config_version,
            "received_at": row.received_at,
            "updated_at": row.updated_at,
            "review_status": row.review_status,
        }

    @classmethod
    def of(cls, row: EventRow, stored: set[str], role: str = "") -> EventOut:
        return cls(**cls.fields_of(row, stored, role))


class EventDetailOut(EventOut):
    decisions: list[DecisionOut]

    @classmethod
    def of(cls, row: EventRow, stored: set[str], role: str = "") -> EventDetailOut:
        return cls(
            **cls.fields_of(row, stored, role),
            decisions=[DecisionOut.of(decision) for decision in row.decisions],
        )


class DeadLetterOut(_Out):
    id: int
    received_at: datetime
    topic: str
    payload: str
    payload_b64: str
    payload_size: int
    error: str

    @classmethod
    def of(cls, row: DeadLetterRow) -> DeadLetterOut:
        return cls(
            id=row.id,
            received_at=row.received_at,
            topic=row.topic,
            payload=row.payload,
            payload_b64=row.payload_b64,
            payload_size=row.payload_size,
            error=row.error,
        )


class EvidenceUploadOut(_Out):
    sha256: str
    size: int
    content_type: str
    created: bool = Field(description="False when central already had these bytes.")


class ErrorOut(_Out):
    detail: str

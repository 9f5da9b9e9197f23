"""ORM models of issue 9's officers' workspace: the camera registry, evidence links, post-decision history and
cases (wards and user<->ward assignments are ``WardRow``/``UserWardRow`` in ``central.db.models``).

Kept apart from ``central.db.models`` (same metadata, imported at its end) so the accounts work and this work
do not edit one long file. Migration ``0004_wards_cases`` mirrors this file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central.db.models import ID_LEN, Base
from central.db.types import UTCDateTime, json_type


class CameraRow(Base):
    """A camera central knows of: filled from enrolled nodes' configs and events, placed in a ward by admins."""

    __tablename__ = "cameras"

    node_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    ward_id: Mapped[str | None] = mapped_column(
        ForeignKey("wards.ward_id", ondelete="RESTRICT"), nullable=True, index=True
    )
    location: Mapped[str] = mapped_column(String(255), default="")
    notes: Mapped[str] = mapped_column(Text, default="", doc="E.g. the household that hosts the camera.")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True, doc="None: the system.")


class EventEvidenceRow(Base):
    """Which event references which evidence hash: scopes evidence downloads to the viewer's wards."""

    __tablename__ = "event_evidence"
    __table_args__ = (Index("ix_event_evidence_sha256", "sha256"),)

    event_id: Mapped[str] = mapped_column(ForeignKey("events.event_id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)


class EventHistoryRow(Base):
    """A node message that arrived after the event was decided: kept, shown as a change, never applied."""

    __tablename__ = "event_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.event_id", ondelete="CASCADE"), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    phase: Mapped[str] = mapped_column(String(8))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    objects: Mapped[list[dict[str, Any]]] = mapped_column(json_type())
    measurements: Mapped[dict[str, float]] = mapped_column(json_type())
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(json_type())


class CaseRow(Base):
    """An investigation file grouping events of one ward; its evidence is locked against retention."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(ID_LEN))
    ward_id: Mapped[str] = mapped_column(ForeignKey("wards.ward_id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseEventRow(Base):
    """An event in a case."""

    __tablename__ = "case_events"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[str] = mapped_column(
        ForeignKey("events.event_id", ondelete="RESTRICT"), primary_key=True, index=True
    )
    added_by: Mapped[str] = mapped_column(String(ID_LEN))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())

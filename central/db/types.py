"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no time-zone-aware timestamp type: SQLAlchemy hands back naive datetimes, which then compare
wrongly with the aware ones the wire contract uses. ``UTCDateTime`` normalises every value to UTC on the way
in and returns aware UTC datetimes on the way out, on every backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned time-zone aware (UTC).

    Naive datetimes are refused when binding: their meaning depends on the machine that produced them, and a
    silent guess would shift evidence timestamps by hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} refused; use an aware (UTC) datetime")
        value = value.astimezone(UTC)
        # SQLite stores text without an offset; PostgreSQL's timestamptz wants the aware value.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL (indexable, compact)."""
    return JSON().with_variant(JSONB(), "postgresql")

"""Times and numbers for people: the deployment's time zone and the page's language (Babel).

Storage stays aware UTC; only pages convert, and every shown time carries its UTC value for the hover title
(exports keep UTC). Local input (the queue's time range) is read in the same zone and turned back into UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_decimal, format_percent

LOCALES = {"en": "en_GB", "vi": "vi_VN"}


def _locale(lang: str) -> str:
    return LOCALES.get(lang, "en_GB")


def local_dt(value: datetime | None, tz: str, lang: str) -> str:
    """``06/12/2026, 14:05:09`` in the deployment zone, formatted for the language; empty for None."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(tz))
    return format_datetime(local, "dd/MM/yyyy HH:mm:ss", locale=_locale(lang))


def utc_text(value: datetime | None) -> str:
    """The UTC value for the hover title and exports: ``2026-12-06 07:05:09 UTC``."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_local(value: str | None, tz: str) -> datetime | None:
    """A ``datetime-local`` input (``2026-12-06T14:05``) in the deployment zone, as aware UTC."""
    value = (value or "").strip()
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(tz))
    return parsed.astimezone(UTC)


def local_input(value: datetime | None, tz: str) -> str:
    """The value a ``datetime-local`` input shows for an aware datetime."""
    return "" if value is None else value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")


def local_day(value: datetime, tz: str) -> str:
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d")


def number(value: float | None, lang: str, digits: int = 1) -> str:
    if value is None:
        return ""
    return format_decimal(round(value, digits), locale=_locale(lang))


def percent(value: float | None, lang: str) -> str:
    if value is None:
        return ""
    return format_percent(value, format="#,##0.#%", locale=_locale(lang))


def duration(seconds: float | None, lang: str = "en") -> str:
    """``75.2`` -> ``1 m 15 s`` (``1 ph 15 giây`` in Vietnamese); empty when unknown."""
    if seconds is None:
        return ""
    m_unit, s_unit, h_unit = ("ph", "giây", "giờ") if lang == "vi" else ("m", "s", "h")
    total = round(seconds)
    if total < 60:
        return f"{number(seconds, lang)} {s_unit}"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} {m_unit} {secs:02d} {s_unit}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} {h_unit} {minutes:02d} {m_unit}"

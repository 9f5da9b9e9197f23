"""Times and numbers for people: the deployment's time zone and the page's language (Babel).

Storage stays aware UTC; only pages convert, and every shown time carries its UTC value for the hover title
(exports keep UTC). Local input (the queue's time range) is read in the same zone and turned back into UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_decimal, format_percent
from markupsafe import Markup

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


class PageFormat:
    """The formatting helpers a page's template gets as ``fmt`` (time zone and language bound)."""

    def __init__(self, tz: str, lang: str, translate: Callable[[str], str]) -> None:
        self.tz = tz
        self.lang = lang
        self._t = translate

    def dt(self, value: datetime | None) -> Markup:
        """Local time, with the UTC value in the hover title and a machine-readable ``datetime``."""
        if value is None:
            return Markup("")
        return Markup('<time datetime="{}" title="{}">{}</time>').format(
            value.astimezone(UTC).isoformat(), utc_text(value), local_dt(value, self.tz, self.lang)
        )

    def num(self, value: float | None, digits: int = 1) -> str:
        return number(value, self.lang, digits)

    def pct(self, value: float | None) -> str:
        return percent(value, self.lang)

    def dur(self, seconds: float | None) -> str:
        return duration(seconds, self.lang)

    def _named(self, prefix: str, name: str) -> str:
        key = f"{prefix}{name}"
        text = self._t(key)
        return name if text == key else text

    def label(self, name: str) -> str:
        return self._named("label_", name)

    def evidence(self, kind: str) -> str:
        return self._named("evidence_", kind)

    def measure_name(self, name: str) -> str:
        return self._named("measure_", name)

    def role(self, role: str) -> str:
        return self._named("role_", role)

    def measure(self, name: str, value: float) -> str:
        """A measurement with its unit: seconds as durations, km/h, shares as percentages."""
        if name.endswith("_s"):
            return self.dur(value)
        if name.endswith("_kmh"):
            return f"{self.num(value)} km/h"
        if name.startswith("occupancy") and not name.startswith("occupancy_objects"):
            return self.pct(value)
        if name in ("rider", "motorcycle_detected"):
            return self._t("yes") if value >= 0.5 else self._t("no")
        return self.num(value, 2)

    def fact(self, event_type: str, measurements: dict[str, float]) -> str:
        """The event type's key fact in words: dwell, speed vs limit, count, occupancy, signal state."""
        from central.queue import key_fact

        fact = key_fact(event_type, measurements)
        if fact is None or fact.value is None:
            return "—"
        if fact.kind == "speed":
            text = f"{self.num(fact.value)} km/h"
            if fact.limit is not None:
                text += f" / {self._t('of_limit')} {self.num(fact.limit, 0)}"
            return text
        if fact.kind == "duration":
            return self.dur(fact.value)
        if fact.kind == "percent":
            return self.pct(fact.value)
        if fact.kind == "signal":
            return f"{self._t('signal_red_for')} {self.dur(fact.value)}"
        if fact.kind == "count":
            return f"{self.num(fact.value, 0)} {self._t(fact.key).lower()}"
        return self.num(fact.value)

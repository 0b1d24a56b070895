"""Time windows of the `when:` match key: the hours and days a rule applies. Pure: the moment
judged is an argument, never the wall clock.

A window is an optional range of local times (`between: "09:00-17:00"`, or `not_between:` for
the hours outside it), optional days (`days: [mon, fri]`) and a time zone (`tz:`, an IANA
name; UTC when absent). A range whose end comes before its start runs past midnight
(`"22:00-06:00"`); `days` are always the local day of the moment judged, so that range on
`days: [fri]` covers Friday from 22:00 and Friday before 06:00, not Saturday morning.
Precision: the minute; a range includes its start and excludes its end ("09:00-17:00" is
09:00:00 up to 16:59:59.999).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


@dataclass(frozen=True)
class Window:
    start: int | None = None  # minutes after local midnight; None: every time of day
    end: int | None = None
    inside: bool = True  # False: `not_between`, the times outside the range
    days: frozenset[int] = frozenset(range(7))  # Monday is 0, as datetime.weekday()
    tz: tzinfo = UTC  # not ZoneInfo("UTC"): a system without a zone database still has UTC
    tz_name: str = "UTC"

    def active(self, now: float) -> bool:
        local = datetime.fromtimestamp(now, self.tz)
        if local.weekday() not in self.days:
            return False
        if self.start is None or self.end is None:
            return True
        return in_range(local.hour * 60 + local.minute, self.start, self.end) == self.inside

    def local_text(self, now: float) -> str:
        """The moment as this window reads it: what `rules explain` shows."""
        local = datetime.fromtimestamp(now, self.tz)
        return f"{DAYS[local.weekday()]} {local:%Y-%m-%d %H:%M} {self.tz_name}"


def in_range(minute: int, start: int, end: int) -> bool:
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end  # past midnight


def parse_range(text: object) -> tuple[int, int]:
    """'HH:MM-HH:MM' as minutes after midnight; 24:00 is the end of the day."""
    m = _RANGE.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not a range of times like \"09:00-17:00\"")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60:
        raise ValueError(f"{text!r}: hours 00-23 (24:00 as an end), minutes 00-59")
    if start == end:
        raise ValueError(f"{text!r} is empty: start and end are the same time")
    return start, end


def parse_days(values: list[object]) -> frozenset[int]:
    days = set()
    for v in values:
        text = str(v).strip().lower()
        name = text[:3]
        if name not in DAYS or text not in (name, _full(name)):
            raise ValueError(f"{v!r} is not a day (mon, tue, wed, thu, fri, sat, sun)")
        days.add(DAYS.index(name))
    if not days:
        raise ValueError("days must name at least one day")
    return frozenset(days)


def _full(short: str) -> str:
    return {"mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday", "fri": "friday",
            "sat": "saturday", "sun": "sunday"}[short]


def zone(name: object) -> tzinfo:
    """An IANA time zone; ValueError for a name the system's zone database lacks."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("must be an IANA time zone name like Europe/Berlin")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name!r} (an IANA name like Europe/Berlin or UTC)") from e

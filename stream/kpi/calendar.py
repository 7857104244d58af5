"""Business hours for the SLA clocks: a weekly schedule in a time zone, and holidays.

An SLA target of 4 h under business hours means four hours *of open time*: a ticket
created Friday at 16:00 with hours 08:00-17:00 Monday to Friday is due Monday at 11:00.
Pure: times are epoch milliseconds in and out; the schedule is local wall-clock time in
its zone (zoneinfo), so daylight-saving changes are where the zone puts them. A local
time that a change skips is read with the offset before the change; one it repeats is
its first occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
# A schedule with open hours reaches any target within this many days.
MAX_DAYS = 3660


class CalendarError(ValueError):
    """A schedule, zone or holiday that cannot be read; the message says which."""


@dataclass(frozen=True)
class BusinessCalendar:
    zone: str
    # weekday (0 = Monday) -> open intervals as (start minute, end minute) of the day
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[date] = frozenset()

    @classmethod
    def parse(
        cls, hours: str, zone: str = "UTC", holidays: tuple[str, ...] = ()
    ) -> BusinessCalendar:
        """'mon-fri 08:00-17:00; sat 10:00-14:00' in `zone`, with ISO-date holidays."""
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CalendarError(f"time zone {zone!r} is not a known IANA zone") from None
        weekly: list[list[tuple[int, int]]] = [[] for _ in DAYS]
        for part in (p.strip() for p in hours.split(";")):
            if not part:
                continue
            days_text, _, intervals = part.partition(" ")
            days = _days(days_text.strip().lower(), part)
            for interval in intervals.split(","):
                span = _interval(interval.strip(), part)
                for day in days:
                    weekly[day].append(span)
        if not any(weekly):
            raise CalendarError(f"business hours {hours!r} have no open time")
        try:
            dates = frozenset(date.fromisoformat(h.strip()) for h in holidays if h.strip())
        except ValueError as exc:
            raise CalendarError(f"holidays: {exc} (want YYYY-MM-DD)") from None
        return cls(zone, tuple(tuple(sorted(d)) for d in weekly), dates)

    def _open_intervals(self, day: date) -> list[tuple[int, int]]:
        """The open intervals of one local day, as epoch ms."""
        if day in self.holidays:
            return []
        tz = ZoneInfo(self.zone)
        out = []
        for start_min, end_min in self.weekly[day.weekday()]:
            start = _epoch_ms(day, start_min, tz)
            end = _epoch_ms(day, end_min, tz)
            if end > start:
                out.append((start, end))
        return out

    def add(self, start_ms: int, duration_ms: int) -> int:
        """The instant at which `duration_ms` of open time has passed since `start_ms`."""
        tz = ZoneInfo(self.zone)
        day = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(tz).date()
        left = duration_ms
        for _ in range(MAX_DAYS):
            for start, end in self._open_intervals(day):
                begin = max(start, start_ms)
                if begin >= end:
                    continue
                if left <= end - begin:
                    return begin + left
                left -= end - begin
            day += timedelta(days=1)
        raise CalendarError(f"no {duration_ms} ms of business time within {MAX_DAYS} days")

    def open_ms(self, start_ms: int, end_ms: int) -> int:
        """Open time between two instants."""
        if end_ms <= start_ms:
            return 0
        tz = ZoneInfo(self.zone)
        day = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(tz).date() - timedelta(1)
        last = datetime.fromtimestamp(end_ms / 1000, UTC).astimezone(tz).date() + timedelta(1)
        total = 0
        while day <= last:
            for start, end in self._open_intervals(day):
                total += max(0, min(end, end_ms) - max(start, start_ms))
            day += timedelta(days=1)
        return total


def _days(text: str, part: str) -> list[int]:
    first, sep, last = text.partition("-")
    if first not in DAYS or (sep and last not in DAYS):
        raise CalendarError(f"business hours {part!r}: days must be like mon, mon-fri or sat-sun")
    a, b = DAYS.index(first), DAYS.index(last if sep else first)
    return list(range(a, b + 1)) if a <= b else [*range(a, 7), *range(0, b + 1)]


def _interval(text: str, part: str) -> tuple[int, int]:
    match = _INTERVAL.match(text)
    if not match:
        raise CalendarError(f"business hours {part!r}: {text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if not (0 <= start < end <= 24 * 60) or m1 > 59 or m2 > 59:
        raise CalendarError(f"business hours {part!r}: {text!r} must be a range within a day")
    return start, end


def _epoch_ms(day: date, minute: int, tz: ZoneInfo) -> int:
    """A local wall-clock time as an instant (24:00 is the next midnight)."""
    moment = datetime.combine(day, time(0), tzinfo=tz) + timedelta(minutes=minute)
    # Arithmetic on aware datetimes is wall-clock arithmetic: re-read it in the zone so
    # a day with a DST change gets its real instants.
    local = datetime.combine(moment.date(), moment.time(), tzinfo=tz)
    return int(local.timestamp() * 1000)

"""RFC 3339 timestamps <-> integer epoch milliseconds. A time without an offset is an error."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

# [0-9], not \d: \d also matches the digits of other scripts.
_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt](?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]{1,9}))?(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class TimestampError(ValueError):
    """The text is not an RFC 3339 timestamp with an offset; the message says why."""


def parse_rfc3339_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp into epoch milliseconds (UTC).

    The offset is mandatory: a naive time could be any of 27 hours and would put an
    event in the wrong window. Digits beyond milliseconds are truncated, not rounded,
    so an event never moves into the next millisecond (and the next window).
    """
    fast = _parse_common(text)
    if fast is not None:
        return fast
    match = _RFC3339.fullmatch(text)
    if match is None:
        if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", text):
            raise TimestampError(f"timestamp {text!r} has no offset (add Z or +hh:mm)")
        raise TimestampError(f"timestamp {text!r} is not RFC 3339 (like 2026-11-24T10:15:30.123Z)")
    offset = match.group("offset")
    if offset in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise TimestampError(f"timestamp {text!r} has an impossible offset {offset}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        moment = datetime.fromisoformat(f"{match.group('date')}T{match.group('time')}").replace(
            tzinfo=tz
        )
    except ValueError as exc:
        raise TimestampError(f"timestamp {text!r} is not a real date and time: {exc}") from None
    millis = int((match.group("frac") or "0")[:3].ljust(3, "0"))
    return int(moment.timestamp()) * 1000 + millis


def _parse_common(text: str) -> int | None:
    """The usual spelling, 'YYYY-MM-DDTHH:MM:SS.fffZ' or 'YYYY-MM-DDTHH:MM:SSZ', without
    the regular expression; None for anything else (the strict parser decides, and says
    why). Every text it reads the full match reads the same: ASCII digits, UTC, at most
    milliseconds; a field out of range (24:00, a 30 February) is left to the parser."""
    n = len(text)
    if not (
        (n == 24 or n == 20)
        and text[-1] == "Z"
        and text[4] == "-"
        and text[7] == "-"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and (n == 20 or text[19] == ".")
    ):
        return None
    fraction = text[20:23]
    digits = text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
    digits += fraction
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        moment = datetime(
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return int(moment.timestamp()) * 1000 + (int(fraction) if fraction else 0)


@lru_cache(maxsize=4096, typed=True)
def format_rfc3339_ms(epoch_ms: int) -> str:
    """Epoch milliseconds -> '2026-11-24T10:15:30.123Z'.

    Cached: the merge spells the same window bounds and emission time for every KPI
    value of a window."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"

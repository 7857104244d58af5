"""Tumbling event-time windows: half-open [start, end) ranges in epoch milliseconds (UTC)."""

from __future__ import annotations

import re
from functools import lru_cache

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration_ms(text: str) -> int:
    """Parse '90s', '1m', '1h', '1d', '250ms' into milliseconds (a positive integer)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"duration {text!r} is not of the form <integer><unit> with unit one of ms, s, m, h, d"
        )
    value = int(match.group(1)) * _UNITS_MS[match.group(2)]
    if value <= 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    return value


@lru_cache(maxsize=256, typed=True)
def format_duration_ms(duration_ms: int) -> str:
    """The shortest exact text for a duration: 60000 -> '1m', 5400000 -> '90m'.

    Cached: every KPI message spells its window size."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if duration_ms % size == 0:
            return f"{duration_ms // size}{unit}"
    return f"{duration_ms}ms"


def window_start_ms(timestamp_ms: int, size_ms: int) -> int:
    """Start of the tumbling window of `size_ms` that holds `timestamp_ms`.

    Windows are aligned to the Unix epoch, so in UTC a 1d window is a calendar day.
    Floor division keeps this right for timestamps before 1970 too.
    """
    return (timestamp_ms // size_ms) * size_ms


def window_end_ms(start_ms: int, size_ms: int) -> int:
    """Exclusive end of the window that starts at `start_ms`."""
    return start_ms + size_ms


def is_closed(start_ms: int, size_ms: int, watermark_ms: int) -> bool:
    """A window is closed once the watermark has reached its (exclusive) end."""
    return window_end_ms(start_ms, size_ms) <= watermark_ms

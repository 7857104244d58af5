"""The `indicator.reported` event of `kpi indicator set`, built and checked before sending.

The command's arguments become exactly the event a producer system would send
(EVENTS.md, topic indicators.external, keyed by name), checked with the worker's own
decoder and period rule, so what the CLI accepts is what the worker accepts: a value
that the worker would dead-letter is refused here with the reason, and nothing is sent.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from stream.codec import Decoder, Rejection
from stream.kpi.events import Event
from stream.kpi.indicators import Refusal, period_of
from stream.kpi.timefmt import TimestampError, format_rfc3339_ms, parse_rfc3339_ms

_NUMBER = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
_QUARTER = re.compile(r"^([0-9]{4})-[Qq]([1-4])$")
_INT64 = 2**63  # orjson (producer and worker) carries 64-bit integers only

PERIOD_HELP = "a calendar month (2026-11) or quarter (2026-Q4) in UTC"


class IndicatorInputError(ValueError):
    """An argument that makes no valid indicator report; the message says which and why."""


@dataclass(frozen=True, slots=True)
class IndicatorMessage:
    """What to produce: the key (the name), the value bytes and the decoded event."""

    key: bytes
    value: bytes
    event: Event


def parse_value(text: str) -> int | float:
    """'1200' -> 1200, '0.125' -> 0.125, '-3.5e2' -> -350.0; anything else is an error.

    Integers stay integers (a count is exact in the KPI message); the JSON number syntax
    only, so '12%', 'nan' or '1_000' are refused rather than guessed at.
    """
    cleaned = text.strip()
    if not _NUMBER.match(cleaned):
        raise IndicatorInputError(f"VALUE {text!r} is not a number (like 1200, 0.125 or -3.5)")
    if re.fullmatch(r"[+-]?[0-9]+", cleaned):
        number = int(cleaned)
        if abs(number) < _INT64:
            return number
    value = float(cleaned)
    if not math.isfinite(value):
        raise IndicatorInputError(f"VALUE {text!r} is too large to report")
    return value


def calendar_period(text: str) -> tuple[int, int]:
    """'2026-11' -> [2026-11-01, 2026-12-01), '2026-Q4' -> [2026-10-01, 2027-01-01), in
    UTC epoch milliseconds."""
    month = _MONTH.match(text.strip())
    quarter = _QUARTER.match(text.strip())
    if month:
        year, first = int(month.group(1)), int(month.group(2))
        months = 1
    elif quarter:
        year, first = int(quarter.group(1)), 3 * int(quarter.group(2)) - 2
        months = 3
    else:
        raise IndicatorInputError(f"--period {text!r} is not {PERIOD_HELP}")
    if year < 1000 or (year, first + months) > (9999, 12):
        raise IndicatorInputError(f"--period {text!r}: the year must be 1000..9999")
    end_year, end_month = divmod(first - 1 + months, 12)
    start = datetime(year, first, 1, tzinfo=UTC)
    end = datetime(year + end_year, end_month + 1, 1, tzinfo=UTC)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


def build_indicator_event(
    name: str,
    value: str,
    unit: str,
    *,
    now_ms: int,
    period: str | None = None,
    period_start: str | None = None,
    period_end: str | None = None,
    source: str = "cli",
    event_id: str | None = None,
) -> dict[str, object]:
    """The event for the arguments: `period`, or both `period_start` and `period_end`
    (RFC 3339, kept as given); `occurred_at` is `now_ms`, so a repeat is a correction."""
    if period is not None:
        if period_start is not None or period_end is not None:
            raise IndicatorInputError("give --period or --period-start/--period-end, not both")
        start_ms, end_ms = calendar_period(period)
        period_start, period_end = format_rfc3339_ms(start_ms), format_rfc3339_ms(end_ms)
    elif period_start is None or period_end is None:
        raise IndicatorInputError(
            f"the period is missing: --period-start and --period-end, or --period ({PERIOD_HELP})"
        )
    else:
        for option, text in (("--period-start", period_start), ("--period-end", period_end)):
            try:
                parse_rfc3339_ms(text)
            except TimestampError as exc:
                raise IndicatorInputError(f"{option}: {exc}") from None
    return {
        "event_id": event_id or f"cli-{uuid.uuid4().hex}",
        "type": "indicator.reported",
        "occurred_at": format_rfc3339_ms(now_ms),
        "name": name,
        "value": parse_value(value),
        "unit": unit,
        "period_start": period_start,
        "period_end": period_end,
        "source": source,
    }


def checked_message(event: dict[str, object], decoder: Decoder) -> IndicatorMessage:
    """The event as the worker will see it, or an IndicatorInputError naming what the
    worker would reject (the decoder's schema and time checks, then the period rule)."""
    raw = orjson.dumps(event)
    decoded = decoder.decode(raw)
    if isinstance(decoded, Rejection):
        raise IndicatorInputError(f"the worker would reject this report: {decoded}")
    period = period_of(decoded)
    if isinstance(period, Refusal):
        raise IndicatorInputError(f"the worker would reject this report: {period}")
    return IndicatorMessage(str(event["name"]).encode(), raw, decoded)

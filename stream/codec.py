"""Bytes -> a valid Event, or a Rejection that says what was wrong and where.

Bad input is data: the decoder never raises on a message's content. The agent sends a
rejected message's raw bytes to the dead-letter topic with the reason in its headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import fastjsonschema
import orjson

from stream.kpi.events import Event
from stream.kpi.timefmt import TimestampError, parse_rfc3339_ms
from stream.schema_registry import load_event_validators


class Reason(StrEnum):
    """Why a message was rejected: a small fixed set, used as a metric label."""

    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    WRONG_TOPIC = "wrong_topic"
    UNSUPPORTED_VERSION = "unsupported_schema_version"
    SCHEMA_VIOLATION = "schema_violation"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str  # human-readable: what was wrong and where (a JSON path when there is one)

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


HELPDESK_TYPES = frozenset(
    {
        "ticket.created",
        "ticket.replied",
        "ticket.status_changed",
        "ticket.assigned",
        "ticket.priority_changed",
        "ticket.escalated",
        "ticket.solved",
        "ticket.reopened",
        "ticket.closed",
        "survey.csat",
        "survey.nps",
        "selfservice.session",
        "agent.shift",
    }
)
ORDER_TYPES = frozenset(
    {
        "order.placed",
        "order.confirmed",
        "order.shipped",
        "order.delayed",
        "order.delivered",
        "order.cancelled",
        "notification.sent",
        "customer.contacted",
    }
)
INDICATOR_TYPES = frozenset({"indicator.reported"})

Validator = Callable[[Any], Any]

# A rejection's detail goes into a dead-letter header and the logs: it says what and
# where, never carries the message back (which may be a megabyte of one string).
MAX_DETAIL_CHARS = 500
# The event times a window can be written for: KPI messages spell a window's start and
# end with a four-digit year (as indicator periods, stream/kpi/indicators.py). A time
# like 0001-01-01T00:00:00+01:00 passes the format but is in year 0 in UTC, and would
# crash the formatting of its window later, in the merge.
MIN_EVENT_MS = parse_rfc3339_ms("1000-01-01T00:00:00Z")
MAX_EVENT_MS = parse_rfc3339_ms("9999-12-31T23:59:59.999Z")


def preview(value: object, limit: int = 100) -> str:
    """A short, safe picture of a JSON value for a detail: containers are named, never
    walked (repr of a list nested 1,000 deep raises RecursionError), text is cut."""
    if isinstance(value, dict):
        return f"a JSON object of {len(value)} keys"
    if isinstance(value, list):
        return f"a JSON array of {len(value)} items"
    text = repr(value[:limit] if isinstance(value, str) else value)
    return text if len(text) <= limit + 20 else text[: limit + 20] + "..."


def _bounded(rejection: Rejection) -> Rejection:
    if len(rejection.detail) <= MAX_DETAIL_CHARS:
        return rejection
    return Rejection(rejection.reason, rejection.detail[: MAX_DETAIL_CHARS - 3] + "...")


class Decoder:
    """Decodes the messages of one topic, whose event types are `accepted_types`."""

    def __init__(
        self,
        accepted_types: Iterable[str],
        *,
        max_message_bytes: int = 1_000_000,
        validators: dict[str, Validator] | None = None,
        max_future_ms: int | None = None,
    ) -> None:
        self._accepted = frozenset(accepted_types)
        # An event this far after `now` is from a broken clock: accepted, it would move
        # the watermark and close every window early.
        self._max_future_ms = max_future_ms
        self._max_bytes = max_message_bytes
        self._validators = validators if validators is not None else load_event_validators()
        missing = self._accepted - set(self._validators)
        if missing:
            raise ValueError(f"no schema for event types {sorted(missing)} in schemas/events")

    def decode(self, raw: bytes | None, now_ms: int | None = None) -> Event | Rejection:
        """`now_ms`: the wall clock, for the future bound (none: no bound).

        Never raises on a message's content; a rejection's detail says where (a JSON path
        or an offset) and is at most MAX_DETAIL_CHARS long."""
        result = self._decode(raw, now_ms)
        return _bounded(result) if isinstance(result, Rejection) else result

    def _decode(self, raw: bytes | None, now_ms: int | None) -> Event | Rejection:
        if raw is None:
            return Rejection(Reason.INVALID_JSON, "$: message has no value (a tombstone)")
        if len(raw) > self._max_bytes:
            return Rejection(
                Reason.TOO_LARGE, f"$: message of {len(raw)} bytes exceeds {self._max_bytes}"
            )
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as utf:
                return Rejection(
                    Reason.INVALID_UTF8, f"invalid UTF-8 at byte {utf.start}: {utf.reason}"
                )
            return Rejection(Reason.INVALID_JSON, f"not JSON: {exc}")
        if not isinstance(data, dict):
            return Rejection(
                Reason.NOT_AN_OBJECT, f"$ is a JSON {type(data).__name__}, not an object"
            )
        kind = data.get("type")
        if kind is None:
            return Rejection(Reason.MISSING_TYPE, "$.type is missing")
        if not isinstance(kind, str):
            return Rejection(Reason.MISSING_TYPE, f"$.type must be a string, got {preview(kind)}")
        if kind not in self._validators:
            return Rejection(Reason.UNKNOWN_TYPE, f"$.type {preview(kind)} is not a known type")
        if kind not in self._accepted:
            return Rejection(Reason.WRONG_TOPIC, f"$.type {kind!r} does not belong on this topic")
        version = data.get("schema_version", 1)
        if version != 1 or isinstance(version, bool):
            return Rejection(
                Reason.UNSUPPORTED_VERSION,
                f"$.schema_version {preview(version)} is not supported (1)",
            )
        try:
            self._validators[kind](data)
        except fastjsonschema.JsonSchemaValueException as exc:
            where = exc.name.replace("data", "$", 1) if exc.name else "$"
            if where == "$.occurred_at" and isinstance(data.get("occurred_at"), str):
                # The parser says why in words ("has no offset"), not as a regex.
                try:
                    parse_rfc3339_ms(data["occurred_at"])
                except TimestampError as bad_time:
                    return Rejection(Reason.BAD_TIMESTAMP, f"{kind}: $.occurred_at: {bad_time}")
            message = exc.message.replace(exc.name or "data", where, 1)
            return Rejection(Reason.SCHEMA_VIOLATION, f"{kind}: {message[:300]}")
        try:
            occurred_at_ms = parse_rfc3339_ms(data["occurred_at"])
        except TimestampError as exc:
            return Rejection(Reason.BAD_TIMESTAMP, f"{kind}: $.occurred_at: {exc}")
        if not MIN_EVENT_MS <= occurred_at_ms <= MAX_EVENT_MS:
            return Rejection(
                Reason.BAD_TIMESTAMP,
                f"{kind}: $.occurred_at {data['occurred_at']!r} is outside the years "
                "1000..9999 in UTC, which a KPI window can be written in",
            )
        if (
            self._max_future_ms is not None
            and now_ms is not None
            and occurred_at_ms > now_ms + self._max_future_ms
        ):
            ahead_s = (occurred_at_ms - now_ms) / 1000
            return Rejection(
                Reason.FUTURE_TIMESTAMP,
                f"{kind}: $.occurred_at {data['occurred_at']!r} is {ahead_s:,.0f} s after the "
                f"worker's clock, beyond the bound of {self._max_future_ms / 1000:,.0f} s "
                "(KPI_MAX_FUTURE)",
            )
        return Event(data["event_id"], kind, occurred_at_ms, data)

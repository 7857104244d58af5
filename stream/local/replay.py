"""Replay a file of events into Kafka: JSON Lines, optionally gzipped.

Two line formats are read:

* the simulator's (`kpi simulate --to FILE.jsonl`): `{"topic", "key", "value", "emit_at_ms",
  "kind"}`, replayed byte for byte (malformed messages included);
* one bare event per line (an export from a help desk): the topic follows from its
  `type`, the key from `ticket_id` / `order_id` / `name`.

A line that is not JSON is sent as it is to the help-desk topic: bad input is data, the
worker puts it in the dead-letter topic with its reason. With a speed factor the gaps
between event times are replayed N times faster than they happened; without one, as
fast as the producer goes.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import orjson

from stream.codec import INDICATOR_TYPES, ORDER_TYPES
from stream.kpi.timefmt import TimestampError, parse_rfc3339_ms
from stream.local.simulator import SimMessage


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def topic_of(event_type: Any) -> str:
    """The logical topic of an event type: helpdesk, orders or indicators."""
    if event_type in ORDER_TYPES:
        return "orders"
    if event_type in INDICATOR_TYPES:
        return "indicators"
    return "helpdesk"


def _key_of(event: dict[str, Any]) -> bytes | None:
    for field in ("ticket_id", "order_id", "name", "agent_id", "customer_id"):
        value = event.get(field)
        if isinstance(value, str) and value:
            return value.encode()
    return None


def _event_time(event: dict[str, Any]) -> int | None:
    text = event.get("occurred_at")
    if not isinstance(text, str):
        return None
    try:
        return parse_rfc3339_ms(text)
    except TimestampError:
        return None


def _from_line(line: bytes) -> SimMessage:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return SimMessage("helpdesk", None, line, 0, 0, "malformed")
    if isinstance(data, dict) and "topic" in data and "value" in data and "kind" in data:
        value = data["value"]
        raw = value.encode() if isinstance(value, str) else base64.b64decode(value["base64"])
        key = data.get("key")
        at = int(data.get("emit_at_ms") or 0)
        topic = data["topic"]
        return SimMessage(topic, key.encode() if key else None, raw, at, at, data["kind"])
    if not isinstance(data, dict):
        return SimMessage("helpdesk", None, line, 0, 0, "malformed")
    at = _event_time(data) or 0
    topic = cast(Any, topic_of(data.get("type")))
    return SimMessage(topic, _key_of(data), line, at, at, "event")


def read_messages(path: Path, speed: float | None, start_wall_ms: int) -> Iterator[SimMessage]:
    """The file's messages, with `emit_at_ms` on the wall clock from `start_wall_ms`.

    With `speed`, a message is due `(its time - the first time) / speed` after the start
    (messages without a usable time are due at once); without, everything is due now.
    """
    first: int | None = None
    with _open(path) as lines:
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            message = _from_line(line)
            emit = start_wall_ms
            if speed and message.emit_at_ms:
                first = message.emit_at_ms if first is None else first
                emit = start_wall_ms + max(0, int((message.emit_at_ms - first) / speed))
            yield SimMessage(
                message.topic,
                message.key,
                message.value,
                emit,
                message.occurred_at_ms,
                message.kind,
            )

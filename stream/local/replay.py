"""Replay a file of events into Kafka: JSON Lines or CSV, optionally gzipped.

Two line formats of JSON Lines are read:

* the simulator's (`kpi simulate --to FILE.jsonl`): `{"topic", "key", "value", "emit_at_ms",
  "kind"}`, replayed byte for byte (malformed messages included);
* one bare event per line (an export from a help desk): the topic follows from its
  `type`, the key from `ticket_id` (help desk), `order_id` (orders) or `name`
  (indicators).

A line that is not JSON is sent as it is to the help-desk topic: bad input is data, the
worker puts it in the dead-letter topic with its reason. With a speed factor the gaps
between event times are replayed N times faster than they happened; without one, as
fast as the producer goes.

CSV (`read_csv_messages`): each row becomes zero or one event by a column map
(stream/local/csvmap.py, docs/replay.md); the events go to the topic of their type with
the key of their ticket or order, as bare events do, in file order or, with `sort`,
ordered by `occurred_at` (stable: rows of the same time keep their file order).
"""

from __future__ import annotations

import base64
import gzip
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import orjson

from stream.codec import HELPDESK_TYPES, INDICATOR_TYPES, ORDER_TYPES, Decoder, Rejection
from stream.kpi.timefmt import TimestampError, parse_rfc3339_ms
from stream.local.csvmap import ColumnMap, ConvertStats, read_csv_events
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


_KEY_FIELDS = {
    # EVENTS.md: orders.events is keyed by order_id (a customer.contacted may carry a
    # ticket_id too), indicators.external by name, helpdesk.events by ticket_id.
    "orders": ("order_id", "customer_id"),
    "indicators": ("name",),
    "helpdesk": ("ticket_id", "order_id", "name", "agent_id", "customer_id"),
}


def _key_of(event: dict[str, Any]) -> bytes | None:
    for field in _KEY_FIELDS[topic_of(event.get("type"))]:
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


def _from_event(data: dict[str, Any], raw: bytes) -> SimMessage:
    """A bare event (its parsed form and its bytes) to its topic, with its key."""
    at = _event_time(data) or 0
    topic = cast(Any, topic_of(data.get("type")))
    return SimMessage(topic, _key_of(data), raw, at, at, "event")


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
    return _from_event(data, line)


def _paced(
    messages: Iterable[SimMessage], speed: float | None, start_wall_ms: int
) -> Iterator[SimMessage]:
    """`messages` with `emit_at_ms` on the wall clock from `start_wall_ms`.

    With `speed`, a message is due `(its time - the first time) / speed` after the start
    (messages without a usable time are due at once); without, everything is due now.
    """
    first: int | None = None
    for message in messages:
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


def _lines(path: Path) -> Iterator[SimMessage]:
    with _open(path) as lines:
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            yield _from_line(line)


def read_messages(path: Path, speed: float | None, start_wall_ms: int) -> Iterator[SimMessage]:
    """The JSONL file's messages, with `emit_at_ms` on the wall clock from `start_wall_ms`.

    With `speed`, a message is due `(its time - the first time) / speed` after the start
    (messages without a usable time are due at once); without, everything is due now.
    """
    return _paced(_lines(path), speed, start_wall_ms)


def count_rejections(
    messages: Iterable[SimMessage], rejected: Counter[str]
) -> Iterator[SimMessage]:
    """`messages` unchanged; those the worker would dead-letter counted in `rejected` by
    reason (the product's decoder: JSON Schema and timestamp checks)."""
    decoder = Decoder(HELPDESK_TYPES | ORDER_TYPES | INDICATOR_TYPES)
    for message in messages:
        verdict = decoder.decode(message.value)
        if isinstance(verdict, Rejection):
            rejected[verdict.reason.value] += 1
        yield message


def read_csv_messages(
    path: Path,
    column_map: ColumnMap,
    speed: float | None,
    start_wall_ms: int,
    *,
    sort: bool = False,
    stats: ConvertStats | None = None,
) -> Iterator[SimMessage]:
    """The events of a CSV or CSV.gz file by `column_map`, as messages to replay.

    Each event goes to the topic of its type, keyed by its ticket_id / order_id (as a
    bare JSONL event), in file order; with `sort`, ordered by `occurred_at` (stable;
    events without a time first), which reads the whole file before the first message.
    Pacing with `speed` as in `read_messages`. The CSV header is checked against the map
    when this is called (MapError); `stats` counts rows, events and skipped rows by
    reason while the messages are read.
    """
    events = read_csv_events(path, column_map, stats)
    messages: Iterable[SimMessage]
    if sort:
        # orjson's bytes keep a 4 KiB buffer each: held for the sort, exact copies take
        # about 90 MB for the 141,707 events of the incident log instead of 600 MB.
        held = (_from_event(e, bytes(memoryview(orjson.dumps(e)))) for e in events)
        messages = sorted(held, key=lambda message: message.occurred_at_ms)
    else:
        messages = (_from_event(e, orjson.dumps(e)) for e in events)
    return _paced(messages, speed, start_wall_ms)

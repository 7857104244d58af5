"""Bytes in, an event or a rejection with its reason out; never an exception."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.codec import (
    HELPDESK_TYPES,
    INDICATOR_TYPES,
    ORDER_TYPES,
    Decoder,
    Reason,
    Rejection,
)
from stream.kpi.events import Event
from stream.schema_registry import schema_dir

EXAMPLES = schema_dir() / "examples"
helpdesk = Decoder(HELPDESK_TYPES, max_message_bytes=10_000)
orders = Decoder(ORDER_TYPES)
indicators = Decoder(INDICATOR_TYPES)


def decoder_for(kind: object) -> Decoder:
    if kind in ORDER_TYPES:
        return orders
    return indicators if kind in INDICATOR_TYPES else helpdesk


VALID = {
    "event_id": "e-1",
    "type": "ticket.created",
    "occurred_at": "2026-11-24T11:15:30.120+02:00",
    "ticket_id": "T1",
    "customer_id": "C1",
    "queue": "billing",
    "priority": "high",
    "channel": "email",
}


def decode(value: object) -> Event | Rejection:
    return helpdesk.decode(orjson.dumps(value))


def test_valid_event_decodes_with_utc_epoch_millis_and_keeps_unknown_fields() -> None:
    event = decode({**VALID, "extra": {"a": 1}})
    assert isinstance(event, Event)
    assert event.occurred_at_ms == 1795511730120
    assert event.body["extra"] == {"a": 1}


@pytest.mark.parametrize(
    ("raw", "reason", "detail"),
    [
        (b"{not json", Reason.INVALID_JSON, "not JSON"),
        (b"\xff\xfe{}", Reason.INVALID_UTF8, "byte 0"),
        (b"[1, 2]", Reason.NOT_AN_OBJECT, "JSON list"),
        (b'"text"', Reason.NOT_AN_OBJECT, "JSON str"),
        (b"x" * 10_001, Reason.TOO_LARGE, "10001 bytes"),
        (b"[" * 5000 + b"]" * 5000, Reason.INVALID_JSON, "not JSON"),
        (None, Reason.INVALID_JSON, "tombstone"),
    ],
)
def test_broken_bytes_are_rejected_with_reason(
    raw: bytes | None, reason: Reason, detail: str
) -> None:
    result = helpdesk.decode(raw)
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert detail in result.detail


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"type": None}, Reason.MISSING_TYPE, "$.type"),
        ({"type": 7}, Reason.MISSING_TYPE, "must be a string"),
        ({"type": "ticket.exploded"}, Reason.UNKNOWN_TYPE, "ticket.exploded"),
        ({"type": "order.placed"}, Reason.WRONG_TOPIC, "order.placed"),
        ({"schema_version": 2}, Reason.UNSUPPORTED_VERSION, "2"),
        ({"priority": "critical"}, Reason.SCHEMA_VIOLATION, "$.priority"),
        ({"occurred_at": "2026-11-24T09:00:00"}, Reason.BAD_TIMESTAMP, "no offset"),
        ({"occurred_at": "2026-02-30T09:00:00Z"}, Reason.BAD_TIMESTAMP, "not a real date"),
        ({"occurred_at": 1795511730}, Reason.SCHEMA_VIOLATION, "$.occurred_at"),
    ],
)
def test_invalid_events_say_what_and_where(change: dict, reason: Reason, detail: str) -> None:
    body = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    result = decode(body)
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert detail in result.detail


@pytest.mark.parametrize("path", sorted((EXAMPLES / "valid").glob("*.json")), ids=lambda p: p.name)
def test_valid_examples_decode_on_their_topic(path) -> None:
    body = json.loads(path.read_text())
    assert isinstance(decoder_for(body["type"]).decode(path.read_bytes()), Event)


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "invalid").glob("*.json")), ids=lambda p: p.name
)
def test_invalid_examples_are_rejected(path) -> None:
    event = json.loads(path.read_text())["event"]
    assert isinstance(decoder_for(event.get("type")).decode(orjson.dumps(event)), Rejection)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(helpdesk.decode(raw), Event | Rejection)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=30,
    )
)
def test_arbitrary_json_never_raises(value: object) -> None:
    # json, not orjson: it writes integers beyond 64 bits, which the decoder must survive.
    assert isinstance(helpdesk.decode(json.dumps(value).encode()), Event | Rejection)

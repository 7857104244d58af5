"""Writes the hostile-message corpus: tests/corpus/messages/* and tests/corpus/corpus.toml.

The files are checked in; this script is how they were made, so a reviewer can read each
message as code and a new kind is one more entry below. Run it from the repository root:

    python tests/corpus/generate.py

Every entry: a name (the file name without extension), the topic it is sent to
(helpdesk, orders or indicators), what the worker does with it (`accepted`, or the
reason it is sent to the dead-letter topic with), why, and, for a message the worker
does not yet handle as documented, `bug` naming the report in README.md.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MESSAGES = HERE / "messages"

AT = "2026-11-24T09:15:30.120Z"


@dataclass(frozen=True)
class Entry:
    name: str
    topic: str
    expected: str
    why: str
    raw: bytes | None  # None: a message with no value (a tombstone)
    bug: str = ""
    gzip: bool = False  # stored compressed (the message itself is large)


def ticket(kind: str, name: str, ticket_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"corpus-{name}",
        "type": kind,
        "occurred_at": AT,
        "schema_version": 1,
        "ticket_id": ticket_id or f"corpus-T-{name}",
        "customer_id": "corpus-C-1",
        **fields,
    }


def created(name: str, **fields: Any) -> dict[str, Any]:
    body = {"queue": "corpus", "priority": "normal", "channel": "email", **fields}
    return ticket("ticket.created", name, **body)


def order(event_type: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"corpus-{name}",
        "type": event_type,
        "occurred_at": AT,
        "order_id": f"corpus-O-{name}",
        "customer_id": "corpus-C-1",
        **fields,
    }


def indicator(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"corpus-{name}",
        "type": "indicator.reported",
        "occurred_at": AT,
        "name": f"corpus_{name.replace('-', '_')}"[:128],
        "value": 0.5,
        "unit": "ratio",
        "period_start": "2026-10-01T00:00:00Z",
        "period_end": "2026-11-01T00:00:00Z",
        "source": "corpus",
        **fields,
    }


def js(value: Any) -> bytes:
    """Python's json: writes NaN, Infinity and integers beyond 64 bits, as a hostile
    producer might."""
    return json.dumps(value, ensure_ascii=False).encode()


def nested(depth: int, leaf: str = "[]") -> str:
    return "[" * depth + leaf + "]" * depth


def splice(body: dict[str, Any], field: str, raw_value: str) -> bytes:
    """The event with `field` set to `raw_value` as written (not valid JSON for json)."""
    marker = "__corpus_splice__"
    text = json.dumps({**body, field: marker}, ensure_ascii=False)
    return text.replace(f'"{marker}"', raw_value).encode()


def padded(body: dict[str, Any], size: int) -> bytes:
    """The event with an unknown field `blob` that makes it exactly `size` bytes."""
    empty = js({**body, "blob": ""})
    return js({**body, "blob": "x" * (size - len(empty))})


def entries() -> list[Entry]:
    H, O, I = "helpdesk", "orders", "indicators"  # noqa: E741
    valid = created("valid")
    return [
        Entry(
            "valid-ticket",
            H,
            "accepted",
            "a plain valid ticket.created (the ticket the corpus solves)",
            js(valid | {"ticket_id": "corpus-T-valid"}),
        ),
        # --- bytes that are not a JSON object -------------------------------------------
        Entry("not-json", H, "invalid_json", "not JSON at all", b"{not json"),
        Entry("empty", H, "invalid_json", "a message with an empty value", b""),
        Entry("tombstone", H, "invalid_json", "a message with no value (null)", None),
        Entry("whitespace", O, "invalid_json", "only whitespace", b" \n\t "),
        Entry("truncated", H, "invalid_json", "an event cut in half", js(valid)[:40]),
        Entry("two-objects", H, "invalid_json", "two objects in one message", js(valid) * 2),
        Entry("trailing-nul", H, "invalid_json", "a NUL byte after the object", js(valid) + b"\0"),
        Entry(
            "invalid-utf8",
            H,
            "invalid_utf8",
            "a 0xFF byte inside a string",
            js(created("invalid-utf8")).replace(b"corpus-C-1", b"corpus-\xff-1"),
        ),
        Entry(
            "utf8-encoded-surrogate",
            H,
            "invalid_utf8",
            "CESU/WTF-8: a surrogate code point encoded as UTF-8 bytes (ED A0 80)",
            js(created("utf8-encoded-surrogate")).replace(b"corpus-C-1", b"corpus-\xed\xa0\x80"),
        ),
        Entry(
            "overlong-utf8",
            H,
            "invalid_utf8",
            "an overlong encoding of '/' (C0 AF)",
            js(created("overlong-utf8")).replace(b"corpus-C-1", b"corpus-\xc0\xaf"),
        ),
        Entry(
            "utf16",
            I,
            "invalid_utf8",
            "the event in UTF-16 with a byte-order mark",
            js(indicator("utf16")).decode().encode("utf-16"),
        ),
        Entry(
            "utf8-bom",
            H,
            "invalid_json",
            "a UTF-8 byte-order mark before the object (RFC 8259: must not be sent)",
            b"\xef\xbb\xbf" + js(created("utf8-bom")),
        ),
        Entry(
            "lone-surrogate-escape",
            H,
            "invalid_json",
            "\\ud800 escape without its low half: no Unicode text",
            splice(created("lone-surrogate-escape"), "queue", '"q\\ud800"'),
        ),
        Entry(
            "nan-literal",
            H,
            "invalid_json",
            "NaN is not JSON",
            splice(
                ticket("ticket.replied", "nan-literal", author="agent", public=True),
                "handle_seconds",
                "NaN",
            ),
        ),
        Entry(
            "infinity-literal",
            I,
            "invalid_json",
            "Infinity is not JSON",
            splice(indicator("infinity-literal"), "value", "Infinity"),
        ),
        Entry(
            "number-overflows-double",
            I,
            "invalid_json",
            "1e400 is valid JSON grammar but infinite as a double; orjson refuses it",
            splice(indicator("number-overflows-double"), "value", "1e400"),
        ),
        Entry("json-array", H, "not_an_object", "a JSON array", b"[1, 2, 3]"),
        Entry("json-string", O, "not_an_object", "a JSON string", b'"ticket.created"'),
        Entry("json-null", H, "not_an_object", "the JSON literal null", b"null"),
        Entry("json-number", I, "not_an_object", "a JSON number", b"18446744073709551616"),
        # --- nesting (orjson parses at most 1,024 levels) --------------------------------
        Entry(
            "deep-10000",
            H,
            "invalid_json",
            "arrays nested 10,000 deep: past orjson's depth limit (1,024)",
            nested(10_000).encode(),
            gzip=True,
        ),
        Entry(
            "deep-10000-in-field",
            H,
            "invalid_json",
            "a valid event with an unknown field nested 10,000 deep",
            splice(created("deep-10000-in-field"), "extra", nested(10_000)),
            gzip=True,
        ),
        Entry(
            "deep-1000-type",
            H,
            "missing_type",
            "$.type nested 1,000 deep (was a RecursionError in the decoder's detail)",
            splice(created("deep-1000-type"), "type", nested(1000)),
        ),
        Entry(
            "deep-1000-schema-version",
            H,
            "unsupported_schema_version",
            "$.schema_version nested 1,000 deep (was a RecursionError too)",
            splice(created("deep-1000-schema-version"), "schema_version", nested(1000)),
        ),
        Entry(
            "deep-1000-unknown-field",
            H,
            "accepted",
            "an unknown field nested 1,000 deep: unknown fields are kept and ignored",
            splice(created("deep-1000-unknown-field"), "extra", nested(1000)),
        ),
        Entry(
            "deep-1000-queue",
            H,
            "schema_violation",
            "$.queue is an array nested 1,000 deep",
            splice(created("deep-1000-queue"), "queue", nested(1000)),
        ),
        Entry(
            "deep-300-in-money",
            H,
            "accepted",
            "an unknown field nested 300 deep inside settled_amount: valid; the ticket state "
            "keeps only value and currency (orjson writes at most 255 levels)",
            splice(
                ticket(
                    "ticket.solved", "deep-300-in-money", ticket_id="corpus-T-valid", method="agent"
                ),
                "settled_amount",
                '{"value": "1.00", "currency": "EUR", "x": ' + nested(300) + "}",
            ),
        ),
        # --- the envelope ----------------------------------------------------------------
        Entry(
            "missing-type",
            H,
            "missing_type",
            "no $.type",
            js({k: v for k, v in created("missing-type").items() if k != "type"}),
        ),
        Entry(
            "type-number",
            H,
            "missing_type",
            "$.type is 7",
            js({**created("type-number"), "type": 7}),
        ),
        Entry(
            "type-null",
            O,
            "missing_type",
            "$.type is null",
            js({**order("order.delivered", "type-null"), "type": None}),
        ),
        Entry(
            "unknown-type",
            H,
            "unknown_type",
            "a type the contract does not have",
            js({**created("unknown-type"), "type": "ticket.exploded"}),
        ),
        Entry(
            "type-with-space",
            H,
            "unknown_type",
            "'ticket.created ' (trailing space) is no type",
            js({**created("type-with-space"), "type": "ticket.created "}),
        ),
        Entry(
            "type-huge",
            O,
            "unknown_type",
            "$.type is a 500,000-character string: the detail must stay short",
            js({**order("order.delivered", "type-huge"), "type": "x" * 500_000}),
            gzip=True,
        ),
        Entry(
            "wrong-topic",
            H,
            "wrong_topic",
            "an order event on the help-desk topic",
            js(order("order.placed", "wrong-topic", channel="web")),
        ),
        Entry(
            "wrong-topic-indicator",
            O,
            "wrong_topic",
            "an indicator report on the orders topic",
            js(indicator("wrong-topic-indicator")),
        ),
        Entry(
            "schema-version-2",
            H,
            "unsupported_schema_version",
            "a version this worker does not know",
            js({**created("schema-version-2"), "schema_version": 2}),
        ),
        Entry(
            "schema-version-string",
            H,
            "unsupported_schema_version",
            "schema_version '1' (a string)",
            js({**created("schema-version-string"), "schema_version": "1"}),
        ),
        Entry(
            "schema-version-true",
            H,
            "unsupported_schema_version",
            "schema_version true (equal to 1 in Python)",
            js({**created("schema-version-true"), "schema_version": True}),
        ),
        Entry(
            "missing-event-id",
            H,
            "schema_violation",
            "no event_id",
            js({k: v for k, v in created("missing-event-id").items() if k != "event_id"}),
        ),
        Entry(
            "event-id-129",
            H,
            "schema_violation",
            "an event_id of 129 characters (the limit is 128)",
            js({**created("event-id-129"), "event_id": "e" * 129}),
        ),
        Entry(
            "event-id-number",
            O,
            "schema_violation",
            "event_id 17 (a number)",
            js({**order("order.delivered", "event-id-number"), "event_id": 17}),
        ),
        Entry(
            "customer-id-null",
            H,
            "schema_violation",
            "customer_id null",
            js({**created("customer-id-null"), "customer_id": None}),
        ),
        Entry(
            "missing-order-id",
            O,
            "schema_violation",
            "an order event without order_id",
            js(
                {
                    k: v
                    for k, v in order("order.delivered", "missing-order-id").items()
                    if k != "order_id"
                }
            ),
        ),
        # --- times -----------------------------------------------------------------------
        Entry(
            "naive-time",
            H,
            "bad_timestamp",
            "no offset: could be any of 27 hours",
            js({**created("naive-time"), "occurred_at": "2026-11-24T09:15:30"}),
        ),
        Entry(
            "february-30",
            H,
            "bad_timestamp",
            "2026-02-30 passes the pattern, is no date",
            js({**created("february-30"), "occurred_at": "2026-02-30T10:00:00Z"}),
        ),
        Entry(
            "hour-25",
            O,
            "bad_timestamp",
            "hour 25",
            js({**order("order.delivered", "hour-25"), "occurred_at": "2026-11-24T25:00:00Z"}),
        ),
        Entry(
            "leap-second",
            H,
            "bad_timestamp",
            "second 60: the runtime parser cannot place a leap second",
            js({**created("leap-second"), "occurred_at": "2026-12-31T23:59:60Z"}),
        ),
        Entry(
            "offset-24h",
            H,
            "bad_timestamp",
            "offset +24:00",
            js({**created("offset-24h"), "occurred_at": "2026-11-24T10:00:00+24:00"}),
        ),
        Entry(
            "offset-without-colon",
            I,
            "bad_timestamp",
            "+0200 is ISO 8601 basic format, not RFC 3339",
            js({**indicator("offset-without-colon"), "occurred_at": "2026-11-24T10:00:00+0200"}),
        ),
        Entry(
            "date-only",
            H,
            "bad_timestamp",
            "a date without a time",
            js({**created("date-only"), "occurred_at": "2026-11-24"}),
        ),
        Entry(
            "fullwidth-digits",
            H,
            "bad_timestamp",
            "digits of another script (U+FF10..): \\d would match them, [0-9] does not",
            js(
                {
                    **created("fullwidth-digits"),
                    "occurred_at": "\uff12\uff10\uff12\uff16-11-24T10:00:00Z",
                }
            ),
        ),
        Entry(
            "epoch-number",
            H,
            "schema_violation",
            "occurred_at as epoch seconds (a number)",
            js({**created("epoch-number"), "occurred_at": 1795511730}),
        ),
        Entry(
            "year-0-in-utc",
            H,
            "bad_timestamp",
            "0001-01-01T00:00:00+01:00 is in year 0 in UTC: accepted before, it crashed the "
            "merge (format_rfc3339_ms: year 0 is out of range)",
            js({**created("year-0-in-utc"), "occurred_at": "0001-01-01T00:00:00+01:00"}),
        ),
        Entry(
            "year-999",
            O,
            "bad_timestamp",
            "before the year 1000: a KPI window key could not be written with a four-digit year",
            js({**order("order.delivered", "year-999"), "occurred_at": "0999-12-31T23:59:59Z"}),
        ),
        Entry(
            "year-9999",
            H,
            "future_timestamp",
            "far ahead of the worker's clock (KPI_MAX_FUTURE, 1h)",
            js({**created("year-9999"), "occurred_at": "9999-12-31T23:59:59Z"}),
        ),
        Entry(
            "lower-case-t-z",
            H,
            "accepted",
            "RFC 3339 allows 't' and 'z'",
            js({**created("lower-case-t-z"), "occurred_at": "2026-11-24t09:15:30z"}),
        ),
        Entry(
            "nanoseconds-and-offset",
            O,
            "accepted",
            "nine fraction digits and a negative offset (truncated to milliseconds)",
            js(
                {
                    **order("order.delivered", "nanoseconds-and-offset"),
                    "occurred_at": "2026-11-24T04:15:30.123456789-05:00",
                }
            ),
        ),
        Entry(
            "epoch-zero",
            H,
            "accepted",
            "1970-01-01T00:00:00Z, a producer that sends 0 for 'unknown': a late event "
            "once the partition has newer ones; as the first event of a fresh partition "
            "its windows close up to now in one step over the empty ones",
            js({**created("epoch-zero"), "occurred_at": "1970-01-01T00:00:00Z"}),
        ),
        Entry(
            "order-promise-impossible",
            O,
            "accepted",
            "promised_by 2026-02-30: the schema checks the format only; documented in "
            "stream/kpi/orders.py: an impossible date promises nothing",
            js(
                order(
                    "order.shipped", "order-promise-impossible", promised_by="2026-02-30T10:00:00Z"
                )
            ),
        ),
        Entry(
            "period-impossible-date",
            I,
            "bad_period",
            "period_start 2026-02-30: the indicator flow sends it to the dead-letter topic",
            js(indicator("period-impossible-date", period_start="2026-02-30T00:00:00Z")),
        ),
        Entry(
            "period-reversed",
            I,
            "bad_period",
            "period_end before period_start",
            js(
                indicator(
                    "period-reversed",
                    period_start="2026-11-01T00:00:00Z",
                    period_end="2026-10-01T00:00:00Z",
                )
            ),
        ),
        # --- field values ----------------------------------------------------------------
        Entry(
            "unknown-priority",
            H,
            "schema_violation",
            "priority 'critical'",
            js(created("unknown-priority", priority="critical")),
        ),
        Entry(
            "priority-upper-case",
            H,
            "schema_violation",
            "priority 'HIGH': enum values are case-sensitive",
            js(created("priority-upper-case", priority="HIGH")),
        ),
        Entry(
            "unknown-channel",
            O,
            "schema_violation",
            "order channel 'fax'",
            js(order("order.placed", "unknown-channel", channel="fax")),
        ),
        Entry(
            "unknown-medium",
            O,
            "schema_violation",
            "notification medium 'pigeon'",
            js(order("notification.sent", "unknown-medium", kind="shipped", medium="pigeon")),
        ),
        Entry(
            "csat-0",
            H,
            "schema_violation",
            "CSAT score 0 (1..5)",
            js(ticket("survey.csat", "csat-0", score=0)),
        ),
        Entry(
            "csat-negative",
            H,
            "schema_violation",
            "CSAT score -3",
            js(ticket("survey.csat", "csat-negative", score=-3)),
        ),
        Entry(
            "csat-fraction",
            H,
            "schema_violation",
            "CSAT score 4.5",
            js(ticket("survey.csat", "csat-fraction", score=4.5)),
        ),
        Entry(
            "csat-five-point-zero",
            H,
            "accepted",
            "CSAT score 5.0: an integer in JSON Schema (draft 7), counted as 5",
            js(ticket("survey.csat", "csat-five-point-zero", score=5.0)),
        ),
        Entry(
            "csat-bool",
            H,
            "schema_violation",
            "CSAT score true",
            js(ticket("survey.csat", "csat-bool", score=True)),
        ),
        Entry(
            "nps-11",
            H,
            "schema_violation",
            "NPS score 11 (0..10)",
            js(ticket("survey.nps", "nps-11", score=11)),
        ),
        Entry(
            "nps-beyond-64-bits",
            H,
            "schema_violation",
            "NPS score 2**70 (orjson reads it as a float)",
            js(ticket("survey.nps", "nps-beyond-64-bits", score=2**70)),
        ),
        Entry(
            "negative-clicks",
            O,
            "schema_violation",
            "order.confirmed clicks -1",
            js(order("order.confirmed", "negative-clicks", clicks=-1)),
        ),
        Entry(
            "negative-handle-seconds",
            H,
            "schema_violation",
            "handle_seconds -5",
            js(
                ticket(
                    "ticket.replied",
                    "negative-handle-seconds",
                    author="agent",
                    public=True,
                    handle_seconds=-5,
                )
            ),
        ),
        Entry(
            "public-as-string",
            H,
            "schema_violation",
            "public 'true' (a string)",
            js(ticket("ticket.replied", "public-as-string", author="agent", public="true")),
        ),
        Entry(
            "indicator-value-string",
            I,
            "schema_violation",
            "value '0.5' (a string)",
            js(indicator("indicator-value-string", value="0.5")),
        ),
        Entry(
            "currency-lower-case",
            H,
            "schema_violation",
            "currency 'eur'",
            js(
                ticket(
                    "ticket.solved",
                    "currency-lower-case",
                    method="agent",
                    settled_amount={"value": "1.00", "currency": "eur"},
                )
            ),
        ),
        Entry(
            "money-as-number",
            H,
            "schema_violation",
            "settled_amount.value 25.0 (a number, not a decimal string)",
            js(
                ticket(
                    "ticket.solved",
                    "money-as-number",
                    method="agent",
                    settled_amount={"value": 25.0, "currency": "EUR"},
                )
            ),
        ),
        Entry(
            "queue-empty",
            H,
            "schema_violation",
            "queue ''",
            js(created("queue-empty", queue="")),
        ),
        Entry(
            "queue-201",
            H,
            "schema_violation",
            "a queue name of 201 characters (the limit is 200)",
            js(created("queue-201", queue="q" * 201)),
        ),
        Entry(
            "count-beyond-64-bits",
            O,
            "accepted",
            "clicks 2**64 (orjson reads it as the float 1.8e19, which is an integer to the "
            "schema); an order keeps it as a float",
            js(order("order.confirmed", "count-beyond-64-bits", clicks=2**64)),
        ),
        Entry(
            "handle-seconds-1e308",
            H,
            "schema_violation",
            "handle_seconds 1e308: finite, but two in one window would sum to infinity; "
            "the schema's maximum is 1e9",
            js(
                ticket(
                    "ticket.replied",
                    "handle-seconds-1e308",
                    author="agent",
                    public=True,
                    handle_seconds=1e308,
                )
            ),
        ),
        Entry(
            "indicator-extreme-value",
            I,
            "accepted",
            "value -1.7976931348623157e308 (the most negative double)",
            js(indicator("indicator-extreme-value", value=-1.7976931348623157e308)),
        ),
        Entry(
            "big-int-unknown-field",
            H,
            "accepted",
            "an unknown field holding 10**30 (beyond 64 bits)",
            js(created("big-int-unknown-field", crm_number=10**30)),
        ),
        Entry(
            "settled-negative",
            H,
            "schema_violation",
            "settled_amount.value '-25.00': a settled amount is granted to the customer, "
            "never negative (kpistream_value_settled_total is a counter)",
            js(
                ticket(
                    "ticket.solved",
                    "settled-negative",
                    ticket_id="corpus-T-valid",
                    method="agent",
                    settled_amount={"value": "-25.00", "currency": "EUR"},
                )
            ),
        ),
        Entry(
            "settled-400-digits",
            H,
            "schema_violation",
            "settled_amount.value of 400 digits: a decimal string, infinite as a float; the "
            "schema allows 15 integer digits",
            js(
                ticket(
                    "ticket.solved",
                    "settled-400-digits",
                    ticket_id="corpus-T-valid",
                    method="agent",
                    settled_amount={"value": "9" * 400, "currency": "EUR"},
                )
            ),
        ),
        Entry(
            "anonymous-session-beyond-64-bits",
            H,
            "schema_violation",
            "an anonymous selfservice.session with screens 2**64: beyond the schema's "
            "maximum 2**63 - 1 (orjson, Faust's table codec, writes no larger int)",
            js(
                {
                    "event_id": "corpus-anonymous-session-beyond-64-bits",
                    "type": "selfservice.session",
                    "occurred_at": AT,
                    "customer_id": "corpus-C-anon",
                    "screens": 2**64,
                    "clicks": 1,
                    "succeeded": True,
                }
            ),
        ),
        # --- strings -----------------------------------------------------------------------
        Entry(
            "queue-unicode",
            H,
            "accepted",
            "a queue name with quotes, a backslash, a newline, RTL text, an emoji flag and a "
            "zero-width joiner: label values are escaped in the exposition",
            js(
                created(
                    "queue-unicode",
                    queue='Kundendienst "A"\\\n\u05e2\u05d1\u05e8\u05d9\u05ea 🇩🇪 a\u200db',
                )
            ),
        ),
        Entry(
            "queue-nul",
            H,
            "accepted",
            "a queue name with a NUL character",
            js(created("queue-nul", queue="nul\u0000queue")),
        ),
        Entry(
            "queue-200-emoji",
            H,
            "accepted",
            "200 four-byte characters: the limit counts characters, not bytes",
            js(created("queue-200-emoji", queue="😀" * 200)),
        ),
        Entry(
            "queue-other",
            H,
            "accepted",
            "a queue literally named 'other' (the overflow label)",
            js(created("queue-other", queue="other")),
        ),
        Entry(
            "huge-unknown-field",
            H,
            "accepted",
            "an unknown field of 900,000 characters: under the 1,000,000-byte limit; "
            "only the fields the KPIs read are stored",
            js(created("huge-unknown-field", blob="x" * 900_000)),
            gzip=True,
        ),
        Entry(
            "too-large",
            H,
            "too_large",
            "1,000,001 bytes: over KPI_MAX_MESSAGE_BYTES (1,000,000)",
            padded(created("too-large"), 1_000_001),
            gzip=True,
        ),
        Entry(
            "many-keys",
            O,
            "accepted",
            "20,000 unknown keys (about 0.3 MB): decoded and validated in milliseconds",
            js({**order("order.delivered", "many-keys"), **{f"k{i}": i for i in range(20_000)}}),
            gzip=True,
        ),
        Entry(
            "duplicate-keys",
            H,
            "accepted",
            "'type' twice: the last one wins (orjson, like Python's json)",
            js(created("duplicate-keys")).replace(
                b'"type": "ticket.created"', b'"type": "order.placed", "type": "ticket.created"'
            ),
        ),
        Entry(
            "indicator-unit-huge",
            I,
            "schema_violation",
            "a unit of 300,000 characters: the unit is a label of three gauges and in the "
            "KPI key, so the schema allows 64",
            js(indicator("indicator-unit-huge", unit="u" * 300_000)),
            gzip=True,
        ),
        # --- order of events, unknown entities --------------------------------------------------
        Entry(
            "reply-unknown-ticket",
            H,
            "accepted",
            "a reply for a ticket never created: kept until its ticket.created comes "
            "(EVENTS.md), dropped KPI_TICKET_RETENTION after its newest event",
            js(ticket("ticket.replied", "reply-unknown-ticket", author="agent", public=True)),
        ),
        Entry(
            "solve-unknown-ticket",
            H,
            "accepted",
            "a solve for a ticket never created",
            js(ticket("ticket.solved", "solve-unknown-ticket", method="agent")),
        ),
        Entry(
            "csat-unknown-ticket",
            H,
            "accepted",
            "a CSAT answer for a ticket never created",
            js(ticket("survey.csat", "csat-unknown-ticket", score=1)),
        ),
        Entry(
            "status-before-create",
            H,
            "accepted",
            "a status change that arrives before its ticket.created (out of order)",
            js(
                ticket(
                    "ticket.status_changed",
                    "status-before-create",
                    ticket_id="corpus-T-late",
                    status="pending",
                )
            ),
        ),
        Entry(
            "created-after-status",
            H,
            "accepted",
            "the ticket.created the previous entry was waiting for",
            js({**created("created-after-status"), "ticket_id": "corpus-T-late"}),
        ),
        Entry(
            "confirm-unknown-order",
            O,
            "accepted",
            "a confirmation for an order never placed",
            js(order("order.confirmed", "confirm-unknown-order", clicks=0)),
        ),
    ]


def file_name(entry: Entry) -> str:
    return f"{entry.name}.bin.gz" if entry.gzip else f"{entry.name}.bin"


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def main() -> None:
    MESSAGES.mkdir(exist_ok=True)
    for old in MESSAGES.iterdir():
        old.unlink()
    lines = [
        "# The hostile-message corpus: one message per file in messages/ (see README.md).",
        "# Generated by generate.py; `expected` is what the worker does with the message:",
        "# `accepted`, or the reason it goes to the dead-letter topic with.",
        "",
    ]
    names = set()
    for entry in entries():
        assert entry.name not in names, entry.name
        names.add(entry.name)
        lines += [
            "[[message]]",
            f"name = {toml_string(entry.name)}",
            f"topic = {toml_string(entry.topic)}",
            f"expected = {toml_string(entry.expected)}",
            f"why = {toml_string(entry.why)}",
        ]
        if entry.raw is None:
            lines.append("tombstone = true")
        else:
            lines.append(f"file = {toml_string(file_name(entry))}")
            data = gzip.compress(entry.raw, mtime=0) if entry.gzip else entry.raw
            (MESSAGES / file_name(entry)).write_bytes(data)
        if entry.bug:
            lines.append(f"bug = {toml_string(entry.bug)}")
        lines.append("")
    (HERE / "corpus.toml").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()

"""Hostile input is data: every decoder takes any bytes and returns an event or a rejection
that says why and where, and the pure runtime path takes any valid event, however odd its
contents, without an exception, with bounded label sets and with every message counted.

The fixed corpus of hostile messages (tests/corpus/README.md) is checked here message by
message; tests/integration/test_hostile_input.py sends it to a real worker.

Tests marked xfail(strict=True) pin bugs found here in files this suite does not own
(README.md of the corpus, "Known bugs"): each fails today and turns into an XPASS, which
fails the run, once its bug is fixed, so the mark is removed with the fix.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from faust.serializers.codecs import get_codec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from stream.codec import (
    HELPDESK_TYPES,
    INDICATOR_TYPES,
    MAX_DETAIL_CHARS,
    MAX_EVENT_MS,
    MIN_EVENT_MS,
    ORDER_TYPES,
    Decoder,
    Reason,
    Rejection,
)
from stream.export.indicator_metrics import MAX_INDICATOR_NAMES
from stream.kpi.events import Event
from stream.kpi.labels import OTHER, BoundedLabels
from stream.kpi.timefmt import format_rfc3339_ms, parse_rfc3339_ms
from stream.runtime import WorkerRuntime
from stream.schema_registry import schema_dir
from stream.settings import Settings
from tests.corpus import CORPUS_DIR, TOPICS, CorpusMessage, load_corpus
from tests.scrape import Samples, by, samples, total

TYPES = {"helpdesk": HELPDESK_TYPES, "orders": ORDER_TYPES, "indicators": INDICATOR_TYPES}
# As the worker builds them with the default settings (1,000,000 bytes, 1 h ahead at most).
DECODERS = {
    topic: Decoder(types, max_future_ms=Settings(live=True).max_future_ms)
    for topic, types in TYPES.items()
}
REASONS = frozenset(Reason)
# Where a detail points: a JSON path, or a byte / character offset of the message.
LOCATION = re.compile(r"\$|\bbyte \d+|\bchar \d+")
TIMESTAMP_FIELDS = ("occurred_at", "promised_by", "new_promised_by", "period_start", "period_end")

EXAMPLES: dict[str, list[dict[str, Any]]] = {topic: [] for topic in TOPICS}
for _path in sorted((schema_dir() / "examples" / "valid").glob("*.json")):
    _body = json.loads(_path.read_text())
    EXAMPLES[next(t for t, types in TYPES.items() if _body["type"] in types)].append(_body)

# Faust's table codec (tables are declared with the app's default, json, which is orjson).
TABLE_CODEC = get_codec("json")


def decode_safely(topic: str, raw: bytes | None, now_ms: int | None = None) -> Event | Rejection:
    """Decode and check what every result must be; returns it for more checks."""
    result = DECODERS[topic].decode(raw, now_ms)
    if isinstance(result, Event):
        assert result.type in TYPES[topic]
        assert isinstance(result.event_id, str)
        assert 1 <= len(result.event_id) <= 128
        assert MIN_EVENT_MS <= result.occurred_at_ms <= MAX_EVENT_MS
        return result
    assert isinstance(result, Rejection), result
    assert result.reason in REASONS
    assert result.detail.strip(), result
    assert len(result.detail) <= MAX_DETAIL_CHARS, result.reason
    assert LOCATION.search(result.detail), f"no location in {result.detail!r}"
    return result


def rejected_for(topic: str, raw: bytes | None, now_ms: int | None = None) -> Reason:
    result = decode_safely(topic, raw, now_ms)
    assert isinstance(result, Rejection), f"accepted: {result!r:.300}"
    return result.reason


def nested(depth: int, leaf: str = "[]") -> str:
    return "[" * depth + leaf + "]" * depth


def with_raw_field(body: dict[str, Any], field: str, raw_value: str) -> bytes:
    """The event with `field` written as `raw_value` (which may not be valid JSON)."""
    marker = "__hostile__"
    return json.dumps({**body, field: marker}).replace(f'"{marker}"', raw_value).encode()


def encode(value: Any, ensure_ascii: bool = True) -> bytes:
    """As a hostile producer might: Python's json writes NaN, Infinity and integers of
    any size; lone surrogates go out as escapes or as their (invalid) UTF-8 bytes."""
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


# --- strategies ---------------------------------------------------------------------------

topics = st.sampled_from(TOPICS)
hostile_text = st.text(
    st.characters(codec=None, exclude_categories=()) | st.sampled_from(["\ud800", "\udfff", "\0"]),
    max_size=40,
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and infinities included
    | hostile_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=20,
)
hostile_timestamps = st.one_of(
    st.builds(
        "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
        st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.sampled_from(["T", "t", " ", ""]),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["", ".1", ".123", ".123456789", ".1234567890", "."]),
        st.sampled_from(["", "Z", "z", "+00:00", "-23:59", "+24:00", "+0200", "+02:60", "+2:00"]),
    ),
    hostile_text,
    st.sampled_from(
        [
            "2026-02-30T10:00:00Z",
            "2026-11-24T25:00:00Z",
            "2026-11-24T10:00:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-23:59",
            "2026-11-24",
            "\uff12\uff10\uff12\uff16-11-24T10:00:00Z",
            "x" * 5000,
        ]
    ),
)


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid example of a topic with one to three things made wrong."""
    topic = draw(topics)
    body: dict[str, Any] = dict(draw(st.sampled_from(EXAMPLES[topic])))
    for _ in range(draw(st.integers(1, 3))):
        keys = sorted(body) or ["type"]
        action = draw(
            st.sampled_from(["drop", "retype", "timestamp", "enum", "huge", "deep", "number"])
        )
        key = draw(st.sampled_from(keys))
        if action == "drop":
            body.pop(key, None)
        elif action == "retype":
            body[key] = draw(json_values)
        elif action == "timestamp":
            body[draw(st.sampled_from(TIMESTAMP_FIELDS))] = draw(hostile_timestamps)
        elif action == "enum":
            body[key] = draw(st.sampled_from(["", "critical", "HIGH", "other ", "agent\0"]))
        elif action == "huge":
            body[key] = "x" * draw(st.sampled_from([129, 201, 10_000, 200_000]))
        elif action == "deep":
            body[key] = "__deep__"
        else:
            body[key] = "__number__"
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    text = text.replace('"__deep__"', nested(draw(st.sampled_from([10, 254, 256, 1000, 10_000]))))
    number = draw(
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "2e-400", str(2**70)])
    )
    text = text.replace('"__number__"', number)
    return topic, text.encode("utf-8", "surrogatepass")


def re_offset(text: str, minutes: int) -> str:
    """The same instant written with another UTC offset."""
    moment = datetime.fromtimestamp(parse_rfc3339_ms(text) / 1000, tz=UTC)
    local = moment.astimezone(timezone(timedelta(minutes=minutes)))
    return local.isoformat(timespec="milliseconds")


# --- the decoders ---------------------------------------------------------------------------


@settings(max_examples=300)
@given(topics, st.binary(max_size=2000))
def test_arbitrary_bytes_are_an_event_or_a_rejection_that_says_where(
    topic: str, raw: bytes
) -> None:
    decode_safely(topic, raw)


@settings(max_examples=300)
@given(topics, json_values, st.booleans())
def test_arbitrary_json_values_are_an_event_or_a_rejection_that_says_where(
    topic: str, value: Any, ensure_ascii: bool
) -> None:
    decode_safely(topic, encode(value, ensure_ascii))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_mutated_valid_events_never_raise_and_rejections_say_where(
    case: tuple[str, bytes],
) -> None:
    topic, raw = case
    decode_safely(topic, raw)


@settings(max_examples=300)
@given(
    st.data(),
    topics,
    st.dictionaries(
        st.text(min_size=1, max_size=10).map(lambda k: f"x_{k}"),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=30),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
            max_leaves=10,
        ),
        max_size=4,
    ),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
def test_a_valid_event_stays_valid_with_unknown_fields_odd_text_and_any_offset(
    data: st.DataObject, topic: str, extra: dict[str, Any], offset_minutes: int
) -> None:
    body = {**data.draw(st.sampled_from(EXAMPLES[topic])), **extra}
    expected_ms = parse_rfc3339_ms(body["occurred_at"])
    body["occurred_at"] = re_offset(body["occurred_at"], offset_minutes)
    for name, limit in (("event_id", 128), ("customer_id", 128), ("queue", 200)):
        if name in body:
            body[name] = data.draw(st.text(min_size=1, max_size=limit))
    raw = orjson.dumps(body)
    event = decode_safely(topic, raw)
    assert isinstance(event, Event), event
    assert event.occurred_at_ms == expected_ms
    assert event.body == orjson.loads(raw)


@pytest.mark.parametrize(
    ("where", "depth", "expected"),
    [
        ("message", 10_000, Reason.INVALID_JSON),
        ("extra", 10_000, Reason.INVALID_JSON),
        ("type", 10_000, Reason.INVALID_JSON),
        ("message", 1025, Reason.INVALID_JSON),  # orjson's limit: 1,024 levels
        ("type", 1000, Reason.MISSING_TYPE),  # was a RecursionError (repr in the detail)
        ("schema_version", 1000, Reason.UNSUPPORTED_VERSION),  # the same
        ("queue", 1000, Reason.SCHEMA_VIOLATION),
        ("extra", 1000, None),  # unknown fields are kept and ignored
        ("message", 1000, Reason.NOT_AN_OBJECT),
    ],
)
def test_deep_nesting_is_rejected_by_depth_or_kept_as_an_unknown_field(
    where: str, depth: int, expected: Reason | None
) -> None:
    body = next(e for e in EXAMPLES["helpdesk"] if e["type"] == "ticket.created")
    raw = (
        nested(depth).encode() if where == "message" else with_raw_field(body, where, nested(depth))
    )
    result = decode_safely("helpdesk", raw)
    if expected is None:
        assert isinstance(result, Event)
    else:
        assert isinstance(result, Rejection)
        assert result.reason is expected
        if depth > 1024:
            assert "depth limit" in result.detail


@pytest.mark.parametrize("field", ["type", "schema_version", "occurred_at", "event_id", "queue"])
@pytest.mark.parametrize("value", ["x" * 900_000, ["x" * 900_000], {"k": "x" * 900_000}])
def test_huge_values_give_a_short_detail(field: str, value: Any) -> None:
    body = next(e for e in EXAMPLES["helpdesk"] if e["type"] == "ticket.created")
    reason = rejected_for("helpdesk", orjson.dumps({**body, field: value}))
    assert reason in REASONS


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2026-02-30T10:00:00Z", Reason.BAD_TIMESTAMP),
        ("2026-11-24T25:00:00Z", Reason.BAD_TIMESTAMP),
        ("2026-11-24T10:60:00Z", Reason.BAD_TIMESTAMP),
        ("2026-11-24T10:00:60Z", Reason.BAD_TIMESTAMP),
        ("2026-11-24T10:00:00", Reason.BAD_TIMESTAMP),
        ("2026-11-24 10:00:00Z", Reason.BAD_TIMESTAMP),
        ("2026-11-24T10:00:00+24:00", Reason.BAD_TIMESTAMP),
        ("2026-11-24T10:00:00+0200", Reason.BAD_TIMESTAMP),
        ("0000-01-01T00:00:00Z", Reason.BAD_TIMESTAMP),
        ("0001-01-01T00:00:00+01:00", Reason.BAD_TIMESTAMP),  # year 0 in UTC
        ("0999-12-31T23:59:59.999Z", Reason.BAD_TIMESTAMP),
        ("1000-01-01T00:00:00Z", None),
        ("1000-01-01T00:59:59+01:00", Reason.BAD_TIMESTAMP),  # 0999 in UTC
        ("9999-12-31T23:59:59.999Z", None),
        ("9999-12-31T23:59:59-00:01", Reason.BAD_TIMESTAMP),  # year 10000 in UTC
        ("1969-12-31T23:59:59.999Z", None),
        ("2026-11-24t10:00:00z", None),
    ],
)
def test_impossible_and_naive_times_are_bad_timestamps(
    occurred_at: str, expected: Reason | None
) -> None:
    body = next(e for e in EXAMPLES["helpdesk"] if e["type"] == "ticket.created")
    result = decode_safely("helpdesk", orjson.dumps({**body, "occurred_at": occurred_at}))
    if expected is None:
        assert isinstance(result, Event)
    else:
        assert isinstance(result, Rejection)
        assert result.reason is expected
        assert "$.occurred_at" in result.detail


def test_a_time_beyond_the_future_bound_is_a_future_timestamp() -> None:
    decoder = Decoder(HELPDESK_TYPES, max_future_ms=3_600_000)
    body = next(e for e in EXAMPLES["helpdesk"] if e["type"] == "ticket.created")
    now = parse_rfc3339_ms(body["occurred_at"])
    assert isinstance(decoder.decode(orjson.dumps(body), now - 3_600_000), Event)
    late = decoder.decode(orjson.dumps(body), now - 3_600_001)
    assert isinstance(late, Rejection)
    assert late.reason is Reason.FUTURE_TIMESTAMP


# --- the corpus ------------------------------------------------------------------------------

CORPUS = load_corpus()
DECODER_REASONS = {r.value for r in Reason}


def corpus_params() -> list[Any]:
    params = []
    for message in CORPUS:
        marks = []
        if message.bug:
            marks.append(pytest.mark.xfail(strict=True, reason=f"known bug {message.bug}"))
        params.append(pytest.param(message, id=message.name, marks=marks))
    return params


def test_the_corpus_lists_every_file_once_with_a_known_outcome() -> None:
    files = {p.name.split(".")[0] for p in (CORPUS_DIR / "messages").iterdir()}
    assert files == {m.name for m in CORPUS if m.raw is not None}
    assert len({m.name for m in CORPUS}) == len(CORPUS)
    assert {m.topic for m in CORPUS} == set(TOPICS)
    assert all(m.expected in DECODER_REASONS | {"accepted", "bad_period"} for m in CORPUS)


def test_the_corpus_readme_describes_every_message_and_bug() -> None:
    readme = (CORPUS_DIR / "README.md").read_text(encoding="utf-8")
    assert all(f"| `{m.name}` | {m.topic} | `{m.expected}`" in readme for m in CORPUS)
    assert all(f"| {m.bug} |" in readme for m in CORPUS if m.bug)


@pytest.mark.parametrize("message", [pytest.param(m, id=m.name) for m in CORPUS])
def test_each_corpus_message_decodes_as_its_manifest_says(message: CorpusMessage) -> None:
    result = decode_safely(message.topic, message.raw, now_ms=int(time.time() * 1000))
    if message.expected in DECODER_REASONS:
        assert isinstance(result, Rejection), f"accepted: {message.why}"
        assert result.reason.value == message.expected, (message.why, result.detail)
    else:  # accepted, or refused later by the indicator flow (bad_period)
        assert isinstance(result, Event), (message.why, result)


# --- the runtime ------------------------------------------------------------------------------


class Harness:
    """A WorkerRuntime with dicts for tables, every write through Faust's table codec and
    every window-partials message through orjson and the merge, as the agents do."""

    def __init__(self, settings: Settings) -> None:
        self.runtime = WorkerRuntime(settings, CollectorRegistry())
        self.tickets: dict[str, Any] = {}
        self.scopes: dict[str, Any] = {}
        self.orders: dict[str, Any] = {}
        self.customers: dict[str, Any] = {}
        self.kpi_state: dict[str, Any] = {}
        self.merge: dict[str, Any] = {}
        self.indicators: dict[str, Any] = {}
        self.kpi_messages = 0

    def send(self, topic: str, raw: bytes | None, now_ms: int, partition: int = 0) -> str:
        """Process one message; returns 'accepted' or the dead-letter reason."""
        rt = self.runtime
        if topic == "helpdesk":
            result = rt.process_helpdesk(raw, partition, self.tickets, self.scopes, now_ms)
            self._stored(self.tickets, self.scopes, result.state_writes)
            reason = result.rejection.reason.value if result.rejection else None
        elif topic == "orders":
            order = rt.process_order(raw, partition, self.orders, now_ms)
            self._stored(self.orders, order.state_writes)
            reason = order.rejection.reason.value if order.rejection else None
        else:
            report = rt.process_indicator(raw, now_ms)
            for key, body in report.kpi_messages:
                orjson.dumps(body)
                assert len(key) < 1000, "a KPI message key must stay short"
            for merge_input in rt.merge_inputs(report):
                self._merge(merge_input, now_ms)
            self.indicators.update(report.state_writes)
            self._stored(self.indicators)
            reason = report.dlq[0] if report.dlq else None
        return reason or "accepted"

    def _stored(self, *tables: dict[str, Any]) -> None:
        for table in tables:
            for value in table.values():
                if value is not None:
                    TABLE_CODEC.dumps(value)

    def tick(self, now_ms: int) -> None:
        rt = self.runtime
        for message in rt.tick(now_ms, self.tickets, self.orders, self.customers):
            self._merge(message, now_ms)
        rt.partials_delivered()
        self._stored(self.tickets, self.orders, self.customers)

    def _merge(self, message: dict[str, Any], now_ms: int) -> None:
        wire = orjson.loads(orjson.dumps(message))  # the window-partials topic
        for _key, body in self.runtime.merge_step(wire, self.merge, now_ms):
            orjson.dumps(body)
            self.kpi_messages += 1
        self._stored(self.merge)

    def scrape(self) -> tuple[Samples, int]:
        text = generate_latest(self.runtime.registry)
        self.runtime.snapshot()
        return samples(text.decode()), len(text)


def queue_labels(metrics: Samples) -> set[str]:
    return {
        labels["queue"] for series in metrics.values() for labels, _ in series if "queue" in labels
    }


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the block after `seconds` (the worker's tick would stall)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("message", corpus_params())
def test_each_corpus_message_through_the_runtime_ends_as_its_manifest_says(
    message: CorpusMessage,
) -> None:
    """The whole pure path: decode, apply, table writes through Faust's codec, two ticks
    (windows close and become final), the merge, a scrape; as the first message of a
    fresh worker (after the corpus ticket it solves), within 2 s."""
    now = int(time.time() * 1000)
    harness = Harness(Settings(live=True, partitions=1))
    if message.raw is not None and b"corpus-T-valid" in message.raw:  # solves that ticket
        valid = next(m for m in CORPUS if m.name == "valid-ticket")
        assert harness.send("helpdesk", valid.raw, now) == "accepted"
    with time_limit(2.0):
        outcome = harness.send(message.topic, message.raw, now)
        assert outcome == message.expected, message.why
        harness.tick(now + 11 * 60_000)
        harness.tick(now + 22 * 60_000)
        harness.scrape()


# JSON any producer may send in an unknown field, that orjson writes back (tables).
valid_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)
T_BASE = int(time.time() * 1000) - 6 * 3_600_000  # a few hours ago: inside every bound
ids = st.text(min_size=1, max_size=128)
queues = st.one_of(
    st.sampled_from(["billing", 'Kundendienst "A"\\\n', "😀" * 200, "nul\0", "a\u200db"]),
    st.text(min_size=1, max_size=200),
)


@st.composite
def helpdesk_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid helpdesk event with hostile contents: odd text, extreme (valid) numbers,
    tickets never created, any order in time, numbers up to the schemas' bounds."""
    kind = draw(st.sampled_from(sorted(HELPDESK_TYPES)))
    body: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=8)),
        "type": kind,
        "occurred_at": format_rfc3339_ms(T_BASE + draw(st.integers(-3 * 3_600_000, 3_600_000))),
        "customer_id": draw(st.sampled_from(["c1", "c2"]) | ids),
        "x_extra": draw(valid_json_values),
    }
    if kind != "agent.shift" and (kind != "selfservice.session" or draw(st.booleans())):
        body["ticket_id"] = draw(st.sampled_from(["T1", "T2", "T3", "\u202eT4"]) | ids)
    priority = st.sampled_from(["urgent", "high", "normal", "low"])
    fields: dict[str, st.SearchStrategy[Any]] = {}
    if kind == "ticket.created":
        channels = ["email", "web", "phone", "chat", "social", "self_service", "other"]
        fields = {"queue": queues, "priority": priority, "channel": st.sampled_from(channels)}
        if draw(st.booleans()):
            kinds = ["complaint", "question", "incident", "request"]
            fields["subject_kind"] = st.sampled_from(kinds)
    elif kind == "ticket.replied":
        fields = {
            "author": st.sampled_from(["agent", "customer", "system"]),
            "public": st.booleans(),
            "handle_seconds": st.floats(0, 1e9) | st.integers(0, 10**9),
        }
    elif kind == "ticket.status_changed":
        statuses = ["new", "open", "pending", "on_hold", "solved", "closed"]
        fields = {"status": st.sampled_from(statuses)}
    elif kind == "ticket.assigned":
        fields = {"queue": queues}
    elif kind == "ticket.priority_changed":
        fields = {"priority": priority}
    elif kind == "ticket.escalated":
        fields = {"level": st.integers(0, 2**63)}
    elif kind == "ticket.solved":
        fields = {"method": st.sampled_from(["agent", "self_service", "automation", "phone"])}
        if draw(st.booleans()):
            value = st.from_regex(r"\A[0-9]{1,15}(\.[0-9]{1,6})?\Z")
            currency = st.from_regex(r"\A[A-Z]{3}\Z")
            fields["settled_amount"] = st.fixed_dictionaries({"value": value, "currency": currency})
    elif kind == "survey.csat":
        fields = {"score": st.integers(1, 5)}
    elif kind == "survey.nps":
        fields = {"score": st.integers(0, 10)}
    elif kind == "selfservice.session":
        counts = st.integers(0, 2**63 - 1) | st.just(1e15)
        fields = {"screens": counts, "clicks": counts, "succeeded": st.booleans()}
    elif kind == "agent.shift":
        fields = {
            "agent_id": st.sampled_from(["a1", "a2"]) | ids,
            "state": st.sampled_from(["on", "off"]),
        }
    body.update({name: draw(strategy) for name, strategy in fields.items()})
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(helpdesk_events(), min_size=1, max_size=30),
    st.lists(st.integers(0, 29), max_size=5),
    st.integers(1, 4),
)
def test_hostile_but_valid_helpdesk_streams_never_raise_and_keep_labels_bounded(
    events: list[dict[str, Any]], repeats: list[int], max_queues: int
) -> None:
    harness = Harness(Settings(live=True, partitions=2, max_queues=max_queues))
    stream = [orjson.dumps(e) for e in events]
    stream += [stream[i] for i in repeats if i < len(stream)]  # re-deliveries
    now = T_BASE + 3_600_000
    for n, raw in enumerate(stream):
        outcome = harness.send("helpdesk", raw, now, partition=n % 2)
        assert outcome == "accepted", (outcome, raw[:300])
        if n % 7 == 6:
            harness.tick(now)
    harness.tick(now + 11 * 60_000)
    metrics, _ = harness.scrape()
    accepted = total(metrics, "kpistream_events_total") + total(
        metrics, "kpistream_events_duplicate_total"
    )
    assert accepted == len(stream)
    assert total(metrics, "kpistream_events_rejected_total") == 0
    labels = queue_labels(metrics) - {""}
    assert len(labels - {OTHER}) <= max_queues
    # Each ticket created under `other` (its queue had no label left) is overflow.
    overflow = {lab["label"]: v for lab, v in metrics["kpistream_label_overflow_total"]}
    created = by(metrics, "kpistream_tickets_created_total", "queue")
    if not any(e.get("queue") == OTHER for e in events):
        assert overflow.get("queue", 0) == created.get((OTHER,), 0)


def test_labels_stay_bounded_and_the_overflow_is_counted_for_100000_distinct_queues() -> None:
    settings_ = Settings(live=True, partitions=3, max_queues=50)
    harness = Harness(settings_)
    rt = harness.runtime
    n = 100_000
    now = T_BASE + 3_600_000
    started = time.monotonic()
    for i in range(n):
        body = {
            "event_id": f"e{i}",
            "type": "ticket.created",
            "occurred_at": format_rfc3339_ms(T_BASE + i * 10),
            "ticket_id": f"T{i}",
            "customer_id": f"C{i % 1000}",
            "queue": f"queue {i} \u00e9\U0001f600",
            "priority": "normal",
            "channel": "email",
        }
        result = rt.process_helpdesk(
            orjson.dumps(body), i % 3, harness.tickets, harness.scopes, now
        )
        assert result.rejection is None
        if i % 5000 == 0:
            rt.tick(now, harness.tickets, harness.orders, harness.customers)
    metrics, size = harness.scrape()
    labels = queue_labels(metrics) - {""}
    assert len(labels - {OTHER}) == 50
    assert OTHER in labels
    overflow = {lab["label"]: v for lab, v in metrics["kpistream_label_overflow_total"]}
    assert overflow["queue"] == n - 50
    assert by(metrics, "kpistream_tickets_created_total", "queue")[(OTHER,)] == n - 50
    # 51 queue labels: the exposition does not grow with the number of queues.
    assert size < 150_000, size
    assert time.monotonic() - started < 60


@st.composite
def order_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(ORDER_TYPES)))
    body: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=8)),
        "type": kind,
        "occurred_at": format_rfc3339_ms(T_BASE + draw(st.integers(-3 * 3_600_000, 3_600_000))),
        "order_id": draw(st.sampled_from(["O1", "O2", "O3"]) | ids),
        "customer_id": draw(st.sampled_from(["c1", "c2"]) | ids),
        "x_extra": draw(valid_json_values),
    }
    stamp = st.integers(-(10**10), 10**10).map(lambda d: format_rfc3339_ms(T_BASE + d))
    fields: dict[str, st.SearchStrategy[Any]] = {
        "order.placed": {
            "channel": st.sampled_from(["web", "app", "phone", "store"]),
            "amount": st.fixed_dictionaries(
                {"value": st.from_regex(r"\A-?[0-9]{1,400}\Z"), "currency": st.just("EUR")}
            ),
        },
        "order.confirmed": {"clicks": st.integers(0, 2**64) | st.just(1e300)},
        "order.shipped": {"promised_by": stamp | st.just("2026-02-30T10:00:00Z")},
        "order.delayed": {"new_promised_by": stamp},
        "order.cancelled": {"reason": st.text(max_size=40) | st.just("x" * 100_000)},
        "notification.sent": {
            "kind": st.sampled_from(["shipped", "delayed", "confirmation"]),
            "medium": st.sampled_from(["email", "sms", "push"]),
        },
        "customer.contacted": {"ticket_id": ids},
    }.get(kind, {})
    body.update({name: draw(strategy) for name, strategy in fields.items()})
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(order_events(), min_size=1, max_size=30))
def test_hostile_but_valid_order_streams_never_raise(events: list[dict[str, Any]]) -> None:
    harness = Harness(Settings(live=True, partitions=2))
    now = T_BASE + 3_600_000
    stream = [encode(e) for e in events]
    for n, raw in enumerate(stream):
        outcome = harness.send("orders", raw, now, partition=n % 2)
        assert outcome == "accepted", (outcome, raw[:300])
    harness.tick(now + 11 * 60_000)
    metrics, _ = harness.scrape()
    accepted = total(metrics, "kpistream_events_total") + total(
        metrics, "kpistream_events_duplicate_total"
    )
    assert accepted == len(stream)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=128),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=30),
            st.integers(0, 400),
        ),
        min_size=1,
        max_size=80,
    )
)
def test_hostile_indicator_reports_never_raise_and_names_stay_bounded(
    reports: list[tuple[str, float, str, int]],
) -> None:
    harness = Harness(Settings(live=True, partitions=1))
    now = T_BASE + 3_600_000
    for n, (name, value, unit, days) in enumerate(reports):
        body = {
            "event_id": f"i{n}",
            "type": "indicator.reported",
            "occurred_at": format_rfc3339_ms(T_BASE),
            "name": name,
            "value": value,
            "unit": unit,
            "period_start": format_rfc3339_ms(T_BASE - days * 86_400_000),
            "period_end": format_rfc3339_ms(T_BASE - days * 86_400_000 + 3_600_000),
            "source": "fuzz",
        }
        assert harness.send("indicators", orjson.dumps(body), now) == "accepted"
    metrics, _ = harness.scrape()
    names = {lab["name"] for lab, _ in metrics.get("kpistream_external_indicator", [])}
    assert len(names - {OTHER}) <= MAX_INDICATOR_NAMES
    distinct = len({name for name, *_ in reports})
    if distinct > MAX_INDICATOR_NAMES:
        overflow = {lab["label"]: v for lab, v in metrics["kpistream_label_overflow_total"]}
        assert overflow["indicator"] >= 1


@given(st.lists(st.text(max_size=5), max_size=200), st.integers(1, 20))
def test_bounded_labels_keep_at_most_limit_names_and_never_remap_one(
    values: list[str], limit: int
) -> None:
    labels = BoundedLabels(limit=limit)
    first = {v: labels.label(v) for v in values}
    assert len(labels.known) <= limit
    assert all(labels.label(v) == label for v, label in first.items())
    assert {label for label in first.values()} <= labels.known | {OTHER}


# --- fixed bugs (corpus README.md, "Fixed bugs"): B1-B6 ------------------------------------------


def helpdesk_harness() -> tuple[Harness, Callable[..., str]]:
    harness = Harness(Settings(live=True, partitions=1))
    now = T_BASE + 3_600_000

    def send(kind: str, event_id: str, **fields: Any) -> str:
        body = {
            "event_id": event_id,
            "type": kind,
            "occurred_at": format_rfc3339_ms(T_BASE),
            "ticket_id": "T1",
            "customer_id": "C1",
            **fields,
        }
        return harness.send("helpdesk", encode(body), now)

    send("ticket.created", "c", queue="billing", priority="high", channel="email")
    return harness, send


@pytest.mark.parametrize(
    ("value", "expected"),
    [("-25.00", "schema_violation"), ("-0", "schema_violation"), ("0.00", "accepted")],
)
def test_b1_a_negative_settled_amount_is_rejected_not_a_crash(value: str, expected: str) -> None:
    """B1: Counter.inc(-25.0) raised ValueError in the agent. A settled amount is what
    the customer was granted (docs/kpis.md, H11): a negative one is a schema violation."""
    harness, send = helpdesk_harness()
    money = {"value": value, "currency": "EUR"}
    assert send("ticket.solved", "s", method="agent", settled_amount=money) == expected
    harness.tick(T_BASE + 3_600_000 + 11 * 60_000)
    metrics, _ = harness.scrape()
    assert total(metrics, "kpistream_value_settled_total") == 0


@pytest.mark.parametrize(
    "events",
    [
        [
            (
                "ticket.solved",
                {"method": "agent", "settled_amount": {"value": "9" * 400, "currency": "EUR"}},
            )
        ],
        [
            (
                "ticket.solved",
                {"method": "agent", "settled_amount": {"value": "9" * 16, "currency": "EUR"}},
            )
        ],
        [("ticket.replied", {"author": "agent", "public": True, "handle_seconds": 1e308})],
        [("ticket.replied", {"author": "agent", "public": True, "handle_seconds": 1e9 + 1})],
    ],
    ids=["settled-400-digits", "settled-16-digits", "handle-seconds-1e308", "handle-beyond-1e9"],
)
def test_b2_values_whose_sums_could_overflow_are_rejected(
    events: list[tuple[str, dict[str, Any]]],
) -> None:
    """B2: sums that overflowed to inf went out as null and crashed the merge. Settled
    values have at most 15 integer digits and handle_seconds at most 1e9 (the schemas)."""
    harness, send = helpdesk_harness()
    for n, (kind, fields) in enumerate(events):
        assert send(kind, f"e{n}", **fields) == "schema_violation"
    harness.tick(T_BASE + 3_600_000 + 11 * 60_000)


def test_b2_the_largest_accepted_values_sum_to_finite_numbers_through_the_merge() -> None:
    harness, send = helpdesk_harness()
    largest = {"value": "9" * 15 + ".99", "currency": "EUR"}
    for n in range(3):
        reply = {"author": "agent", "public": True, "handle_seconds": 1e9}
        assert send("ticket.replied", f"r{n}", **reply) == "accepted"
    assert send("ticket.solved", "s", method="agent", settled_amount=largest) == "accepted"
    harness.tick(T_BASE + 3_600_000 + 11 * 60_000)
    harness.tick(T_BASE + 3_600_000 + 22 * 60_000)
    assert harness.kpi_messages > 0
    metrics, _ = harness.scrape()
    assert total(metrics, "kpistream_value_settled_total") == float("9" * 15 + ".99")


@pytest.mark.parametrize(
    ("screens", "expected"),
    [(2**64, "schema_violation"), (2**63, "schema_violation"), (2**63 - 1, "accepted")],
)
def test_b3_an_anonymous_session_count_beyond_64_bits_is_rejected(
    screens: int, expected: str
) -> None:
    """B3: 2**64 (orjson reads a float) was stored as int() in the scopes table, which
    orjson refuses to write. The schema bounds screens and clicks at 2**63 - 1."""
    harness = Harness(Settings(live=True, partitions=1))
    body = {
        "event_id": "s",
        "type": "selfservice.session",
        "occurred_at": format_rfc3339_ms(T_BASE),
        "customer_id": "C1",
        "screens": screens,
        "clicks": 1,
        "succeeded": True,
    }
    # Every table write goes through Faust's codec (orjson) in the harness.
    assert harness.send("helpdesk", encode(body), T_BASE + 3_600_000) == expected
    harness.tick(T_BASE + 3_600_000 + 11 * 60_000)


def test_b4_a_deeply_nested_unknown_field_in_money_is_not_stored() -> None:
    """B4: the ticket kept the whole money object; one nested 300 deep broke the table
    write (orjson writes at most 255 levels). Only value and currency are kept."""
    harness, send = helpdesk_harness()
    money = {"value": "1.00", "currency": "EUR", "x": json.loads(nested(300))}
    assert send("ticket.solved", "s", method="agent", settled_amount=money) == "accepted"
    stored = [e[3] for e in harness.tickets["T1"]["events"] if e[1] == "ticket.solved"]
    assert stored == [{"method": "agent", "settled_amount": {"value": "1.00", "currency": "EUR"}}]


@pytest.mark.parametrize(
    ("unit", "source", "expected"),
    [
        ("u" * 300_000, "HR", "schema_violation"),
        ("u" * 65, "HR", "schema_violation"),
        ("ratio", "s" * 201, "schema_violation"),
        ("u" * 64, "s" * 200, "accepted"),
    ],
    ids=["unit-300000", "unit-65", "source-201", "at-the-limits"],
)
def test_b5_a_long_indicator_unit_does_not_grow_every_scrape(
    unit: str, source: str, expected: str
) -> None:
    """B5: the unit is a label of three gauges and part of the KPI key: at most 64
    characters; the source at most 200 (the schema)."""
    harness = Harness(Settings(live=True, partitions=1))
    _, before = harness.scrape()
    body = {
        "event_id": "i",
        "type": "indicator.reported",
        "occurred_at": format_rfc3339_ms(T_BASE),
        "name": "employee_turnover",
        "value": 0.1,
        "unit": unit,
        "period_start": "2026-10-01T00:00:00Z",
        "period_end": "2026-11-01T00:00:00Z",
        "source": source,
    }
    assert harness.send("indicators", orjson.dumps(body), T_BASE) == expected
    _, after = harness.scrape()
    assert after - before < 10_000, f"one report made the scrape {after - before:,} bytes larger"


@pytest.mark.parametrize("years", [3, 56, 1000])
def test_b6_an_old_first_event_does_not_stall_the_tick(years: int) -> None:
    """The close loop stepped through every empty window between the partition's first
    event and now (about 0.33 s per year); it now jumps over spans of empty final
    windows. 1,000 years: an event near 1026, close to the oldest the decoder accepts."""
    harness = Harness(Settings(live=True, partitions=1))
    now = T_BASE + 3_600_000
    old = T_BASE - years * 365 * 86_400_000
    body = {
        "event_id": "old",
        "type": "ticket.created",
        "occurred_at": format_rfc3339_ms(old),
        "ticket_id": "T1",
        "customer_id": "C1",
        "queue": "q",
        "priority": "low",
        "channel": "email",
    }
    assert harness.send("helpdesk", orjson.dumps(body), now) == "accepted"
    started = time.monotonic()
    harness.tick(now + 11 * 60_000)  # idle past the grace period: windows close to now
    elapsed = time.monotonic() - started
    assert elapsed < 0.25, f"one tick took {elapsed:.2f} s for a {years}-year gap"
    assert harness.kpi_messages > 0  # the old event's windows went out, final

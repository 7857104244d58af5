"""The simulator: deterministic, ordered, well-formed and realistic enough to exercise KPIS.md."""

from __future__ import annotations

import base64
import itertools
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.codec import HELPDESK_TYPES, ORDER_TYPES
from stream.kpi.timefmt import parse_rfc3339_ms
from stream.local import feed
from stream.local.feed import feed_to_file
from stream.local.simulator import SLA_TARGET_MS, SimConfig, SimMessage, simulate

T0 = 1_795_515_330_000  # 2026-11-24T10:15:30Z
MINUTE = 60_000
HOUR = 3_600_000


def take(config: SimConfig, n: int | None = None) -> list[SimMessage]:
    return list(itertools.islice(simulate(config), n))


def events(messages: list[SimMessage]) -> Iterator[tuple[SimMessage, dict[str, Any]]]:
    for msg in messages:
        if msg.kind == "event":
            yield msg, orjson.loads(msg.value)


def tickets(messages: list[SimMessage]) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    by_ticket: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for msg, body in events(messages):
        if msg.topic == "helpdesk" and "ticket_id" in body:
            by_ticket[body["ticket_id"]].append((msg.occurred_at_ms, body))
    return by_ticket


@pytest.fixture(scope="module")
def two_days() -> list[SimMessage]:
    """Fast lives (time_scale 0.01): two simulated days hold thousands of complete tickets."""
    config = SimConfig(
        seed=7,
        start_ms=T0,
        duration_ms=48 * HOUR,
        tickets_per_hour=60,
        orders_per_hour=120,
        time_scale=0.01,
    )
    return take(config)


# --- determinism and order ------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(min_value=-(2**40), max_value=2**40), start=st.integers(0, 2**42))
def test_same_seed_gives_identical_stream(seed: int, start: int) -> None:
    config = SimConfig(
        seed=seed, start_ms=start, duplicate_share=0.05, malformed_share=0.05, late_share=0.05
    )
    assert take(config, 1500) == take(config, 1500)


def test_different_seed_gives_different_stream() -> None:
    a = [m.value for m in take(SimConfig(seed=1, start_ms=T0), 500)]
    b = [m.value for m in take(SimConfig(seed=2, start_ms=T0), 500)]
    assert a != b


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    scale=st.sampled_from([0.001, 0.01, 1.0]),
    late=st.floats(0, 0.5),
    dup=st.floats(0, 0.5),
)
def test_emit_at_is_non_decreasing(seed: int, scale: float, late: float, dup: float) -> None:
    config = SimConfig(
        seed=seed,
        start_ms=T0,
        time_scale=scale,
        late_share=late,
        duplicate_share=dup,
        malformed_share=0.05,
    )
    emitted = [m.emit_at_ms for m in take(config, 3000)]
    assert all(a <= b for a, b in itertools.pairwise(emitted))
    assert emitted[0] >= T0


def test_duration_bounds_event_time_and_ends_the_stream() -> None:
    config = SimConfig(seed=3, start_ms=T0, duration_ms=2 * HOUR, late_share=0.1)
    messages = take(config)
    assert messages
    assert all(T0 <= m.occurred_at_ms < T0 + 2 * HOUR for m in messages)
    assert any(m.emit_at_ms > m.occurred_at_ms for m in messages)  # late ones


# --- the envelope and the contract -----------------------------------------------------


def test_every_event_decodes_and_carries_the_envelope(two_days: list[SimMessage]) -> None:
    ids = set()
    versions = Counter()
    for msg, body in events(two_days):
        assert isinstance(body, dict)
        assert isinstance(body["event_id"], str)
        assert 1 <= len(body["event_id"]) <= 128
        assert body["type"] in (HELPDESK_TYPES if msg.topic == "helpdesk" else ORDER_TYPES)
        assert body["occurred_at"].endswith("Z")
        assert parse_rfc3339_ms(body["occurred_at"]) == msg.occurred_at_ms
        versions[body.get("schema_version")] += 1
        ids.add(body["event_id"])
        if body["type"] == "agent.shift":
            assert msg.key == body["agent_id"].encode()
            assert "ticket_id" not in body
        elif msg.topic == "helpdesk":
            assert isinstance(body["customer_id"], str)
            expected = body.get("ticket_id", body["customer_id"])
            assert msg.key == expected.encode()
        else:
            assert isinstance(body["customer_id"], str)
            assert msg.key == body["order_id"].encode()
    assert len(ids) == sum(1 for m in two_days if m.kind == "event")  # ids unique
    assert versions[1] > 0.8 * sum(versions.values())
    assert set(versions) <= {1, None}


def test_enums_stay_within_the_contract(two_days: list[SimMessage]) -> None:
    seen: dict[str, set[Any]] = defaultdict(set)
    for _, body in events(two_days):
        for name in ("priority", "channel", "status", "author", "method", "kind", "medium"):
            if name in body:
                seen[f"{body['type']}.{name}"].add(body[name])
        if "score" in body:
            seen[body["type"]].add(body["score"])
        if "settled_amount" in body:
            amount = body["settled_amount"]
            assert amount["currency"] in {"EUR", "DKK", "USD"}
            assert float(amount["value"]) > 0
            assert amount["value"].count(".") == 1
    assert seen["ticket.created.priority"] == {"urgent", "high", "normal", "low"}
    assert seen["ticket.created.channel"] == {
        "email",
        "web",
        "phone",
        "chat",
        "social",
        "self_service",
        "other",
    }
    assert seen["ticket.status_changed.status"] <= {"new", "open", "pending", "on_hold"}
    assert {"open", "pending", "on_hold"} <= seen["ticket.status_changed.status"]
    assert seen["ticket.replied.author"] == {"agent", "customer", "system"}
    assert seen["ticket.solved.method"] == {"agent", "self_service", "automation", "phone"}
    assert seen["order.placed.channel"] == {"web", "app", "phone", "store"}
    assert seen["notification.sent.kind"] == {"shipped", "delayed", "confirmation"}
    assert seen["notification.sent.medium"] <= {"email", "sms", "push"}
    assert seen["survey.csat"] <= set(range(1, 6))
    assert len(seen["survey.csat"]) == 5
    assert seen["survey.nps"] <= set(range(11))


def test_every_event_type_of_the_contract_occurs(two_days: list[SimMessage]) -> None:
    types = {body["type"] for _, body in events(two_days)}
    assert types == HELPDESK_TYPES | ORDER_TYPES


# --- ticket lives ------------------------------------------------------------------------


def test_created_is_the_earliest_event_of_a_ticket(two_days: list[SimMessage]) -> None:
    lives = tickets(two_days)
    assert len(lives) > 2000
    for ticket_id, life in lives.items():
        created = [t for t, body in life if body["type"] == "ticket.created"]
        assert len(created) == 1, ticket_id
        assert created[0] == min(t for t, _ in life), ticket_id


def test_most_tickets_get_a_first_agent_reply_after_the_acknowledgement(
    two_days: list[SimMessage],
) -> None:
    answered = acknowledged = ack_first = considered = 0
    for life in tickets(two_days).values():
        if life[0][0] > T0 + 24 * HOUR:
            continue  # the second day's tickets may still be waiting at the end
        considered += 1
        first = [
            t
            for t, b in life
            if b["type"] == "ticket.replied" and b["author"] == "agent" and b["public"]
        ]
        acks = [t for t, b in life if b["type"] == "ticket.replied" and b["author"] == "system"]
        for _, b in life:
            if b["type"] == "ticket.replied" and b["author"] == "system":
                assert b["public"] is False
        answered += bool(first)
        if acks and first:
            acknowledged += 1
            ack_first += min(acks) < min(first)
    assert answered > 0.85 * considered
    assert acknowledged > 0.4 * considered
    assert ack_first == acknowledged


def test_first_response_sla_breaches_are_a_realistic_minority() -> None:
    config = SimConfig(
        seed=11, start_ms=T0, duration_ms=72 * HOUR, tickets_per_hour=80, orders_per_hour=0
    )
    breached = total = 0
    for life in tickets(take(config)).values():
        t0, created = life[0]
        if created["type"] != "ticket.created" or t0 > T0 + 24 * HOUR:
            continue
        target = SLA_TARGET_MS[created["priority"]]
        first = [
            t
            for t, b in life
            if b["type"] == "ticket.replied" and b["author"] == "agent" and b["public"]
        ]
        solved = [t for t, b in life if b["type"] == "ticket.solved"]
        if not first and solved and solved[0] - t0 <= target:
            continue  # settled by self-service before any target passed
        total += 1
        breached += not first or first[0] - t0 > target
    assert 0.05 <= breached / total <= 0.15


def test_priority_mix_is_close_to_the_targets() -> None:
    config = SimConfig(
        seed=5, start_ms=T0, tickets_per_hour=5000, orders_per_hour=0, daily_cycle=False
    )
    mix: Counter[str] = Counter()
    for msg in simulate(config):
        if msg.topic == "helpdesk" and b'"ticket.created"' in msg.value:
            mix[orjson.loads(msg.value)["priority"]] += 1
            if sum(mix.values()) == 5000:
                break
    targets = {"urgent": 0.05, "high": 0.20, "normal": 0.60, "low": 0.15}
    for priority, share in targets.items():
        assert mix[priority] / 5000 == pytest.approx(share, abs=0.025), (priority, mix)


def test_reopen_escalation_and_survey_shares(two_days: list[SimMessage]) -> None:
    types = Counter(body["type"] for _, body in events(two_days))
    created = types["ticket.created"]
    solved_once = types["ticket.solved"] - types["ticket.reopened"]
    assert 0.04 <= types["ticket.reopened"] / solved_once <= 0.10
    assert 0.05 <= types["ticket.escalated"] / created <= 0.15
    assert 0.22 <= types["survey.csat"] / solved_once <= 0.38
    assert 0.10 <= types["survey.nps"] / solved_once <= 0.20


# --- orders --------------------------------------------------------------------------------


def test_order_lives_exercise_the_order_kpis(two_days: list[SimMessage]) -> None:
    orders: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for msg, body in events(two_days):
        if msg.topic == "orders":
            orders[body["order_id"]].append((msg.occurred_at_ms, body))
    fast = confirmed = one_click = online = noticed = shipped = 0
    for life in orders.values():
        first = {}
        for t, body in life:
            first.setdefault(body["type"], (t, body))
        assert life[0][1]["type"] == "order.placed"
        if "order.confirmed" in first:
            confirmed += 1
            fast += first["order.confirmed"][0] - life[0][0] <= 60_000 / 100 * 1  # scaled 60 s
            if life[0][1]["channel"] in ("web", "app"):
                online += 1
                one_click += first["order.confirmed"][1]["clicks"] == 1
        if "order.shipped" in first:
            shipped += 1
            t_ship = first["order.shipped"][0]
            assert parse_rfc3339_ms(first["order.shipped"][1]["promised_by"]) > t_ship
            notices = [
                t for t, b in life if b["type"] == "notification.sent" and b["kind"] == "shipped"
            ]
            noticed += bool(notices) and min(notices) - t_ship <= 15 * MINUTE // 100
    assert 0.85 <= fast / confirmed < 0.99  # most within 60 s, a tail beyond
    assert 0.65 <= one_click / online <= 0.85
    assert 0.75 <= noticed / shipped <= 0.92


# --- duplicates, malformed, late ------------------------------------------------------------


def test_duplicate_share_gives_copies_of_earlier_events() -> None:
    messages = take(SimConfig(seed=9, start_ms=T0, duplicate_share=0.1), 30_000)
    seen: dict[bytes, bytes | None] = {}
    events_n = dups = 0
    for msg in messages:
        if msg.kind == "event":
            events_n += 1
            seen[msg.value] = msg.key
        elif msg.kind == "duplicate":
            dups += 1
            assert msg.value in seen  # an exact copy of an earlier event ...
            assert seen[msg.value] == msg.key  # ... with the same key
    assert dups / events_n == pytest.approx(0.1, abs=0.015)


def test_malformed_share_gives_every_broken_kind() -> None:
    messages = take(SimConfig(seed=4, start_ms=T0, malformed_share=0.05), 40_000)
    bad = [m for m in messages if m.kind == "malformed"]
    valid = sum(1 for m in messages if m.kind == "event")
    assert len(bad) / valid == pytest.approx(0.05, abs=0.01)
    kinds: Counter[str] = Counter()
    for msg in bad:
        assert msg.key
        try:
            text = msg.value.decode("utf-8")
        except UnicodeDecodeError:
            kinds["invalid_utf8"] += 1
            continue
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            kinds["not_json"] += 1
            continue
        if isinstance(body, list):
            kinds["array"] += 1
        elif "type" not in body:
            kinds["missing_type"] += 1
        elif body["type"] not in HELPDESK_TYPES | ORDER_TYPES:
            kinds["unknown_type"] += 1
        elif not body["occurred_at"].endswith("Z"):
            kinds["naive_time"] += 1
        elif body.get("priority") == "critical":
            kinds["critical"] += 1
        elif body["type"] == "survey.csat" and body["score"] == 9:
            kinds["csat_9"] += 1
        else:
            pytest.fail(f"a malformed message that looks valid: {text}")
    assert len(kinds) == 8
    assert min(kinds.values()) >= 0.8 * len(bad) / 8  # an even mix


def test_late_events_keep_their_time_and_are_emitted_within_five_minutes() -> None:
    messages = take(SimConfig(seed=6, start_ms=T0, late_share=0.2), 20_000)
    late = [m for m in messages if m.kind == "event" and m.emit_at_ms > m.occurred_at_ms]
    assert len(late) / len(messages) == pytest.approx(0.2, abs=0.03)
    for msg in late:
        assert 1000 <= msg.emit_at_ms - msg.occurred_at_ms <= 5 * MINUTE + 1
        body = orjson.loads(msg.value)
        assert parse_rfc3339_ms(body["occurred_at"]) == msg.occurred_at_ms


# --- rate and arrivals ------------------------------------------------------------------------


def test_for_rate_50_gives_about_50_events_per_second() -> None:
    # Fast lives so that one hour is in steady state, as the rate promises.
    config = SimConfig.for_rate(
        50, seed=13, start_ms=T0, duration_ms=2 * HOUR, time_scale=0.001, daily_cycle=False
    )
    in_hour = sum(1 for m in simulate(config) if m.occurred_at_ms >= T0 + HOUR)
    assert in_hour / 3600 == pytest.approx(50, rel=0.2)


def test_for_rate_counts_duplicates_and_malformed_messages() -> None:
    plain = SimConfig.for_rate(50)
    noisy = SimConfig.for_rate(50, duplicate_share=0.1, malformed_share=0.1)
    assert noisy.tickets_per_hour == pytest.approx(plain.tickets_per_hour / 1.2)
    assert noisy.orders_per_hour == pytest.approx(2 * noisy.tickets_per_hour)


def test_arrivals_follow_the_day_curve() -> None:
    config = SimConfig(
        seed=2,
        start_ms=T0 - T0 % (24 * HOUR),
        duration_ms=24 * HOUR,
        tickets_per_hour=400,
        orders_per_hour=0,
    )
    by_hour: Counter[int] = Counter()
    for msg in simulate(config):
        if b'"ticket.created"' in msg.value:
            by_hour[msg.occurred_at_ms // HOUR % 24] += 1
    night = sum(by_hour[h] for h in (1, 2, 3, 4))
    late_morning = sum(by_hour[h] for h in (9, 10, 11, 12))
    assert late_morning > 2.5 * night
    assert sum(by_hour.values()) / 24 == pytest.approx(400 * 1.056, rel=0.1)  # + session tickets


def test_customers_come_back_after_contacting_support(two_days: list[SimMessage]) -> None:
    contacted: dict[str, int] = {}
    ordered_after = 0
    for msg, body in events(two_days):
        if body["type"] == "ticket.created":
            contacted.setdefault(body["customer_id"], msg.occurred_at_ms)
        elif body["type"] == "order.placed":
            t = contacted.get(body["customer_id"])
            ordered_after += t is not None and t < msg.occurred_at_ms
    assert ordered_after > 0.2 * len(contacted)


# --- the JSONL feed ---------------------------------------------------------------------------


def test_jsonl_file_round_trips_the_exact_bytes(tmp_path: Path) -> None:
    config = SimConfig(seed=8, start_ms=T0, malformed_share=0.2, duplicate_share=0.05)
    messages = take(config, 3000)
    path = tmp_path / "feed.jsonl"
    stats = feed_to_file(iter(messages), path, max_messages=2500)
    assert stats.sent == 2500
    assert sum(stats.by_kind.values()) == sum(stats.by_topic.values()) == 2500
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2500
    saw_base64 = False
    for line, msg in zip(lines, messages, strict=False):
        record = orjson.loads(line)
        value = record["value"]
        if isinstance(value, dict):
            saw_base64 = True
            raw = base64.b64decode(value["base64"])
        else:
            raw = value.encode("utf-8")
        assert raw == msg.value
        assert record["key"] == (msg.key.decode() if msg.key else None)
        assert (record["topic"], record["emit_at_ms"], record["kind"]) == (
            msg.topic,
            msg.emit_at_ms,
            msg.kind,
        )
    assert saw_base64


# --- the JSON Schemas of the contract -----------------------------------------------------------


def test_every_event_of_a_two_hour_run_passes_the_schemas() -> None:
    registry = pytest.importorskip("stream.schema_registry")
    validators = registry.load_event_validators()
    config = SimConfig(
        seed=21,
        start_ms=T0,
        duration_ms=2 * HOUR,
        time_scale=0.01,
        late_share=0.02,
        duplicate_share=0.02,
    )
    checked: Counter[str] = Counter()
    for _, body in events(take(config)):
        validators[body["type"]](body)
        checked[body["type"]] += 1
    assert set(checked) == HELPDESK_TYPES | ORDER_TYPES


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.flushed = self.closed = False

    def send(self, topic: str, key: bytes | None, value: bytes) -> Any:
        self.sent.append((topic, key, value))
        producer = self

        class Future:
            def add_errback(self, _fn: Any) -> None:
                assert not producer.closed

        return Future()

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def test_kafka_feed_maps_topics_and_flushes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeProducer()
    monkeypatch.setattr(feed, "_producer", lambda bootstrap, pace: fake)
    messages = take(SimConfig(seed=1, start_ms=T0, duplicate_share=0.1), 1000)
    topics = {"helpdesk": "helpdesk.events", "orders": "orders.events"}
    stats = feed.feed_to_kafka(iter(messages), "x:1", topics, pace=False, max_messages=900)
    assert stats.sent == len(fake.sent) == 900
    assert fake.flushed
    assert fake.closed
    assert [(topics[m.topic], m.key, m.value) for m in messages[:900]] == fake.sent

    stop = threading.Event()
    stop.set()
    fake2 = FakeProducer()
    monkeypatch.setattr(feed, "_producer", lambda bootstrap, pace: fake2)
    stats = feed.feed_to_kafka(iter(messages), "x:1", topics, pace=True, stop=stop)
    assert stats.sent == 0
    assert fake2.closed

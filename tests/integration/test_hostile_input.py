"""Hostile input against a real broker and a real worker: the whole corpus of hostile
messages (tests/corpus), huge values, null keys, tombstones and 100,000 tickets with
distinct queue names, interleaved with valid traffic. The worker keeps running; every
message is counted once as accepted or rejected; the dead-letter topic holds exactly the
rejected ones, each with its reason; the queue label set, the scrape and the memory stay
bounded."""

from __future__ import annotations

import re
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.kpi.labels import OTHER
from stream.kpi.timefmt import format_rfc3339_ms
from tests.corpus import CorpusMessage, load_corpus
from tests.integration.conftest import dead_letters
from tests.scrape import Samples, by, samples, total

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

pytestmark = pytest.mark.integration

DISTINCT_QUEUES = 100_000
MAX_QUEUES = 50
DECODER_LIMIT = 1_000_000  # KPI_MAX_MESSAGE_BYTES, the default
# Below the broker's max.message.bytes (1,048,588) by enough that the dead-letter record
# (the value plus five headers) still fits: see test_a_rejected_message_at_the_broker_limit.
NEAR_BROKER_LIMIT = 1_040_000
AT_BROKER_LIMIT = 1_048_450  # the input topic takes it; value + headers do not fit
HUGE_MESSAGES = 10  # of each kind below: 25 MB in all, which no table may keep
# Bounds from measurements on the 2-core development machine (the test prints them):
# - the hostile phase (the corpus and the huge messages) grew the RSS by ~15 MiB
#   (buffers); keeping the huge messages' bytes anywhere would add their 25 MB;
# - each of the 100,000 open tickets adds ~2.9 KB: its state in the tickets table (the
#   memory store of the tests), its customer's activities, its SLA clocks. Twice that is
#   the bound: a label set, or any state that grows per message beyond the entity
#   tables, breaks it, noise does not;
# - the exposition is ~37 KB with the 51 queue labels (12 KB before any event); 100,000
#   labelled queues would make it tens of megabytes.
RSS_HOSTILE_PHASE_BOUND_MIB = 40
RSS_PER_TICKET_BOUND = 6 * 1024  # bytes
SCRAPE_BOUND_BYTES = 100_000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def producer(bootstrap: str) -> Any:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=20,
        batch_size=256 * 1024,
        max_request_size=1_100_000,
    )


def key_of(raw: bytes | None) -> bytes | None:
    """The contract's key (ticket_id, order_id, name) where the message has one."""
    try:
        body = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    for field in ("ticket_id", "order_id", "name"):
        if isinstance(body.get(field), str):
            return str(body[field]).encode()
    return None


def ticket_created(i: int, at_ms: int, queue: str, ticket: str | None = None) -> dict[str, Any]:
    return {
        "event_id": f"q-{i}",
        "type": "ticket.created",
        "occurred_at": format_rfc3339_ms(at_ms),
        "ticket_id": ticket or f"Q-{i}",
        "customer_id": f"QC-{i % 2000}",
        "queue": queue,
        "priority": "low",
        "channel": "web",
    }


def padded(body: dict[str, Any], size: int) -> bytes:
    empty = orjson.dumps({**body, "blob": ""})
    return orjson.dumps({**body, "blob": "x" * (size - len(empty))})


def seen(metrics: Samples) -> float:
    return (
        total(metrics, "kpistream_events_total")
        + total(metrics, "kpistream_events_duplicate_total")
        + total(metrics, "kpistream_events_rejected_total")
    )


def test_hostile_input_is_counted_dead_lettered_and_bounded(
    kafka, isolated_env, start_worker
) -> None:
    env = {**isolated_env, "KPI_MAX_QUEUES": str(MAX_QUEUES)}
    topics = {
        "helpdesk": env["KPI_HELPDESK_TOPIC"],
        "orders": env["KPI_ORDERS_TOPIC"],
        "indicators": env["KPI_INDICATORS_TOPIC"],
    }
    worker = start_worker(env)
    pid = worker.process.pid
    started = time.monotonic()
    rss_start = rss_mib(pid)
    scrape_start = len(worker.metrics_text())

    sent = 0
    rejected: Counter[str] = Counter()  # reason -> messages the worker must reject
    send = producer(kafka.bootstrap)

    def out(topic: str, raw: bytes | None, key: bytes | None, expected: str) -> None:
        nonlocal sent
        send.send(topics[topic], value=raw, key=key)
        sent += 1
        if expected != "accepted":
            rejected[expected] += 1

    # 1. The corpus, but for the messages of known bugs (each would stop the count from
    # adding up, or the worker: README.md of the corpus and the xfail tests say why).
    corpus: list[CorpusMessage] = [m for m in load_corpus() if not m.bug]
    for message in corpus:
        key = (
            key_of(message.raw) if message.raw is not None else b"tombstone"
        )  # Kafka: one of the two
        out(message.topic, message.raw, key, message.expected)
    # 2. Huge values: at the decoder's limit (accepted: an unknown field, not stored),
    # above it and close to the broker's limit (too_large, dead-lettered whole); and
    # with null keys (the orders).
    now = int(time.time() * 1000)
    base = ticket_created(-1, now - 3_600_000, "huge")
    for n in range(HUGE_MESSAGES):
        at_limit = padded({**base, "event_id": f"h-at-limit-{n}"}, DECODER_LIMIT)
        out("helpdesk", at_limit, b"H1", "accepted")
        near = padded({**base, "event_id": f"h-near-{n}"}, NEAR_BROKER_LIMIT)
        out("helpdesk", near, b"H1", "too_large")
    order = {
        "event_id": "o-near",
        "type": "order.delivered",
        "occurred_at": format_rfc3339_ms(now - 3_600_000),
        "order_id": "O-huge",
        "customer_id": "C-huge",
    }
    for n in range(HUGE_MESSAGES):
        out(
            "orders",
            padded({**order, "event_id": f"o-near-{n}"}, NEAR_BROKER_LIMIT),
            None,
            "too_large",
        )
    send.flush()
    hostile_sent = sent
    deadline = time.monotonic() + 60
    while seen(samples(worker.metrics_text())) < hostile_sent:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    rss_after_hostile = rss_mib(pid)

    # 3. 100,000 tickets, each with its own queue name, interleaved with valid traffic:
    # replies, re-deliveries (duplicates), null keys, orders; in event-time order over
    # the last 100 minutes.
    first_at = now - 100 * 60_000
    created_tickets = 0
    for i in range(DISTINCT_QUEUES):
        at = first_at + i * 60
        body = ticket_created(i, at, f"queue {i} \u00e9\U0001f600")
        raw = orjson.dumps(body)
        key = None if i % 1000 == 7 else body["ticket_id"].encode()  # some null keys
        out("helpdesk", raw, key, "accepted")
        created_tickets += 1
        if i % 50 == 0:
            out("helpdesk", raw, key, "accepted")  # a re-delivery: a duplicate
        if i % 20 == 0 and i:
            reply = {
                "event_id": f"r-{i}",
                "type": "ticket.replied",
                "occurred_at": format_rfc3339_ms(at),
                "ticket_id": f"Q-{i - 10}",
                "customer_id": f"QC-{(i - 10) % 2000}",
                "author": "agent",
                "public": True,
                "agent_id": "a-1",
            }
            out("helpdesk", orjson.dumps(reply), reply["ticket_id"].encode(), "accepted")
        if i % 500 == 0:
            placed = {**order, "event_id": f"op-{i}", "type": "order.placed", "channel": "web"}
            placed |= {"order_id": f"O-{i}", "occurred_at": format_rfc3339_ms(at)}
            out("orders", orjson.dumps(placed), placed["order_id"].encode(), "accepted")
    send.flush()
    send.close()
    produced_s = time.monotonic() - started

    deadline = time.monotonic() + 240
    while (metrics := samples(worker.metrics_text())) and seen(metrics) < sent:
        assert worker.process.poll() is None, worker.log_tail()
        assert time.monotonic() < deadline, f"{seen(metrics):,} of {sent:,}\n{worker.log_tail()}"
        time.sleep(1)
    processed_s = time.monotonic() - started
    time.sleep(3)  # two more ticks: nothing may change the counts any more
    text = worker.metrics_text()
    metrics = samples(text)
    rss_end = rss_mib(pid)

    # The worker is running and serving; every message counted exactly once.
    assert worker.process.poll() is None
    accepted = total(metrics, "kpistream_events_total") + total(
        metrics, "kpistream_events_duplicate_total"
    )
    counted: Counter[str] = Counter()  # reason -> rejected, over the three topics
    for labels, value in metrics["kpistream_events_rejected_total"]:
        counted[labels["reason"]] += int(value)
    counted = +counted  # without the zero series
    assert accepted + counted.total() == sent
    assert counted == rejected

    # The dead-letter topic: exactly the rejected messages, each with its reason.
    deadline = time.monotonic() + 30
    while len(dead := dead_letters(kafka.bootstrap, env["KPI_DLQ_TOPIC"])) < counted.total():
        assert time.monotonic() < deadline, f"{len(dead)} dead letters of {counted.total()}"
    assert len(dead) == counted.total()
    assert Counter(h["reason"].decode() for h, _ in dead) == rejected
    assert all(h["detail"] and h["source_topic"] and h["source_offset"] for h, _ in dead)
    assert max(len(v) for _, v in dead) == NEAR_BROKER_LIMIT  # the raw bytes, whole

    # The queue label set is bounded; every ticket beyond it is counted as overflow.
    queue_labels = {
        lab["queue"] for series in metrics.values() for lab, _ in series if "queue" in lab
    }
    assert len(queue_labels - {OTHER}) <= MAX_QUEUES
    overflow = {lab["label"]: v for lab, v in metrics["kpistream_label_overflow_total"]}
    created = by(metrics, "kpistream_tickets_created_total", "queue")
    # Every ticket under `other` is overflow, but for those whose queue is named "other".
    named_other = sum(b'"queue": "other"' in (m.raw or b"") for m in corpus if m.accepted)
    assert named_other == 1  # the corpus's queue-other
    assert overflow["queue"] == created[(OTHER,)] - named_other
    assert overflow["queue"] >= DISTINCT_QUEUES - MAX_QUEUES
    assert not re.search(r'queue="queue 9\d{4} ', text)  # no late queue got a label

    # Memory and scrape stay bounded.
    assert rss_after_hostile - rss_start < RSS_HOSTILE_PHASE_BOUND_MIB
    growth = (rss_end - rss_after_hostile) * 1024 * 1024
    assert growth < created_tickets * RSS_PER_TICKET_BOUND, f"{growth / created_tickets:,.0f} B"
    assert len(text) < SCRAPE_BOUND_BYTES

    print(
        f"\nhostile input: sent {sent:,} messages ({hostile_sent:,} hostile), accepted "
        f"{int(accepted):,}, rejected {counted.total():,} {dict(counted)}; dead letters "
        f"{len(dead):,}; queue labels {len(queue_labels)}, overflow {int(overflow['queue']):,}; "
        f"RSS {rss_start:,.0f} MiB at start, {rss_after_hostile:,.0f} after the hostile "
        f"messages, {rss_end:,.0f} at the end ({growth / created_tickets:,.0f} B per ticket); "
        f"scrape {scrape_start:,} B at start, {len(text):,} B at the end; produced in "
        f"{produced_s:.0f} s, processed in {processed_s:.0f} s"
    )


def test_a_rejected_message_at_the_broker_limit_reaches_the_dead_letter_topic(
    kafka, isolated_env, start_worker
) -> None:
    """The input topic takes a message of 1,048,450 bytes; its dead-letter record (the
    same bytes and five headers) does not fit the DLQ topic's max.message.bytes. It goes
    to the DLQ without its value, with a `value_dropped` header giving the size, and the
    failed first attempt is counted (it was lost before: B7)."""
    worker = start_worker(isolated_env)
    now = int(time.time() * 1000)
    raw = padded(ticket_created(0, now - 60_000, "huge"), AT_BROKER_LIMIT)
    send = producer(kafka.bootstrap)
    send.send(isolated_env["KPI_HELPDESK_TOPIC"], value=raw, key=b"Q-0").get(timeout=30)
    send.close()
    deadline = time.monotonic() + 60
    while seen(metrics := samples(worker.metrics_text())) < 1:
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    time.sleep(3)
    metrics = samples(worker.metrics_text())
    dead = dead_letters(kafka.bootstrap, isolated_env["KPI_DLQ_TOPIC"])
    assert total(metrics, "kpistream_events_rejected_total") == len(dead) == 1
    [(headers, value)] = dead
    assert headers["reason"] == b"too_large"
    assert headers["value_dropped"] == str(len(raw)).encode()
    assert value == b""
    assert total(metrics, "kpistream_dlq_send_errors_total") == 1

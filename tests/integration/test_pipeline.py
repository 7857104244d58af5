"""The walking skeleton end to end: a known stream into a real broker, a real worker,
and /metrics showing exactly what the stream implies; bad messages in the DLQ."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections import Counter
from typing import Any

import orjson
import pytest

from stream.kpi.timefmt import format_rfc3339_ms, parse_rfc3339_ms
from tests.conftest import require_tool
from tests.integration.conftest import dead_letters
from tests.scrape import by, samples, total

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.integration

T0 = parse_rfc3339_ms("2026-11-24T09:00:00Z")
S = 1000


def ev(event_id: str, kind: str, ticket: str, at_ms: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "occurred_at": format_rfc3339_ms(at_ms),
        "ticket_id": ticket,
        "customer_id": f"c-{ticket}",
        "schema_version": 1,
        **fields,
    }


def created(eid: str, ticket: str, at: int, queue: str, priority: str) -> dict[str, Any]:
    return ev(eid, "ticket.created", ticket, at, queue=queue, priority=priority, channel="email")


def reply(eid: str, ticket: str, at: int, author: str = "agent", public: bool = True):
    return ev(eid, "ticket.replied", ticket, at, author=author, public=public, agent_id="a-7")


def known_stream() -> list[tuple[int, bytes]]:
    """(partition, value) in production order; the expectations below follow from it."""
    t1, t2, t3, t4, t5 = (
        created("e1", "T1", T0, "billing", "urgent"),
        created("e2", "T2", T0, "technical", "high"),
        created("e3", "T3", T0 + 30 * S, "billing", "normal"),
        created("e4", "T4", T0 + 40 * S, "shipping", "low"),
        created("e5", "T5", T0 + 50 * S, "returns", "normal"),
    )
    t1_reply = reply("e13", "T1", T0 + 90 * S)
    p0 = [
        t1,
        reply("e10", "T1", T0 + 5 * S, author="system", public=False),  # acknowledgement
        reply("e11", "T1", T0 + 10 * S, author="customer"),
        reply("e12", "T1", T0 + 20 * S, public=False),  # internal note
        t1_reply,  # first response: 90 s
        t1_reply,  # duplicate
        ev("e14", "ticket.status_changed", "T1", T0 + 120 * S, status="pending"),
        t4,
        t4,  # duplicate
        reply("e40", "T4", T0 + 60 * S),  # first response: 20 s
        ev("e41", "ticket.solved", "T4", T0 + 300 * S, method="agent"),
        ev("e42", "ticket.reopened", "T4", T0 + 360 * S),
        reply("e43", "T4", T0 + 400 * S),  # not a first response any more
    ]
    p1 = [
        reply("e20", "T2", T0 + 300 * S),  # arrives before its ticket.created: 300 s
        t2,
        t5,
        ev("e50", "survey.csat", "T5", T0 + 70 * S, score=5),
    ]
    p2 = [
        t3,
        created("e6", "T6", T0 + 10 * S, "technical", "urgent"),  # never answered
        reply("e30", "T3", T0 + 30 * S + 3600 * S),  # first response: 3600 s
        ev("e31", "ticket.solved", "T3", T0 + 2 * 3600 * S, method="phone"),
    ]
    # Tickets that only move event time forward, so the 09:00 hour closes everywhere.
    advance = T0 + 75 * 60 * S
    for p, lst in enumerate((p0, p1, p2)):
        lst.append(created(f"w{p}", f"W{p}", advance, "general", "low"))
        lst.append(ev(f"w{p}c", "ticket.closed", f"W{p}", advance + S))
    malformed = [
        b"{not json",
        b"\xff\xfe\x00 not utf-8",
        b"[1, 2, 3]",
        orjson.dumps({**t5, "event_id": "m1", "occurred_at": "2026-11-24T09:00:00"}),
        orjson.dumps({**t5, "event_id": "m2", "type": "ticket.exploded"}),
        orjson.dumps({**t5, "event_id": "m3", "priority": "critical"}),
        orjson.dumps({**ev("m4", "survey.csat", "T5", T0), "score": 9}),
        orjson.dumps(
            {
                "event_id": "m5",
                "type": "order.placed",
                "occurred_at": "2026-11-24T09:00:00Z",
                "order_id": "O1",
                "customer_id": "c1",
                "channel": "web",
            }
        ),
    ]
    stream: list[tuple[int, bytes]] = []
    for p, lst in enumerate((p0, p1, p2)):
        stream += [(p, orjson.dumps(e)) for e in lst]
    # Bad messages in the middle of partition 0: processing must go on after them.
    return stream[:6] + [(0, m) for m in malformed] + stream[6:]


EXPECTED_REJECTED = {
    "invalid_json": 1,
    "invalid_utf8": 1,
    "not_an_object": 1,
    "bad_timestamp": 1,
    "unknown_type": 1,
    "schema_violation": 2,
    "wrong_topic": 1,
}
EXPECTED_ACTIVE = {
    ("billing", "urgent", "pending"): 1,
    ("technical", "high", "new"): 1,
    ("shipping", "low", "open"): 1,
    ("returns", "normal", "new"): 1,
    ("technical", "urgent", "new"): 1,
}
# (queue, priority) -> first-response seconds
EXPECTED_FIRST_RESPONSES = {
    ("billing", "urgent"): 90.0,
    ("technical", "high"): 300.0,
    ("billing", "normal"): 3600.0,
    ("shipping", "low"): 20.0,
}


def produce(bootstrap: str, topic: str, stream: list[tuple[int, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    for partition, value in stream:
        producer.send(topic, value=value, key=None, partition=partition)
        producer.flush()  # keep the production order within each partition
    producer.close()


def wait_until_processed(worker, expected_messages: int, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    metrics: dict[str, Any] = {}
    while time.monotonic() < deadline:
        metrics = samples(worker.metrics_text())
        seen = (
            total(metrics, "kpistream_events_total")
            + total(metrics, "kpistream_events_duplicate_total")
            + total(metrics, "kpistream_events_rejected_total")
        )
        if seen >= expected_messages:
            # Windows close on the worker's 1 s timer: give it two ticks after the
            # last event, then read what a user would see.
            time.sleep(2.5)
            everything = samples(worker.metrics_text())
            # A selection (the benchmark's progress poll) shows those families, the same.
            chosen = samples(worker.get("/metrics?name[]=kpistream_events_total").decode())
            assert set(chosen) == {"kpistream_events_total"}
            assert total(chosen, "kpistream_events_total") == total(
                everything, "kpistream_events_total"
            )
            return everything
        time.sleep(0.5)
    raise AssertionError(f"worker did not process the stream in time:\n{worker.log_tail()}")


def read_topic_until(bootstrap: str, topic: str, key: str, timeout_s: float = 30) -> dict:
    """The latest message of each key of a one-partition topic, once the message of
    `key` is final (windows are first sent when closed, then when final)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    consumer.assign([TopicPartition(topic, 0)])
    messages: dict = {}
    deadline = time.monotonic() + timeout_s
    while not messages.get(key, {}).get("is_final") and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                if record.value is None:
                    messages.pop(record.key.decode(), None)
                else:
                    messages[record.key.decode()] = orjson.loads(record.value)
    consumer.close()
    return messages


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def test_known_stream_gives_exact_metrics_and_dead_letters(
    kafka, isolated_env, start_worker, tmp_path
) -> None:
    env = {**isolated_env, "KPI_LIVE": "false", "KPI_WINDOWS": "1m,1h", "KPI_GRACE": "10m"}
    worker = start_worker(env)
    stream = known_stream()
    produce(kafka.bootstrap, env["KPI_HELPDESK_TOPIC"], stream)
    metrics = wait_until_processed(worker, len(stream))

    # Every message accounted for: valid + duplicate + rejected = produced.
    assert total(metrics, "kpistream_events_duplicate_total") == 2
    rejected = {
        labels["reason"]: value for labels, value in metrics["kpistream_events_rejected_total"]
    }
    assert rejected == EXPECTED_REJECTED
    assert total(metrics, "kpistream_events_total") == len(stream) - 2 - 8

    # H1: exact active tickets.
    active = {
        (lab["queue"], lab["priority"], lab["status"]): v
        for lab, v in metrics["kpistream_tickets_active"]
    }
    assert active == EXPECTED_ACTIVE

    # H2 histogram: one observation per ticket, in the right bucket.
    counts = {
        (lab["queue"], lab["priority"]): v
        for lab, v in metrics["kpistream_first_response_seconds_count"]
    }
    sums = {
        (lab["queue"], lab["priority"]): v
        for lab, v in metrics["kpistream_first_response_seconds_sum"]
    }
    assert counts == {dims: 1.0 for dims in EXPECTED_FIRST_RESPONSES}
    assert sums == EXPECTED_FIRST_RESPONSES
    buckets = {
        (lab["queue"], lab["priority"], lab["le"]): v
        for lab, v in metrics["kpistream_first_response_seconds_bucket"]
    }
    assert buckets[("billing", "urgent", "60.0")] == 0
    assert buckets[("billing", "urgent", "300.0")] == 1
    assert buckets[("technical", "high", "300.0")] == 1  # le is inclusive
    assert buckets[("billing", "normal", "1800.0")] == 0
    assert buckets[("billing", "normal", "3600.0")] == 1
    assert buckets[("shipping", "low", "30.0")] == 1

    # H2 windows: the newest hour closed on every partition is 09:00-10:00; it holds
    # the 90 s, 300 s and 20 s responses (T3's came at 10:00:30, in the next hour).
    ends = {
        lab["window"]: v
        for lab, v in metrics["kpistream_first_response_window_end_timestamp_seconds"]
    }
    assert ends["1h"] == (T0 + 3600 * S) / 1000
    overall = {
        (lab["window"], lab["percentile"]): v
        for lab, v in metrics["kpistream_first_response_window_all_seconds"]
    }
    hour_values = [90.0, 300.0, 20.0]
    for q, percentile in ((0.5, "50"), (0.9, "90"), (0.99, "99")):
        expected = exact_quantile(hour_values, q)
        assert overall[("1h", percentile)] == pytest.approx(expected, rel=0.01)
    per_dims = {
        (lab["window"], lab["queue"], lab["priority"]): v
        for lab, v in metrics["kpistream_first_response_window_responses"]
    }
    assert {k: v for k, v in per_dims.items() if k[0] == "1h"} == {
        ("1h", "billing", "urgent"): 1,
        ("1h", "technical", "high"): 1,
        ("1h", "shipping", "low"): 1,
    }

    # H4, H6, H7, H9, H10, H13: counted once per event, duplicates excluded.
    assert total(metrics, "kpistream_tickets_created_total") == 9  # T1-T6 and W0-W2
    assert by(metrics, "kpistream_tickets_solved_total", "queue", "priority", "method") == {
        ("billing", "normal", "phone"): 1,
        ("shipping", "low", "agent"): 1,
    }
    assert by(metrics, "kpistream_tickets_reopened_total", "queue", "priority") == {
        ("shipping", "low"): 1
    }
    assert by(metrics, "kpistream_csat_responses_total", "queue", "score") == {("returns", "5"): 1}
    assert by(metrics, "kpistream_resolution_seconds_sum", "queue", "priority", "kind") == {
        ("billing", "normal", "first"): 7170.0,  # T3: created 09:00:30, solved 11:00:00
        ("shipping", "low", "first"): 260.0,  # T4: created 09:00:40, solved 09:05:00
        ("general", "low", "full"): 3.0,  # W0-W2: closed one second after creation
    }
    # Public agent replies: T1 one (not the note, the acknowledgement or the duplicate),
    # T2 one, T3 one, T4 two.
    assert total(metrics, "kpistream_agent_replies_total") == 5
    assert by(metrics, "kpistream_touches_per_solved_ticket_count", "queue") == {
        ("billing",): 1,
        ("shipping",): 1,
    }
    assert by(metrics, "kpistream_touches_per_solved_ticket_sum", "queue") == {
        ("billing",): 1,
        ("shipping",): 1,
    }

    # H3/H5: every answered or solved ticket met its target; T6 (urgent, created 09:00:10)
    # was never answered and breached when its partition's event time passed 10:00:10.
    assert by(metrics, "kpistream_sla_total", "sla", "queue", "priority", "result") == {
        ("first_response", "billing", "urgent", "met"): 1,
        ("first_response", "technical", "high", "met"): 1,
        ("first_response", "billing", "normal", "met"): 1,
        ("first_response", "shipping", "low", "met"): 1,
        ("first_response", "technical", "urgent", "breached"): 1,
        ("resolution", "billing", "normal", "met"): 1,
        ("resolution", "shipping", "low", "met"): 1,
    }
    assert by(metrics, "kpistream_sla_breaching_tickets", "sla", "queue", "priority") == {
        ("first_response", "technical", "urgent"): 1
    }
    assert not by(metrics, "kpistream_sla_at_risk_tickets", "sla")

    # Pipeline health.
    owned = {lab["topic"]: v for lab, v in metrics["kpistream_partitions_owned"]}
    assert owned == {
        env["KPI_HELPDESK_TOPIC"]: 3,
        env["KPI_ORDERS_TOPIC"]: 3,
        env["KPI_CUSTOMERS_TOPIC"]: 3,
        env["KPI_PARTIALS_TOPIC"]: 1,
    }
    assert total(metrics, "kpistream_consumer_lag_records") == 0
    newest = {lab["topic"]: v for lab, v in metrics["kpistream_last_event_timestamp_seconds"]}
    assert newest[env["KPI_HELPDESK_TOPIC"]] == (T0 + 2 * 3600 * S) / 1000

    # The same numbers on demand, as JSON; a bad parameter is a 400 that names it.
    with urllib.request.urlopen(f"{worker.url}/kpis?kpi=tickets_active,sla&priority=urgent") as r:
        body = orjson.loads(r.read())
    assert body["tickets_active"] == [
        {"queue": "billing", "priority": "urgent", "status": "pending", "count": 1},
        {"queue": "technical", "priority": "urgent", "status": "new", "count": 1},
    ]
    assert body["sla"] == [
        {
            "sla": "first_response",
            "queue": "technical",
            "priority": "urgent",
            "state": "breaching",
            "tickets": 1,
        }
    ]
    with urllib.request.urlopen(f"{worker.url}/kpis?kpi=first_response&window=1h") as r:
        [hour] = orjson.loads(r.read())["first_response_windows"]
    assert hour["count"] == 3
    assert hour["seconds"]["p50"] == pytest.approx(90.0, rel=0.01)
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(f"{worker.url}/kpis?window=5m")
    assert bad.value.code == 400
    assert orjson.loads(bad.value.read())["parameter"] == "window"

    # The exposition passes Prometheus' own lint.
    promtool = require_tool("promtool")
    lint = subprocess.run(
        [promtool, "check", "metrics"],
        input=worker.metrics_text(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # The KPI topic: one final message per dimension set of each window every partition
    # has closed, merged across partitions. The 10:00 hour is still open on two of them.
    hour_all = "first_response_time/1h|all|2026-11-24T09:00:00.000Z"
    kpi_messages = read_topic_until(kafka.bootstrap, env["KPI_KPI_TOPIC"], hour_all)
    assert kpi_messages[hour_all]["values"]["count"] == 3
    assert kpi_messages[hour_all]["values"]["p50_seconds"] == pytest.approx(90.0, rel=0.01)
    assert kpi_messages[hour_all]["is_final"] is True
    hour_keys = {k for k in kpi_messages if k.startswith("first_response_time/1h|")}
    assert hour_keys == {
        hour_all,
        "first_response_time/1h|queue=billing,priority=urgent|2026-11-24T09:00:00.000Z",
        "first_response_time/1h|queue=technical,priority=high|2026-11-24T09:00:00.000Z",
        "first_response_time/1h|queue=shipping,priority=low|2026-11-24T09:00:00.000Z",
    }

    # `kpi report` prints the same windows.
    report = subprocess.run(
        [
            *(sys.executable, "-m", "stream.cli", "report"),
            *("--kpi", "first_response_time", "--window", "1h", "--format", "jsonl"),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reported = [orjson.loads(line) for line in report.stdout.splitlines()]
    reported = [r for r in reported if r["window_start"] == "2026-11-24T09:00:00.000Z"]
    assert {(r["dimensions"], r["count"]) for r in reported} == {
        ("all", 3),
        ("queue=billing,priority=urgent", 1),
        ("queue=technical,priority=high", 1),
        ("queue=shipping,priority=low", 1),
    }

    # Every bad message is in the DLQ with its reason and origin.
    dead = dead_letters(kafka.bootstrap, env["KPI_DLQ_TOPIC"])
    assert Counter(h["reason"].decode() for h, _ in dead) == Counter(EXPECTED_REJECTED)
    assert all(h["source_topic"].decode() == env["KPI_HELPDESK_TOPIC"] for h, _ in dead)
    assert all(h["source_partition"] == b"0" for h, _ in dead)
    assert sorted(int(h["source_offset"]) for h, _ in dead) == list(range(6, 14))
    assert b"{not json" in [value for _, value in dead]
    assert all(h["detail"] for h, _ in dead)

"""Property: random ticket histories give the same KPIs from the streaming path as from
the batch oracle (tests/oracle.py), whatever the delivery order the contract allows and
however many duplicates arrive."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream.kpi.timefmt import format_rfc3339_ms
from stream.runtime import WorkerRuntime
from stream.settings import Settings
from tests.oracle import assert_metrics_match, compute
from tests.scrape import scrape, total

T0 = 1_795_515_330_000
QUEUES = ("billing", "technical", "returns")
PRIORITIES = ("urgent", "high", "normal", "low")

HOUR = 3_600_000
# Steps that land exactly on the SLA targets (1 h, 4 h, 24 h, 48 h) and inside the
# grace period (5 min), so the boundaries are exercised, not only the easy middles.
STEP_MS = st.sampled_from(
    [1_000, 60_000, 5 * 60_000, 20 * 60_000, HOUR, 4 * HOUR, 24 * HOUR, 30 * HOUR, 48 * HOUR]
)
LATER = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("ticket.replied"),
            "author": st.sampled_from(["agent", "customer", "system"]),
            "public": st.booleans(),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("ticket.status_changed"),
            "status": st.sampled_from(["open", "pending", "on_hold", "solved", "closed"]),
        }
    ),
    st.fixed_dictionaries({"type": st.just("ticket.assigned"), "queue": st.sampled_from(QUEUES)}),
    st.fixed_dictionaries(
        {"type": st.just("ticket.priority_changed"), "priority": st.sampled_from(PRIORITIES)}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("ticket.solved"),
            "method": st.sampled_from(["agent", "self_service", "automation", "phone"]),
        }
    ),
    st.fixed_dictionaries({"type": st.just("ticket.reopened")}),
    st.fixed_dictionaries({"type": st.just("ticket.closed")}),
    st.fixed_dictionaries({"type": st.just("ticket.escalated")}),
    st.fixed_dictionaries(
        {"type": st.just("survey.csat"), "score": st.integers(min_value=1, max_value=5)}
    ),
)


@st.composite
def ticket_history(draw: Any, number: int) -> list[dict[str, Any]]:
    """One ticket's events in event-time order."""
    ticket = f"T{number}"
    t = T0 + draw(st.integers(min_value=0, max_value=3_600_000))
    events = [
        {
            "type": "ticket.created",
            "queue": draw(st.sampled_from(QUEUES)),
            "priority": draw(st.sampled_from(PRIORITIES)),
            "channel": "email",
        }
    ]
    for later in draw(st.lists(LATER, max_size=8)):
        events.append(dict(later))
    timed = []
    for i, event in enumerate(events):
        if i:
            t += draw(STEP_MS)
        timed.append(
            {
                **event,
                "event_id": f"{ticket}-{i}",
                "ticket_id": ticket,
                "customer_id": "C1",
                "t": t,
                "occurred_at": format_rfc3339_ms(t),
            }
        )
    return timed


@st.composite
def delivery(draw: Any) -> list[dict[str, Any]]:
    """The tickets interleaved, each ticket's events in order, any event up to 5 minutes
    behind events of other tickets (within the grace period); then duplicates, re-sent
    within the grace period too.

    In order per ticket because the live counters count each fact once, when first
    seen: a reply delivered before an earlier one was observed with its own latency.
    The windows correct that; test_windows_equal_oracle pins them under any order."""
    events = [draw(ticket_history(n)) for n in range(draw(st.integers(1, 6)))]
    keyed = []
    for history in events:
        key = 0
        for event in history:
            key = max(key, event["t"] + draw(st.integers(0, 5 * 60_000)))
            keyed.append((key, event))
    stream = [e for _, e in sorted(keyed, key=lambda p: p[0])]
    for _ in range(draw(st.integers(0, 5))):
        source = draw(st.integers(0, len(stream) - 1))
        target = draw(st.integers(source + 1, len(stream)))
        if stream[source]["t"] + 5 * 60_000 >= max(e["t"] for e in stream[:target]):
            stream.insert(target, stream[source])
    return stream


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery())
def test_streaming_equals_oracle(stream: list[dict[str, Any]]) -> None:
    # The oracle keeps every ticket forever: so does the runtime here (pruning after the
    # retention is tested on its own in test_runtime).
    settings = Settings(max_future="off", live=False, grace="10m", ticket_retention="3650d")
    runtime = WorkerRuntime(settings, CollectorRegistry())
    tickets: dict[str, Any] = {}
    for event in stream:
        body = {k: v for k, v in event.items() if k != "t"}
        runtime.process_helpdesk(orjson.dumps(body), 0, tickets, {}, now_ms=0)
    runtime.tick(now_ms=0)  # one tick of the clock at the end
    watermark = max(e["t"] for e in stream) - 10 * 60_000
    expected = compute(stream, watermark)
    metrics = scrape(runtime.registry)

    assert total(metrics, "kpistream_events_total") == expected.events
    assert total(metrics, "kpistream_events_duplicate_total") == expected.duplicates
    assert_metrics_match(metrics, expected)

"""Property: random ticket histories, delivered out of order (within the grace period),
with duplicates, over one or two partitions and with the clock ticking at random
moments, give final KPI-topic windows equal to the batch oracle's
(tests/oracle_windows.py), KPI by KPI: counts exactly, percentiles within the sketch's
error. This is the streaming core, the partition windows and the merge, end to end,
without a broker."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream.kpi.timefmt import format_rfc3339_ms
from stream.runtime import WorkerRuntime
from stream.settings import Settings
from tests.oracle_windows import assert_windows_match, compute_windows
from tests.scrape import scrape, total

T0 = 1_795_515_330_000  # 2026-11-24T10:15:30Z
MINUTE = 60_000
HOUR = 60 * MINUTE
GRACE_MS = 10 * MINUTE
WINDOWS = ("10m", "1h", "1d")
SIZES_MS = (10 * MINUTE, HOUR, 24 * HOUR)
QUEUES = ("billing", "technical", "returns")
PRIORITIES = ("urgent", "high", "normal", "low")

# Steps that land on the SLA targets (1 h, 4 h, 24 h, 48 h) and inside the grace
# period, so the boundaries are exercised, not only the easy middles.
STEP_MS = st.sampled_from(
    [1_000, 30_000, MINUTE, 5 * MINUTE, 20 * MINUTE, HOUR, 4 * HOUR, 24 * HOUR, 49 * HOUR]
)
LATER = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("ticket.replied"),
            "author": st.sampled_from(["agent", "agent", "customer", "system"]),
            "public": st.booleans(),
        },
        optional={"handle_seconds": st.integers(1, 3600)},
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
        },
        optional={
            "settled_amount": st.fixed_dictionaries(
                {
                    "value": st.sampled_from(["10.00", "0.10", "25.50"]),
                    "currency": st.sampled_from(["EUR", "DKK"]),
                }
            )
        },
    ),
    st.fixed_dictionaries({"type": st.just("ticket.reopened")}),
    st.fixed_dictionaries({"type": st.just("ticket.closed")}),
    st.fixed_dictionaries({"type": st.just("ticket.escalated")}),
    st.fixed_dictionaries({"type": st.just("survey.csat"), "score": st.integers(1, 5)}),
    st.fixed_dictionaries({"type": st.just("survey.nps"), "score": st.integers(0, 10)}),
    st.fixed_dictionaries(
        {
            "type": st.just("selfservice.session"),
            "screens": st.integers(0, 12),
            "clicks": st.integers(0, 30),
            "succeeded": st.booleans(),
        }
    ),
)


@st.composite
def ticket_events(draw: Any, number: int) -> list[dict[str, Any]]:
    """One ticket's events in event-time order."""
    ticket = f"T{number}"
    t = T0 + draw(st.integers(0, 2 * HOUR))
    events: list[dict[str, Any]] = [
        {
            "type": "ticket.created",
            "queue": draw(st.sampled_from(QUEUES)),
            "priority": draw(st.sampled_from(PRIORITIES)),
            "channel": "email",
            **({"subject_kind": "complaint"} if draw(st.booleans()) else {}),
        },
        *(dict(e) for e in draw(st.lists(LATER, max_size=8))),
    ]
    out = []
    for i, event in enumerate(events):
        if i:
            t += draw(STEP_MS)
        out.append(
            {
                **event,
                "event_id": f"{ticket}-{i}",
                "ticket_id": ticket,
                "customer_id": f"C{number % 3}",
                "t": t,
                "occurred_at": format_rfc3339_ms(t),
            }
        )
    return out


@st.composite
def anonymous_sessions(draw: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 4))):
        t = T0 + draw(st.integers(0, 30 * HOUR))
        out.append(
            {
                "type": "selfservice.session",
                "event_id": f"S{i}",
                "customer_id": f"C{i}",
                "screens": draw(st.integers(0, 9)),
                "clicks": draw(st.integers(0, 20)),
                "succeeded": draw(st.booleans()),
                "t": t,
                "occurred_at": format_rfc3339_ms(t),
            }
        )
    return out


@st.composite
def agent_shifts(draw: Any) -> list[dict[str, Any]]:
    """Agents going on and off shift (H12), sometimes twice 'on', sometimes never off."""
    out = []
    for agent in range(draw(st.integers(0, 3))):
        t = T0 + draw(st.integers(0, 4 * HOUR))
        for i, state in enumerate(draw(st.lists(st.sampled_from(["on", "off"]), max_size=4))):
            t += draw(STEP_MS)
            out.append(
                {
                    "type": "agent.shift",
                    "event_id": f"A{agent}-{i}",
                    "agent_id": f"agent-{agent}",
                    "state": state,
                    "t": t,
                    "occurred_at": format_rfc3339_ms(t),
                }
            )
    return out


@st.composite
def delivery(draw: Any) -> tuple[list[dict[str, Any]], list[bool]]:
    """Every event, delivered up to 5 minutes late (so never beyond the grace period),
    with re-deliveries of earlier messages; and where the clock ticks."""
    events = [e for n in range(draw(st.integers(1, 6))) for e in draw(ticket_events(n))]
    events += draw(anonymous_sessions())
    events += draw(agent_shifts())
    delays = draw(st.lists(st.integers(0, 5 * MINUTE), min_size=len(events), max_size=len(events)))
    stream = [
        e for _, e in sorted(zip(delays, events, strict=True), key=lambda p: p[1]["t"] + p[0])
    ]
    for _ in range(draw(st.integers(0, 5))):
        source = draw(st.integers(0, len(stream) - 1))
        target = draw(st.integers(source + 1, len(stream)))
        if stream[source]["t"] + 5 * MINUTE >= max(e["t"] for e in stream[:target]):
            stream.insert(target, stream[source])  # a duplicate, itself within grace
    # After each message: nothing, a tick of the clock, or a restart of the worker.
    steps = st.sampled_from(["", "", "", "tick", "tick", "restart"])
    ticks = draw(st.lists(steps, min_size=len(stream), max_size=len(stream)))
    return stream, ticks


def partition_of(event: dict[str, Any], partitions: int) -> int:
    key = event.get("ticket_id") or event.get("agent_id") or event["customer_id"]
    return zlib.crc32(key.encode()) % partitions


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery(), st.sampled_from([1, 2]))
def test_final_windows_equal_the_oracle(case: Any, partitions: int) -> None:
    stream, ticks = case
    config = Settings(
        live=False,
        grace="10m",
        windows=WINDOWS,
        ticket_retention="3650d",
        partitions=partitions,
    )
    runtime = WorkerRuntime(config, CollectorRegistry())
    tickets: dict[str, Any] = {}
    scopes: dict[str, Any] = {}
    kpi_state: dict[str, Any] = {}
    merge_state: dict[str, Any] = {}
    messages: list[dict[str, Any]] = []
    late = 0.0

    def tick() -> None:
        for partial in runtime.tick(now_ms=0, tickets=tickets):
            for _key, message in runtime.merge_step(partial, merge_state, now_ms=0):
                if message is not None:
                    messages.append(message)
        runtime.partials_delivered()  # as the agent does once Kafka has them

    for i, (event, step) in enumerate(zip(stream, ticks, strict=True)):
        body = {k: v for k, v in event.items() if k != "t"}
        result = runtime.process_helpdesk(
            orjson.dumps(body), partition_of(event, partitions), tickets, scopes, now_ms=0
        )
        kpi_state.update(result.state_writes)
        if step == "tick":
            tick()
        elif step == "restart":
            # A new worker: the tables survive (changelogs), memory does not; the last
            # messages, not yet committed, are delivered again.
            late += total(scrape(runtime.registry), "kpistream_events_late_total")
            runtime = WorkerRuntime(config, CollectorRegistry())
            runtime.load_partitions(
                range(partitions), kpi_state.items(), tickets.items(), scopes.items()
            )
            runtime.load_merge_state(list(merge_state))
            for again in stream[max(0, i - 2) : i + 1]:
                redo = {k: v for k, v in again.items() if k != "t"}
                runtime.process_helpdesk(
                    orjson.dumps(redo), partition_of(again, partitions), tickets, scopes, 0
                )
    tick()

    late += total(scrape(runtime.registry), "kpistream_events_late_total")
    assert late == 0  # nothing beyond grace
    expected = compute_windows(stream, SIZES_MS)
    _, final_through = runtime.merger.marks(merge_state)
    if len(runtime.partitions) < partitions:
        final_through = None  # a partition without events holds the merge back
    assert_windows_match(
        messages, expected, final_through_ms=final_through if final_through is not None else -1
    )

"""Property: random ticket histories, delivered out of order (within the grace period),
with duplicates, over one or two partitions and with the clock ticking at random
moments, give final KPI-topic windows equal to the batch oracle's
(tests/oracle_windows.py), KPI by KPI: counts exactly, percentiles within the sketch's
error. This is the streaming core, the partition windows and the merge, end to end,
without a broker."""

from __future__ import annotations

import copy
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
    # After each message: nothing, a tick of the clock, or a kill -9 of the worker. A
    # kill leaves each table where its changelog got to: the offsets committed up to
    # a few messages back, each table somewhere between those and the last message.
    steps = st.one_of(
        st.sampled_from(["", "", "", "tick", "tick"]),
        st.tuples(st.just("kill"), st.integers(0, 6), st.integers(0, 6), st.integers(0, 6)),
    )
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
        max_future="off",  # events of 2026 at a clock of 0: no bound, or all are rejected
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
    late = reread_late = 0.0

    def tick() -> None:
        for partial in runtime.tick(now_ms=0, tickets=tickets):
            for _key, message in runtime.merge_step(partial, merge_state, now_ms=0):
                if message is not None:
                    messages.append(message)
        runtime.partials_delivered()  # as the agent does once Kafka has them

    topic = config.helpdesk_topic
    # The tables after each message (index i: after stream[:i]), for the kills.
    history = [copy.deepcopy((tickets, scopes, kpi_state))]

    def offset_of(i: int) -> int:
        """stream[i]'s offset in its partition."""
        p = partition_of(stream[i], partitions)
        return sum(1 for e in stream[:i] if partition_of(e, partitions) == p)

    def deliver(i: int) -> None:
        event = stream[i]
        body = {k: v for k, v in event.items() if k != "t"}
        p = partition_of(event, partitions)
        runtime.record_position(topic, p, offset_of(i), None)
        result = runtime.process_helpdesk(orjson.dumps(body), p, tickets, scopes, now_ms=0)
        kpi_state.update(result.state_writes)

    for i, step in enumerate(ticks):
        deliver(i)
        history.append(copy.deepcopy((tickets, scopes, kpi_state)))
        if step == "tick":
            tick()
        elif step:
            # A new worker: memory is gone; the tables are where their changelogs got to
            # (never behind the committed offsets: those wait for a flush); the messages
            # from the committed offset on are delivered again.
            _, commit_lag, tickets_lag, summary_lag = step
            read = i + 1
            committed = max(0, read - commit_lag)
            tickets, scopes, _ = copy.deepcopy(history[max(committed, read - tickets_lag)])
            _, _, kpi_state = copy.deepcopy(history[max(committed, read - summary_lag)])
            late += total(scrape(runtime.registry), "kpistream_events_late_total")
            runtime = WorkerRuntime(config, CollectorRegistry())
            runtime.load_partitions(
                range(partitions), kpi_state.items(), tickets.items(), scopes.items()
            )
            runtime.load_merge_state(list(merge_state))
            for p in range(partitions):
                ends = [partition_of(e, partitions) == p for e in stream]
                runtime.catch_up(topic, p, sum(ends[:committed]), sum(ends[:read]))
            tick()  # the clock may tick before the first message is read again
            for again in range(committed, read):
                deliver(again)
            # A message read again may belong to a window made final before the kill (with
            # it, or as late): it counts as late once more, at least once like the input.
            reread_late += total(scrape(runtime.registry), "kpistream_events_late_total")
            history[-1] = copy.deepcopy((tickets, scopes, kpi_state))
    tick()

    late += total(scrape(runtime.registry), "kpistream_events_late_total")
    assert late == reread_late  # nothing beyond grace
    assert total(scrape(runtime.registry), "kpistream_events_rejected_total") == 0
    expected = compute_windows(stream, SIZES_MS)
    _, final_through = runtime.merger.marks(merge_state)
    if len(runtime.partitions) < partitions:
        final_through = None  # a partition without events holds the merge back
    assert_windows_match(
        messages, expected, final_through_ms=final_through if final_through is not None else -1
    )
    if {partition_of(e, partitions) for e in stream} == set(range(partitions)):
        assert final_through is not None  # windows were made final, and compared

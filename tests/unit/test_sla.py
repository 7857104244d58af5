"""SLA clocks (H3, H5): targets, what stops a clock, its one result, and the index that
finds the clocks the watermark has passed (docs/kpis.md, "H3, H5")."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from stream.kpi.contrib import Dims
from stream.kpi.events import Event
from stream.kpi.sla import FIRST_RESPONSE, RESOLUTION, SlaIndex, SlaPolicy
from stream.kpi.tickets import TicketState, TicketView, add_event, derive
from tests.unit.helpers import HOUR, MINUTE, T0, agent_reply, created, same_queue, ticket_event

POLICY = SlaPolicy()

Result = tuple[str, str, int, Dims]  # (sla, result, at_ms, dims)


def ticket(*events: Event, ticket_id: str = "T1") -> TicketState:
    state = TicketState(ticket_id)
    for event in events:
        assert add_event(state, event) is None
    return state


def view(state: TicketState) -> TicketView:
    return derive(state, POLICY, same_queue)


def results(v: TicketView) -> list[Result]:
    """Every SLA result of the ticket: (sla, met|breached, time, dims), in time order."""
    out = []
    for c in v.contributions:
        kind, _, rest = c.name.partition(":")
        if kind == "sla":
            sla, _, result = rest.partition(":")
            assert c.value == 1
            out.append((sla, result, c.at_ms, c.dims))
    return sorted(out, key=lambda r: (r[2], r[0]))


def test_new_ticket_runs_both_clocks_from_creation_with_its_priority_targets() -> None:
    v = view(ticket(created("T1", T0, priority="urgent")))
    assert {(c.sla, c.deadline_ms, c.queue, c.priority) for c in v.clocks} == {
        (FIRST_RESPONSE, T0 + HOUR, "billing", "urgent"),
        (RESOLUTION, T0 + 48 * HOUR, "billing", "urgent"),
    }
    assert results(v) == []


def test_priority_at_creation_decides_the_target_and_the_result_dims() -> None:
    state = ticket(
        created("T1", T0, priority="low"),
        ticket_event("ticket.priority_changed", "T1", T0 + MINUTE, priority="urgent"),
    )
    first = next(c for c in view(state).clocks if c.sla == FIRST_RESPONSE)
    assert first.priority == "low"
    assert first.deadline_ms == T0 + 48 * HOUR
    # Two hours is late for urgent, in time for low: met, under the priority it began with.
    add_event(state, agent_reply("T1", T0 + 2 * HOUR))
    assert results(view(state)) == [(FIRST_RESPONSE, "met", T0 + 2 * HOUR, ("billing", "low"))]


def test_answer_stops_the_first_response_clock_and_solve_the_resolution_clock() -> None:
    answered = ticket(created("T1", T0), agent_reply("T1", T0 + MINUTE))
    assert [c.sla for c in view(answered).clocks] == [RESOLUTION]
    add_event(answered, ticket_event("ticket.solved", "T1", T0 + HOUR, method="agent"))
    assert view(answered).clocks == []


def test_reply_at_the_target_is_met_and_after_it_breached() -> None:
    urgent: Dims = ("billing", "urgent")
    on_time = ticket(created("T1", T0, priority="urgent"), agent_reply("T1", T0 + HOUR))
    assert results(view(on_time)) == [(FIRST_RESPONSE, "met", T0 + HOUR, urgent)]
    late = ticket(created("T1", T0, priority="urgent"), agent_reply("T1", T0 + HOUR + 1))
    # A breach counts at the deadline, not at the late answer.
    assert results(view(late)) == [(FIRST_RESPONSE, "breached", T0 + HOUR, urgent)]


def test_recorded_breach_stays_breached_even_if_answered_later() -> None:
    urgent: Dims = ("billing", "urgent")
    state = ticket(created("T1", T0, priority="urgent"))
    # The watermark passed the deadline with the clock running: recorded in the state.
    state.breached.append(FIRST_RESPONSE)
    running = view(state)
    assert results(running) == [(FIRST_RESPONSE, "breached", T0 + HOUR, urgent)]
    [clock] = [c for c in running.clocks if c.sla == FIRST_RESPONSE]
    assert clock.breach_recorded
    # An answer stamped in time but delivered after grace: still one result, breached.
    add_event(state, agent_reply("T1", T0 + 30 * MINUTE))
    answered = view(state)
    assert results(answered) == [(FIRST_RESPONSE, "breached", T0 + HOUR, urgent)]
    assert [c.sla for c in answered.clocks] == [RESOLUTION]


def test_solved_without_reply_stops_first_response_clock_without_result_in_time() -> None:
    v = view(
        ticket(
            created("T1", T0, priority="urgent"),
            ticket_event("ticket.solved", "T1", T0 + 30 * MINUTE, method="self_service"),
            agent_reply("T1", T0 + 40 * MINUTE),  # after the solve: the clock had stopped
        )
    )
    assert results(v) == [(RESOLUTION, "met", T0 + 30 * MINUTE, ("billing", "urgent"))]
    assert v.clocks == []


def test_solved_without_reply_after_the_target_breaches_first_response() -> None:
    v = view(
        ticket(
            created("T1", T0, priority="urgent"),
            ticket_event("ticket.solved", "T1", T0 + 2 * HOUR, method="automation"),
        )
    )
    assert results(v) == [
        (FIRST_RESPONSE, "breached", T0 + HOUR, ("billing", "urgent")),
        (RESOLUTION, "met", T0 + 2 * HOUR, ("billing", "urgent")),
    ]


def test_closed_without_solve_after_two_days_breaches_resolution() -> None:
    v = view(
        ticket(
            created("T1", T0, priority="low"),
            agent_reply("T1", T0 + HOUR),
            ticket_event("ticket.closed", "T1", T0 + 72 * HOUR),
        )
    )
    assert results(v) == [
        (FIRST_RESPONSE, "met", T0 + HOUR, ("billing", "low")),
        (RESOLUTION, "breached", T0 + 48 * HOUR, ("billing", "low")),
    ]
    assert v.clocks == []


def test_closed_without_solve_in_time_stops_resolution_without_result() -> None:
    v = view(
        ticket(
            created("T1", T0, priority="low"),
            agent_reply("T1", T0 + HOUR),
            ticket_event("ticket.closed", "T1", T0 + 2 * HOUR),
        )
    )
    assert results(v) == [(FIRST_RESPONSE, "met", T0 + HOUR, ("billing", "low"))]
    assert v.clocks == []


def test_events_before_creation_settle_in_event_time() -> None:
    # The reply arrives first, is kept, and settles when the ticket is created.
    state = ticket(agent_reply("T1", T0 + 10 * MINUTE))
    assert view(state).clocks == []
    assert results(view(state)) == []
    add_event(state, created("T1", T0, priority="urgent"))
    v = view(state)
    assert results(v) == [(FIRST_RESPONSE, "met", T0 + 10 * MINUTE, ("billing", "urgent"))]
    assert [c.sla for c in v.clocks] == [RESOLUTION]


def test_a_breach_counts_in_the_queue_the_ticket_was_in_at_the_deadline() -> None:
    v = view(
        ticket(
            created("T1", T0, priority="urgent", queue="billing"),
            ticket_event("ticket.assigned", "T1", T0 + 90 * MINUTE, queue="technical"),
            agent_reply("T1", T0 + 2 * HOUR),
        )
    )
    assert results(v) == [(FIRST_RESPONSE, "breached", T0 + HOUR, ("billing", "urgent"))]
    assert [c.queue for c in v.clocks] == ["technical"]  # the gauges: its queue now


def test_index_reports_breaching_and_at_risk_and_each_due_clock_once() -> None:
    index = SlaIndex()
    urgent = ticket(created("T1", T0, priority="urgent"), ticket_id="T1")
    high = ticket(created("T2", T0, priority="high"), ticket_id="T2")
    index.update("T1", view(urgent).clocks)
    index.update("T2", view(high).clocks)
    now = T0 + 3 * HOUR + 50 * MINUTE  # urgent is 2h50 over; high breaches in 10 min
    assert index.counts(now, POLICY.warn_ms) == {
        (FIRST_RESPONSE, "billing", "urgent", "breaching"): 1,
        (FIRST_RESPONSE, "billing", "high", "at_risk"): 1,
    }
    assert index.due(now) == [("T1", FIRST_RESPONSE)]
    assert index.due(now) == []  # returned once
    # Once recorded in the ticket's state, the clock is not due again ...
    urgent.breached.append(FIRST_RESPONSE)
    index.update("T1", view(urgent).clocks)
    assert index.due(now) == []
    # ... but it still shows as breaching until it is answered.
    assert index.counts(now, POLICY.warn_ms)[(FIRST_RESPONSE, "billing", "urgent", "breaching")]
    add_event(urgent, agent_reply("T1", now))
    index.update("T1", view(urgent).clocks)
    assert (FIRST_RESPONSE, "billing", "urgent", "breaching") not in index.counts(
        now, POLICY.warn_ms
    )


def test_index_does_not_return_a_clock_stopped_before_its_deadline() -> None:
    index = SlaIndex()
    high = ticket(created("T2", T0, priority="high"), ticket_id="T2")
    index.update("T2", view(high).clocks)
    add_event(high, agent_reply("T2", T0 + HOUR))
    index.update("T2", view(high).clocks)
    assert index.due(T0 + 4 * HOUR) == []
    assert index.due(T0 + 48 * HOUR) == [("T2", RESOLUTION)]
    index.update("T2", [])  # the ticket was dropped
    assert index.counts(T0 + 48 * HOUR, POLICY.warn_ms) == {}


def test_index_does_not_return_a_clock_whose_breach_is_already_recorded() -> None:
    # E.g. the state was restored from the changelog with the breach in it.
    index = SlaIndex()
    urgent = ticket(created("T1", T0, priority="urgent"))
    index.update("T1", view(urgent).clocks)
    urgent.breached.append(FIRST_RESPONSE)
    index.update("T1", view(urgent).clocks)
    assert index.due(T0 + 2 * HOUR) == []


@dataclass
class FakeClock:
    ticket_id: str
    sla: str
    queue: str
    priority: str
    deadline_ms: int
    breach_recorded: bool = False


CLOCKS = st.lists(
    st.builds(
        FakeClock,
        ticket_id=st.just(""),
        sla=st.sampled_from([FIRST_RESPONSE, RESOLUTION]),
        queue=st.sampled_from(["billing", "technical"]),
        priority=st.sampled_from(["urgent", "normal"]),
        deadline_ms=st.integers(0, 10 * HOUR),
    ),
    max_size=3,
)


@given(
    st.lists(st.tuples(st.sampled_from(["T1", "T2", "T3", "T4"]), CLOCKS), max_size=40),
    st.integers(0, 10 * HOUR),
)
def test_index_counts_equal_a_walk_over_every_running_clock(
    updates: list[tuple[str, list[FakeClock]]], now_ms: int
) -> None:
    """The sorted deadlines give what counting every clock of every ticket gives."""
    index = SlaIndex()
    running: dict[str, list[FakeClock]] = {}
    for ticket_id, clocks in updates:
        index.update(ticket_id, clocks)
        running[ticket_id] = clocks
    walked: Counter[tuple[str, str, str, str]] = Counter()
    for clocks in running.values():
        for c in clocks:
            if c.deadline_ms <= now_ms:
                walked[(c.sla, c.queue, c.priority, "breaching")] += 1
            elif c.deadline_ms <= now_ms + POLICY.warn_ms:
                walked[(c.sla, c.queue, c.priority, "at_risk")] += 1
    assert index.counts(now_ms, POLICY.warn_ms) == walked

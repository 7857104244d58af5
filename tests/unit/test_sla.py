from stream.kpi.sla import (
    FIRST_RESPONSE,
    RESOLUTION,
    SlaIndex,
    SlaPolicy,
    open_clocks,
    settle_stopped_clocks,
)
from stream.kpi.tickets import apply_ticket_event
from tests.unit.helpers import HOUR, MINUTE, T0, agent_reply, created, ticket_event

POLICY = SlaPolicy()


def state_after(*events):
    state = None
    for event in events:
        state = apply_ticket_event(state, event, lambda q: q).state
    return state


def test_new_ticket_runs_both_clocks_from_creation_with_its_priority_targets() -> None:
    clocks = open_clocks(state_after(created("T1", T0, priority="urgent")), POLICY, "billing")
    assert {(c.sla, c.deadline_ms) for c in clocks} == {
        (FIRST_RESPONSE, T0 + HOUR),
        (RESOLUTION, T0 + 48 * HOUR),
    }


def test_priority_in_force_when_the_clock_started_decides_the_target() -> None:
    ticket = state_after(
        created("T1", T0, priority="low"),
        ticket_event("ticket.priority_changed", "T1", T0 + MINUTE, priority="urgent"),
    )
    [first, _] = open_clocks(ticket, POLICY, "billing")
    assert first.priority == "low"
    assert first.deadline_ms == T0 + 48 * HOUR


def test_answer_stops_the_first_response_clock_and_solve_the_resolution_clock() -> None:
    answered = state_after(created("T1", T0), agent_reply("T1", T0 + MINUTE))
    assert [c.sla for c in open_clocks(answered, POLICY, "q")] == [RESOLUTION]
    solved = state_after(
        created("T1", T0),
        agent_reply("T1", T0 + MINUTE),
        ticket_event("ticket.solved", "T1", T0 + HOUR, method="agent"),
    )
    assert open_clocks(solved, POLICY, "q") == []


def settle(*events, breached=()):
    state = None
    results = []
    for event in events:
        state = apply_ticket_event(state, event, lambda q: q).state
        state.sla_breached.extend(b for b in breached if b not in state.sla_breached)
        results += settle_stopped_clocks(state, POLICY)
    return results


def test_reply_at_the_target_is_met_and_after_it_breached() -> None:
    assert settle(created("T1", T0, priority="urgent"), agent_reply("T1", T0 + HOUR)) == [
        (FIRST_RESPONSE, "met")
    ]
    assert settle(created("T1", T0, priority="urgent"), agent_reply("T1", T0 + HOUR + 1)) == [
        (FIRST_RESPONSE, "breached")
    ]


def test_breach_already_counted_by_the_clock_is_not_counted_at_the_answer() -> None:
    late = settle(
        created("T1", T0, priority="urgent"),
        agent_reply("T1", T0 + 2 * HOUR),
        breached=[FIRST_RESPONSE],
    )
    assert late == []


def test_solved_without_reply_stops_first_response_clock_without_result_in_time() -> None:
    results = settle(
        created("T1", T0, priority="urgent"),
        ticket_event("ticket.solved", "T1", T0 + 30 * MINUTE, method="self_service"),
        agent_reply("T1", T0 + 40 * MINUTE),  # after the solve: the clock had stopped
    )
    assert results == [(RESOLUTION, "met")]


def test_solved_without_reply_after_the_target_breaches_first_response() -> None:
    results = settle(
        created("T1", T0, priority="urgent"),
        ticket_event("ticket.solved", "T1", T0 + 2 * HOUR, method="automation"),
    )
    assert results == [(FIRST_RESPONSE, "breached"), (RESOLUTION, "met")]


def test_closed_without_solve_after_two_days_breaches_resolution() -> None:
    results = settle(
        created("T1", T0, priority="low"),
        agent_reply("T1", T0 + HOUR),
        ticket_event("ticket.closed", "T1", T0 + 72 * HOUR),
    )
    assert results == [(FIRST_RESPONSE, "met"), (RESOLUTION, "breached")]


def test_events_before_creation_settle_in_event_time() -> None:
    # The reply arrives first, is kept, and settles when the ticket is created.
    results = settle(agent_reply("T1", T0 + 10 * MINUTE), created("T1", T0, priority="urgent"))
    assert results == [(FIRST_RESPONSE, "met")]


def test_index_reports_breaching_and_at_risk_and_expires_once() -> None:
    index = SlaIndex()
    urgent = state_after(created("T1", T0, priority="urgent"))
    high = state_after(created("T2", T0, priority="high"))
    index.update("T1", open_clocks(urgent, POLICY, "billing"))
    index.update("T2", open_clocks(high, POLICY, "billing"))
    now = T0 + 3 * HOUR + 50 * MINUTE  # urgent is 2h50 over; high breaches in 10 min
    counts = index.counts(now, POLICY.warn_ms)
    assert counts == {
        (FIRST_RESPONSE, "billing", "urgent", "breaching"): 1,
        (FIRST_RESPONSE, "billing", "high", "at_risk"): 1,
    }
    expired = index.expire(now, counted=[])
    assert [(c.ticket_id, c.sla) for c in expired] == [("T1", FIRST_RESPONSE)]
    assert index.expire(now, counted=[("T1", FIRST_RESPONSE)]) == []
    # Once flagged in the ticket's state, its clock no longer expires.
    urgent.sla_breached.append(FIRST_RESPONSE)
    index.update("T1", open_clocks(urgent, POLICY, "billing"))
    assert index.expire(now, counted=[]) == []
    # ... but it still shows as breaching until it is answered.
    assert index.counts(now, POLICY.warn_ms)[(FIRST_RESPONSE, "billing", "urgent", "breaching")]

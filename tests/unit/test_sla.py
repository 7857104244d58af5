from stream.kpi.sla import (
    FIRST_RESPONSE,
    RESOLUTION,
    SlaIndex,
    SlaPolicy,
    attainment,
    open_clocks,
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


def test_attainment_counts_a_breach_once() -> None:
    assert attainment(HOUR, HOUR, breach_counted=False) == "met"  # at the target is met
    assert attainment(HOUR + 1, HOUR, breach_counted=False) == "breached"
    assert attainment(HOUR + 1, HOUR, breach_counted=True) is None


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
